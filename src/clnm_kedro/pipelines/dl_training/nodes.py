"""Nodes of the ``dl_training`` pipeline: one recipe, cross-fitted K times per network.

The torch work is in :mod:`clnm_kedro.networks`; these nodes read the parameters, train one
fold network each, gather the K fold networks into a calibrated fold ensemble and shape the
results for the catalog (checkpoint, history, MLflow metrics, figure, MLflow model).
"""

from __future__ import annotations

import copy
import functools
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

from clnm_kedro.checks import whole_number
from clnm_kedro.networks import (
    NETWORK_VIEWS,
    TrainingResult,
    config_for_kind,
    fit_validation_indices,
    plot_training_curves,
    resolve_config,
    train_network,
)
from clnm_kedro.networks.cross_fitting import (
    EPOCH_CHOICES,
    FoldEnsemble,
    FoldEnsembleResult,
    build_ensemble_result,
    check_fold_count,
    fold_rows,
)
from clnm_kedro.reporting.not_drawn import not_drawn
from clnm_kedro.reporting.predictions import model_label

logger = logging.getLogger(__name__)

RECIPE_SECTIONS: frozenset[str] = frozenset({"network", "augment", "training"})
CROSS_FITTING_KEYS: frozenset[str] = frozenset({"n_folds", "epoch_choice"})
# Fold network k is seeded with seed + FOLD_SEED_STEP * k (its own initialisation and batches).
FOLD_SEED_STEP = 1009
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
        Seed of initialisation, batch order, augmentation and dropout (fold network ``k``:
        ``seed + FOLD_SEED_STEP * k``).
    n_folds
        K, the fold networks (``dl_training.cross_fitting.n_folds``).
    epoch_choice
        How a fold network picks its epoch without its held-out fold: ``last`` (fixed
        schedule) or ``inner_fold`` (early stopping on a fold of its own training part).
    """

    model: str
    config: dict[str, Any]
    seed: int
    n_folds: int = 1
    epoch_choice: str = "last"

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


def resolve_fold_count(cross_fitting: Mapping[str, Any] | None, split: Mapping[str, Any]) -> int:
    """K: ``dl_training.cross_fitting.n_folds``, ``null`` meaning ``split.n_folds``."""
    cross_fitting = dict(cross_fitting or {})
    unknown = sorted(set(cross_fitting) - CROSS_FITTING_KEYS)
    if unknown:
        raise ValueError(
            f"Unknown keys {unknown} in dl_training.cross_fitting; allowed: "
            f"{sorted(CROSS_FITTING_KEYS)}"
        )
    n_folds = cross_fitting.get("n_folds")
    if n_folds is None:
        n_folds = (split or {}).get("n_folds", 5)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 1:
        raise ValueError(
            f"dl_training.cross_fitting.n_folds must be null or a whole number >= 1, got "
            f"{n_folds!r}"
        )
    return n_folds


def resolve_network_settings(
    recipe: dict[str, Any],
    model_settings: dict[str, Any],
    seed: int,
    cross_fitting: dict[str, Any] | None = None,
    split: dict[str, Any] | None = None,
    *,
    built_folds: int | None = None,
) -> NetworkSettings:
    """Check the shared recipe, the cross-fitting block and one network's block; nothing is
    trained.

    ``built_folds`` is the number of fold-network nodes the pipeline was built with; a run
    whose parameters ask for another K stops here (K shapes the pipeline, so it is read from
    the configuration files when the pipeline is built, not from ``--params``).

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
    whole_number(seed, "seed")
    try:
        block = _merged_block(recipe, model_settings)
        config = resolve_config(config_for_kind(block, views))
    except ValueError as error:
        raise ValueError(
            f"Invalid parameters of the {model} network (dl_training): {error}"
        ) from error
    n_folds = resolve_fold_count(cross_fitting, split or {})
    if built_folds is not None and n_folds != built_folds:
        raise ValueError(
            f"dl_training.cross_fitting.n_folds resolves to {n_folds} but the pipeline was built "
            f"with {built_folds} fold networks per model. K shapes the pipeline (one node per "
            "fold network), so it is read from conf/base and conf/$KEDRO_ENV when the pipeline "
            "is built: set it there (and KEDRO_ENV=<env> for another environment), not with "
            "--params or --env alone"
        )
    epoch_choice = (cross_fitting or {}).get("epoch_choice", "last")
    if epoch_choice not in EPOCH_CHOICES:
        raise ValueError(
            f"dl_training.cross_fitting.epoch_choice must be one of {EPOCH_CHOICES}, got "
            f"{epoch_choice!r}"
        )
    return NetworkSettings(
        model=model, config=config, seed=seed, n_folds=n_folds, epoch_choice=epoch_choice
    )


