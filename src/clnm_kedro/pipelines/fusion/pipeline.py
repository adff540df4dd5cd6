"""Wiring of the ``fusion`` pipeline (see ``nodes.py`` and ``head_template.py``)."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from clnm_kedro.pipelines.fusion.nodes import (
    build_combined_model_input,
    build_dl_features_model_input,
)
from clnm_kedro.pipelines.head_template import HEAD_PARAMETER_BLOCKS, create_head_pipeline


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Input tables and tuned heads of ``dl_features`` and ``combined`` (one namespace each)."""
    return Pipeline(
        [
            Node(
                build_dl_features_model_input,
                inputs=["dl_dual_features", "patient_splits", "params:heads.dl_prefix"],
                outputs="dl_features_model_input",
                name="build_dl_features_model_input",
                tags="training",
            ),
            Node(
                build_combined_model_input,
                inputs=[
                    "dl_dual_features",
                    "cohort_table",
                    "patient_splits",
                    "params:fusion.combined",
                    "params:heads.dl_prefix",
                ],
                outputs="combined_model_input",
                name="build_combined_model_input",
                tags="training",
            ),
            *(
                create_head_pipeline(model, f"{model}_model_input", HEAD_PARAMETER_BLOCKS[model])
                for model in ("dl_features", "combined")
            ),
        ]
    )
