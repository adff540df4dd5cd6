"""Nodes of the ``clinical_modeling`` pipeline: the clinical model's input tables.

The head itself (tuning, refit, predictions, comparison) is the shared template in
:mod:`clnm_kedro.pipelines.head_template`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from clnm_kedro.heads.tables import clinical_model_input, one_hot_clinical


def build_clinical_model_input(
    cohort_table: pd.DataFrame,
    patient_splits: pd.DataFrame,
    clinical_modeling: dict[str, Any],
    dl_prefix: str,
) -> pd.DataFrame:
    """``patient_id, center, split, clnm`` + the clinical columns, one row per patient.

    ``clinical_modeling.clinical_columns`` names the columns (``null``: every clinical column
    of ``cohort_table``). Raises if a patient of ``patient_splits`` is not in ``cohort_table``.
    """
    return clinical_model_input(
        cohort_table, patient_splits, clinical_modeling.get("clinical_columns"), dl_prefix
    )


def encode_clinical_features(
    cohort_table: pd.DataFrame, clinical_modeling: dict[str, Any]
) -> pd.DataFrame:
    """The clinical columns with categories one-hot encoded, for inspection only.

    The heads never read this table: their encoding is fitted inside each CV fold.
    """
    return one_hot_clinical(cohort_table, clinical_modeling.get("clinical_columns"))
