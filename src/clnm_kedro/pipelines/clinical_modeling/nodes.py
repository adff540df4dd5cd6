"""Nodes of the ``clinical_modeling`` pipeline: the encoded clinical table, for inspection.

The model-input table is built by :mod:`clnm_kedro.pipelines.head_inputs`; the head itself
(tuning, refit, predictions, comparison) is the shared template in
:mod:`clnm_kedro.pipelines.head_template`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from clnm_kedro.heads.tables import one_hot_clinical


def encode_clinical_features(
    cohort_table: pd.DataFrame, clinical_modeling: dict[str, Any]
) -> pd.DataFrame:
    """The clinical columns with categories one-hot encoded, for inspection only.

    The heads never read this table: their encoding is fitted inside each CV fold.
    """
    return one_hot_clinical(cohort_table, clinical_modeling.get("clinical_columns"))
