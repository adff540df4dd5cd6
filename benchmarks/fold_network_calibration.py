"""Where an external calibration slope comes from: each fold network against the fold ensemble.

After a training run (``make run``), this scores every patient with every fold network of each
network model and reports, per model: the out-of-fold AUC of each fold network on the training
patients it never saw, its AUC on the external centre, and the external calibration slope of
its risks (the ensemble's stored calibration applied to that one network's fused logit) beside
the fold ensemble's. If single fold networks are as miscalibrated externally as the ensemble,
the slope is a property of the external centre (case mix, scanner), not of averaging K
networks; ``docs/inference.md`` (section 3) explains how to read it.

Run from the project root after a training run::

    PYTHONPATH=src .venv/bin/python benchmarks/fold_network_calibration.py [--data data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from clnm_kedro.datasets import NumpyDataset, TableCSVDataset
from clnm_kedro.metrics.calibration import calibration_intercept_slope
from clnm_kedro.networks.cross_fitting import batched_logits, fold_assignment, load_network_file
from clnm_kedro.registry import NETWORK_MODELS


def _slope(y: np.ndarray, risk: np.ndarray) -> float:
    return float(calibration_intercept_slope(y, risk).slope)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="the run's data folder")
    args = parser.parse_args()
    # Read back as the pipelines wrote them (the catalog's datasets for these files).
    splits = TableCSVDataset(filepath=str(args.data / "03_primary" / "patient_splits.csv")).load()
    crops = NumpyDataset(filepath=str(args.data / "03_primary" / "roi_crops.npy")).load()
    y = splits["clnm"].astype(int).to_numpy()
    external = splits["split"].ne("train").to_numpy()
    rows = []
    for model in NETWORK_MODELS:
        path = args.data / "06_models" / f"{model}_network.pt"
        if not path.is_file():
            continue
        ensemble = load_network_file(path)
        assignment = fold_assignment(ensemble, splits)
        logits = batched_logits(list(ensemble.folds), crops)[:, :, 0]  # (K, patients)
        for k in range(ensemble.n_folds):
            held = assignment == k
            rows.append(
                {
                    "model": model,
                    "network": f"fold_{k}",
                    "out_of_fold_auc": roc_auc_score(y[held], logits[k, held]),
                    "external_auc": roc_auc_score(y[external], logits[k, external]),
                    "external_slope": _slope(
                        y[external], ensemble.risk(logits[k, external])
                    ),
                }
            )
        mean = logits.mean(axis=0)
        rows.append(
            {
                "model": model,
                "network": "ensemble",
                "out_of_fold_auc": np.nan,
                "external_auc": roc_auc_score(y[external], mean[external]),
                "external_slope": _slope(y[external], ensemble.risk(mean[external])),
            }
        )
    table = pd.DataFrame(rows)
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
