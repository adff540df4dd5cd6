"""Wiring of the ``clinical_modeling`` pipeline (see ``nodes.py``, ``head_inputs.py`` and
``head_template.py``)."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from clnm_kedro.pipelines.clinical_modeling.nodes import encode_clinical_features
from clnm_kedro.pipelines.head_inputs import create_head_pipelines


def create_pipeline(**kwargs: Any) -> Pipeline:
    """The clinical model's input table and its tuned head (namespace ``clinical``)."""
    return Pipeline(
        [
            create_head_pipelines("clinical_modeling"),
            Node(
                encode_clinical_features,
                inputs=["cohort_table", "params:clinical_modeling"],
                outputs="clinical_features",
                name="encode_clinical_features",
                tags="training",
            ),
        ]
    )