def train_fold_network(
    roi_crops: np.ndarray, patient_splits: pd.DataFrame, settings: NetworkSettings, fold: int
) -> TrainingResult:
    """Train fold network ``fold`` of ``settings.n_folds``: never its held-out fold group.

    Its epoch is the schedule's last (``epoch_choice: last``) or the best on an inner fold of
    its own training part (``inner_fold``). External patients never reach training.
    """
    check_fold_count(patient_splits, settings.n_folds)
    rows = fold_rows(patient_splits, fold, settings.n_folds, settings.epoch_choice)
    if settings.n_folds == 1 and settings.epoch_choice == "inner_fold":
        # One network, early-stopped on training.validation_fold (the project before K folds).
        fit, validation = fit_validation_indices(
            patient_splits, int(settings.config["training"]["validation_fold"])
        )
        rows = (fit, validation, rows[2])
    logger.debug(  # train_network says what it trains; the step line says which fold
        "Training %s, fold network %d of %d.", model_label(settings.model), fold + 1,
        settings.n_folds,
    )
    return train_network(
        roi_crops,
        patient_splits,
        settings.config,
        settings.seed + FOLD_SEED_STEP * fold,
        rows=rows,
    )


def settings_node(built_folds: int) -> Any:
    """:func:`resolve_network_settings` checking K against the ``built_folds`` fold nodes."""
    function = functools.partial(resolve_network_settings, built_folds=built_folds)
    functools.update_wrapper(function, resolve_network_settings)
    return function


def fold_training_node(fold: int) -> Any:
    """:func:`train_fold_network` with ``fold`` fixed: the function of one fold's node
    (picklable, so ``ParallelRunner`` can run the folds in separate processes)."""
    function = functools.partial(train_fold_network, fold=fold)
    functools.update_wrapper(function, train_fold_network)
    return function


