"""Wiring of the ``dl_training`` pipeline: one template, instantiated per network.

The template (:func:`network_training_template`) has generic dataset names (``network``,
``training_history``, ...). :func:`create_pipeline` instantiates it in the namespace of each
network of :data:`clnm_kedro.registry.MODELS` (``dl_dual``, ``dl_longitudinal``,
``dl_transverse``); the datasets used outside a namespace
are mapped to plain names (``dl_dual_network``, ``dl_dual_training_history``, ...) because Kedro
warns about dotted dataset names consumed outside their namespace. Each network reads the
shared recipe ``dl_training.recipe`` and its own block ``dl_training.models.<model>``.

Cross-fitting: inside a network's namespace, each of the K fold networks is a node of its own
(``dl_dual.fold_0.train_fold_network`` ...), independent of the others and tagged
``side_by_side``: ``kedro run --runner clnm_kedro.runner.SideBySideRunner`` (``make run``)
trains them side by side in threads; ``kedro run --runner ParallelRunner``, or an orchestrator
running Kedro nodes as tasks, in processes or on several machines. One node gathers them into
the calibrated fold ensemble ``<model>_network``. K shapes the pipeline, so it is read from the
configuration files when the pipeline is built (:func:`configured_fold_count`); a run whose
parameters disagree stops before training.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from kedro.framework.project import settings
from kedro.pipeline import Node, Pipeline
from kedro.utils import find_kedro_project

from clnm_kedro.pipelines.dl_training.nodes import (
    assemble_fold_ensemble,
    collect_training_metrics,
    fold_training_node,
    log_network_to_mlflow,
    plot_training_curve,
    resolve_fold_count,
    settings_node,
)

# The networks (clnm_kedro.registry): model name = namespace, parameter block, dataset prefix.
from clnm_kedro.registry import NETWORK_MODELS
from clnm_kedro.runner import SIDE_BY_SIDE

logger = logging.getLogger(__name__)

# Template outputs used outside the namespace, mapped to ``<model>_<name>``.
PUBLIC_OUTPUTS: tuple[str, ...] = (
    "network",
    "network_mlflow_model",
    "training_history",
    "training_summary",
    "training_metrics",
    "training_curve",
)


def configured_fold_count(env: str | None = None) -> int:
    """K from the project's configuration (``conf/base`` + ``conf/<env>``, ``env`` defaulting
    to ``$KEDRO_ENV`` or ``local``), read when the pipeline is built.

    Outside a Kedro project (or when the configuration cannot be read) ``split.n_folds``'s
    default, 5.
    """
    project = find_kedro_project(Path.cwd())
    if project is None:
        return resolve_fold_count(None, {})
    with warnings.catch_warnings():  # the session's own loader reports configuration problems
        warnings.simplefilter("ignore")
        loader = settings.CONFIG_LOADER_CLASS(
            conf_source=str(Path(project) / settings.CONF_SOURCE),
            env=env or os.environ.get("KEDRO_ENV"),
            **settings.CONFIG_LOADER_ARGS,
        )
        parameters = loader["parameters"]
    cross_fitting = (parameters.get("dl_training") or {}).get("cross_fitting")
    return resolve_fold_count(cross_fitting, parameters.get("split") or {})


def network_training_template(n_folds: int) -> Pipeline:
    """Train one network model: check its settings, train K fold networks (one node each),
    gather them into the calibrated fold ensemble, then record what the training did."""
    folds = [f"fold_{k}_training" for k in range(n_folds)]
    return Pipeline(
        [
            Node(
                settings_node(n_folds),
                inputs=[
                    "params:recipe",
                    "params:model_settings",
                    "params:seed",
                    "params:cross_fitting",
                    "params:split",
                ],
                outputs="settings",
                name="resolve_network_settings",
                tags="training",
            ),
            *(
                Node(
                    fold_training_node(k),
                    inputs=["roi_crops", "patient_splits", "settings"],
                    outputs=folds[k],
                    name=f"fold_{k}.train_fold_network",
                    tags=["training", SIDE_BY_SIDE],
                )
                for k in range(n_folds)
            ),
            Node(
                assemble_fold_ensemble,
                inputs=["roi_crops", "patient_splits", "settings", *folds],
                outputs=["network", "training_history", "training_summary"],
                name="assemble_fold_ensemble",
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


def create_network_pipeline(model: str, n_folds: int) -> Pipeline:
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
        network_training_template(n_folds),
        namespace=model,
        inputs={"roi_crops", "patient_splits"},
        outputs={name: f"{model}_{name}" for name in PUBLIC_OUTPUTS},
        parameters={
            "params:recipe": "params:dl_training.recipe",
            "params:model_settings": f"params:dl_training.models.{model}",
            "params:seed": "params:seed",
            "params:cross_fitting": "params:dl_training.cross_fitting",
            "params:split": "params:split",
        },
    )


def create_pipeline(n_folds: int | None = None, **kwargs: Any) -> Pipeline:
    """The dual-channel network and the two single-view baselines, one recipe, each
    cross-fitted with ``n_folds`` fold networks (default: :func:`configured_fold_count`)."""
    if n_folds is None:
        n_folds = configured_fold_count()
    return sum(
        (create_network_pipeline(model, n_folds) for model in NETWORK_MODELS), Pipeline([])
    )
