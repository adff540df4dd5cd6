"""Nodes of the ``fusion`` pipeline: the input tables of the DL-feature and combined models.

The heads themselves are the shared template in :mod:`clnm_kedro.pipelines.head_template`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from clnm_kedro.heads.tables import combined_model_input, dl_features_model_input


def build_dl_features_model_input(
    dl_dual_features: pd.DataFrame, patient_splits: pd.DataFrame, dl_prefix: str
) -> pd.DataFrame:
    """``patient_id, center, split, clnm`` + the ``dl_*`` features, one row per patient.

    Raises if a patient of ``patient_splits`` has no deep-learning features.
    """
    return dl_features_model_input(dl_dual_features, patient_splits, dl_prefix)


def build_combined_model_input(
    dl_dual_features: pd.DataFrame,
    cohort_table: pd.DataFrame,
    patient_splits: pd.DataFrame,
    combined: dict[str, Any],
    dl_prefix: str,
) -> pd.DataFrame:
    """Identifiers + ``dl_*`` features + the clinical columns of ``combined.clinical_columns``.

    ``clinical_columns: null`` takes every clinical column of ``cohort_table``.
    """
    return combined_model_input(
        dl_dual_features, cohort_table, patient_splits, combined.get("clinical_columns"), dl_prefix
    )
