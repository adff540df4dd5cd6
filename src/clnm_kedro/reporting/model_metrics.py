"""The study's numbers from the predictions table: ``metrics.json`` and its MLflow names.

:func:`evaluate_predictions` assembles them from the modules that compute them, each one idea:
``evaluation_settings.py`` (the ``evaluation`` block), ``performance.py`` (metrics per model
and split, and the threshold rule), ``model_comparisons.py`` (paired DeLong tests, subgroup
AUCs, the oracle comparison). Their names are importable from here as before.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from clnm_kedro.metrics import cross_fitted_thresholds
from clnm_kedro.registry import STUDY_COMPARISONS
from clnm_kedro.reporting.evaluation_settings import EvaluationSettings
from clnm_kedro.reporting.model_comparisons import (
    DELONG_COLUMNS,
    ORACLE_COLUMNS,
    POWER_COLUMNS,
    SUBGROUP_COLUMNS,
    auc_difference_ci,
    delong_comparisons,
    interaction_test,
    oracle_comparison,
    power_block,
    subgroup_auc,
)
from clnm_kedro.reporting.performance import (
    BOOTSTRAP_METRICS,
    CUTOFF_FOLDS,
    METRIC_KEYS,
    MLFLOW_METRIC_KEYS,
    MODEL_KEYS,
    auc_with_ci,
    choose_thresholds,
    split_metrics,
)
from clnm_kedro.reporting.predictions import (
    SPLIT_ORDER,
    model_label,
    models_in,
    split_label,
    split_rows,
)

__all__ = [
    "BOOTSTRAP_METRICS",
    "CUTOFF_FOLDS",
    "DELONG_COLUMNS",
    "METRIC_KEYS",
    "MLFLOW_METRIC_KEYS",
    "MODEL_KEYS",
    "ORACLE_COLUMNS",
    "POWER_COLUMNS",
    "STUDY_COMPARISONS",
    "SUBGROUP_COLUMNS",
    "EvaluationSettings",
    "auc_difference_ci",
    "auc_with_ci",
    "choose_thresholds",
    "delong_comparisons",
    "evaluate_predictions",
    "interaction_test",
    "mlflow_metrics",
    "oracle_comparison",
    "power_block",
    "split_metrics",
    "subgroup_auc",
]

logger = logging.getLogger(__name__)


# --- metrics.json -------------------------------------------------------------------------------


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
