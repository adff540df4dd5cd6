"""Wiring of the ``feature_extraction`` pipeline: one template, instantiated per network.

In the namespace of each network of :mod:`clnm_kedro.registry` (``dl_dual``, ...) the
template reads ``<model>_network`` (the fold ensemble) and writes ``<model>_features``
(04_feature: the out-of-fold logits of the fused and per-view classifiers for training
patients, the ensemble's for the others) and ``<model>_probabilities`` (in memory, calibrated);
one node gathers the probabilities into ``dl_predictions`` (07_model_output: ``train``,
``train_cv`` and ``external`` rows).
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from clnm_kedro.pipelines.feature_extraction.nodes import (
    gather_network_predictions,
    predict_network_probabilities,
    score_new_patients,
    score_with_network,
)
from clnm_kedro.registry import NETWORK_MODELS


def network_inference_template(with_features: bool = True, out_of_fold: bool = True) -> Pipeline:
    """DL features and probabilities of every patient from one network model's fold ensemble
    (``with_features=False``: the probabilities only). ``out_of_fold``: training patients are
    scored by the fold network that did not see them (the training run); otherwise everyone by
    the ensemble (new patients, ``inference``)."""
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
                score_with_network if out_of_fold else score_new_patients,
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
