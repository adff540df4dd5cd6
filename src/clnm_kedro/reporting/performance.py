"""Metrics of each model on each split: AUC with its CI, the rates at the Youden threshold,
calibration, the optional bootstrap, and the thresholds (``metrics.json``).

Threshold rule. A model's Youden threshold is chosen on its training predictions and applied
unchanged to every split (the external set included). ``threshold_splits`` is a preference
list: the default ``[train_cv, train]`` uses the out-of-fold predictions where a model has them
(the clinical, DL_F and combined heads) and the resubstitution ``train`` predictions otherwise
(the networks). Out-of-fold probabilities are what the model gives patients it has not seen,
so their cut-off carries over to new patients; a cut-off chosen where a flexible model has
memorised its training patients sits too close to 0 or 1. Set ``[train]`` for the plain
"training set" rule of the paper. The external set may never be listed. On the set the
threshold is chosen on, sensitivity, specificity and the other rates classify each patient with
a cut-off chosen without it (:func:`~clnm_kedro.metrics.cross_fitted_thresholds`): rates at a
cut-off chosen on the same labels would be optimistic.

Degenerate data (a split or subgroup with one outcome class, too few events for DeLong's
variance, probabilities that separate the classes so the calibration slope is infinite) gives
NaN for the metrics concerned, with a log line, not an error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from clnm_kedro.metrics import (
    auc_per_row,
    bootstrap_ci,
    classification_metrics,
    delong_ci,
    hosmer_lemeshow,
    youden_threshold,
)
from clnm_kedro.reporting.calibration_stats import CALIBRATION_KEYS, calibration_with_ci
from clnm_kedro.reporting.evaluation_settings import EvaluationSettings
from clnm_kedro.reporting.predictions import (
    model_label,
    models_in,
    split_label,
    split_rows,
)

# Folds of the cross-fitted cut-offs on the set the threshold is chosen on.
CUTOFF_FOLDS = 5

logger = logging.getLogger(__name__)

# Keys of every metrics.json entry models.<model>.splits.<split>.
METRIC_KEYS: tuple[str, ...] = (
    "n",
    "events",
    "auc",
    "auc_lower",
    "auc_upper",
    "threshold",
    "sensitivity",
    "specificity",
    "accuracy",
    "ppv",
    "npv",
    "tp",
    "fp",
    "tn",
    "fn",
    *CALIBRATION_KEYS,
    "hosmer_lemeshow_statistic",
    "hosmer_lemeshow_dof",
    "hosmer_lemeshow_p",
)
# Keys of every metrics.json entry models.<model>.
MODEL_KEYS: tuple[str, ...] = ("threshold", "threshold_split", "splits")
# With the bootstrap switched on, each of these also gets <metric>_boot_lower/_boot_upper.
BOOTSTRAP_METRICS: tuple[str, ...] = (
    "auc",
    "sensitivity",
    "specificity",
    "accuracy",
    "ppv",
    "npv",
    "brier",
)

# The per-split metrics also logged to MLflow (model_metrics.mlflow_metrics).
MLFLOW_METRIC_KEYS: tuple[str, ...] = (
    "auc",
    "auc_lower",
    "auc_upper",
    "threshold",
    "sensitivity",
    "specificity",
    "accuracy",
    "ppv",
    "npv",
    "brier",
    "calibration_intercept",
    "calibration_slope",
    "hosmer_lemeshow_p",
)

NAN = float("nan")


# --- AUC and the per-split metrics -------------------------------------------------------------


def _both_classes(y: np.ndarray, minimum: int = 1) -> bool:
    events = int(y.sum())
    return events >= minimum and (y.size - events) >= minimum


def auc_with_ci(y: np.ndarray, p: np.ndarray, level: float) -> tuple[float, float, float]:
    """AUC with its DeLong interval; NaN interval (or NaN AUC) where it cannot be estimated.

    DeLong's variance needs two patients with and two without the event; with fewer (but both
    classes present) only the AUC is given; with one class nothing is.
    """
    if _both_classes(y, minimum=2):
        result = delong_ci(y, p, level)
        return result.auc, result.lower, result.upper
    if _both_classes(y):
        return float(auc_per_row(y, p[np.newaxis, :])[0]), NAN, NAN
    return NAN, NAN, NAN


def _rates_per_row(y: np.ndarray, matrix: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    predicted = matrix >= threshold
    event = y.astype(bool)[np.newaxis, :]
    tp = np.sum(predicted & event, axis=1).astype(np.float64)
    fp = np.sum(predicted & ~event, axis=1).astype(np.float64)
    tn = np.sum(~predicted & ~event, axis=1).astype(np.float64)
    fn = np.sum(~predicted & event, axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "accuracy": (tp + tn) / y.size,
            "ppv": np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan),
            "npv": np.where(tn + fn > 0, tn / np.maximum(tn + fn, 1), np.nan),
        }


def _bootstrap_metrics(
    y: np.ndarray,
    p: np.ndarray,
    settings: EvaluationSettings,
    seed: int,
    *,
    rates: tuple[np.ndarray, float] | None,
) -> dict[str, float]:
    """Stratified bootstrap percentile intervals of :data:`BOOTSTRAP_METRICS`.

    ``rates``: the scores and the cut-off the rates classify with (``scores >= cut-off``; see
    :func:`split_metrics`), kept fixed in each resample; ``None``: no rate intervals. The same
    seed resamples the same patients for every metric.
    """
    result = {
        f"{name}_boot_{bound}": NAN for name in BOOTSTRAP_METRICS for bound in ("lower", "upper")
    }
    if not _both_classes(y):
        return result
    batch: dict[str, Any] = {
        "auc": auc_per_row,
        "brier": lambda labels, matrix: np.mean((matrix - labels[np.newaxis, :]) ** 2, axis=1),
    }
    rate_scores, rate_threshold = rates if rates is not None else (p, NAN)
    if rates is not None and np.isfinite(rate_scores).all():
        for name in ("sensitivity", "specificity", "accuracy", "ppv", "npv"):
            batch[name] = lambda labels, matrix, name=name: _rates_per_row(
                labels, matrix, rate_threshold
            )[name]
    for name, metric in batch.items():
        is_rate = name not in ("auc", "brier")
        interval = bootstrap_ci(
            y,
            rate_scores if is_rate else p,
            metric,
            seed=seed,
            n_boot=settings.bootstrap_resamples,
            level=settings.confidence_level,
            vectorized=True,
        )
        result[f"{name}_boot_lower"] = interval.lower
        result[f"{name}_boot_upper"] = interval.upper
    return result


def split_metrics(
    y: np.ndarray,
    p: np.ndarray,
    threshold: float,
    settings: EvaluationSettings,
    seed: int,
    *,
    context: str = "",
    external: bool = False,
    row_thresholds: np.ndarray | None = None,
) -> dict[str, float | int]:
    """Every metric of :data:`METRIC_KEYS` for one model on one split.

    ``external``: the split is the external set (Hosmer-Lemeshow with ``G`` degrees of
    freedom instead of ``G - 2``). ``row_thresholds``: on the split the threshold was chosen
    on, each patient's cut-off chosen without it
    (:func:`~clnm_kedro.metrics.cross_fitted_thresholds`); the rates use them, the reported
    ``threshold`` stays the one applied to every other split.

    Parameters
    ----------
    y, p
        Outcomes (0/1) and predicted probabilities of the same patients.
    threshold
        The model's Youden threshold from its training predictions (NaN: none could be chosen).
    settings
        Checked evaluation parameters.
    seed
        Seed of the bootstrap.
    context
        Words naming the model and split, for log lines.
    """
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    auc, lower, upper = auc_with_ci(y, p, settings.confidence_level)
    if not _both_classes(y):
        logger.warning(
            "%s: every patient has the same outcome, so AUC and calibration are not estimable.",
            context,
        )
    result: dict[str, float | int] = {
        "n": int(y.size),
        "events": int(y.sum()),
        "auc": auc,
        "auc_lower": lower,
        "auc_upper": upper,
        "threshold": threshold,
    }
    # What the rates classify with, decided once for the rates and their intervals:
    # p >= threshold or, with row_thresholds, each patient's margin over its own cut-off >= 0.
    rates = (p, threshold) if math.isfinite(threshold) else None
    if row_thresholds is not None:
        margins = p - np.asarray(row_thresholds, dtype=float)
        if not np.isfinite(margins).all():
            logger.warning(
                "%s: too few patients of one outcome to choose a cut-off without each "
                "patient; sensitivity, specificity and the other rates are not reported here.",
                context,
            )
            rates = None
        elif rates is not None:
            rates = (margins, 0.0)
    if rates is not None:
        result.update(classification_metrics(y, *rates))
    else:
        result.update(
            {name: NAN for name in ("sensitivity", "specificity", "accuracy", "ppv", "npv")}
        )
        result.update({"tp": NAN, "fp": NAN, "tn": NAN, "fn": NAN})
    result.update(calibration_with_ci(y, p, settings.confidence_level))
    result["hosmer_lemeshow_statistic"] = result["hosmer_lemeshow_p"] = NAN
    result["hosmer_lemeshow_dof"] = NAN
    try:
        # G - 2 degrees of freedom where the model was fitted, G on the external set.
        hl = hosmer_lemeshow(
            y,
            p,
            min(settings.calibration_bins, y.size),
            dof_reduction=0 if external else 2,
        )
        result["hosmer_lemeshow_statistic"] = hl.statistic
        result["hosmer_lemeshow_dof"] = hl.dof
        result["hosmer_lemeshow_p"] = hl.p_value
    except ValueError as error:
        logger.warning("%s: Hosmer-Lemeshow test not computed (%s)", context, error)
    if settings.bootstrap:
        result.update(_bootstrap_metrics(y, p, settings, seed, rates=rates))
    return result


def choose_thresholds(
    predictions: pd.DataFrame, threshold_splits: Sequence[str]
) -> dict[str, tuple[float, str | None]]:
    """Each model's Youden threshold and the training split it was chosen on.

    The first split of ``threshold_splits`` in which the model has predictions with both
    outcomes is used (see the module notes). A model with none gets ``(nan, None)``.
    """
    if "external" in threshold_splits:
        raise ValueError("A threshold may not be chosen on the external set.")
    chosen: dict[str, tuple[float, str | None]] = {}
    for model in models_in(predictions):
        chosen[model] = (NAN, None)
        for split in threshold_splits:
            rows = split_rows(predictions, model, split)
            y = rows["clnm"].to_numpy(dtype=np.int64)
            if len(rows) and _both_classes(y):
                threshold = youden_threshold(y, rows["probability"].to_numpy(dtype=np.float64))
                chosen[model] = (threshold, split)
                logger.info(
                    "%s: Youden threshold %.3f chosen on the %s, applied unchanged to every set.",
                    model_label(model),
                    threshold,
                    split_label(split).lower(),
                )
                break
        else:
            logger.warning(
                "%s has no training predictions with both outcomes in %s; no threshold, so "
                "sensitivity, specificity and the other rates are not reported.",
                model_label(model),
                list(threshold_splits),
            )
    return chosen
