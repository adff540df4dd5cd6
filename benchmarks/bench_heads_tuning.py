"""Time the default head tuning of the three models (issue 4 target: < 3 minutes on 2 cores).

Synthetic stand-in for the real tables: 300 training patients, ``make_classification`` with
71 numeric columns (64 named ``dl_*``, 7 clinical), 2 categorical clinical columns, 5 % of
values missing. Models: ``clinical`` (5 numeric + 2 categorical), ``dl_features`` (64),
``combined`` (all 73). Uses the default parameter block
``conf/base/parameters_heads_example.yml`` and a throw-away SQLite storage.

Wall time depends on what else runs on the machine; with ``n_jobs: 1`` every computation is
single-threaded, so the process's CPU time is close to the wall time on an idle machine.

Run from the project root::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_heads_tuning.py [--n-jobs 1] [--n-trials N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.datasets import make_classification

from clnm_kedro.heads import fit_head

PARAMETERS = Path(__file__).resolve().parents[1] / "conf/base/parameters_heads_example.yml"


def synthetic_tables(seed: int = 0) -> tuple[dict[str, pd.DataFrame], np.ndarray]:
    """Feature tables of the three models and the labels (300 patients)."""
    X, y = make_classification(
        n_samples=300, n_features=71, n_informative=10, weights=[0.68], random_state=seed
    )
    rng = np.random.default_rng(seed)
    names = [f"dl_{i}" for i in range(64)] + [f"clinical_{i}" for i in range(7)]
    table = pd.DataFrame(X, columns=names)
    table["sex"] = rng.choice(["F", "M"], size=300, p=[0.75, 0.25])
    table["location"] = rng.choice(["upper", "middle", "lower", "isthmus"], size=300)
    table = table.mask(rng.random(table.shape) < 0.05)
    clinical = [f"clinical_{i}" for i in range(5)] + ["sex", "location"]
    tables = {
        "clinical": table[clinical],
        "dl_features": table[[f"dl_{i}" for i in range(64)]],
        "combined": table,
    }
    return tables, y


def main() -> None:
    """Tune the three models with the default settings and print the seconds spent."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=None, help="override heads.n_jobs")
    parser.add_argument("--n-trials", type=int, default=None, help="override heads.n_trials")
    args = parser.parse_args()
    params = yaml.safe_load(PARAMETERS.read_text())["heads"]
    if args.n_jobs is not None:
        params["n_jobs"] = args.n_jobs
    if args.n_trials is not None:
        params["n_trials"] = args.n_trials
    tables, y = synthetic_tables()
    total_start, total_cpu_start = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as folder:
        storage_url = f"sqlite:///{folder}/optuna.db"
        for model, X in tables.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            result = fit_head(X, y, params, storage_url=storage_url, model_name=model, seed=0)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            print(
                f"\n{model}: {X.shape[1]} columns, {seconds:.1f} s wall, {cpu:.1f} s CPU "
                "(incl. validation + refit)"
            )
            print(
                result.comparison[
                    ["family", "cv_auc", "n_trials", "n_pruned", "search_seconds", "selected"]
                ].to_string(index=False)
            )
    total, cpu = time.perf_counter() - total_start, time.process_time() - total_cpu_start
    print(
        f"\nTotal: {total:.1f} s wall ({total / 180:.2f} of the 3-minute target), "
        f"{cpu:.1f} s CPU of this process (wall time on an idle machine when n_jobs is 1)"
    )


if __name__ == "__main__":
    main()
