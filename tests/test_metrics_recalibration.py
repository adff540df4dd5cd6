"""LogitCalibration: maps a known miscalibration back, against statsmodels, round trip."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from clnm_kedro.metrics import calibration_intercept_slope
from clnm_kedro.metrics.recalibration import LogitCalibration, cross_fitted_calibration
from float_compare import assert_same_numbers


def _miscalibrated(n: int, offset: float, scale: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(-0.7, 1.2, n)
    y = rng.binomial(1, special.expit(true_logit))
    # A model whose logit is shifted and stretched: risk = expit(offset + scale * true_logit).
    return y, special.expit(offset + scale * true_logit)


def test_a_known_offset_and_slope_are_mapped_back() -> None:
    y, p = _miscalibrated(20_000, offset=0.7, scale=1.8)
    calibration = LogitCalibration.fit(y, p)
    # logit(p) = 0.7 + 1.8 t  =>  t = (logit(p) - 0.7) / 1.8
    assert calibration.slope == pytest.approx(1 / 1.8, abs=0.03)
    assert calibration.intercept == pytest.approx(-0.7 / 1.8, abs=0.05)
    fit = calibration_intercept_slope(y, calibration.apply(p))
    assert abs(fit.intercept) < 0.03 and fit.slope == pytest.approx(1.0, abs=0.03)
    assert calibration.n == len(y) and calibration.events == int(y.sum())


def test_identity_and_round_trip_and_order() -> None:
    p = np.array([0.05, 0.2, np.nan, 0.9])
    np.testing.assert_allclose(LogitCalibration.identity().apply(p), p)
    y, q = _miscalibrated(500, offset=-0.5, scale=0.8, seed=1)
    calibration = LogitCalibration.fit(y, q)
    again = LogitCalibration.from_dict(calibration.to_dict())
    assert again == calibration
    # Discrimination is untouched: a positive slope keeps the order of the patients.
    assert calibration.slope > 0
    np.testing.assert_array_equal(np.argsort(calibration.apply(q)), np.argsort(q))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        LogitCalibration.fit([0, 1, 0], [0.1, 1.5, 0.2])
    with pytest.raises(ValueError, match="unknown calibration keys"):
        LogitCalibration.from_dict({"intercept": 0.0, "slope": 1.0, "offset": 2})


def test_two_maps_in_a_row_are_one_map() -> None:
    first, second = LogitCalibration(0.4, 1.3), LogitCalibration(-0.2, 0.8, n=300, events=90)
    p = np.array([0.01, 0.2, 0.5, 0.93])
    both = first.followed_by(second)
    np.testing.assert_allclose(both.apply(p), second.apply(first.apply(p)), rtol=1e-12)
    assert (both.intercept, both.slope) == pytest.approx((-0.2 + 0.8 * 0.4, 0.8 * 1.3))
    assert (both.n, both.events) == (300, 90)


def test_cross_fitted_calibration_never_uses_a_groups_own_labels() -> None:
    """Each group's risks come from a calibration fitted on the other groups: flipping one
    group's labels changes every other group's risks and none of its own; and an over-extreme
    predictor (slope 1.8) comes back to a pooled slope near 1."""
    y, p = _miscalibrated(3_000, offset=0.0, scale=1.8, seed=2)
    groups = np.arange(len(y)) % 5
    risks = cross_fitted_calibration(y, p, groups)
    for group in range(5):
        rows = groups == group
        expected = LogitCalibration.fit(y[~rows], p[~rows]).apply(p[rows])
        np.testing.assert_allclose(risks[rows], expected)
    flipped = np.where(groups == 0, 1 - y, y)
    after = cross_fitted_calibration(flipped, p, groups)
    assert_same_numbers(after[groups == 0], risks[groups == 0])
    assert not np.allclose(after[groups != 0], risks[groups != 0])
    assert calibration_intercept_slope(y, risks).slope == pytest.approx(1.0, abs=0.1)
    with pytest.raises(ValueError, match="outside fold group 0 all have the same outcome"):
        cross_fitted_calibration(np.r_[1, 0, 0, 0], np.full(4, 0.3), np.r_[0, 1, 1, 1])
    with pytest.raises(ValueError, match="3 labels, 4 probabilities and 4 groups"):
        cross_fitted_calibration(np.r_[1, 0, 0], np.full(4, 0.3), np.r_[0, 1, 1, 1])
