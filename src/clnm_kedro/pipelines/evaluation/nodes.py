"""Nodes of the ``evaluation`` pipeline.

Small wrappers around :mod:`clnm_kedro.reporting` and :mod:`clnm_kedro.metrics`: they take
catalog data and the ``evaluation`` settings and return catalog data. The ``evaluation``
parameter block is read and checked once, by the pipeline's first node
(:func:`validate_evaluation_settings`); every other node takes the resulting
:class:`EvaluationSettings` (the ``evaluation_settings`` dataset). Figure nodes return the
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

from clnm_kedro.heads.tables import clinical_columns
from clnm_kedro.registry import HEAD_MODELS
from clnm_kedro.reporting import figures, model_metrics, predictions, report, tables
from clnm_kedro.reporting.clinical_utility import net_benefit_by_model
from clnm_kedro.reporting.gradcam import choose_gradcam_patients, gradcam_heatmaps
from clnm_kedro.reporting.model_metrics import EvaluationSettings
from clnm_kedro.reporting.not_drawn import figure_never_fails
from clnm_kedro.reporting.odds_ratios import odds_ratio_table
from clnm_kedro.reporting.predictions import model_label, split_label
from clnm_kedro.reporting.sample_size import assess_sample_size
from clnm_kedro.reporting.summary import plain_summary
from clnm_kedro.reporting.table_one import baseline_table

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


def validate_evaluation_settings(evaluation: dict[str, Any] | None) -> EvaluationSettings:
    """The ``evaluation`` parameter block, checked once before any evaluation node runs.

    Raises
    ------
    ValueError
        Naming the offending setting (e.g. ``evaluation.confidence_level must be between 0
        and 1``) or the unknown keys.
    """
    return EvaluationSettings.from_params(evaluation)


def gather_predictions(*tables_in: pd.DataFrame) -> pd.DataFrame:
    """Join every model's predictions into the validated ``predictions`` table."""
    return predictions.gather_predictions(*tables_in)


def compute_metrics(
    predictions_table: pd.DataFrame, settings: EvaluationSettings, seed: int
) -> dict[str, Any]:
    """Per model and split: AUC (DeLong CI), rates at the training Youden cut-off, calibration.

    Returns the content of ``metrics.json`` (values not estimable are ``null``).
    """
    return _json_safe(model_metrics.evaluate_predictions(predictions_table, settings, seed))


def compare_models(predictions_table: pd.DataFrame, settings: EvaluationSettings) -> pd.DataFrame:
    """Paired DeLong tests of the study's comparisons (and configured ones) per data set."""
    return model_metrics.delong_comparisons(
        predictions_table,
        settings.comparisons,
        settings.comparison_splits,
        settings.confidence_level,
    )


def build_study_table(metrics: dict[str, Any], delong_tests: pd.DataFrame) -> pd.DataFrame:
    """The study's table, formatted as in a paper (training centres out-of-fold, or apparent
    where labelled so, and the external set)."""
    return tables.study_table(metrics, delong_tests)


def build_calibration_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Calibration per model and set, each value with its interval (Hosmer-Lemeshow last)."""
    return tables.calibration_table(metrics)


def _cohort_with_splits(cohort_table: pd.DataFrame, patient_splits: pd.DataFrame) -> pd.DataFrame:
    cohort = cohort_table.drop(columns=["split"], errors="ignore")
    cohort = cohort.assign(patient_id=cohort["patient_id"].astype(str))
    splits = patient_splits.assign(patient_id=patient_splits["patient_id"].astype(str))
    unknown = sorted(set(splits["patient_id"]) - set(cohort["patient_id"]))
    if unknown:
        raise ValueError(
            f"{len(unknown)} patient(s) of patient_splits are not in cohort_table (e.g. "
            f"{unknown[:5]}); rebuild cohort_table and patient_splits from the same cohort."
        )
    return cohort.merge(splits[["patient_id", "split"]], on="patient_id", how="inner")


def build_table_one(
    cohort_table: pd.DataFrame, patient_splits: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1 by centre and by CLNM status: every clinical column of the analysed patients."""
    cohort = _cohort_with_splits(cohort_table, patient_splits)
    variables = clinical_columns(cohort_table, None)
    by_centre = baseline_table(cohort, "center", variables)
    by_outcome = baseline_table(cohort, "clnm", variables, group_labels={0: "No CLNM", 1: "CLNM"})
    return by_centre, by_outcome


