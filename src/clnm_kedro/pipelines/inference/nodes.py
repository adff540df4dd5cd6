"""Nodes of the ``inference`` pipeline, and the two training-time nodes it depends on.

Training (tagged ``training``, run at the end of every training run): the scoring contract
(clinical columns and crop settings the models were trained with) and each model's training
Youden threshold, both kept in ``data/06_models``.

Inference (tagged ``inference``): a cohort folder is flattened into one table (the packaged
MLflow model's input); the table is validated and cropped by the preprocessing pipeline's own
nodes, scored by the networks' and heads' own inference nodes, and gathered into one row per
patient. The plain work is in :mod:`clnm_kedro.scoring`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from clnm_kedro.cohort.errors import CohortError
from clnm_kedro.datasets import RawCohort
from clnm_kedro.heads import HeadSpec
from clnm_kedro.reporting.figures import plot_gradcam_panel
from clnm_kedro.reporting.gradcam import gradcam_heatmaps
from clnm_kedro.reporting.model_metrics import EvaluationSettings
from clnm_kedro.reporting.not_drawn import not_drawn
from clnm_kedro.scoring import (
    TableCohort,
    assemble_results,
    cohort_from_table,
    error_table,
    flatten_cohort,
    inference_preprocessing,
    match_training_columns,
    risk_thresholds,
    scoring_contract,
)

logger = logging.getLogger(__name__)

# A progress bar over image decoding only for cohorts at least this large.
PROGRESS_BAR_FROM = 100
INFERENCE_SPLIT = "inference"
_INFERENCE_KEYS = frozenset({"cohort_dir", "gradcam", "centre_calibration"})


# --- training: what scoring needs from the training run ---------------------------------


def record_scoring_contract(
    cohort_table: pd.DataFrame, preprocessing: dict[str, Any]
) -> dict[str, Any]:
    """The clinical columns (with their kind) and crop settings the models are trained with."""
    return scoring_contract(cohort_table, preprocessing)


def fit_risk_thresholds(
    predictions: pd.DataFrame, settings: EvaluationSettings
) -> dict[str, dict[str, Any]]:
    """Each model's Youden threshold on its training predictions (``evaluation`` rule; the
    settings checked once by the evaluation pipeline)."""
    return risk_thresholds(predictions, settings.threshold_splits)


# --- inference ---------------------------------------------------------------------------


def flatten_inference_cohort(inference_raw_cohort: RawCohort) -> pd.DataFrame:
    """The cohort folder as one table: clinical values, each view's image path and box."""
    table = flatten_cohort(inference_raw_cohort)
    logger.info("Cohort to score: %d patients in %s.", len(table), inference_raw_cohort.root)
    return table


def open_inference_cohort(
    inference_cohort: pd.DataFrame, scoring_contract: dict[str, Any]
) -> tuple[TableCohort, dict[str, Any]]:
    """The cohort table as the validation reads it, and the training run's preprocessing.

    Returns
    -------
    tuple
        The cohort, and the ``preprocessing`` block of the training run with labels not
        required (the crops are made exactly as for the training cohort).
    """
    cohort = cohort_from_table(inference_cohort)
    settings = inference_preprocessing(
        scoring_contract, progress_bar=len(inference_cohort) >= PROGRESS_BAR_FROM
    )
    return cohort, settings


def check_training_columns(
    validated_clinical: pd.DataFrame,
    inference_cohort_files: TableCohort,
    scoring_contract: dict[str, Any],
) -> pd.DataFrame:
    """Refuse a cohort whose clinical columns differ from the training cohort's (named)."""
    source = str(inference_cohort_files.root / "clinical.csv")
    return match_training_columns(validated_clinical, scoring_contract, source)


def read_head_spec(heads: dict[str, Any]) -> HeadSpec:
    """The ``heads`` block as the heads' settings, without the search-space probe fits."""
    return HeadSpec.from_params(heads, check_values=False)


