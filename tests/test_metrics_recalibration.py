"""LogitCalibration: maps a known miscalibration back, against statsmodels, round trip."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from clnm_kedro.metrics import calibration_intercept_slope
from clnm_kedro.metrics.recalibration import LogitCalibration, leave_one_out_calibration
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


def test_leave_one_out_calibration_is_one_fit_per_row_without_it() -> None:
    """Row i's risk is the calibration fitted on every other row, applied to row i: equal to
    n separate fits; flipping one row's label changes every other row's risk and not its own;
    an over-extreme predictor (slope 1.8) comes back to a pooled slope near 1."""
    y, p = _miscalibrated(150, offset=0.3, scale=1.8, seed=2)
    risks = leave_one_out_calibration(y, p)
    expected = [
        LogitCalibration.fit(np.delete(y, i), np.delete(p, i)).apply(p[i : i + 1])[0]
        for i in range(len(y))
    ]
    np.testing.assert_allclose(risks, expected, rtol=1e-8)
    flipped = y.copy()
    flipped[7] = 1 - flipped[7]
    after = leave_one_out_calibration(flipped, p)
    assert_same_numbers(after[7], risks[7])
    assert (np.delete(after, 7) != np.delete(risks, 7)).all()
    y, p = _miscalibrated(3_000, offset=0.0, scale=1.8, seed=3)
    assert calibration_intercept_slope(y, leave_one_out_calibration(y, p)).slope == pytest.approx(
        1.0, abs=0.05
    )


def test_leave_one_out_calibration_of_uninformative_scores_keeps_the_order() -> None:
    """With ``positive_slope``, a row whose fit has no positive slope gets its intercept only
    refitted (slope 1), as a head's calibration does; without it the slope is kept."""
    rng = np.random.default_rng(7)
    y = rng.binomial(1, 0.3, 120)
    p = rng.uniform(0.2, 0.4, 120)  # no information about y
    free = leave_one_out_calibration(y, p)
    kept = leave_one_out_calibration(y, p, positive_slope=True)
    flat = 0
    for i in range(len(y)):
        rest_y, rest_p = np.delete(y, i), np.delete(p, i)
        fit = LogitCalibration.fit(rest_y, rest_p)
        assert free[i] == pytest.approx(fit.apply(p[i : i + 1])[0], rel=1e-8)
        if fit.slope <= 0:
            flat += 1
            shift = calibration_intercept_slope(rest_y, rest_p).intercept
            assert kept[i] == pytest.approx(special.expit(shift + special.logit(p[i])), rel=1e-8)
        else:
            assert kept[i] == pytest.approx(free[i], rel=1e-12)
    assert 0 < flat < len(y)  # both cases occur with these scores


@pytest.mark.filterwarnings("ignore:Perfect separation")
def test_leave_one_out_calibration_refuses_what_it_cannot_fit() -> None:
    with pytest.raises(ValueError, match="1 with the outcome and 3 without"):
        leave_one_out_calibration(np.r_[1, 0, 0, 0], np.full(4, 0.3))
    with pytest.raises(ValueError, match="probabilities has 4 values but there are 3 outcomes"):
        leave_one_out_calibration(np.r_[1, 0, 1], np.full(4, 0.3))
    with pytest.raises(ValueError, match="did not converge"):
        leave_one_out_calibration(np.r_[0, 0, 0, 1, 1, 1], np.r_[0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
