"""The `paper` setting of `dl_dual` on a GPU: seconds per epoch and samples per second.

Reads the `dl_training` and `preprocessing` blocks of conf/base with conf/paper merged over
them (as `kedro run --env paper` does), trains the dual-channel network for a fixed number of
epochs on a cohort of the study's size (461 patients, 307 of them from the training centre) and
reports the median epoch time. The crops are random: throughput does not depend on content, and
the check needs neither Kedro nor the simulator on the GPU machine.

    PYTHONPATH=src python benchmarks/gpu_paper_setting.py --epochs 6
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from clnm_kedro.networks import extract_features, train_network
from clnm_kedro.networks.training import config_for_kind

ROOT = Path(__file__).resolve().parents[1]


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged key by key over ``base`` (Kedro's "soft" merge of parameters)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def paper_block(name: str) -> dict[str, Any]:
    """One parameter block of conf/base with conf/paper merged over it."""
    block: dict[str, Any] = {}
    for env in ("base", "paper"):
        path = ROOT / "conf" / env / f"parameters_{name}.yml"
        if path.is_file():
            block = deep_merge(block, (yaml.safe_load(path.read_text()) or {}).get(name, {}))
    return block


def study_sized_cohort(size: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """461 patients: 307 training-centre (5 folds), 154 external; random uint8 crops."""
    rng = np.random.default_rng(seed)
    n_train, n_external = 307, 154
    crops = rng.integers(0, 256, size=(n_train + n_external, 2, size, size), dtype=np.uint8)
    splits = pd.DataFrame(
        {
            "patient_id": [f"P{i:04d}" for i in range(n_train + n_external)],
            "center": ["CENTER_A"] * n_train + ["CENTER_B"] * n_external,
            "clnm": rng.permutation(np.r_[np.ones(150), np.zeros(311)]).astype(int),
            "split": ["train"] * n_train + ["external"] * n_external,
            "fold": list(np.arange(n_train) % 5) + [-1] * n_external,
        }
    )
    return crops, splits


def main() -> None:
    """Train dl_dual with the paper setting and print the throughput as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=20260127)
    parser.add_argument("--device", default="cuda", help="cpu only for a smoke test")
    parser.add_argument("--size", type=int, default=None, help="override the crop size")
    args = parser.parse_args()

    dl_training = paper_block("dl_training")
    size = args.size or int(paper_block("preprocessing")["image_size"])
    config = config_for_kind(dl_training["recipe"], "dual")
    config["training"].update(
        epochs=args.epochs,
        min_epochs=args.epochs,
        early_stopping_patience=args.epochs,
        progress_bar=False,
    )
    crops, splits = study_sized_cohort(size, args.seed)
    on_cuda = args.device.startswith("cuda")
    result = train_network(crops, splits, config, args.seed, device=args.device)
    history = result.history
    epoch_seconds = float(np.median(history["seconds"].to_numpy()[1:]))  # first epoch warms up
    n_fit = len(result.fit_patient_ids)

    network = result.network(args.device)
    extract_features(network, crops)  # warm-up
    if on_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    repeats = 5
    for _ in range(repeats):
        extract_features(network, crops)
    if on_cuda:
        torch.cuda.synchronize()
    extraction_rate = repeats * len(crops) / (time.perf_counter() - start)

    report = {
        "device": torch.cuda.get_device_name(0) if on_cuda else "cpu",
        "torch": torch.__version__,
        "backbone": config["network"]["backbone"],
        "image_size": size,
        "batch_size": config["training"]["batch_size"],
        "patients_fitted_per_epoch": n_fit,
        "epochs": len(history),
        "first_epoch_seconds": float(history["seconds"].iloc[0]),
        "median_epoch_seconds": epoch_seconds,
        "training_samples_per_second": n_fit / epoch_seconds,
        "feature_extraction_patients_per_second": extraction_rate,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
