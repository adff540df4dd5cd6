"""Stratified, seeded bootstrap confidence intervals."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clnm_kedro.metrics.bootstrap import bootstrap_ci
from clnm_kedro.metrics.calibration import brier_score
from clnm_kedro.metrics.delong import auc_delong, auc_per_row, delong_ci

ASAH = Path(__file__).parent / "data" / "asah.csv"


@pytest.fixture(scope="module")
def asah() -> tuple[np.ndarray, np.ndarray]:
    data = pd.read_csv(ASAH)
    return (data["outcome"] == "Poor").to_numpy(dtype=int), data["s100b"].to_numpy()


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    return auc_delong(y, score).auc


def test_same_seed_repeats_and_other_seed_differs(asah: tuple) -> None:
    y, score = asah
    first = bootstrap_ci(y, score, auc_per_row, seed=42, vectorized=True)
    again = bootstrap_ci(y, score, auc_per_row, seed=42, vectorized=True)
    other = bootstrap_ci(y, score, auc_per_row, seed=43, vectorized=True)
    assert first == again
    assert (first.lower, first.upper) != (other.lower, other.upper)


def test_interval_brackets_estimate_and_matches_delong_width(asah: tuple) -> None:
    y, score = asah
    boot = bootstrap_ci(y, score, auc_per_row, seed=1, n_boot=2000, vectorized=True)
    delong = delong_ci(y, score)
    assert boot.estimate == pytest.approx(delong.auc, abs=1e-12)
    assert boot.lower < boot.estimate < boot.upper
    # pROC's own bootstrap CI of this AUC is close to DeLong's (0.630-0.833); ours too.
    ratio = (boot.upper - boot.lower) / (delong.upper - delong.lower)
    assert 0.8 < ratio < 1.25
    assert abs(boot.lower - delong.lower) < 0.03
    assert abs(boot.upper - delong.upper) < 0.03


def test_vectorized_and_loop_paths_agree(asah: tuple) -> None:
    y, score = asah
    loop = bootstrap_ci(y, score, _auc, seed=9, n_boot=300)
    vectorized = bootstrap_ci(y, score, auc_per_row, seed=9, n_boot=300, vectorized=True)
    assert loop.estimate == pytest.approx(vectorized.estimate, abs=1e-12)
    assert loop.lower == pytest.approx(vectorized.lower, abs=1e-12)
    assert loop.upper == pytest.approx(vectorized.upper, abs=1e-12)


def test_resampling_is_stratified_by_outcome(asah: tuple) -> None:
    y, score = asah
    # Every replicate keeps 41 events among 113 patients, so the event count never varies.
    result = bootstrap_ci(y, score, lambda yb, _: float(yb.sum()), seed=0, n_boot=200)
    assert (result.estimate, result.lower, result.upper) == (41.0, 41.0, 41.0)


def test_any_metric_works(asah: tuple) -> None:
    y, score = asah
    p = np.clip(score, 0, 1)
    result = bootstrap_ci(y, p, brier_score, seed=3, n_boot=200, level=0.9)
    assert result.estimate == pytest.approx(brier_score(y, p))
    assert result.lower < result.estimate < result.upper


def test_undefined_replicates_are_dropped_and_reported(
    asah: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    y, score = asah

    def sometimes_undefined(yb: np.ndarray, sb: np.ndarray) -> float:
        return float("nan") if sb[0] > np.median(score) else float(sb.mean())

    with caplog.at_level(logging.WARNING, logger="clnm_kedro.metrics.bootstrap"):
        result = bootstrap_ci(y, score, sometimes_undefined, seed=4, n_boot=200)
    assert math.isfinite(result.lower)
    assert math.isfinite(result.upper)
    assert "could not be computed" in caplog.text

    never_defined = bootstrap_ci(y, score, lambda yb, sb: float("nan"), seed=4, n_boot=20)
    assert math.isnan(never_defined.lower)
    assert math.isnan(never_defined.upper)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_boot": 0}, "n_boot must be a positive whole number"),
        ({"n_boot": 10.5}, "n_boot must be a positive whole number"),
        ({"level": 1.5}, "level must be strictly between 0 and 1"),
    ],
)
def test_bad_parameters(asah: tuple, kwargs: dict, message: str) -> None:
    y, score = asah
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(y, score, _auc, seed=0, **kwargs)


def test_single_class_is_refused() -> None:
    with pytest.raises(ValueError, match="only non-events"):
        bootstrap_ci([0, 0, 0], [0.1, 0.2, 0.3], _auc, seed=0)
