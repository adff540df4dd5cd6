"""Recalibration for a new centre: refit each model's calibration intercept and slope.

A model trained on some centres discriminates on a new one about as well (if the networks
and heads transfer) but its risks may be off: another prevalence, another scanner. The usual
remedy (Steyerberg, *Clinical Prediction Models*, 2nd ed., ch. 20) keeps the model and refits
only the logistic calibration ``risk = expit(a + b * logit(p))`` of its probabilities on
labelled patients of the new centre. Nothing fitted is touched: networks, heads, the training
calibration and the risk cut-offs stay as they are; the centre's map is applied on top.

- :func:`fit_centre_calibration`: from the new centre's scores (the ``inference`` scoring of
  its cohort folder) and its ``clnm`` labels, one
  :class:`~clnm_kedro.metrics.recalibration.LogitCalibration` per model, and the calibration
  before and after (AUC, calibration intercept and slope, Brier score, observed/expected).
- :func:`apply_centre_calibration`: used by ``inference`` when
  ``inference.centre_calibration: true``; every model's probability passes through the
  centre's map, and so does the combined model's cut-off, so risk groups are unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from clnm_kedro.checks import whole_number
from clnm_kedro.datasets import RawCohort
from clnm_kedro.metrics.calibration import brier_score, calibration_intercept_slope
from clnm_kedro.metrics.recalibration import LogitCalibration
from clnm_kedro.scoring.results import PRIMARY_MODEL, SCORED_MODELS

logger = logging.getLogger(__name__)

UPDATES: tuple[str, ...] = ("intercept_and_slope", "intercept")
CALIBRATION_COLUMNS: tuple[str, ...] = ("model", "intercept", "slope", "n", "events", "update")
_RECALIBRATE_KEYS = frozenset({"update", "min_events"})
# Below this many events (or non-events) a refitted slope is mostly noise (a warning).
FEW_EVENTS = 100


def _settings(recalibrate: dict[str, Any]) -> tuple[str, int]:
    unknown = sorted(set(recalibrate) - _RECALIBRATE_KEYS)
    if unknown:
        raise ValueError(
            f"Unknown keys {unknown} in recalibrate; allowed: {sorted(_RECALIBRATE_KEYS)}."
        )
    update = recalibrate.get("update", "intercept_and_slope")
    if update not in UPDATES:
        raise ValueError(f"recalibrate.update must be one of {list(UPDATES)}; got {update!r}.")
    min_events = recalibrate.get("min_events", 10)
    whole_number(min_events, "recalibrate.min_events", 1)
    return update, min_events


def centre_labels(cohort: RawCohort) -> pd.Series:
    """The ``clnm`` label (0/1) of every patient of the centre's ``clinical.csv``.

    Raises
    ------
    ValueError
        Naming the file and the patients whose label is missing or not 0/1.
    """
    source = cohort.root / "clinical.csv"
    clinical = cohort.clinical.rename(columns=lambda c: str(c).strip())
    if "clnm" not in clinical.columns:
        raise ValueError(
            f"{source} has no clnm column: recalibration needs the outcome of the centre's "
            "patients."
        )
    ids = clinical["patient_id"].astype(str).str.strip()
    text = clinical["clnm"].astype("string").str.strip()
    values = pd.to_numeric(text, errors="coerce")
    bad = ~values.isin([0, 1])
    if bad.any():
        shown = [f"{pid} ({raw!r})" for pid, raw in zip(ids[bad], text[bad], strict=True)][:10]
        raise ValueError(
            f"{source}: clnm must be 0 or 1 for every patient used for recalibration; "
            f"{int(bad.sum())} patient(s) are not: {', '.join(shown)}."
        )
    return pd.Series(values.astype(int).to_numpy(), index=ids, name="clnm")


def calibration_summary(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, calibration intercept (slope fixed at 1) and slope, Brier score, observed/expected."""
    fit = calibration_intercept_slope(y, p)
    return {
        "auc": float(roc_auc_score(y, p)),
        "calibration_intercept": float(fit.intercept),
        "calibration_slope": float(fit.slope),
        "brier": float(brier_score(y, p)),
        "observed_expected": float(y.sum() / p.sum()),
    }


