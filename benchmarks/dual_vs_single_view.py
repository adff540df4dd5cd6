"""Dual-channel network against the single-view networks, on a large second external cohort.

154 external patients cannot separate AUCs a few hundredths apart (a network's external AUC moves
by 0.03-0.05 with the seed alone), so this trains the three networks on the training centre of
the project's cohort and scores them on its external centre *and* on the external centre of a
second, larger cohort preprocessed the same way (e.g. ``simulate`` with ``n_patients: 1000`` and
equal centre shares, then ``preprocessing``, in a copy of the project). The recipe is the one in
``conf/base/parameters_dl_training.yml``; ``--override`` merges JSON over it. Nothing here is
fitted on either external centre.

Run from the project root::

    PYTHONPATH=src .venv/bin/python benchmarks/dual_vs_single_view.py \\
        --second-cohort /tmp/big/data/03_primary --seeds 20260127 2 3 \\
        [--override '{"training": {"view_loss_weight": 0.0}}'] [--kinds dual]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from sklearn.metrics import roc_auc_score

from clnm_kedro.networks import predict_probabilities, train_network

ROOT = Path(__file__).resolve().parents[1]


def read_primary(folder: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """``roi_crops.npy`` and ``patient_splits.csv`` of a preprocessed cohort."""
    crops = np.load(folder / "roi_crops.npy", mmap_mode="r")
    splits = pd.read_csv(folder / "patient_splits.csv", dtype={"patient_id": str})
    return crops, splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, default=ROOT / "data" / "03_primary")
    parser.add_argument("--second-cohort", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[20260127])
    parser.add_argument("--kinds", nargs="+", default=["dual", "longitudinal", "transverse"])
    parser.add_argument("--override", type=json.loads, default={})
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    params = yaml.safe_load((ROOT / "conf/base/parameters_dl_training.yml").read_text())
    recipe = params["dl_training"]["recipe"]
    for section, values in args.override.items():
        recipe.setdefault(section, {}).update(values)
    recipe["training"]["progress_bar"] = False
    crops, splits = read_primary(args.cohort)
    second_crops, second_splits = read_primary(args.second_cohort)
    external = (splits["split"] == "external").to_numpy()
    second_external = (second_splits["split"] == "external").to_numpy()
    print(f"external: {external.sum()} patients; second external: {second_external.sum()}")
    for seed in args.seeds:
        for kind in args.kinds:
            started = time.perf_counter()
            config = copy.deepcopy(recipe)
            config["network"]["kind"] = kind
            result = train_network(np.asarray(crops), splits, config, seed)
            network = result.network()
            auc = roc_auc_score(
                splits["clnm"][external], predict_probabilities(network, crops[external])
            )
            second_auc = roc_auc_score(
                second_splits["clnm"][second_external],
                predict_probabilities(network, second_crops[second_external]),
            )
            print(
                f"seed {seed} {kind:>12}: internal validation {result.best_val_auc:.3f} "
                f"(epoch {result.best_epoch}), external {auc:.3f}, second external "
                f"{second_auc:.3f} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
