"""Recalibration for a new centre (the ``recalibrate`` pipeline's nodes): only the
calibration changes, and ``inference`` applies it when asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special

from clnm_kedro.datasets import RawCohort
from clnm_kedro.metrics.calibration import calibration_intercept_slope
from clnm_kedro.pipelines.recalibrate.nodes import (
    apply_centre_calibration,
    fit_centre_calibration,
)
from clnm_kedro.scoring.results import SCORED_MODELS


def new_centre(n: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, RawCohort, np.ndarray]:
    """A centre whose true risk is ``expit(-0.8 + 0.6 * logit(p))`` for every model's ``p``:
    the models rank well but are over-confident and too high there."""
    rng = np.random.default_rng(seed)
    ids = [f"B{i:04d}" for i in range(n)]
    scores = pd.DataFrame({"patient_id": ids, "center": "B", "scored": True})
    truth = None
    for k, model in enumerate(SCORED_MODELS):
        logit = rng.normal(0.0, 1.6, size=n) if truth is None else truth + rng.normal(0, 0.3, n)
        truth = logit if truth is None else truth
        scores[f"probability_{model}"] = special.expit(logit + 0.05 * k)
    y = (rng.random(n) < special.expit(-0.8 + 0.6 * truth)).astype(int)
    scores["probability"] = scores["probability_combined"]
    scores["threshold"] = 0.4
    scores["risk_group"] = np.where(scores["probability"] >= 0.4, "high", "low")
    clinical = pd.DataFrame({"patient_id": ids, "clnm": y.astype(str)})
    cohort = RawCohort(Path("/centre_b"), clinical, pd.DataFrame())
    return scores, cohort, y


def test_recalibration_changes_only_the_calibration() -> None:
    scores, cohort, y = new_centre()
    calibration, report = fit_centre_calibration(scores, cohort, {})
    assert calibration["model"].tolist() == list(SCORED_MODELS)
    before = report[report["stage"] == "before"].set_index("model")
    after = report[report["stage"] == "after"].set_index("model")
    # Order, and so discrimination, unchanged; calibration repaired on the centre.
    np.testing.assert_allclose(after["auc"], before["auc"], rtol=1e-12)
    assert (before["calibration_intercept"].abs() > 0.3).all()
    assert (after["calibration_intercept"].abs() < 0.02).all()
    np.testing.assert_allclose(after["calibration_slope"], 1.0, atol=0.02)
    assert (after["brier"] < before["brier"]).all()
    np.testing.assert_allclose(after["observed_expected"], 1.0, atol=0.02)
    # The combined model's map is near the centre's truth.
    combined = calibration.set_index("model").loc["combined"]
    assert combined["slope"] == pytest.approx(0.6, abs=0.1)

    applied = apply_centre_calibration(scores, calibration, {"centre_calibration": True})
    for model in SCORED_MODELS:
        p = applied[f"probability_{model}"].to_numpy()
        assert np.array_equal(
            np.argsort(p, kind="stable"), np.argsort(scores[f"probability_{model}"], kind="stable")
        )
        intercept, slope = calibration_intercept_slope(y, p)
        assert abs(intercept) < 0.02 and slope == pytest.approx(1.0, abs=0.02)
    # Risk groups are those of the training cut-off, carried through the same map.
    assert applied["risk_group"].tolist() == scores["risk_group"].tolist()
    assert (applied["probability"] >= applied["threshold"]).eq(scores["risk_group"] == "high").all()


def test_intercept_only_update_keeps_the_slope() -> None:
    scores, cohort, _ = new_centre(seed=1)
    calibration, report = fit_centre_calibration(scores, cohort, {"update": "intercept"})
    assert (calibration["slope"] == 1.0).all()
    after = report[report["stage"] == "after"]
    assert (after["calibration_intercept"].abs() < 0.02).all()


def test_inference_without_the_option_is_unchanged_and_asking_without_a_fit_is_refused() -> None:
    scores, _, _ = new_centre(n=50)
    assert apply_centre_calibration(scores, pd.DataFrame(), {}) is scores
    with pytest.raises(ValueError, match="run `kedro run --pipelines recalibrate"):
        apply_centre_calibration(scores, pd.DataFrame(), {"centre_calibration": True})


def test_bad_labels_and_too_few_events_are_named() -> None:
    scores, cohort, _ = new_centre(n=200)
    clinical = cohort.clinical.copy()
    clinical.loc[3, "clnm"] = "yes"
    bad = RawCohort(cohort.root, clinical, cohort.rois)
    with pytest.raises(ValueError, match=r"clnm must be 0 or 1.*B0003 \('yes'\)"):
        fit_centre_calibration(scores, bad, {})
    with pytest.raises(ValueError, match="min_events"):
        fit_centre_calibration(scores, cohort, {"min_events": 150})
    with pytest.raises(ValueError, match=r"recalibrate\.update"):
        fit_centre_calibration(scores, cohort, {"update": "isotonic"})