def assemble_fold_ensemble(
    roi_crops: np.ndarray,
    patient_splits: pd.DataFrame,
    settings: NetworkSettings,
    *fold_results: TrainingResult,
) -> tuple[FoldEnsembleResult, pd.DataFrame, dict[str, Any]]:
    """The K fold networks as one fold ensemble, calibrated on their out-of-fold outputs.

    Returns
    -------
    tuple
        The ensemble (K weights and the logistic calibration of the fused logit, fitted on the
        out-of-fold probabilities of the training centres; for the checkpoint); the history
        (mean over the folds per epoch, ``seconds`` summed); and a summary: per fold network
        the epoch kept, its seed and the patients it fitted on, validated on and held out; the
        calibration.
    """
    if len(fold_results) != settings.n_folds:
        raise ValueError(f"{len(fold_results)} fold networks for n_folds={settings.n_folds}")
    result, outputs = build_ensemble_result(fold_results, roi_crops, patient_splits)
    histories = pd.concat(
        [fold.history.assign(fold=k) for k, fold in enumerate(fold_results)], ignore_index=True
    )
    history = histories.groupby("epoch", as_index=False).agg(
        train_loss=("train_loss", "mean"),
        val_loss=("val_loss", "mean"),
        val_auc=("val_auc", "mean"),
        lr=("lr", "mean"),
        seconds=("seconds", "sum"),
    )
    summary = {
        "model": settings.model,
        "n_folds": settings.n_folds,
        "epoch_choice": settings.epoch_choice,
        "seed": int(settings.seed),
        "best_epoch": int(max(fold.best_epoch for fold in fold_results)),
        "best_val_auc": float(np.nanmean([fold.best_val_auc for fold in fold_results]))
        if any(np.isfinite(fold.best_val_auc) for fold in fold_results)
        else float("nan"),
        "epochs_run": int(history["epoch"].max()) if len(history) else 0,
        "outputs": list(outputs.names),
        "calibration": result.calibration.to_dict(),
        "n_out_of_fold_patients": int(outputs.out_of_fold.sum()),
        "folds": [
            {
                "fold": k,
                "seed": int(fold.seed),
                "epoch_kept": int(fold.best_epoch),
                "validation_auc": float(fold.best_val_auc),
                "n_fit_patients": len(fold.fit_patient_ids),
                "n_validation_patients": len(fold.validation_patient_ids),
                "n_held_out_patients": len(fold.held_out_patient_ids),
                "fit_patient_ids": list(fold.fit_patient_ids),
                "validation_patient_ids": list(fold.validation_patient_ids),
                "held_out_patient_ids": list(fold.held_out_patient_ids),
            }
            for k, fold in enumerate(fold_results)
        ],
    }
    logger.info(
        "%s: %d fold network(s); calibration of the out-of-fold fused logit: intercept %.2f, "
        "slope %.2f.",
        model_label(settings.model), settings.n_folds, result.calibration.intercept,
        result.calibration.slope,
    )
    return result, history, summary


def collect_training_metrics(
    training_history: pd.DataFrame, training_summary: dict[str, Any], settings: NetworkSettings
) -> dict[str, list[dict[str, float | int]]]:
    """MLflow metrics named ``<split>.<model>.<metric>``.

    Per epoch (step = epoch): ``train.<model>.loss``, ``train.<model>.learning_rate``,
    ``val.<model>.loss`` and ``val.<model>.auc`` (the internal validation fold of the training
    centres; mean over the fold networks, none with a fixed schedule). Once:
    ``val.<model>.best_auc`` and ``val.<model>.best_epoch`` (the latest epoch kept), and the
    calibration map fitted on the out-of-fold logits
    (``train_cv.<model>.calibration_map_intercept`` / ``_slope``).
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
    calibration = training_summary.get("calibration") or {}
    for key in ("intercept", "slope"):
        if key in calibration and training_summary.get("n_out_of_fold_patients"):
            metrics[f"train_cv.{model}.calibration_map_{key}"] = [
                {"value": float(calibration[key]), "step": 0}
            ]
    return metrics


def plot_training_curve(
    training_history: pd.DataFrame, training_summary: dict[str, Any], settings: NetworkSettings
) -> Figure:
    """Loss and internal-validation AUC per epoch, the epoch whose weights were kept marked
    (a figure that cannot be drawn says so and why, logged, instead of stopping the run)."""
    title = f"{model_label(settings.model)}: training on the training centres"
    try:
        return plot_training_curves(
            training_history, best_epoch=int(training_summary["best_epoch"]), title=title
        )
    except Exception as error:  # a figure is an extra: it never sinks the run
        return not_drawn(title, error)


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
            "output": (
                "CLNM logit per patient: the mean fused logit of the fold networks; the risk is "
                "expit(intercept + slope * logit) with the calibration below"
                if isinstance(network, FoldEnsemble)
                else "CLNM logit per patient (sigmoid gives the probability)"
            ),
            **(
                {"calibration": network.calibration.to_dict(), "n_folds": network.n_folds}
                if isinstance(network, FoldEnsemble)
                else {}
            ),
        },
    )
    logger.info("%s logged to MLflow as %s.", model_label(settings.model), info.model_uri)
    return {"name": name, "logged": True, "model_uri": info.model_uri, "run_id": info.run_id}
