"""The study's numbers from the predictions table: metrics per model and split, thresholds,
paired DeLong tests, subgroup AUCs, the oracle comparison, and their MLflow names.

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
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import special, stats

from clnm_kedro.metrics import (
    auc_per_row,
    bootstrap_ci,
    classification_metrics,
    cross_fitted_thresholds,
    delong_ci,
    delong_test,
    hosmer_lemeshow,
    youden_threshold,
)
from clnm_kedro.metrics.delong import _delong_covariance
from clnm_kedro.metrics.power import paired_auc_power, power_statement
from clnm_kedro.registry import STUDY_COMPARISONS
from clnm_kedro.reporting.calibration_stats import CALIBRATION_KEYS, calibration_with_ci
from clnm_kedro.reporting.predictions import (
    SPLIT_ORDER,
    model_label,
    models_in,
    paired_scores,
    split_label,
    split_rows,
)

# Folds of the cross-fitted cut-offs on the set the threshold is chosen on.
CUTOFF_FOLDS = 5

__all__ = [
    "BOOTSTRAP_METRICS",
    "DELONG_COLUMNS",
    "METRIC_KEYS",
    "MLFLOW_METRIC_KEYS",
    "MODEL_KEYS",
    "ORACLE_COLUMNS",
    "POWER_COLUMNS",
    "STUDY_COMPARISONS",
    "SUBGROUP_COLUMNS",
    "EvaluationSettings",
    "auc_with_ci",
    "choose_thresholds",
    "delong_comparisons",
    "evaluate_predictions",
    "mlflow_metrics",
    "oracle_comparison",
    "power_block",
    "split_metrics",
    "subgroup_auc",
]

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
# difference = auc_a - auc_b with its DeLong (normal) interval, the same variance as the test:
# the interval excludes 0 exactly when p < 1 - confidence_level.
DELONG_COLUMNS: tuple[str, ...] = (
    "split",
    "model_a",
    "model_b",
    "auc_a",
    "auc_b",
    "difference",
    "difference_lower",
    "difference_upper",
    "z",
    "p",
    "n",
)
# Power of each paired test (metrics.power): 80 % power, two-sided alpha 0.05, same prevalence.
POWER_COLUMNS: tuple[str, ...] = (
    "events",
    "auc_correlation",
    "detectable_difference",
    "n_needed",
    "power_statement",
)
SUBGROUP_COLUMNS: tuple[str, ...] = (
    "variable",
    "subgroup",
    "model",
    "n",
    "events",
    "auc",
    "auc_lower",
    "auc_upper",
    "interaction_p",
    "caution",
)
ORACLE_COLUMNS: tuple[str, ...] = (
    "split",
    "model",
    "n",
    "events",
    "auc",
    "auc_lower",
    "auc_upper",
    "oracle_auc",
    "oracle_auc_lower",
    "oracle_auc_upper",
    "delong_p",
)

NAN = float("nan")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"evaluation.{name} must be a positive whole number; got {value!r}.")
    return int(value)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"evaluation.{name} must be a number; got {value!r}.")
    return float(value)


def _splits(values: Any, name: str) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"evaluation.{name} must be a non-empty list of splits; got {values!r}.")
    unknown = [value for value in values if value not in SPLIT_ORDER]
    if unknown:
        raise ValueError(
            f"evaluation.{name} lists unknown split(s) {unknown}; use {list(SPLIT_ORDER)}."
        )
    return tuple(values)


def _pairs(values: Any, name: str) -> tuple[tuple[str, str], ...]:
    if values is None:
        return ()
    pairs: list[tuple[str, str]] = []
    for item in values:
        if isinstance(item, str) or not isinstance(item, Sequence) or len(item) != 2:
            raise ValueError(f"evaluation.{name} must list [model_a, model_b] pairs; got {item!r}.")
        a, b = (str(model) for model in item)
        if a == b:
            raise ValueError(f"evaluation.{name}: cannot compare {a} with itself.")
        pairs.append((a, b))
    return tuple(pairs)


@dataclass(frozen=True)
class EvaluationSettings:
    """The ``evaluation`` parameter block, checked (see ``parameters_evaluation.yml``)."""

    confidence_level: float = 0.95
    threshold_splits: tuple[str, ...] = ("train_cv", "train")
    bootstrap: bool = True
    bootstrap_resamples: int = 2000
    calibration_bins: int = 10
    comparisons: tuple[tuple[str, str], ...] = STUDY_COMPARISONS
    comparison_splits: tuple[str, ...] = ("train_cv", "external")
    figure_splits: tuple[str, ...] = ("train_cv", "external")
    net_benefit_thresholds: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
    decision_thresholds: tuple[float, ...] = field(
        default_factory=lambda: tuple(round(0.01 * i, 2) for i in range(1, 100))
    )
    subgroup_split: str = "external"
    age_cutoff_years: float = 45.0
    tumor_size_cutoff_mm: float = 5.0
    gradcam_patients: int = 6
    gradcam_split: str = "external"
    subgroup_min_events: int = 20
    min_external_events: int = 100
    anticipated_r2_cs: float | None = None
    report_template: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> EvaluationSettings:
        """Read and check the ``evaluation`` parameter block (missing keys take defaults)."""
        params = dict(params or {})
        defaults = cls()
        level = _number(
            params.get("confidence_level", defaults.confidence_level), "confidence_level"
        )
        if not 0.0 < level < 1.0:
            raise ValueError(f"evaluation.confidence_level must be between 0 and 1; got {level!r}.")
        threshold_splits = _splits(
            params.get("threshold_splits", defaults.threshold_splits), "threshold_splits"
        )
        if "external" in threshold_splits:
            raise ValueError(
                "evaluation.threshold_splits must not contain 'external': the threshold is "
                "chosen on training data and only then applied to the external set."
            )
        boot = dict(params.get("bootstrap") or {})
        subgroups = dict(params.get("subgroups") or {})
        gradcam = dict(params.get("gradcam") or {})
        decision = dict(params.get("decision_curve") or {})
        lowest = _number(decision.get("min_threshold", 0.01), "decision_curve.min_threshold")
        highest = _number(decision.get("max_threshold", 0.99), "decision_curve.max_threshold")
        step = _number(decision.get("step", 0.01), "decision_curve.step")
        if not (0.0 <= lowest < highest < 1.0 and step > 0.0):
            raise ValueError(
                "evaluation.decision_curve needs 0 <= min_threshold < max_threshold < 1 and "
                f"step > 0; got {decision!r}."
            )
        n_steps = math.floor((highest - lowest) / step + 1e-9)
        thresholds = tuple(round(lowest + i * step, 10) for i in range(n_steps + 1))
        subgroup_split = str(subgroups.get("split", defaults.subgroup_split))
        gradcam_split = str(gradcam.get("split", defaults.gradcam_split))
        _splits([subgroup_split], "subgroups.split")
        if gradcam_split not in ("train", "external"):
            raise ValueError(
                f"evaluation.gradcam.split must be 'train' or 'external'; got {gradcam_split!r}."
            )
        known = {
            "confidence_level", "threshold_splits", "bootstrap", "calibration_bins",
            "extra_comparisons", "comparison_splits", "figure_splits", "decision_curve",
            "net_benefit_thresholds", "subgroups", "gradcam", "sample_size", "report_template",
        }  # fmt: skip
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(
                f"Unknown evaluation setting(s) {unknown}; known: {sorted(known)}."
            )
        net_cuts = params.get("net_benefit_thresholds", defaults.net_benefit_thresholds)
        if isinstance(net_cuts, str) or not isinstance(net_cuts, Sequence) or not net_cuts:
            raise ValueError(
                "evaluation.net_benefit_thresholds must be a non-empty list of threshold "
                f"probabilities; got {net_cuts!r}."
            )
        net_cuts = tuple(_number(v, "net_benefit_thresholds") for v in net_cuts)
        if not all(0.0 < v < 1.0 for v in net_cuts):
            raise ValueError(
                f"evaluation.net_benefit_thresholds must lie in (0, 1); got {list(net_cuts)}."
            )
        sample = dict(params.get("sample_size") or {})
        unknown_sample = sorted(set(sample) - {"anticipated_r2_cs", "min_external_events"})
        if unknown_sample:
            raise ValueError(f"Unknown evaluation.sample_size setting(s) {unknown_sample}.")
        r2 = sample.get("anticipated_r2_cs")
        if r2 is not None:
            r2 = _number(r2, "sample_size.anticipated_r2_cs")
            if not 0.0 < r2 < 1.0:
                raise ValueError(
                    f"evaluation.sample_size.anticipated_r2_cs must be in (0, 1); got {r2!r}."
                )
        template = params.get("report_template")
        if template is not None and (not isinstance(template, str) or not template.strip()):
            raise ValueError(
                "evaluation.report_template must be null (the packaged template) or the path "
                f"of a Jinja2 template; got {template!r}."
            )
        extra = _pairs(params.get("extra_comparisons"), "extra_comparisons")
        comparisons = tuple(dict.fromkeys((*STUDY_COMPARISONS, *extra)))
        return cls(
            confidence_level=level,
            threshold_splits=threshold_splits,
            bootstrap=bool(boot.get("enabled", defaults.bootstrap)),
            bootstrap_resamples=_positive_int(
                boot.get("n_resamples", defaults.bootstrap_resamples), "bootstrap.n_resamples"
            ),
            calibration_bins=_positive_int(
                params.get("calibration_bins", defaults.calibration_bins), "calibration_bins"
            ),
            comparisons=comparisons,
            comparison_splits=_splits(
                params.get("comparison_splits", defaults.comparison_splits), "comparison_splits"
            ),
            figure_splits=_splits(
                params.get("figure_splits", defaults.figure_splits), "figure_splits"
            ),
            decision_thresholds=thresholds,
            subgroup_split=subgroup_split,
            age_cutoff_years=_number(
                subgroups.get("age_cutoff_years", defaults.age_cutoff_years),
                "subgroups.age_cutoff_years",
            ),
            tumor_size_cutoff_mm=_number(
                subgroups.get("tumor_size_cutoff_mm", defaults.tumor_size_cutoff_mm),
                "subgroups.tumor_size_cutoff_mm",
            ),
            gradcam_patients=_positive_int(
                gradcam.get("n_patients", defaults.gradcam_patients), "gradcam.n_patients"
            ),
            gradcam_split=gradcam_split,
            net_benefit_thresholds=net_cuts,
            subgroup_min_events=_positive_int(
                subgroups.get("min_events", defaults.subgroup_min_events), "subgroups.min_events"
            ),
            min_external_events=_positive_int(
                sample.get("min_external_events", defaults.min_external_events),
                "sample_size.min_external_events",
            ),
            anticipated_r2_cs=r2,
            report_template=template,
        )


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


def evaluate_predictions(
    predictions: pd.DataFrame, settings: EvaluationSettings, seed: int
) -> dict[str, Any]:
    """The content of ``metrics.json``: every model and split of the predictions.

    Returns
    -------
    dict
        ``confidence_level``, ``threshold_rule`` (words), ``threshold_splits``, ``power`` (what
        each paired DeLong test can detect, :func:`power_block`) and ``models``:
        ``{model: {threshold, threshold_split, splits: {split: {METRIC_KEYS...}}}}`` with the
        bootstrap bounds added to each split when switched on. Values are floats or ints; NaN
        marks what could not be estimated.
    """
    thresholds = choose_thresholds(predictions, settings.threshold_splits)
    models: dict[str, Any] = {}
    for model in models_in(predictions):
        threshold, chosen_on = thresholds[model]
        splits: dict[str, Any] = {}
        for split in SPLIT_ORDER:
            rows = split_rows(predictions, model, split)
            if rows.empty:
                continue
            y = rows["clnm"].to_numpy(dtype=np.int64)
            p = rows["probability"].to_numpy(dtype=np.float64)
            # Where the cut-off was chosen, each patient is classified by one chosen without it.
            row_thresholds = (
                cross_fitted_thresholds(y, p, CUTOFF_FOLDS, seed) if split == chosen_on else None
            )
            splits[split] = split_metrics(
                y,
                p,
                threshold,
                settings,
                seed,
                context=f"{model_label(model)}, {split_label(split).lower()}",
                external=split == "external",
                row_thresholds=row_thresholds,
            )
        models[model] = {"threshold": threshold, "threshold_split": chosen_on, "splits": splits}
        if "external" in splits:
            ext = splits["external"]
            logger.info(
                "%s on the external test set: AUC %.3f (%.3f-%.3f), %d patients.",
                model_label(model),
                ext["auc"],
                ext["auc_lower"],
                ext["auc_upper"],
                ext["n"],
            )
    return {
        "confidence_level": settings.confidence_level,
        "threshold_rule": (
            "Youden threshold (score >= threshold is positive) chosen on the "
            + ", where the model has it, otherwise on the ".join(
                split_label(split).lower() for split in settings.threshold_splits
            )
            + "; applied unchanged to every set, the external test set included. On the set "
            f"it is chosen on, the rates classify each patient with a cut-off chosen without "
            f"it ({CUTOFF_FOLDS}-fold cross-fitted), since the cut-off saw those labels"
        ),
        "threshold_splits": list(settings.threshold_splits),
        "bootstrap": {
            "enabled": settings.bootstrap,
            "n_resamples": settings.bootstrap_resamples,
        },
        "models": models,
        "power": power_block(
            delong_comparisons(predictions, settings.comparisons, settings.comparison_splits)
        ),
    }


# --- Paired DeLong tests ------------------------------------------------------------------------


def auc_difference_ci(
    y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, level: float = 0.95
) -> tuple[float, float, float]:
    """``AUC(a) - AUC(b)`` with its normal interval from DeLong's paired covariance.

    The variance is the paired DeLong test's (:func:`clnm_kedro.metrics.delong_test`), so the
    interval excludes 0 exactly when the test's two-sided p is below ``1 - level``.
    """
    auc, covariance = _delong_covariance(
        np.asarray(y, dtype=np.int64), np.vstack([p_a, p_b]).astype(np.float64)
    )
    difference = float(auc[0] - auc[1])
    variance = float(covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1])
    half = float(stats.norm.ppf(0.5 + level / 2.0)) * math.sqrt(max(variance, 0.0))
    return difference, difference - half, difference + half


def delong_comparisons(
    predictions: pd.DataFrame,
    comparisons: Iterable[tuple[str, str]],
    splits: Iterable[str],
    level: float = 0.95,
) -> pd.DataFrame:
    """Paired DeLong tests of the configured model pairs on each split.

    Each row also has the AUC difference with its interval at ``level``.

    Pairs with a model absent from a split are skipped with a log line; pairs that cannot be
    tested (too few events) get NaN ``z`` and ``p``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`DELONG_COLUMNS`.
    """
    rows: list[dict[str, Any]] = []
    for split in splits:
        present = set(models_in(predictions, split))
        for model_a, model_b in comparisons:
            missing = [model for model in (model_a, model_b) if model not in present]
            if missing:
                logger.info(
                    "DeLong test %s vs %s on the %s skipped: no predictions of %s.",
                    model_a,
                    model_b,
                    split_label(split).lower(),
                    " and ".join(missing),
                )
                continue
            y, p_a, p_b = paired_scores(predictions, split, model_a, model_b)
            difference = lower = upper = NAN
            power: dict[str, Any] = dict.fromkeys(POWER_COLUMNS, NAN)
            if _both_classes(y, minimum=2):
                test = delong_test(y, p_a, p_b)
                auc_a, auc_b, z, p = test.auc_a, test.auc_b, test.z, test.p
                difference, lower, upper = auc_difference_ci(y, p_a, p_b, level)
                design = paired_auc_power(y, p_a, p_b)
                power = {
                    "events": design.events,
                    "auc_correlation": design.correlation,
                    "detectable_difference": design.detectable_difference,
                    "n_needed": design.n_needed,
                    "power_statement": power_statement(
                        design,
                        model_label(model_a),
                        model_label(model_b),
                        split_label(split).lower(),
                    ),
                }
            else:
                logger.warning(
                    "DeLong test %s vs %s on the %s not estimable: too few patients with or "
                    "without CLNM.",
                    model_a,
                    model_b,
                    split_label(split).lower(),
                )
                auc_a, auc_b, z, p = NAN, NAN, NAN, NAN
            rows.append(
                {
                    "split": split,
                    "model_a": model_a,
                    "model_b": model_b,
                    "auc_a": auc_a,
                    "auc_b": auc_b,
                    "difference": difference,
                    "difference_lower": lower,
                    "difference_upper": upper,
                    "z": z,
                    "p": p,
                    "n": int(y.size),
                    **power,
                }
            )
    return pd.DataFrame(rows, columns=[*DELONG_COLUMNS, *POWER_COLUMNS])


def power_block(delong_tests: pd.DataFrame) -> dict[str, Any]:
    """metrics.json's ``power``: per split and ``<a>_vs_<b>``, what each paired test can detect.

    From the rows of :func:`delong_comparisons`: the observed AUC difference, the smallest
    difference detectable with 80 % power (two-sided alpha 0.05) and the patients needed at the
    same prevalence to detect the observed one, with the sentence stating both.
    """
    block: dict[str, Any] = {}
    for row in delong_tests.itertuples(index=False):
        block.setdefault(row.split, {})[f"{row.model_a}_vs_{row.model_b}"] = {
            "auc_difference": row.auc_a - row.auc_b,
            **{key: getattr(row, key) for key in POWER_COLUMNS},
        }
    return block


# --- Subgroups ----------------------------------------------------------------------------------


def _subgroup_masks(
    cohort: pd.DataFrame, age_cutoff: float, size_cutoff: float
) -> list[tuple[str, str, pd.Series]]:
    masks: list[tuple[str, str, pd.Series]] = [
        ("all", "all patients", pd.Series(True, index=cohort.index))
    ]
    if "sex" in cohort.columns:
        sex = cohort["sex"].astype("string").str.upper()
        for value, words in (("F", "female"), ("M", "male")):
            masks.append(("sex", words, sex == value))
    else:
        logger.info("Subgroups by sex skipped: the cohort table has no 'sex' column.")
    if "age" in cohort.columns:
        age = pd.to_numeric(cohort["age"], errors="coerce")
        masks += [
            ("age", f"age < {age_cutoff:g} years", age < age_cutoff),
            ("age", f"age ≥ {age_cutoff:g} years", age >= age_cutoff),
        ]
    else:
        logger.info("Subgroups by age skipped: the cohort table has no 'age' column.")
    if "tumor_size_mm" in cohort.columns:
        size = pd.to_numeric(cohort["tumor_size_mm"], errors="coerce")
        masks += [
            ("tumor_size", f"tumour ≤ {size_cutoff:g} mm", size <= size_cutoff),
            ("tumor_size", f"tumour > {size_cutoff:g} mm", size > size_cutoff),
        ]
    else:
        logger.info("Subgroups by tumour size skipped: no 'tumor_size_mm' column.")
    return [(variable, name, mask.fillna(False).astype(bool)) for variable, name, mask in masks]


def interaction_test(y: np.ndarray, p: np.ndarray, group: np.ndarray) -> float:
    """p-value of the likelihood-ratio test of a score x subgroup interaction.

    Compares ``logit P(y=1) = a + b logit(p) + c g + d logit(p) g`` with the model without
    ``d`` (``g`` 0/1): a small p means the model's score relates to the outcome differently
    in the two subgroups. NaN when either fit is not estimable.
    """
    score = special.logit(np.clip(np.asarray(p, dtype=np.float64), 1e-15, 1 - 1e-15))
    g = np.asarray(group, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.size < 10 or y.min() == y.max() or g.min() == g.max():
        return NAN
    reduced = np.column_stack([np.ones_like(score), score, g])
    full = np.column_stack([reduced, score * g])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            small = sm.GLM(y, reduced, family=sm.families.Binomial()).fit()
            large = sm.GLM(y, full, family=sm.families.Binomial()).fit()
    except (np.linalg.LinAlgError, ValueError):
        return NAN
    statistic = 2.0 * (large.llf - small.llf)
    if not math.isfinite(statistic):
        return NAN
    return float(stats.chi2.sf(max(statistic, 0.0), 1))


def subgroup_auc(
    predictions: pd.DataFrame,
    cohort_table: pd.DataFrame,
    settings: EvaluationSettings,
) -> pd.DataFrame:
    """AUC with DeLong CI of every model by subgroup (sex, age, tumour size) on one split.

    Patients missing the subgroup variable are left out of that variable's subgroups. A
    subgroup with one outcome class gets NaN AUC and CI (not an error).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SUBGROUP_COLUMNS`, one row per subgroup and model.
    """
    split = settings.subgroup_split
    if "patient_id" not in cohort_table.columns:
        raise ValueError("cohort_table lacks the column 'patient_id'.")
    cohort = (
        cohort_table.assign(patient_id=cohort_table["patient_id"].astype(str))
        .drop_duplicates("patient_id")
        .set_index("patient_id")
    )
    rows: list[dict[str, Any]] = []
    for model in models_in(predictions, split):
        scored = split_rows(predictions, model, split).set_index("patient_id")
        unknown = scored.index.difference(cohort.index)
        if len(unknown):
            logger.warning(
                "%d patient(s) scored by %s are not in the cohort table (e.g. %s) and are left "
                "out of the subgroups.",
                len(unknown),
                model_label(model),
                unknown[0],
            )
            scored = scored.drop(index=unknown)
        matched = cohort.loc[scored.index]
        masks = _subgroup_masks(matched, settings.age_cutoff_years, settings.tumor_size_cutoff_mm)
        interactions: dict[str, float] = {}
        for variable in dict.fromkeys(v for v, _, _ in masks if v != "all"):
            pair = [mask for v, _, mask in masks if v == variable]
            known = (pair[0] | pair[1]).to_numpy()
            interactions[variable] = interaction_test(
                scored["clnm"].to_numpy()[known],
                scored["probability"].to_numpy()[known],
                pair[0].to_numpy()[known].astype(np.float64),
            )
        for variable, name, mask in masks:
            chosen = scored[mask.to_numpy()]
            y = chosen["clnm"].to_numpy(dtype=np.int64)
            p = chosen["probability"].to_numpy(dtype=np.float64)
            auc, lower, upper = auc_with_ci(y, p, settings.confidence_level)
            rows.append(
                {
                    "variable": variable,
                    "subgroup": name,
                    "model": model,
                    "n": int(y.size),
                    "events": int(y.sum()),
                    "auc": auc,
                    "auc_lower": lower,
                    "auc_upper": upper,
                    "interaction_p": interactions.get(variable, NAN),
                    "caution": int(y.sum()) < settings.subgroup_min_events,
                }
            )
    return pd.DataFrame(rows, columns=list(SUBGROUP_COLUMNS))


# --- Oracle -------------------------------------------------------------------------------------


def oracle_comparison(
    predictions: pd.DataFrame, oracle: pd.DataFrame, settings: EvaluationSettings
) -> pd.DataFrame:
    """Each model's AUC beside the AUC of the simulator's true risk, on the same patients.

    The oracle risk is what the best possible model would predict; a model's AUC above it on
    the training set points to overfitting. A real cohort has no oracle (an empty table):
    the result is then empty.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ORACLE_COLUMNS` (``delong_p``: paired DeLong test model vs oracle).
    """
    empty = pd.DataFrame(columns=list(ORACLE_COLUMNS))
    if oracle is None or oracle.empty:
        logger.info("No oracle risk for this cohort (a real cohort): no oracle comparison.")
        return empty
    missing = [column for column in ("patient_id", "oracle_risk") if column not in oracle.columns]
    if missing:
        raise ValueError(f"simulation_oracle lacks column(s) {missing}.")
    risk = pd.to_numeric(oracle["oracle_risk"], errors="coerce")
    bad = ~risk.between(0.0, 1.0)
    if bad.any():
        raise ValueError(
            "simulation_oracle: oracle_risk must be a probability in [0, 1]; patient(s) "
            f"{oracle.loc[bad, 'patient_id'].astype(str).tolist()[:5]} are not."
        )
    true_risk = pd.Series(risk.to_numpy(), index=oracle["patient_id"].astype(str))
    true_risk = true_risk[~true_risk.index.duplicated()]
    level = settings.confidence_level
    rows: list[dict[str, Any]] = []
    for split in ("external", "train", "train_cv"):
        for model in models_in(predictions, split):
            scored = split_rows(predictions, model, split).set_index("patient_id")
            common = scored.index.intersection(true_risk.index)
            if len(common) < len(scored):
                logger.warning(
                    "%d %s patient(s) of %s have no oracle risk and are left out.",
                    len(scored) - len(common),
                    split_label(split).lower(),
                    model_label(model),
                )
            y = scored.loc[common, "clnm"].to_numpy(dtype=np.int64)
            p = scored.loc[common, "probability"].to_numpy(dtype=np.float64)
            q = true_risk.loc[common].to_numpy(dtype=np.float64)
            auc, lower, upper = auc_with_ci(y, p, level)
            oracle_auc, oracle_lower, oracle_upper = auc_with_ci(y, q, level)
            p_value = delong_test(y, p, q).p if _both_classes(y, minimum=2) else NAN
            rows.append(
                {
                    "split": split,
                    "model": model,
                    "n": int(y.size),
                    "events": int(y.sum()),
                    "auc": auc,
                    "auc_lower": lower,
                    "auc_upper": upper,
                    "oracle_auc": oracle_auc,
                    "oracle_auc_lower": oracle_lower,
                    "oracle_auc_upper": oracle_upper,
                    "delong_p": p_value,
                }
            )
    return pd.DataFrame(rows, columns=list(ORACLE_COLUMNS)) if rows else empty


# --- MLflow ------------------------------------------------------------------------------------


def _finite(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and math.isfinite(float(value))


def mlflow_metrics(
    metrics: Mapping[str, Any], delong_tests: pd.DataFrame, oracle: pd.DataFrame
) -> dict[str, dict[str, float | int]]:
    """Key figures as MLflow metrics named ``<split>.<model>.<metric>``.

    E.g. ``external.combined.auc``, ``external.dl_dual.auc_lower``,
    ``external.dl_dual_vs_dl_longitudinal.delong_p``, ``external.oracle.auc``. Values that
    could not be estimated (NaN or missing) are left out.

    Returns
    -------
    dict
        ``{name: {"value": float, "step": 0}}`` for kedro-mlflow's
        ``MlflowMetricsHistoryDataset``.
    """
    logged: dict[str, dict[str, float | int]] = {}

    def put(name: str, value: Any) -> None:
        if _finite(value):
            logged[name] = {"value": float(value), "step": 0}

    for model, entry in metrics.get("models", {}).items():
        for split, values in entry.get("splits", {}).items():
            for key in MLFLOW_METRIC_KEYS:
                put(f"{split}.{model}.{key}", values.get(key))
    for row in delong_tests.itertuples(index=False):
        put(f"{row.split}.{row.model_a}_vs_{row.model_b}.delong_p", row.p)
    if not oracle.empty:
        for split, rows in oracle.groupby("split", sort=False):
            best = rows.sort_values("n", ascending=False).iloc[0]
            put(f"{split}.oracle.auc", best["oracle_auc"])
    return logged
