"""Wiring of the ``dl_training`` pipeline: one template, instantiated per network.

The template (:func:`network_training_template`) has generic dataset names (``network``,
``training_history``, ...). :func:`create_pipeline` instantiates it in the namespaces
``dl_dual``, ``dl_longitudinal`` and ``dl_transverse``; the datasets used outside a namespace
are mapped to plain names (``dl_dual_network``, ``dl_dual_training_history``, ...) because Kedro
warns about dotted dataset names consumed outside their namespace. Each network reads the
shared recipe ``dl_training.recipe`` and its own block ``dl_training.models.<model>``.
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from clnm_kedro.pipelines.dl_training.nodes import (
    collect_training_metrics,
    log_network_to_mlflow,
    plot_training_curve,
    resolve_network_settings,
    train_network_on_training_centres,
)

# The networks: model name (namespace, parameter block, prefix of its datasets).
NETWORK_MODELS: tuple[str, ...] = ("dl_dual", "dl_longitudinal", "dl_transverse")
# Template outputs used outside the namespace, mapped to ``<model>_<name>``.
PUBLIC_OUTPUTS: tuple[str, ...] = (
    "network",
    "network_mlflow_model",
    "training_history",
    "training_summary",
    "training_metrics",
    "training_curve",
)


def network_training_template() -> Pipeline:
    """Train one network: check its settings, train, then record what the training did."""
    return Pipeline(
        [
            Node(
                resolve_network_settings,
                inputs=["params:recipe", "params:model_settings", "params:seed"],
                outputs="settings",
                name="resolve_network_settings",
                tags="training",
            ),
            Node(
                train_network_on_training_centres,
                inputs=["roi_crops", "patient_splits", "settings"],
                outputs=["network", "training_history", "training_summary"],
                name="train_network",
                tags="training",
            ),
            Node(
                collect_training_metrics,
                inputs=["training_history", "training_summary", "settings"],
                outputs="training_metrics",
                name="collect_training_metrics",
                tags="training",
            ),
            Node(
                plot_training_curve,
                inputs=["training_history", "training_summary", "settings"],
                outputs="training_curve",
                name="plot_training_curve",
                tags="training",
            ),
            Node(
                log_network_to_mlflow,
                inputs=["network", "settings"],
                outputs="network_mlflow_model",
                name="log_network_to_mlflow",
                tags="training",
            ),
        ]
    )


def create_network_pipeline(model: str) -> Pipeline:
    """The training template of one network, in the namespace ``model``.

    Returns
    -------
    Pipeline
        Inputs ``roi_crops``, ``patient_splits``; outputs ``<model>_network`` (the best
        checkpoint), ``<model>_network_mlflow_model``, ``<model>_training_history``,
        ``<model>_training_summary``, ``<model>_training_metrics`` and
        ``<model>_training_curve``.
    """
    return Pipeline(
        network_training_template(),
        namespace=model,
        inputs={"roi_crops", "patient_splits"},
        outputs={name: f"{model}_{name}" for name in PUBLIC_OUTPUTS},
        parameters={
            "params:recipe": "params:dl_training.recipe",
            "params:model_settings": f"params:dl_training.models.{model}",
            "params:seed": "params:seed",
        },
    )


def create_pipeline(**kwargs: Any) -> Pipeline:
    """The dual-channel network and the two single-view baselines, one recipe."""
    return sum((create_network_pipeline(model) for model in NETWORK_MODELS), Pipeline([]))
