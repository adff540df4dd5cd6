"""The head models' input tables, and each head pipeline wired from the registry.

A head model (:mod:`clnm_kedro.registry`) reads the feature network's DL features, the clinical
columns of its parameter block, or both; :func:`model_input_node` builds the node that makes
its table (identifiers + features, one row per patient) with the node function that fits, the
same for a training run and for scoring. :func:`create_head_pipelines` wires the table and the
tuned head (:func:`clnm_kedro.pipelines.head_template.create_head_pipeline`) of every head
model that one pipeline (``clinical_modeling``, ``fusion``) builds.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from kedro.pipeline import Node, Pipeline

from clnm_kedro.heads.tables import (
    clinical_model_input,
    combined_model_input,
    dl_features_model_input,
)
from clnm_kedro.pipelines.head_template import HEAD_PARAMETER_BLOCKS, create_head_pipeline
from clnm_kedro.registry import FEATURE_NETWORK, HEAD_MODELS, model_spec


def build_clinical_model_input(
    cohort_table: pd.DataFrame, patient_splits: pd.DataFrame, model_settings: dict[str, Any]
) -> pd.DataFrame:
    """``patient_id, center, split, clnm`` + the clinical columns, one row per patient.

    ``clinical_columns`` of the model's block names the columns (``null``: every clinical
    column of ``cohort_table``). Raises if a patient of ``patient_splits`` is not in
    ``cohort_table``.
    """
    return clinical_model_input(
        cohort_table, patient_splits, model_settings.get("clinical_columns")
    )


def build_dl_features_model_input(
    dl_features: pd.DataFrame, patient_splits: pd.DataFrame
) -> pd.DataFrame:
    """``patient_id, center, split, clnm`` + the ``dl_*`` features, one row per patient.

    Raises if a patient of ``patient_splits`` has no deep-learning features.
    """
    return dl_features_model_input(dl_features, patient_splits)


def build_combined_model_input(
    dl_features: pd.DataFrame,
    cohort_table: pd.DataFrame,
    patient_splits: pd.DataFrame,
    model_settings: dict[str, Any],
) -> pd.DataFrame:
    """Identifiers + ``dl_*`` features + the clinical columns of the model's block
    (``clinical_columns: null`` takes every clinical column of ``cohort_table``)."""
    return combined_model_input(
        dl_features, cohort_table, patient_splits, model_settings.get("clinical_columns")
    )


def model_input_node(
    model: str,
    *,
    dl_features: str,
    cohort_table: str,
    patient_splits: str,
    output: str,
    name: str,
    tags: str | None = None,
) -> Node:
    """The node building the input table of the head ``model`` from what the registry says it
    reads: the DL features (dataset ``dl_features``), the clinical columns of its parameter
    block (from ``cohort_table``), or both; one row per patient of ``patient_splits``."""
    spec = model_spec(model)
    block = f"params:{spec.parameters}"
    if spec.dl_features and spec.clinical:
        func, inputs = (
            build_combined_model_input,
            [dl_features, cohort_table, patient_splits, block],
        )
    elif spec.dl_features:
        func, inputs = build_dl_features_model_input, [dl_features, patient_splits]
    else:
        func, inputs = build_clinical_model_input, [cohort_table, patient_splits, block]
    return Node(func, inputs=inputs, outputs=output, name=name, tags=tags)


def create_head_pipelines(pipeline: str) -> Pipeline:
    """Input table and tuned head of every head model the registry assigns to ``pipeline``
    (``clinical_modeling`` or ``fusion``), each head in its own namespace."""
    models = [model for model in HEAD_MODELS if model_spec(model).pipeline == pipeline]
    return Pipeline(
        [
            *(
                model_input_node(
                    model,
                    dl_features=f"{FEATURE_NETWORK}_features",
                    cohort_table="cohort_table",
                    patient_splits="patient_splits",
                    output=f"{model}_model_input",
                    name=f"build_{model}_model_input",
                    tags="training",
                )
                for model in models
            ),
            *(
                create_head_pipeline(model, f"{model}_model_input", HEAD_PARAMETER_BLOCKS[model])
                for model in models
            ),
        ]
    )
