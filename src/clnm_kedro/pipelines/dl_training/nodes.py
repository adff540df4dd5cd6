"""Nodes of the ``dl_training`` pipeline: one recipe, trained once per network.

The torch work is in :mod:`clnm_kedro.networks`; these nodes read the parameters, call it and
shape its results for the catalog (checkpoint, history, MLflow metrics, figure, MLflow model).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import mlflow
import mlflow.pytorch
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec
from torch import nn

from clnm_kedro.networks import (
    NETWORK_VIEWS,
    TrainingResult,
    config_for_kind,
    plot_training_curves,
    resolve_config,
    train_network,
)
from clnm_kedro.reporting.predictions import model_label

logger = logging.getLogger(__name__)

RECIPE_SECTIONS: frozenset[str] = frozenset({"network", "augment", "training"})
_MODEL_KEYS: frozenset[str] = frozenset({"model", "views"}) | RECIPE_SECTIONS
# Packages a network logged to MLflow needs (besides this project, which defines its class).
NETWORK_REQUIREMENTS: tuple[str, ...] = ("torch", "torchvision", "numpy")


@dataclass(frozen=True)
class NetworkSettings:
    """Validated settings of one network.

    Attributes
    ----------
    model
        The network's name in predictions and MLflow (``dl_dual``, ``dl_longitudinal``,
        ``dl_transverse``).
    config
        The resolved parameter block (``network``, ``augment``, ``training``; every default
        filled in, ``network.kind`` set from the model's ``views``).
    seed
        Seed of initialisation, batch order, augmentation and dropout.
    """

    model: str
    config: dict[str, Any]
    seed: int

    @property
    def n_views(self) -> int:
        """How many views the network reads (2 for the dual network)."""
        return len(NETWORK_VIEWS[self.config["network"]["kind"]])


def _merged_block(recipe: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe with the model's section overrides applied key by key."""
    block = copy.deepcopy(dict(recipe))
    for section in RECIPE_SECTIONS & set(overrides):
        value = overrides[section]
        if value is False or block.get(section) is False:  # `augment: false`
            block[section] = copy.deepcopy(value)
            continue
        if not isinstance(value, Mapping):
            raise ValueError(f"{section} overrides must be a mapping, got {value!r}")
        block[section] = {**(block.get(section) or {}), **copy.deepcopy(dict(value))}
    return block


def resolve_network_settings(
    recipe: dict[str, Any], model_settings: dict[str, Any], seed: int
) -> NetworkSettings:
    """Check the shared recipe and one network's block; nothing is trained.

    Parameters
    ----------
    recipe
        ``dl_training.recipe``: sections ``network``, ``augment``, ``training``.
    model_settings
        ``dl_training.models.<model>``: ``model`` (its name), ``views`` (``dual``,
        ``longitudinal`` or ``transverse``) and optional section overrides.
    seed
        The project seed.

    Raises
    ------
    ValueError
        Naming the offending parameter, e.g. ``dl_training.recipe.training.epochs``.
    """
    if not isinstance(model_settings, Mapping) or not isinstance(model_settings.get("model"), str):
        raise ValueError(
            "A network's parameter block (dl_training.models.<model>) needs 'model', its name "
            f"(e.g. dl_dual); got {model_settings!r}"
        )
    model = model_settings["model"]
    unknown = sorted(set(model_settings) - _MODEL_KEYS)
    if unknown:
        raise ValueError(
            f"Unknown keys {unknown} in dl_training.models.{model}; allowed: {sorted(_MODEL_KEYS)}"
        )
    views = model_settings.get("views")
    if views not in NETWORK_VIEWS:
        raise ValueError(
            f"dl_training.models.{model}.views must be one of {sorted(NETWORK_VIEWS)}, "
            f"got {views!r}"
        )
    if not isinstance(recipe, Mapping):
        raise ValueError(f"dl_training.recipe must be a mapping, got {recipe!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be a whole number; got {seed!r}")
    try:
        block = _merged_block(recipe, model_settings)
        config = resolve_config(config_for_kind(block, views))
    except ValueError as error:
        raise ValueError(
            f"Invalid parameters of the {model} network (dl_training): {error}"
        ) from error
    return NetworkSettings(model=model, config=config, seed=seed)


def train_network_on_training_centres(
    roi_crops: np.ndarray, patient_splits: pd.DataFrame, settings: NetworkSettings
) -> tuple[TrainingResult, pd.DataFrame, dict[str, Any]]:
    """Train one network on the training centres, early-stopped on their validation fold.

    External patients never reach training or validation.

    Returns
    -------
    tuple
        The training result (best weights, for the checkpoint); its per-epoch history
        ``epoch, train_loss, val_loss, val_auc, lr, seconds``; and a summary: the epoch kept,
        its validation AUC, the seed, and which patients were fitted on and which validated.
    """
    logger.info("Training %s.", model_label(settings.model))
    result = train_network(roi_crops, patient_splits, settings.config, settings.seed)
    summary = {
        "model": settings.model,
        "best_epoch": int(result.best_epoch),
        "best_val_auc": float(result.best_val_auc),
        "epochs_run": len(result.history),
        "seed": int(result.seed),
        "validation_fold": int(settings.config["training"]["validation_fold"]),
        "n_fit_patients": len(result.fit_patient_ids),
        "n_validation_patients": len(result.validation_patient_ids),
        "fit_patient_ids": list(result.fit_patient_ids),
        "validation_patient_ids": list(result.validation_patient_ids),
    }
    return result, result.history, summary


def collect_training_metrics(
    training_history: pd.DataFrame, training_summary: dict[str, Any], settings: NetworkSettings
) -> dict[str, list[dict[str, float | int]]]:
    """MLflow metrics named ``<split>.<model>.<metric>``.

    Per epoch (step = epoch): ``train.<model>.loss``, ``train.<model>.learning_rate``,
    ``val.<model>.loss`` and ``val.<model>.auc`` (the internal validation fold of the training
    centres). Once: ``val.<model>.best_auc`` and ``val.<model>.best_epoch`` (the epoch kept).
    """
    model = settings.model
    columns = {
        f"train.{model}.loss": "train_loss",
        f"train.{model}.learning_rate": "lr",
        f"val.{model}.loss": "val_loss",
        f"val.{model}.auc": "val_auc",
    }
    metrics: dict[str, list[dict[str, float | int]]] = {}
    for name, column in columns.items():
        rows = [
            {"value": float(value), "step": int(epoch)}
            for epoch, value in zip(
                training_history["epoch"], training_history[column], strict=True
            )
            if np.isfinite(value)
        ]
        if rows:
            metrics[name] = rows
    if np.isfinite(training_summary["best_val_auc"]):
        metrics[f"val.{model}.best_auc"] = [
            {"value": float(training_summary["best_val_auc"]), "step": 0}
        ]
    metrics[f"val.{model}.best_epoch"] = [{"value": int(training_summary["best_epoch"]), "step": 0}]
    return metrics


def plot_training_curve(
    training_history: pd.DataFrame, training_summary: dict[str, Any], settings: NetworkSettings
) -> Figure:
    """Loss and internal-validation AUC per epoch, the epoch whose weights were kept marked."""
    return plot_training_curves(
        training_history,
        best_epoch=int(training_summary["best_epoch"]),
        title=f"{model_label(settings.model)}: training on the training centres",
    )


def log_network_to_mlflow(network: nn.Module, settings: NetworkSettings) -> dict[str, Any]:
    """Log the trained network to the active MLflow run with the PyTorch flavour.

    The signature describes the input (float32 ``(batch, views, size, size)`` in [0, 1], the
    uint8 crops divided by 255) and the output (one CLNM logit per patient); no patient image
    is stored. Loading it needs this project installed (the network's class is defined here).
    Without an active MLflow run (a node called outside ``kedro run``, or tracking disabled)
    nothing is logged.

    Returns
    -------
    dict
        ``name``, ``logged`` and, when logged, ``model_uri`` and ``run_id``.
    """
    name = f"{settings.model}_network"
    if mlflow.active_run() is None:
        logger.info(
            "No active MLflow run: %s is not logged to MLflow.", model_label(settings.model)
        )
        return {"name": name, "logged": False}
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, settings.n_views, -1, -1))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1,))]),
    )
    info = mlflow.pytorch.log_model(
        network.cpu().eval(),
        name=name,
        # pickle (not MLflow's default torch.export format, which needs a real input example:
        # a patient's images would be stored with the model).
        serialization_format="pickle",
        signature=signature,
        # Pinned from this environment: faster than MLflow's import-tracing inference.
        pip_requirements=[f"{package}=={version(package)}" for package in NETWORK_REQUIREMENTS],
        metadata={
            "views": list(getattr(network, "view_names", ())),
            "input": "float32 (batch, views, size, size): uint8 ROI crops / 255",
            "output": "CLNM logit per patient (sigmoid gives the probability)",
        },
    )
    logger.info("%s logged to MLflow as %s.", model_label(settings.model), info.model_uri)
    return {"name": name, "logged": True, "model_uri": info.model_uri, "run_id": info.run_id}
