"""Youden threshold and classification metrics at a fixed threshold."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clnm_kedro.metrics.thresholds import (
    classification_metrics,
    cross_fitted_thresholds,
    youden_threshold,
)

ASAH = Path(__file__).parent / "data" / "asah.csv"


def test_youden_threshold_small_example() -> None:
    y = [0, 0, 0, 1, 1, 0, 1, 1]
    score = [1, 2, 3, 4, 5, 6, 7, 8]
    # Cut-off 4 (score >= 4 positive): sens 4/4, spec 3/4 -> J = 0.75, the unique maximum
    # (cut-off 7: sens 2/4, spec 4/4 -> J = 0.5). Halfway to the next lower score: 3.5.
    assert youden_threshold(y, score) == 3.5


def test_youden_ties_go_to_the_more_sensitive_cut_off() -> None:
    y = [0, 0, 0, 1, 0, 1, 1, 1]
    score = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    # Cut-off 0.4: sens 1, spec 3/4 (J = 0.75); cut-off 0.6: sens 3/4, spec 1 (J = 0.75).
    # The tie goes to the lower cut-off 0.4, returned as (0.3 + 0.4) / 2.
    assert youden_threshold(y, score) == pytest.approx(0.35, abs=1e-15)
    # Reversing the input order must not change the choice.
    assert youden_threshold(y[::-1], score[::-1]) == pytest.approx(0.35, abs=1e-15)


def test_youden_on_asah_matches_proc_best_coords() -> None:
    # pROC tests/testthat/test-coords.R, "coords with best threshold works":
    # coords(r.s100b, "best") is the column of expected.coords with threshold 0.205
    # (tests/testthat/helper-coords-expected.R): specificity 0.805555555555556, sensitivity
    # 0.634146341463415, accuracy 0.743362831858407, tn 58, tp 26, fn 15, fp 14,
    # npv 0.794520547945205, ppv 0.65.
    data = pd.read_csv(ASAH)
    y = (data["outcome"] == "Poor").astype(int)
    threshold = youden_threshold(y, data["s100b"])
    assert threshold == pytest.approx(0.205, abs=1e-12)
    result = classification_metrics(y, data["s100b"], threshold)
    assert (result["tn"], result["tp"], result["fn"], result["fp"]) == (58, 26, 15, 14)
    assert result["specificity"] == pytest.approx(0.805555555555556, abs=1e-12)
    assert result["sensitivity"] == pytest.approx(0.634146341463415, abs=1e-12)
    assert result["accuracy"] == pytest.approx(0.743362831858407, abs=1e-12)
    assert result["npv"] == pytest.approx(0.794520547945205, abs=1e-12)
    assert result["ppv"] == pytest.approx(0.65, abs=1e-12)


def test_uninformative_scores_call_everyone_positive_and_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="clnm_kedro.metrics.thresholds"):
        threshold = youden_threshold([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4])
    # Events scored lowest: every cut-off has J <= 0; the lowest score (everyone positive)
    # ties at J = 0 and wins.
    assert threshold == 0.1
    assert "do not separate" in caplog.text


def test_classification_metrics_small_example() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    score = np.array([0.9, 0.6, 0.3, 0.7, 0.2, 0.1, 0.5, 0.5])
    # score >= 0.5 positive: rows 0, 1, 3, 6, 7 -> tp = 3 (rows 0, 1, 7), fp = 2 (rows 3, 6);
    # negatives: rows 2, 4, 5 -> fn = 1 (row 2), tn = 2 (rows 4, 5). Row 7 sits exactly on the
    # threshold and counts as positive.
    result = classification_metrics(y, score, 0.5)
    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (3, 2, 2, 1)
    assert result["sensitivity"] == pytest.approx(3 / 4)
    assert result["specificity"] == pytest.approx(2 / 4)
    assert result["accuracy"] == pytest.approx(5 / 8)
    assert result["ppv"] == pytest.approx(3 / 5)
    assert result["npv"] == pytest.approx(2 / 3)
    assert all(isinstance(result[k], int) for k in ("tp", "fp", "tn", "fn"))


def test_undefined_rates_are_nan_not_errors() -> None:
    y = [1, 0, 1, 0]
    score = [0.1, 0.2, 0.3, 0.4]
    nobody_positive = classification_metrics(y, score, 0.9)
    assert math.isnan(nobody_positive["ppv"])
    assert nobody_positive["npv"] == pytest.approx(0.5)
    everybody_positive = classification_metrics(y, score, 0.0)
    assert math.isnan(everybody_positive["npv"])
    # A subgroup without events: sensitivity is undefined, specificity is not.
    no_events = classification_metrics([0, 0, 0], [0.1, 0.6, 0.7], 0.5)
    assert math.isnan(no_events["sensitivity"])
    assert no_events["specificity"] == pytest.approx(1 / 3)


def test_training_threshold_applies_unchanged_to_other_data() -> None:
    rng = np.random.default_rng(7)
    y_train = rng.integers(0, 2, size=200)
    s_train = rng.normal(size=200) + y_train
    y_ext = rng.integers(0, 2, size=100)
    s_ext = rng.normal(size=100) + y_ext
    threshold = youden_threshold(y_train, s_train)
    result = classification_metrics(y_ext, s_ext, threshold)
    assert result["tp"] + result["fp"] == int(np.sum(s_ext >= threshold))
    assert result["tp"] == int(np.sum((s_ext >= threshold) & (y_ext == 1)))


@pytest.mark.parametrize(
    ("y", "score", "message"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "only non-events"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "missing or infinite"),
        ([0, 1, 1], [0.1, 0.3], "2 values but there are 3 outcomes"),
        (["no", "yes"], [0.1, 0.3], "numeric 0/1"),
    ],
)
def test_youden_bad_input(y: list, score: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        youden_threshold(y, score)


def test_classification_metrics_bad_threshold() -> None:
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        classification_metrics([0, 1], [0.1, 0.9], float("nan"))


def test_cross_fitted_cutoffs_do_not_flatter_scores_without_signal() -> None:
    """On scores that carry no signal, the Youden cut-off chosen on the same patients finds a
    sizeable J by chance; cut-offs chosen without each patient find none (J near 0, the
    honest answer)."""
    rng = np.random.default_rng(7)
    apparent, crossed = [], []
    for _ in range(50):
        y = rng.binomial(1, 0.35, 200)
        score = rng.uniform(size=200)
        rates = classification_metrics(y, score, youden_threshold(y, score))
        apparent.append(rates["sensitivity"] + rates["specificity"] - 1)
        cutoffs = cross_fitted_thresholds(y, score, n_splits=5, seed=1)
        rates = classification_metrics(y, score - cutoffs, 0.0)
        crossed.append(rates["sensitivity"] + rates["specificity"] - 1)
    assert min(apparent) > 0 and np.median(apparent) > 0.05
    assert abs(np.mean(crossed)) < 0.02 and abs(np.median(crossed)) < 0.03
    # Too few patients of a class: no cut-off rather than a made-up one.
    assert np.isnan(cross_fitted_thresholds([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3])).all()
