"""Scale-out head tuning: workers sharing one Optuna study stop at its total together.

The two-process test needs a PostgreSQL server; ``.ci/run`` starts one
(``.ci/start_postgres.sh``) and exports its URL as ``CLNM_TEST_POSTGRES_URL``. It is skipped
only when that variable is unset. The counting rules themselves are also checked on SQLite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from clnm_kedro.heads.spec import HeadSpec
from clnm_kedro.heads.studies import open_storage, tune_family

POSTGRES_URL = os.environ.get("CLNM_TEST_POSTGRES_URL")
N_TRIALS = 12
FAMILIES = ["logistic_regression", "knn"]

needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="CLNM_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL)"
)

# One tuning worker: the project's own tuning code, as each `kedro run` would call it. Every
# trial is tagged with the worker that ran it and lasts at least 50 ms, so that the two
# workers' trials interleave.
WORKER = """
import json, sys, time
from pathlib import Path
import numpy as np, pandas as pd
from clnm_kedro.heads import search, studies

url, model, worker, folder, n_trials, families = sys.argv[1:7]
original = studies.make_objective

def tagged_objective(*args, **kwargs):
    objective = original(*args, **kwargs)
    def run(trial):
        trial.set_user_attr("worker", worker)
        time.sleep(0.05)
        return objective(trial)
    return run

studies.make_objective = tagged_objective
rng = np.random.default_rng(0)
X = pd.DataFrame({"age": rng.normal(45, 11, 160), "tumor_size_mm": rng.uniform(2, 10, 160),
                  "hashimoto": rng.integers(0, 2, 160).astype(float)})
y = (rng.random(160) < 1 / (1 + np.exp(-(X["tumor_size_mm"] - 6) / 2))).astype(int)
spec = {"families": json.loads(families), "n_trials": int(n_trials), "timeout_s": None,
        "processes": 1,  # the tagged objective is patched into this process only
        "cv": {"n_splits": 3, "n_repeats": 1}, "selection": {"metric": "auc"},
        "search_space": {"logistic_regression": {"C": {"type": "float", "low": 0.001,
                                                       "high": 100.0, "log": True}},
                         "knn": {"n_neighbors": {"type": "int", "low": 3, "high": 40}}}}
Path(folder, worker + ".ready").touch()
while not Path(folder, "go").exists():
    time.sleep(0.02)
result = search.fit_head(X, y, spec, storage_url=url, model_name=model, seed=3)
Path(folder, worker + ".json").write_text(json.dumps(
    {"family": result.family, "params": result.params, "cv_auc": result.cv_auc,
     "studies": {f: s.study_name for f, s in result.studies.items()}}, default=str))
"""


@needs_postgres
def test_two_workers_share_one_study(tmp_path: Path) -> None:
    model = f"test_{uuid.uuid4().hex[:8]}"  # a fresh set of studies in the shared database
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    arguments = [POSTGRES_URL, model, "", str(tmp_path), str(N_TRIALS), json.dumps(FAMILIES)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *arguments[:2], name, *arguments[3:]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("w1", "w2")
    ]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"{w}.ready").exists() for w in ("w1", "w2")):
        assert all(p.poll() is None for p in workers), [p.communicate()[0] for p in workers]
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)
    (tmp_path / "go").touch()  # both start tuning at the same moment
    for process in workers:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output

    results = [json.loads((tmp_path / f"{w}.json").read_text()) for w in ("w1", "w2")]
    storage = optuna.storages.RDBStorage(POSTGRES_URL)
    try:
        best_values, workers_seen = {}, set()
        for family, study_name in results[0]["studies"].items():
            assert results[1]["studies"][family] == study_name  # one study, shared
            trials = optuna.load_study(study_name=study_name, storage=storage).trials
            numbers = [t.number for t in trials]
            assert len(numbers) == len(set(numbers)), "duplicate trial numbers"
            finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
            assert len(finished) == N_TRIALS, study_name  # the study's total, not per worker
            assert not [t for t in trials if t.state == TrialState.RUNNING]
            workers_seen |= {t.user_attrs.get("worker") for t in finished}
            complete = [t for t in finished if t.state == TrialState.COMPLETE]
            best_values[family] = max(t.value for t in complete)

        # both workers ran trials (which studies each reached first is up to the scheduler)
        assert workers_seen == {"w1", "w2"}, workers_seen
        # both workers chose and refitted the study's best head
        best_family = max(best_values, key=best_values.get)
        for result in results:
            assert result["family"] == best_family
            assert result["cv_auc"] == pytest.approx(best_values[best_family], abs=0)
        assert results[0]["params"] == results[1]["params"]
    finally:
        for study_name in results[0]["studies"].values():
            optuna.delete_study(study_name=study_name, storage=storage)


def _table() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"age": rng.normal(45, 11, 60), "tumor_size_mm": rng.uniform(2, 10, 60)})
    return X, (rng.random(60) < 0.4).astype(int)


def _tune(storage: optuna.storages.BaseStorage, n_trials: int) -> optuna.Study:
    spec = HeadSpec.from_params(
        {
            "families": ["logistic_regression"],
            "n_trials": n_trials,
            "timeout_s": None,
            "cv": {"n_splits": 3, "n_repeats": 1},
            "search_space": {
                "logistic_regression": {"C": {"type": "float", "low": 0.01, "high": 10.0}}
            },
        }
    )
    X, y = _table()
    study, _ = tune_family(
        X, y, "logistic_regression", spec, storage=storage, study_name="m.lr", seed=0
    )
    return study


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # study.ask() below
def test_a_trial_beyond_the_total_stands_down_and_the_best_waits_for_others(
    tmp_path: Path,
) -> None:
    """Another worker has 2 finished trials and 1 running; the total is 3. This worker's trial
    would be a 4th: it ends at once as failed (never counted), and the worker reads the study's
    best only once the other worker's trial has finished. (A database server has heartbeats,
    as here.)"""
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=10, grace_period=60
    )
    study = _tune(storage, 2)
    other_workers_trial = study.ask()  # still running in "another worker"
    # a score better than any real trial's, in the study's direction (log loss: minimised)
    minimise = study.direction == optuna.study.StudyDirection.MINIMIZE
    best_possible = 0.01 if minimise else 0.99

    def finish_once_this_worker_stood_down() -> None:
        # the other worker's trial ends only after this worker's surplus trial has failed,
        # however long this worker takes to get there
        for _ in range(1200):
            if any(t.state == TrialState.FAIL for t in study.get_trials(deepcopy=False)):
                break
            time.sleep(0.05)
        study.tell(other_workers_trial, best_possible)

    finish = threading.Thread(target=finish_once_this_worker_stood_down)
    finish.start()
    try:
        study = _tune(storage, 3)
    finally:
        finish.join()

    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.FAIL]
    assert study.best_trial.number == other_workers_trial.number  # waited for it
    assert study.best_value == best_possible


def test_a_trial_left_running_by_a_killed_run_does_not_block_the_total(tmp_path: Path) -> None:
    """SQLite (no heartbeats): a trial an earlier, killed run left running is not counted."""
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = _tune(storage, 2)
    study.ask()  # the process running it was killed
    study = _tune(storage, 3)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 3
    assert states.count(TrialState.RUNNING) == 1