def fit_clinical_odds_ratios(
    cohort_table: pd.DataFrame,
    patient_splits: pd.DataFrame,
    clinical_modeling: dict[str, Any],
    settings: EvaluationSettings,
) -> pd.DataFrame:
    """Univariable and multivariable odds ratios of the clinical model's indicators, fitted on
    the training centres only."""
    cohort = _cohort_with_splits(cohort_table, patient_splits)
    variables = clinical_columns(cohort_table, clinical_modeling.get("clinical_columns"))
    training = cohort[cohort["split"] == "train"]
    table = odds_ratio_table(training, variables, level=settings.confidence_level)
    logger.info(
        "Clinical odds ratios fitted on %d training patients (%d with every indicator).",
        len(training),
        int(table["multi_n"].iloc[0]) if len(table) else 0,
    )
    return table


def compute_net_benefit(
    predictions_table: pd.DataFrame, settings: EvaluationSettings, seed: int
) -> pd.DataFrame:
    """Net benefit and its difference from treat-all, with bootstrap intervals, per model and
    set, on a grid of thresholds that holds the reported ones."""
    grid = {round(0.05 + 0.01 * i, 2) for i in range(56)}  # 0.05 ... 0.60
    thresholds = sorted(grid | {round(t, 6) for t in settings.net_benefit_thresholds})
    return net_benefit_by_model(
        predictions_table,
        settings.figure_splits,
        thresholds,
        seed=seed,
        n_boot=settings.bootstrap_resamples if settings.bootstrap else 0,
        level=settings.confidence_level,
    )


def assess_development_sample_size(
    predictions_table: pd.DataFrame,
    clinical_model_input: pd.DataFrame,
    combined_model_input: pd.DataFrame,
    settings: EvaluationSettings,
) -> dict[str, Any]:
    """Riley's minimum sample size for the clinical and combined models, and the external
    set's events against the recommended minimum."""
    training = {
        "clinical": clinical_model_input[clinical_model_input["split"] != "external"],
        "combined": combined_model_input[combined_model_input["split"] != "external"],
    }
    return _json_safe(
        assess_sample_size(
            predictions_table,
            training,
            anticipated_r2_cs=settings.anticipated_r2_cs,
            min_external_events=settings.min_external_events,
        )
    )


def summarise_results(
    metrics: dict[str, Any],
    delong_tests: pd.DataFrame,
    net_benefit: pd.DataFrame,
    sample_size: dict[str, Any],
    settings: EvaluationSettings,
) -> list[str]:
    """The plain-language summary, sentence by sentence, chosen from the results."""
    return plain_summary(
        metrics, delong_tests, net_benefit, sample_size, settings.net_benefit_thresholds
    )


def compute_subgroup_auc(
    predictions_table: pd.DataFrame, cohort_table: pd.DataFrame, settings: EvaluationSettings
) -> pd.DataFrame:
    """AUC with DeLong CI by sex, age and tumour size on the external set."""
    return model_metrics.subgroup_auc(predictions_table, cohort_table, settings)


def compare_with_oracle(
    predictions_table: pd.DataFrame, simulation_oracle: pd.DataFrame, settings: EvaluationSettings
) -> pd.DataFrame:
    """Each model's AUC beside the oracle AUC (synthetic cohort; empty for a real one)."""
    return model_metrics.oracle_comparison(predictions_table, simulation_oracle, settings)


def collect_mlflow_metrics(
    metrics: dict[str, Any], delong_tests: pd.DataFrame, oracle_comparison: pd.DataFrame
) -> dict[str, dict[str, float | int]]:
    """Key figures for MLflow, named ``<split>.<model>.<metric>``."""
    return model_metrics.mlflow_metrics(metrics, delong_tests, oracle_comparison)


@figure_never_fails("ROC curves", report.captioned)
def plot_roc(predictions_table: pd.DataFrame, settings: EvaluationSettings) -> tuple[Figure, str]:
    """ROC curves of every model on the training and external sets."""
    figure = figures.plot_roc_curves(
        predictions_table, settings.figure_splits, settings.confidence_level
    )
    return figure, "AUC with its DeLong confidence interval in the legend"


@figure_never_fails("Calibration curves", report.captioned)
def plot_calibration(
    predictions_table: pd.DataFrame, settings: EvaluationSettings
) -> tuple[Figure, str]:
    """Calibration curves (observed against predicted risk) of every model."""
    figure = figures.plot_calibration_curves(
        predictions_table, settings.figure_splits, settings.confidence_level
    )
    return figure, (
        "Smoothed (logistic regression on a restricted cubic spline of the logit) with "
        "pointwise confidence bands; the dotted diagonal is perfect calibration; beneath, the "
        "distribution of predicted risks"
    )


