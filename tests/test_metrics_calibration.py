"""Calibration: reliability curve, Brier score, calibration intercept/slope, Hosmer-Lemeshow."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pytest
from scipy import special, stats
from sklearn.metrics import brier_score_loss

from clnm_kedro.metrics.calibration import (
    brier_score,
    calibration_intercept_slope,
    hosmer_lemeshow,
    quantile_groups,
    reliability_curve,
)

# Nine patients, three clean risk groups of three.
P9 = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
Y9 = np.array([0, 0, 1, 0, 1, 1, 1, 1, 1])


def test_brier_score_by_hand() -> None:
    # (p - y)^2: .01 .04 .49 | .16 .25 .16 | .09 .04 .01 -> sum 1.25 over 9 patients.
    assert brier_score(Y9, P9) == pytest.approx(1.25 / 9, abs=1e-15)
    assert brier_score(Y9, P9) == pytest.approx(brier_score_loss(Y9, P9), abs=1e-15)


def test_quantile_groups_by_hand() -> None:
    # Tertile edges of P9 (linear rule): 0.1, 0.3667, 0.6333, 0.9 -> groups of three.
    np.testing.assert_array_equal(quantile_groups(P9, 3), [0, 0, 0, 1, 1, 1, 2, 2, 2])
    # Tied probabilities merge groups instead of splitting ties across them.
    tied = np.array([0.2, 0.2, 0.2, 0.2, 0.6, 0.6, 0.6, 0.6])
    np.testing.assert_array_equal(quantile_groups(tied, 4), [0, 0, 0, 0, 1, 1, 1, 1])


def test_reliability_curve_by_hand() -> None:
    curve = reliability_curve(Y9, P9, n_bins=3)
    assert list(curve.columns) == ["bin", "mean_predicted", "observed_rate", "n"]
    np.testing.assert_array_equal(curve["bin"], [0, 1, 2])
    np.testing.assert_allclose(curve["mean_predicted"], [0.2, 0.5, 0.8], atol=1e-15)
    np.testing.assert_allclose(curve["observed_rate"], [1 / 3, 2 / 3, 3 / 3], atol=1e-15)
    np.testing.assert_array_equal(curve["n"], [3, 3, 3])


def test_hosmer_lemeshow_by_hand() -> None:
    # Group 1: p .1 .2 .3 -> E = 0.6, O = 1, n = 3: (1 - .6)^2 / (.6 * (1 - .6/3)) = .16/.48
    # Group 2: p .4 .5 .6 -> E = 1.5, O = 2:       (2 - 1.5)^2 / (1.5 * (1 - 1.5/3)) = .25/.75
    # Group 3: p .7 .8 .9 -> E = 2.4, O = 3:       (3 - 2.4)^2 / (2.4 * (1 - 2.4/3)) = .36/.48
    expected = 0.16 / 0.48 + 0.25 / 0.75 + 0.36 / 0.48  # = 17/12
    statistic, dof, p_value = hosmer_lemeshow(Y9, P9, n_groups=3)
    assert statistic == pytest.approx(expected, abs=1e-12)
    assert statistic == pytest.approx(17 / 12, abs=1e-12)
    assert dof == 1
    assert p_value == pytest.approx(stats.chi2.sf(17 / 12, 1), abs=1e-12)


def test_hosmer_lemeshow_equals_two_column_chi_square() -> None:
    # ResourceSelection::hoslem.test sums (O - E)^2 / E over events and non-events.
    rng = np.random.default_rng(3)
    p = rng.uniform(0.02, 0.98, size=300)
    y = rng.binomial(1, p)
    groups = quantile_groups(p, 10)
    total = 0.0
    for g in range(10):
        in_g = groups == g
        o1, e1 = y[in_g].sum(), p[in_g].sum()
        o0, e0 = in_g.sum() - o1, in_g.sum() - e1
        total += (o1 - e1) ** 2 / e1 + (o0 - e0) ** 2 / e0
    result = hosmer_lemeshow(y, p)
    assert result.statistic == pytest.approx(total, rel=1e-12)
    assert result.dof == 8


def test_calibration_intercept_with_constant_prediction_is_closed_form(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Everyone predicted 0.2, half have the event: the offset model solves
    # sigmoid(a + logit .2) = .5, so a = logit(.5) - logit(.2) = log(4). Slope undefined.
    y = [1, 0, 1, 0, 1, 0, 1, 0]
    with caplog.at_level(logging.WARNING, logger="clnm_kedro.metrics.calibration"):
        intercept, slope = calibration_intercept_slope(y, [0.2] * 8)
    assert intercept == pytest.approx(math.log(4.0), abs=1e-8)
    assert math.isnan(slope)
    assert "same predicted probability" in caplog.text


def test_calibration_intercept_and_slope_in_two_groups_by_hand() -> None:
    # Ten patients at p = .2 with 3 events, ten at p = .6 with 7 events.
    p = np.repeat([0.2, 0.6], 10)
    y = np.array([1] * 3 + [0] * 7 + [1] * 7 + [0] * 3)
    # Slope: the two-parameter model is saturated, so it passes through the observed rates:
    # b = (logit .7 - logit .3) / (logit .6 - logit .2).
    slope = (special.logit(0.7) - special.logit(0.3)) / (special.logit(0.6) - special.logit(0.2))
    # Intercept: 10 sigmoid(a + logit .2) + 10 sigmoid(a + logit .6) = 10 events, so the two
    # arguments are opposite: a = -(logit .2 + logit .6) / 2 = log(8/3) / 2.
    intercept = math.log(8.0 / 3.0) / 2.0
    result = calibration_intercept_slope(y, p)
    assert result.slope == pytest.approx(slope, abs=1e-8)
    assert result.intercept == pytest.approx(intercept, abs=1e-8)


@pytest.fixture(scope="module")
def logistic_sample() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20260101)
    linear_predictor = -1.0 + 1.5 * rng.normal(size=20_000)
    p_true = special.expit(linear_predictor)
    return rng.binomial(1, p_true), p_true


def test_true_probabilities_are_calibrated(logistic_sample: tuple) -> None:
    y, p_true = logistic_sample
    intercept, slope = calibration_intercept_slope(y, p_true)
    # Standard errors here are about 0.02 (intercept) and 0.025 (slope).
    assert intercept == pytest.approx(0.0, abs=0.06)
    assert slope == pytest.approx(1.0, abs=0.07)


def test_overconfident_probabilities_have_slope_one_half(logistic_sample: tuple) -> None:
    y, p_true = logistic_sample
    too_extreme = special.expit(2.0 * special.logit(p_true))
    _, slope = calibration_intercept_slope(y, too_extreme)
    assert slope == pytest.approx(0.5, abs=0.035)
    # Systematically too low risks give a positive intercept.
    intercept, _ = calibration_intercept_slope(y, special.expit(special.logit(p_true) - 0.5))
    assert intercept == pytest.approx(0.5, abs=0.06)


def test_separating_probabilities_give_nan_slope(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="clnm_kedro.metrics.calibration"):
        intercept, slope = calibration_intercept_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert math.isnan(slope)
    assert math.isfinite(intercept)
    assert "separate" in caplog.text


def test_probabilities_of_exactly_zero_and_one_are_clipped() -> None:
    intercept, slope = calibration_intercept_slope([0, 1, 0, 1, 1, 0], [0, 0.3, 0.4, 0.6, 1, 0.5])
    assert math.isfinite(intercept)
    assert math.isfinite(slope)


def test_intercept_stays_exact_when_certain_predictions_are_wrong() -> None:
    """k-nearest-neighbour heads predict exactly 0 or 1; when such certain predictions are
    wrong on both sides the GLM's IRLS overflowed and stopped at an intercept of about -5e14.
    By symmetry the intercept here is 0; in the second case it solves its score equation."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow
        intercept, _ = calibration_intercept_slope([1, 0, 1, 0], [0.0, 1.0, 0.5, 0.5])
        assert intercept == pytest.approx(0.0, abs=1e-9)
        y = np.array([1, 1, 0, 0, 1, 0, 0])
        p = np.array([0.0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1.0, 0.0])
        intercept, _ = calibration_intercept_slope(y, p)
    offsets = special.logit(np.clip(p, 1e-15, 1 - 1e-15))
    assert np.sum(y - special.expit(intercept + offsets)) == pytest.approx(0.0, abs=1e-9)
    assert abs(intercept) < 5


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1, 1], [0.1, 1.2, 0.3], r"probabilities in \[0, 1\]; row\(s\) 1 hold \[1.2\]"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "missing or infinite"),
        ([0, 1, 1], [0.1, 0.3], "2 values but there are 3 outcomes"),
        ([1, 1, 1], [0.1, 0.2, 0.3], "only events"),
    ],
)
def test_calibration_bad_input(y: list, p: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calibration_intercept_slope(y, p)


def test_hosmer_lemeshow_needs_three_groups() -> None:
    with pytest.raises(ValueError, match="at least 3 risk groups"):
        hosmer_lemeshow([0, 1, 0, 1], [0.2, 0.2, 0.6, 0.6], n_groups=4)
    with pytest.raises(ValueError, match="more than the 9 patients"):
        hosmer_lemeshow(Y9, P9, n_groups=10)
    with pytest.raises(ValueError, match="positive whole number"):
        reliability_curve(Y9, P9, n_bins=0)
