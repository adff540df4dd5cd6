"""Wiring of the ``clinical_modeling`` pipeline (see ``nodes.py`` and ``head_template.py``)."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from clnm_kedro.pipelines.clinical_modeling.nodes import (
    build_clinical_model_input,
    encode_clinical_features,
)
from clnm_kedro.pipelines.head_template import HEAD_PARAMETER_BLOCKS, create_head_pipeline


def create_pipeline(**kwargs: Any) -> Pipeline:
    """The clinical model's input table and its tuned head (namespace ``clinical``)."""
    return Pipeline(
        [
            Node(
                build_clinical_model_input,
                inputs=[
                    "cohort_table",
                    "patient_splits",
                    "params:clinical_modeling",
                    "params:heads.dl_prefix",
                ],
                outputs="clinical_model_input",
                name="build_clinical_model_input",
                tags="training",
            ),
            Node(
                encode_clinical_features,
                inputs=["cohort_table", "params:clinical_modeling"],
                outputs="clinical_features",
                name="encode_clinical_features",
                tags="training",
            ),
            create_head_pipeline(
                "clinical", "clinical_model_input", HEAD_PARAMETER_BLOCKS["clinical"]
            ),
        ]
    )