def fit_centre_calibration(
    centre_scores: pd.DataFrame, centre_cohort: RawCohort, recalibrate: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Refit each model's calibration on the labelled, scored patients of a new centre.

    Parameters
    ----------
    centre_scores
        The centre's scoring (``inference`` results: ``patient_id, scored,
        probability_<model>``), with the training calibration only.
    centre_cohort
        The centre's cohort folder (its ``clinical.csv`` gives the ``clnm`` labels).
    recalibrate
        ``update``: ``intercept_and_slope`` (default) or ``intercept`` (slope kept at 1:
        calibration-in-the-large only, the safer update with few events); ``min_events``:
        fewest events and non-events accepted (default 10).

    Returns
    -------
    tuple
        The centre's calibration, one row per model (``model, intercept, slope, n, events,
        update``), and the report: per model, ``stage`` before/after with ``n, events, auc,
        calibration_intercept, calibration_slope, brier, observed_expected``.

    Raises
    ------
    ValueError
        A scored patient without a label, too few events, or a model whose refitted slope is
        not positive (its probabilities would be reversed).
    """
    update, min_events = _settings(recalibrate)
    labels = centre_labels(centre_cohort)
    scored = centre_scores[centre_scores["scored"].astype(bool)].copy()
    scored["patient_id"] = scored["patient_id"].astype(str)
    unknown = sorted(set(scored["patient_id"]) - set(labels.index))
    if unknown:
        raise ValueError(
            f"Scored patients {unknown[:10]} are not in {centre_cohort.root / 'clinical.csv'}: "
            "score the same cohort folder that gives the labels (inference.cohort_dir)."
        )
    y = labels.loc[scored["patient_id"]].to_numpy()
    events, non_events = int(y.sum()), int(len(y) - y.sum())
    if min(events, non_events) < min_events:
        raise ValueError(
            f"The centre has {events} patients with CLNM and {non_events} without among the "
            f"{len(y)} scored; recalibration needs at least recalibrate.min_events = "
            f"{min_events} of each."
        )
    if min(events, non_events) < FEW_EVENTS and update == "intercept_and_slope":
        logger.warning(
            "Recalibrating intercept and slope on %d events and %d non-events: the slope is "
            "noisy below about %d of each; recalibrate.update: intercept refits the intercept "
            "only.",
            events,
            non_events,
            FEW_EVENTS,
        )
    calibrations, report = [], []
    for model in SCORED_MODELS:
        p = scored[f"probability_{model}"].to_numpy(dtype=float)
        if update == "intercept":
            citl = calibration_intercept_slope(y, p).intercept
            calibration = LogitCalibration(float(citl), 1.0, n=len(y), events=events)
        else:
            calibration = LogitCalibration.fit(y, p)
        if not calibration.slope > 0:
            raise ValueError(
                f"The {model} model's recalibration slope on this centre is "
                f"{calibration.slope:.3f}: its probabilities do not rise with the risk here, so "
                "a recalibration cannot repair it (check the labels and the cohort)."
            )
        calibrations.append({**calibration.to_dict(), "model": model, "update": update})
        for stage, probabilities in (("before", p), ("after", calibration.apply(p))):
            report.append(
                {
                    "model": model,
                    "stage": stage,
                    "n": len(y),
                    "events": events,
                    **calibration_summary(y, probabilities),
                }
            )
        logger.info(
            "%s: centre calibration intercept %.3f, slope %.3f.",
            model,
            calibration.intercept,
            calibration.slope,
        )
    return pd.DataFrame(calibrations, columns=list(CALIBRATION_COLUMNS)), pd.DataFrame(report)


def apply_centre_calibration(
    results: pd.DataFrame, centre_calibration: pd.DataFrame, inference: dict[str, Any]
) -> pd.DataFrame:
    """The inference results, through the centre's calibration when
    ``inference.centre_calibration`` is true (otherwise unchanged).

    Every ``probability_<model>`` passes through that model's map; ``probability`` (the
    combined model's) too, and its ``threshold`` through the same map, so each patient keeps
    the risk group of the training cut-off.

    Raises
    ------
    ValueError
        If asked to apply a centre calibration that has not been fitted (run ``recalibrate``
        first) or lacks a model.
    """
    wanted = inference.get("centre_calibration", False)
    if not isinstance(wanted, bool):
        raise ValueError(f"inference.centre_calibration must be true or false; got {wanted!r}.")
    if not wanted:
        return results
    if centre_calibration.empty:
        raise ValueError(
            "inference.centre_calibration is true but no centre calibration is stored "
            "(data/06_models/centre_calibration.csv): run `kedro run --pipelines recalibrate "
            "--params inference.cohort_dir=<labelled patients of the centre>` first."
        )
    maps = {
        str(row["model"]): LogitCalibration(
            float(row["intercept"]), float(row["slope"]), int(row["n"]), int(row["events"])
        )
        for row in centre_calibration.to_dict(orient="records")
    }
    missing = [model for model in SCORED_MODELS if model not in maps]
    if missing:
        raise ValueError(f"The stored centre calibration has no map for {missing}.")
    out = results.copy()
    for model in SCORED_MODELS:
        column = f"probability_{model}"
        out[column] = maps[model].apply(out[column].to_numpy(dtype=float))
    out["probability"] = out[f"probability_{PRIMARY_MODEL}"]
    out["threshold"] = maps[PRIMARY_MODEL].apply(out["threshold"].to_numpy(dtype=float))
    logger.info(
        "Probabilities recalibrated for this centre (data/06_models/centre_calibration.csv)."
    )
    return out
