"""Decision-curve analysis: net benefit against its formula."""

from __future__ import annotations

import numpy as np
import pytest

from clnm_kedro.metrics.decision_curve import DEFAULT_THRESHOLDS, net_benefit


def _formula(y: np.ndarray, p: np.ndarray, pt: float) -> float:
    """NB = TP/n - FP/n * pt / (1 - pt), treating p >= pt."""
    treated = p >= pt
    tp = np.sum(treated & (y == 1))
    fp = np.sum(treated & (y == 0))
    return tp / y.size - fp / y.size * pt / (1 - pt)


def test_net_benefit_tiny_example_by_hand() -> None:
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.6, 0.55, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05, 0.02])
    curve = net_benefit(y, p, [0.2, 0.5])
    # pt = 0.2: treated p >= .2 -> rows 0-5: TP = 3 (rows 0, 1, 4), FP = 3 (rows 2, 3, 5).
    #   NB = 3/10 - 3/10 * .2/.8 = 0.3 - 0.075 = 0.225
    # pt = 0.5: treated rows 0-2: TP = 2, FP = 1.  NB = 2/10 - 1/10 * 1 = 0.1
    np.testing.assert_allclose(curve["net_benefit_model"], [0.225, 0.1], atol=1e-12)
    # Treat all: prevalence 4/10 -> NB = .4 - .6 * pt/(1 - pt) = 0.25 and -0.2.
    np.testing.assert_allclose(curve["net_benefit_treat_all"], [0.25, -0.2], atol=1e-12)
    np.testing.assert_array_equal(curve["net_benefit_treat_none"], [0.0, 0.0])
    np.testing.assert_array_equal(curve["threshold"], [0.2, 0.5])


def test_library_agrees_with_formula_on_random_data() -> None:
    rng = np.random.default_rng(11)
    p = rng.uniform(0.001, 0.999, size=400)
    y = rng.binomial(1, p)
    thresholds = np.round(np.arange(0.0, 0.96, 0.05), 2)
    curve = net_benefit(y, p, thresholds)
    expected_model = [_formula(y, p, pt) for pt in thresholds]
    expected_all = [_formula(y, np.ones_like(p), pt) for pt in thresholds]
    np.testing.assert_allclose(curve["net_benefit_model"], expected_model, atol=1e-12)
    np.testing.assert_allclose(curve["net_benefit_treat_all"], expected_all, atol=1e-12)
    np.testing.assert_array_equal(curve["threshold"], thresholds)


def test_default_thresholds_cover_one_to_ninety_nine_percent() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(size=50)
    y = rng.binomial(1, p)
    curve = net_benefit(y, p)
    assert len(curve) == 99 == len(DEFAULT_THRESHOLDS)
    assert curve["threshold"].iloc[0] == 0.01
    assert curve["threshold"].iloc[-1] == 0.99


@pytest.mark.parametrize(
    ("y", "p", "thresholds", "message"),
    [
        ([0, 1], [0.2, 0.8], [0.5, 1.0], r"thresholds must lie in \[0, 1\)"),
        ([0, 1], [0.2, 0.8], [-0.1], r"thresholds must lie in \[0, 1\)"),
        ([0, 1], [0.2, 0.8], [], "non-empty"),
        ([0, 1], [0.2, 1.8], [0.5], r"probabilities in \[0, 1\]"),
        ([0, 0], [0.2, 0.8], [0.5], "only non-events"),
        ([0, 1, 1], [0.2, 0.8], [0.5], "2 values but there are 3 outcomes"),
    ],
)
def test_net_benefit_bad_input(y: list, p: list, thresholds: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        net_benefit(y, p, thresholds)