@figure_never_fails("Net benefit against treat-all", report.captioned)
def plot_net_benefit_difference(
    net_benefit: pd.DataFrame, settings: EvaluationSettings
) -> tuple[Figure, str]:
    """Net benefit minus treat-all's, with bootstrap bands, of every model."""
    figure = figures.plot_net_benefit_difference(net_benefit, settings.figure_splits)
    return figure, (
        "Difference in net benefit from operating on every patient, with stratified-bootstrap "
        "bands; above 0 the model helps"
    )


@figure_never_fails("Decision curves", report.captioned)
def plot_decision_curves(
    predictions_table: pd.DataFrame, settings: EvaluationSettings
) -> tuple[Figure, str]:
    """Decision curves (net benefit) of every model against treat-all and treat-none."""
    figure = figures.plot_decision_curves(
        predictions_table, settings.figure_splits, settings.decision_thresholds
    )
    return figure, "Net benefit across threshold probabilities"


@figure_never_fails("Training curves", report.captioned)
def plot_training_curves(**histories: pd.DataFrame) -> tuple[Figure, str]:
    """Loss and internal-validation AUC per epoch of every network (keyword = model id)."""
    figure = figures.plot_training_overview(histories)
    return figure, "The dotted red line marks the epoch whose weights were kept"


def _as_network(network: Any, model: str) -> nn.Module:
    if isinstance(network, nn.Module):
        return network
    if isinstance(network, tuple) and network and isinstance(network[0], nn.Module):
        return network[0]  # (model, config) as returned by load_checkpoint
    raise TypeError(
        f"{model}_network must be a torch network (nn.Module); got {type(network).__name__}."
    )


def gradcam_node(model: str) -> Callable[..., Figure]:
    """The Grad-CAM node of one network (``model`` is its id, e.g. ``dl_dual``)."""

    title = f"Grad-CAM: {model_label(model)}"

    @figure_never_fails(title, report.captioned)
    def plot_gradcam(
        network: nn.Module,
        roi_crops: np.ndarray,
        patient_splits: pd.DataFrame,
        settings: EvaluationSettings,
        seed: int,
    ) -> tuple[Figure, str]:
        """Grad-CAM heatmaps of both views for a seeded sample of external patients."""
        if len(patient_splits) != len(roi_crops):
            raise ValueError(
                f"patient_splits has {len(patient_splits)} rows but roi_crops holds "
                f"{len(roi_crops)} patients; row i of patient_splits must describe roi_crops[i]."
            )
        rows = choose_gradcam_patients(
            patient_splits, settings.gradcam_split, settings.gradcam_patients, seed
        )
        if rows.size == 0:
            logger.warning(
                "No %s patients for Grad-CAM of %s.",
                split_label(settings.gradcam_split).lower(),
                model_label(model),
            )
            figure = figures.plot_gradcam_panel(
                roi_crops[:0], np.zeros((0, 1, 1, 1)), (0,), [], title=title
            )
            return figure, "No patients to show"
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
        return figure, caption

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
    table_one_by_centre: pd.DataFrame,
    table_one_by_outcome: pd.DataFrame,
    clinical_odds_ratios: pd.DataFrame,
    net_benefit: pd.DataFrame,
    sample_size: dict[str, Any],
    plain_summary: list[str],
    settings: EvaluationSettings,
    **comparisons_and_figures: pd.DataFrame | Figure | ReportFigure,
) -> str:
    """The self-contained HTML report, rendered from the packaged template or the one named by
    ``evaluation.report_template``.

    Every further keyword is a head's classifier comparison (``<model>_head_comparison``, one
    per head model of :mod:`clnm_kedro.registry`) or a figure node's figure, by name: read back
    from its PNG file (``ReportFigureDataset``), or the captioned figure itself when in memory.
    """
    report_figures = dict(comparisons_and_figures)
    head_comparisons = [report_figures.pop(f"{model}_head_comparison") for model in HEAD_MODELS]
    report_figures = {name: report.report_figure(item) for name, item in report_figures.items()}
    html = report.render_report(
        metrics=metrics,
        delong_tests=delong_tests,
        subgroup_auc=subgroup_auc,
        oracle_comparison=oracle_comparison,
        data_quality=data_quality_report,
        parameters=parameters,
        figures=report_figures,
        table_one={"by_centre": table_one_by_centre, "by_outcome": table_one_by_outcome},
        odds_ratios=clinical_odds_ratios,
        net_benefit=net_benefit,
        sample_size=sample_size,
        classifier_comparison=head_comparisons,
        summary_sentences=plain_summary,
        net_benefit_thresholds=settings.net_benefit_thresholds,
        subgroup_min_events=settings.subgroup_min_events,
        calibration_bins=settings.calibration_bins,
        template=settings.report_template,
    )
    logger.info("Evaluation report written with %d figures.", len(report_figures))
    return html