def select_scored_patients(
    cohort_table: pd.DataFrame,
    table_exclusions: pd.DataFrame,
    file_exclusions: pd.DataFrame,
    crop_exclusions: pd.DataFrame,
) -> pd.DataFrame:
    """``patient_id, center, clnm, split`` of each patient with usable crops (crop order).

    Raises
    ------
    CohortError
        If no patient can be scored, listing each patient's problem.
    """
    if cohort_table.empty:
        errors = error_table(table_exclusions, file_exclusions, crop_exclusions)
        problems = [
            f"patient {row.patient_id}, {row.file}: {row.reason}"
            for row in errors.head(20).itertuples(index=False)
        ]
        raise CohortError("No patient of the cohort can be scored:\n  - " + "\n  - ".join(problems))
    patients = cohort_table.loc[:, ["patient_id", "center", "clnm"]].reset_index(drop=True)
    return patients.assign(split=INFERENCE_SPLIT)


def gather_inference_results(
    validated_clinical: pd.DataFrame,
    table_exclusions: pd.DataFrame,
    file_exclusions: pd.DataFrame,
    crop_exclusions: pd.DataFrame,
    risk_thresholds: dict[str, dict[str, Any]],
    **scores: pd.DataFrame,
) -> pd.DataFrame:
    """One row per patient of the cohort: every model's probability, the combined model's
    probability and risk group at the training threshold, or why the patient was not scored.

    ``scores``: model name -> ``patient_id, probability`` of the scored patients.
    """
    errors = error_table(table_exclusions, file_exclusions, crop_exclusions)
    return assemble_results(validated_clinical, scores, errors, risk_thresholds)


def list_inference_errors(
    table_exclusions: pd.DataFrame, file_exclusions: pd.DataFrame, crop_exclusions: pd.DataFrame
) -> pd.DataFrame:
    """Each problem that kept a patient from being scored: patient, view, file, reason."""
    errors = error_table(table_exclusions, file_exclusions, crop_exclusions)
    if not errors.empty:
        logger.warning(
            "%d patient(s) could not be scored (data/07_model_output/inference_errors.csv); "
            "for example %s: %s",
            errors["patient_id"].nunique(),
            errors.at[0, "patient_id"],
            errors.at[0, "reason"],
        )
    return errors


def _gradcam_figure(network: nn.Module, crops: np.ndarray, patient: str, risk: str) -> Figure:
    """Both views of one patient with the dual-channel network's Grad-CAM overlay; a figure
    that cannot be drawn says so and why (logged) instead of stopping the other patients'."""
    try:
        result = gradcam_heatmaps(network, crops)
        caption = f"{patient}\n{risk}\nDL dual {result.probabilities[0]:.2f}"
        return plot_gradcam_panel(
            crops, result.heatmaps, result.views, [caption], title="Grad-CAM: DL dual-channel"
        )
    except Exception as error:  # an overlay is an extra: it never sinks the batch
        return not_drawn(f"Grad-CAM of patient {patient}", error)


def draw_inference_gradcam(
    dl_dual_network: nn.Module,
    roi_crops: np.ndarray,
    scored_patients: pd.DataFrame,
    inference_results: pd.DataFrame,
    inference: dict[str, Any],
) -> dict[str, Callable[[], Figure]]:
    """Grad-CAM overlays of both views for each scored patient, when ``inference.gradcam``.

    Returns
    -------
    dict
        ``{patient_id: figure maker}``, each figure drawn and saved as ``<patient_id>.png``
        one at a time (lazy saving); empty when switched off.
    """
    unknown = sorted(set(inference) - _INFERENCE_KEYS)
    if unknown:
        raise ValueError(f"Unknown keys {unknown} in inference; allowed: {sorted(_INFERENCE_KEYS)}")
    gradcam = inference.get("gradcam", False)
    if not isinstance(gradcam, bool):
        raise ValueError(f"inference.gradcam must be true or false, got {gradcam!r}")
    if not gradcam:
        return {}
    results = inference_results.set_index("patient_id")
    makers: dict[str, Callable[[], Figure]] = {}
    for row, patient in enumerate(scored_patients["patient_id"].astype(str)):
        combined = results.loc[patient]
        risk = f"risk {combined['probability']:.2f}, {combined['risk_group']}"
        makers[patient] = partial(
            _gradcam_figure, dl_dual_network, roi_crops[row : row + 1], patient, risk
        )
    logger.info(
        "Grad-CAM overlays of %d patients: data/08_reporting/inference_gradcam/.", len(makers)
    )
    return makers
