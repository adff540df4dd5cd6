"""Label-free standardisation of fold networks' outputs (``networks.standardisation``):
leave-one-out statistics for held-out patients, and why it is there: one calibration of K
networks on K scales fits none of them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special
from sklearn.metrics import roc_auc_score

from clnm_kedro.metrics.calibration import calibration_intercept_slope
from clnm_kedro.networks.cross_fitting import cross_fitted_risks
from clnm_kedro.networks.standardisation import OutputStandardisation


def _networks(seed: int = 0, n: int = 3000, k: int = 5):
    """K networks that read the same true logit, each with its own offset and scale."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(-0.8, 1.0, n)
    y = rng.binomial(1, special.expit(true_logit))
    assignment = np.arange(n) % k
    offsets = np.array([-0.6, 0.4, -0.2, 0.7, 0.0])[:k]
    scales = np.array([0.5, 1.6, 0.8, 2.2, 1.0])[:k]
    per_model = offsets[:, None, None] + scales[:, None, None] * true_logit[None, :, None]
    return y, assignment, per_model


def test_held_out_outputs_use_leave_one_out_statistics() -> None:
    rng = np.random.default_rng(1)
    per_model = rng.normal(size=(3, 30, 2)) * np.array([1.0, 3.0]) + 5.0
    assignment = np.repeat([0, 1, 2], 10)
    fitted = OutputStandardisation.fit(per_model, assignment)
    held = fitted.apply_held_out(per_model, assignment)
    for i in range(30):
        k = assignment[i]
        others = (assignment == k) & (np.arange(30) != i)
        expected = (per_model[k, i] - per_model[k, others].mean(axis=0)) / per_model[
            k, others
        ].std(axis=0, ddof=1)
        np.testing.assert_allclose(held[i], expected, rtol=1e-10)
    # The stored map (new patients) uses all the held-out patients of each network.
    np.testing.assert_allclose(fitted.location[1], per_model[1, 10:20].mean(axis=0))
    np.testing.assert_allclose(fitted.scale[2], per_model[2, 20:].std(axis=0, ddof=1))
    standard = fitted.apply(per_model)
    np.testing.assert_allclose(standard[0, :10].mean(axis=0), 0.0, atol=1e-12)


def test_standardised_networks_are_calibrated_network_by_network() -> None:
    """One calibration of K networks' pooled logits: on K raw scales it is too flat for some
    networks' patients and too steep for others' (and mixes their rankings); standardised per
    network, it fits every network's patients."""
    y, assignment, per_model = _networks()
    raw = cross_fitted_risks(y, per_model[assignment, np.arange(len(y)), 0])
    held = OutputStandardisation.fit(per_model, assignment).apply_held_out(per_model, assignment)
    standardised = cross_fitted_risks(y, held[:, 0])

    def slopes(risks: np.ndarray) -> np.ndarray:
        return np.array(
            [
                calibration_intercept_slope(y[assignment == k], risks[assignment == k]).slope
                for k in range(5)
            ]
        )

    assert slopes(raw).max() > 2.0 and slopes(raw).min() < 0.8
    assert np.abs(slopes(standardised) - 1).max() < 0.2
    assert roc_auc_score(y, standardised) > roc_auc_score(y, raw)
    fit = calibration_intercept_slope(y, standardised)
    assert fit.slope == pytest.approx(1.0, abs=0.06)
    assert fit.intercept == pytest.approx(0.0, abs=0.06)


def test_one_network_or_no_held_out_patient_is_the_identity() -> None:
    per_model = np.random.default_rng(2).normal(size=(1, 12, 1))
    fitted = OutputStandardisation.fit(per_model, np.full(12, -1))
    assert fitted.is_identity
    np.testing.assert_array_equal(fitted.apply(per_model), per_model)


def test_bad_standardisations_are_refused() -> None:
    per_model = np.zeros((2, 6, 1))
    with pytest.raises(ValueError, match="held out 1 patient"):
        OutputStandardisation.fit(per_model, np.array([0, 0, 0, 0, 0, 1]))
    with pytest.raises(ValueError, match="scale > 0"):
        OutputStandardisation(np.zeros((1, 1)), np.zeros((1, 1)))
    constant = OutputStandardisation.fit(per_model, np.array([0, 0, 0, 1, 1, 1]))
    assert (constant.scale == 1.0).all()  # a constant output is left unscaled, not divided by 0
    restored = OutputStandardisation.from_dict(constant.to_dict())
    np.testing.assert_array_equal(restored.location, constant.location)
