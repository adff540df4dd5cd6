"""Nodes of the ``evaluation`` pipeline.

Small wrappers around :mod:`clnm_kedro.reporting` and :mod:`clnm_kedro.metrics`: they take
catalog data and the ``evaluation`` parameters and return catalog data. Figure nodes return the
figure (saved as a PNG and logged to MLflow) and the same figure embedded for the HTML report,
because Kedro cannot load a saved matplotlib figure back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from clnm_kedro.reporting import figures, model_metrics, predictions, report, tables
from clnm_kedro.reporting.gradcam import choose_gradcam_patients, gradcam_heatmaps
from clnm_kedro.reporting.model_metrics import EvaluationSettings
from clnm_kedro.reporting.predictions import model_label, split_label

logger = logging.getLogger(__name__)

ReportFigure = dict[str, str]


def _json_safe(value: Any) -> Any:
    """NaN/inf to ``None`` and numpy scalars to Python numbers, recursively (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    return value


def gather_predictions(*tables_in: pd.DataFrame) -> pd.DataFrame:
    """Join every model's predictions into the validated ``predictions`` table."""
    return predictions.gather_predictions(*tables_in)


def compute_metrics(
    predictions_table: pd.DataFrame, evaluation: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Per model and split: AUC (DeLong CI), rates at the training Youden cut-off, calibration.

    Returns the content of ``metrics.json`` (values not estimable are ``null``).
    """
    settings = EvaluationSettings.from_params(evaluation)
    return _json_safe(model_metrics.evaluate_predictions(predictions_table, settings, seed))


def compare_models(predictions_table: pd.DataFrame, evaluation: dict[str, Any]) -> pd.DataFrame:
    """Paired DeLong tests of the study's comparisons (and configured ones) per data set."""
    settings = EvaluationSettings.from_params(evaluation)
    return model_metrics.delong_comparisons(
        predictions_table, settings.comparisons, settings.comparison_splits
    )


def build_study_table(metrics: dict[str, Any], delong_tests: pd.DataFrame) -> pd.DataFrame:
    """The study's table, formatted as in a paper (training and external sets)."""
    return tables.study_table(metrics, delong_tests)


def compute_subgroup_auc(
    predictions_table: pd.DataFrame, cohort_table: pd.DataFrame, evaluation: dict[str, Any]
) -> pd.DataFrame:
    """AUC with DeLong CI by sex, age and tumour size on the external set."""
    settings = EvaluationSettings.from_params(evaluation)
    return model_metrics.subgroup_auc(predictions_table, cohort_table, settings)


def compare_with_oracle(
    predictions_table: pd.DataFrame, simulation_oracle: pd.DataFrame, evaluation: dict[str, Any]
) -> pd.DataFrame:
    """Each model's AUC beside the oracle AUC (synthetic cohort; empty for a real one)."""
    settings = EvaluationSettings.from_params(evaluation)
    return model_metrics.oracle_comparison(predictions_table, simulation_oracle, settings)


def collect_mlflow_metrics(
    metrics: dict[str, Any], delong_tests: pd.DataFrame, oracle_comparison: pd.DataFrame
) -> dict[str, dict[str, float | int]]:
    """Key figures for MLflow, named ``<split>.<model>.<metric>``."""
    return model_metrics.mlflow_metrics(metrics, delong_tests, oracle_comparison)


def plot_roc(
    predictions_table: pd.DataFrame, evaluation: dict[str, Any]
) -> tuple[Figure, ReportFigure]:
    """ROC curves of every model on the training and external sets."""
    settings = EvaluationSettings.from_params(evaluation)
    figure = figures.plot_roc_curves(
        predictions_table, settings.figure_splits, settings.confidence_level
    )
    return figure, report.embed_figure(
        figure, "ROC curves", "AUC with its DeLong confidence interval in the legend"
    )


def plot_calibration(
    predictions_table: pd.DataFrame, evaluation: dict[str, Any]
) -> tuple[Figure, ReportFigure]:
    """Calibration curves (observed against predicted risk) of every model."""
    settings = EvaluationSettings.from_params(evaluation)
    figure = figures.plot_calibration_curves(
        predictions_table, settings.figure_splits, settings.calibration_bins
    )
    return figure, report.embed_figure(
        figure, "Calibration curves", "points on the dotted diagonal are perfectly calibrated"
    )


def plot_decision_curves(
    predictions_table: pd.DataFrame, evaluation: dict[str, Any]
) -> tuple[Figure, ReportFigure]:
    """Decision curves (net benefit) of every model against treat-all and treat-none."""
    settings = EvaluationSettings.from_params(evaluation)
    figure = figures.plot_decision_curves(
        predictions_table, settings.figure_splits, settings.decision_thresholds
    )
    return figure, report.embed_figure(
        figure, "Decision curves", "net benefit across threshold probabilities"
    )


def plot_training_curves(**histories: pd.DataFrame) -> tuple[Figure, ReportFigure]:
    """Loss and internal-validation AUC per epoch of every network (keyword = model id)."""
    figure = figures.plot_training_overview(histories)
    return figure, report.embed_figure(
        figure, "Training curves", "the dotted red line marks the epoch whose weights were kept"
    )


def _as_network(network: Any, model: str) -> nn.Module:
    if isinstance(network, nn.Module):
        return network
    if isinstance(network, tuple) and network and isinstance(network[0], nn.Module):
        return network[0]  # (model, config) as returned by load_checkpoint
    raise TypeError(
        f"{model}_network must be a torch network (nn.Module); got {type(network).__name__}."
    )


def gradcam_node(model: str) -> Callable[..., tuple[Figure, ReportFigure]]:
    """The Grad-CAM node of one network (``model`` is its id, e.g. ``dl_dual``)."""

    def plot_gradcam(
        network: nn.Module,
        roi_crops: np.ndarray,
        patient_splits: pd.DataFrame,
        evaluation: dict[str, Any],
        seed: int,
    ) -> tuple[Figure, ReportFigure]:
        """Grad-CAM heatmaps of both views for a seeded sample of external patients."""
        settings = EvaluationSettings.from_params(evaluation)
        if len(patient_splits) != len(roi_crops):
            raise ValueError(
                f"patient_splits has {len(patient_splits)} rows but roi_crops holds "
                f"{len(roi_crops)} patients; row i of patient_splits must describe roi_crops[i]."
            )
        rows = choose_gradcam_patients(
            patient_splits, settings.gradcam_split, settings.gradcam_patients, seed
        )
        title = f"Grad-CAM: {model_label(model)}"
        if rows.size == 0:
            logger.warning(
                "No %s patients for Grad-CAM of %s.",
                split_label(settings.gradcam_split).lower(),
                model_label(model),
            )
            figure = figures.plot_gradcam_panel(
                roi_crops[:0], np.zeros((0, 1, 1, 1)), (0,), [], title=title
            )
            return figure, report.embed_figure(figure, title, "no patients to show")
        result = gradcam_heatmaps(_as_network(network, model), roi_crops[rows])
        chosen = patient_splits.iloc[rows]
        captions = [
            f"{patient}\nCLNM {'yes' if int(label) == 1 else 'no'}, risk {risk:.2f}"
            for patient, label, risk in zip(
                chosen["patient_id"], chosen["clnm"], result.probabilities, strict=True
            )
        ]
        figure = figures.plot_gradcam_panel(
            roi_crops[rows], result.heatmaps, result.views, captions, title=title
        )
        logger.info(
            "Grad-CAM of %s drawn for %d %s patients.",
            model_label(model),
            rows.size,
            split_label(settings.gradcam_split).lower(),
        )
        caption = (
            f"{rows.size} {split_label(settings.gradcam_split).lower()} patients (seeded "
            "choice); crop and heatmap overlay of each view"
        )
        return figure, report.embed_figure(figure, title, caption)

    plot_gradcam.__name__ = plot_gradcam.__qualname__ = f"plot_gradcam_{model}"
    return plot_gradcam


def collect_run_parameters(**blocks: Any) -> dict[str, Any]:
    """The run's parameter blocks, keyed by their names, for the report's parameter table."""
    return dict(blocks)


def build_report(
    *,
    metrics: dict[str, Any],
    delong_tests: pd.DataFrame,
    subgroup_auc: pd.DataFrame,
    oracle_comparison: pd.DataFrame,
    data_quality_report: dict[str, Any],
    parameters: dict[str, Any],
    **report_figures: ReportFigure,
) -> str:
    """The self-contained HTML report: tables, figures, data quality and parameters.

    Every further keyword is an embedded figure (from a figure node), shown in that order.
    """
    html = report.render_report(
        metrics=metrics,
        delong_tests=delong_tests,
        subgroup_auc=subgroup_auc,
        oracle_comparison=oracle_comparison,
        data_quality=data_quality_report,
        parameters=parameters,
        figures=list(report_figures.values()),
    )
    logger.info("Evaluation report written with %d figures.", len(report_figures))
    return html
