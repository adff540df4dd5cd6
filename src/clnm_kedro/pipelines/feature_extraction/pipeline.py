"""Wiring of the ``feature_extraction`` pipeline: one template, instantiated per network.

In the namespace of each network (``dl_dual``, ``dl_longitudinal``, ``dl_transverse``) the
template reads ``<model>_network`` and writes ``<model>_features`` (04_feature) and
``<model>_probabilities`` (in memory); one node gathers the probabilities into
``dl_predictions`` (07_model_output).
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from clnm_kedro.pipelines.dl_training.pipeline import NETWORK_MODELS
from clnm_kedro.pipelines.feature_extraction.nodes import (
    gather_network_predictions,
    predict_network_probabilities,
    score_with_network,
)


def network_inference_template(with_features: bool = True) -> Pipeline:
    """DL features and probabilities of every patient from one trained network, in one pass
    (``with_features=False``: the probabilities only)."""
    inputs = ["network", "roi_crops", "patient_splits", "params:feature_extraction"]
    if not with_features:
        return Pipeline(
            [
                Node(
                    predict_network_probabilities,
                    inputs=inputs,
                    outputs="probabilities",
                    name="predict_network_probabilities",
                    tags="inference",
                )
            ]
        )
    return Pipeline(
        [
            Node(
                score_with_network,
                inputs=inputs,
                outputs=["features", "probabilities"],
                name="score_with_network",
                tags="inference",
            )
        ]
    )


def create_network_inference_pipeline(model: str) -> Pipeline:
    """The inference template of one network, in the namespace ``model``."""
    return Pipeline(
        network_inference_template(),
        namespace=model,
        inputs={
            "network": f"{model}_network",
            "roi_crops": "roi_crops",
            "patient_splits": "patient_splits",
        },
        outputs={"features": f"{model}_features", "probabilities": f"{model}_probabilities"},
        parameters={"params:feature_extraction": "params:feature_extraction"},
    )


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Features and probabilities of every patient from each network; ``dl_predictions``."""
    return Pipeline(
        [
            *(create_network_inference_pipeline(model) for model in NETWORK_MODELS),
            Node(
                gather_network_predictions,
                inputs={
                    "patient_splits": "patient_splits",
                    **{model: f"{model}_probabilities" for model in NETWORK_MODELS},
                },
                outputs="dl_predictions",
                name="gather_network_predictions",
                tags="inference",
            ),
        ]
    )
