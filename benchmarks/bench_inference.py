"""Scoring speed of the packaged MLflow model: one patient's latency, a 1,000-patient batch.

The model registered by a training run (``clnm_kedro``, latest version) is loaded once from
the project's MLflow store; then

- latency: one patient of the project's cohort is scored ``--repeats`` times (after two
  warm-up calls); the median, minimum and maximum wall time are printed (goal: under 1 s on 2
  CPU cores);
- throughput: a batch of ``--batch`` patients (the cohort's patients repeated under new IDs,
  so every image is decoded and cropped again) is scored ``--batch-repeats`` times; the median
  time and patients per second are printed.

Everything a prediction does is timed: reading and validating the table, decoding and
cropping both images, the three networks, the three heads, the results table. Log messages
are kept to warnings (as when the model is served).

Run after a training run (``make run``, or ``kedro run``)::

    .venv/bin/python benchmarks/bench_inference.py --project .
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd
import torch
from mlflow import MlflowClient

from clnm_kedro.datasets import CohortDataset
from clnm_kedro.pipelines.inference.pipeline import REGISTERED_MODEL_NAME
from clnm_kedro.scoring import flatten_cohort

DEFAULT_COHORT = "data/01_raw/synthetic_cohort"


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def batch_of(table: pd.DataFrame, size: int) -> pd.DataFrame:
    """``size`` rows: the cohort's patients repeated, each copy under a new patient ID."""
    copies = -(-size // len(table))
    parts = [
        table.assign(patient_id=table["patient_id"].astype(str) + f"_{copy:03d}")
        for copy in range(copies)
    ]
    return pd.concat(parts, ignore_index=True).head(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, default=Path("."), help="trained project root")
    parser.add_argument("--cohort", type=Path, default=None, help=f"default {DEFAULT_COHORT}")
    parser.add_argument("--repeats", type=int, default=20, help="one-patient predictions")
    parser.add_argument("--batch", type=int, default=1000, help="patients in the batch")
    parser.add_argument("--batch-repeats", type=int, default=2, help="batch predictions")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    project = args.project.resolve()
    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    versions = MlflowClient(uri).search_model_versions(f"name = '{REGISTERED_MODEL_NAME}'")
    if not versions:
        raise SystemExit(f"No model '{REGISTERED_MODEL_NAME}' in {uri}: run a training first.")
    latest = max(int(v.version) for v in versions)
    load_seconds = time.perf_counter()
    model = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL_NAME}/{latest}")
    load_seconds = time.perf_counter() - load_seconds
    # After loading: unpickling the model imports Kedro, which sets its own log levels.
    for name in ("", "kedro", "clnm_kedro", "mlflow", "kedro_mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)

    cohort = flatten_cohort(CohortDataset(str(args.cohort or project / DEFAULT_COHORT)).load())
    one = cohort.iloc[:1]
    for _ in range(2):
        model.predict(one)
    latencies = [_timed(lambda: model.predict(one)) for _ in range(args.repeats)]

    batch = batch_of(cohort, args.batch)
    results: list[pd.DataFrame] = []
    batch_times = [
        _timed(lambda: results.append(model.predict(batch))) for _ in range(args.batch_repeats)
    ]
    scored = int(results[-1]["scored"].sum())
    numbers = {
        "model": f"{REGISTERED_MODEL_NAME} v{latest}",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_seconds": round(load_seconds, 2),
        "latency_median_s": round(statistics.median(latencies), 3),
        "latency_min_s": round(min(latencies), 3),
        "latency_max_s": round(max(latencies), 3),
        "repeats": args.repeats,
        "batch_patients": len(batch),
        "batch_scored": scored,
        "batch_median_s": round(statistics.median(batch_times), 2),
        "batch_patients_per_s": round(len(batch) / statistics.median(batch_times), 1),
        "batch_ms_per_patient": round(1000 * statistics.median(batch_times) / len(batch), 2),
    }
    print(f"model {numbers['model']}, loaded in {numbers['load_seconds']} s")
    print(
        f"one patient: median {numbers['latency_median_s']} s over {args.repeats} predictions "
        f"(min {numbers['latency_min_s']}, max {numbers['latency_max_s']}); goal < 1 s "
        f"on 2 cores ({numbers['cpu_count']} cores here, {numbers['torch_threads']} torch "
        "threads)"
    )
    print(
        f"batch of {len(batch)} patients ({scored} scored): median {numbers['batch_median_s']} s"
        f" = {numbers['batch_patients_per_s']} patients/s "
        f"({numbers['batch_ms_per_patient']} ms per patient)"
    )
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
