"""Shared fixtures: a small valid cohort folder and default preprocessing parameters."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow
import pytest

import clnm_kedro  # noqa: F401 - pins the CPU kernels before any test module imports torch
from cohort_factory import FactoryCohort, write_cohort

# Clinical data: Kedro telemetry stays off in every test, however pytest is started.
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")


@pytest.fixture(autouse=True)
def _isolated_mlflow_runs() -> Any:
    """Close any MLflow run a test left open, so the next test starts with none active.

    A Kedro session run inside the test process leaves kedro-mlflow's run registered as the
    active run of the process (the ``kedro run`` command ends with its process instead).
    """
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def cohort(tmp_path: Path) -> FactoryCohort:
    """A valid two-centre cohort (30 training, 12 external patients, 60×80 PNG frames)."""
    return write_cohort(tmp_path / "cohort")


@pytest.fixture
def preprocessing_params() -> dict[str, Any]:
    """The ``preprocessing`` parameter block, small crops for speed."""
    return {
        "image_size": 32,
        "roi_margin": 0.25,
        "intensity_percentiles": [0.5, 99.5],
        "clinical_columns": [
            "age",
            "sex",
            "tumor_size_mm",
            "capsule_contact",
            "microcalcification",
            "hashimoto",
            "location",
        ],
        "require_labels": True,
        "progress_bar": False,
    }


@pytest.fixture
def split_params() -> dict[str, Any]:
    """The ``split`` parameter block for cohorts written by ``write_cohort``."""
    return {"external_centers": ["CENTER_B"], "n_folds": 5}
