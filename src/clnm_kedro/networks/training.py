"""Training recipe shared by the dual-view and the single-view networks.

One recipe for every network: AdamW, a linear warm-up then cosine schedule (or one-cycle),
class imbalance through ``pos_weight`` or a balanced sampler, ultrasound augmentation on the
training device, early stopping on the validation AUC of one training-centre fold, and the best
epoch's weights kept. External patients never enter: only training-centre rows are copied into
the tensors the network sees. :func:`train_network` runs it in named steps (rows, run
settings, data, the epochs, one epoch, one batch's loss). Its parameter block is checked in
``training_config.py``, the device and seeded torch state set up in ``training_setup.py``, and
a trained network is kept and reloaded by ``checkpoints.py``; all importable from here too.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm.auto import tqdm

from clnm_kedro.networks.architecture import (
    NETWORK_VIEWS,
    build_network,
)
from clnm_kedro.networks.augment import augment_batch
from clnm_kedro.networks.checkpoints import (
    CHECKPOINT_FORMAT,
    TrainingResult,
    load_checkpoint,
    model_from_state,
    save_checkpoint,
)
from clnm_kedro.networks.data import (
    BatchSource,
    batches_per_epoch,
    epoch_batches,
    fit_validation_indices,
    fits_on_device,
    to_model_input,
    validate_splits,
    view_tensor,
)
from clnm_kedro.networks.inference import batched_outputs
from clnm_kedro.networks.prefetch import prefetched
from clnm_kedro.networks.random_streams import (
    AUGMENT_STREAM,
    SHUFFLE_STREAM,
    initialised_network,
    random_streams,
)
from clnm_kedro.networks.training_config import (
    IMBALANCE,
    SCHEDULES,
    TRAINING_DEFAULTS,
    config_for_kind,
    default_config,
    resolve_config,
    training_settings,
)
from clnm_kedro.networks.training_setup import (
    RunSettings,
    cpu_state,
    lr_scheduler,
    reproducible,
    run_settings,
    select_device,
    switch_setting,
)

# Moved to training_config.py, training_setup.py and checkpoints.py; importable from here.
__all__ = [
    "CHECKPOINT_FORMAT",
    "HISTORY_COLUMNS",
    "IMBALANCE",
    "SCHEDULES",
    "TRAINING_DEFAULTS",
    "TrainingResult",
    "config_for_kind",
    "default_config",
    "load_checkpoint",
    "model_from_state",
    "plot_training_curves",
    "resolve_config",
    "save_checkpoint",
    "select_device",
    "train_network",
    "training_settings",
]

logger = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]
HISTORY_COLUMNS: tuple[str, ...] = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_auc",
    "lr",
    "seconds",
)
def train_network(
    crops: np.ndarray,
    splits: pd.DataFrame,
    config: Mapping[str, Any] | None,
    seed: int,
    *,
    device: str | torch.device | None = None,
    on_epoch_end: EpochCallback | None = None,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> TrainingResult:
    """Train one network (dual-view or single-view) with early stopping on internal validation.

    Parameters
    ----------
    crops
        uint8 ROI crops ``(N, 2, S, S)`` of every patient (axis 1: longitudinal, transverse).
    splits
        ``patient_splits``: row ``i`` describes ``crops[i]``. The network is fitted on the
        training-centre folds other than ``training.validation_fold``, which is the internal
        validation for early stopping. External patients are never used.
    config
        Parameter block with sections ``network``, ``augment``, ``training``.
    seed
        Seeds initialisation, batch order, augmentation and dropout; on the CPU two runs with
        one seed give identical weights.
    device
        Overrides ``training.device``.
    on_epoch_end
        Called after every epoch with ``(epoch, {"train_loss", "val_loss", "val_auc", "lr",
        "seconds"})``, e.g. to log metrics to MLflow.
    rows
        Fit, validation and held-out row indices (training-centre rows only), e.g. from
        :func:`clnm_kedro.networks.cross_fitting.fold_rows`; by default fold
        ``training.validation_fold`` validates and every other training fold is fitted on.
        With no validation rows the schedule runs to its end and the last epoch is kept (no
        validation passes); held-out rows are never read.

    Returns
    -------
    TrainingResult
        Best weights, resolved config, per-epoch history, best epoch and its validation AUC.
    """
    resolved = resolve_config(config)
    settings = resolved["training"]
    kind = resolved["network"]["kind"]
    validate_splits(crops, splits)
    fit_rows, validation_rows, held_rows = _training_rows(splits, settings, rows)
    run = run_settings(settings, device)
    data = _training_data(
        crops, splits, kind, fit_rows=fit_rows, validation_rows=validation_rows,
        settings=settings, run=run,
    )
    _log_start(
        resolved, crops, data, n_validation=validation_rows.size, n_held=held_rows.size,
        device=run.device,
    )
    with reproducible(run.device):
        best = _fit(resolved, data, run, seed, on_epoch_end)
    table = pd.DataFrame(best.history, columns=list(HISTORY_COLUMNS))
    best_auc = best.auc
    if data.validating:
        logger.info(
            "%s network: epoch %d kept (internal-validation AUC %.3f; %.0f s in all)",
            kind, best.epoch, best_auc, table["seconds"].sum(),
        )
    else:  # a fixed schedule: nothing to report beyond the step's own duration line
        best_auc = math.nan
        logger.debug(
            "%s network: last epoch %d kept (fixed schedule; %.0f s in all)",
            kind, best.epoch, table["seconds"].sum(),
        )
    patient_ids = splits["patient_id"].astype(str).to_numpy()
    return TrainingResult(
        state_dict=best.state,
        config=resolved,
        history=table,
        best_epoch=best.epoch,
        best_val_auc=best_auc,
        seed=int(seed),
        fit_patient_ids=patient_ids[fit_rows].tolist(),
        validation_patient_ids=patient_ids[validation_rows].tolist(),
        held_out_patient_ids=patient_ids[held_rows].tolist(),
    )


# --- the steps of train_network ------------------------------------------------------------------


def _training_rows(
    splits: pd.DataFrame,
    settings: Mapping[str, Any],
    rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit, validation and held-out rows: given (checked), or the validation fold's split."""
    if rows is None:
        fit_rows, validation_rows = fit_validation_indices(
            splits, int(settings["validation_fold"])
        )
        return fit_rows, validation_rows, np.zeros(0, dtype=np.int64)
    fit_rows, validation_rows, held_rows = (np.asarray(r, dtype=np.int64) for r in rows)
    _check_rows(splits, fit_rows, validation_rows, held_rows)
    return fit_rows, validation_rows, held_rows


@dataclass(frozen=True)
class _TrainingData:
    """The rows a network sees: positions ``[0, n_fit)`` are fitted on, the rest validate."""

    kind: str
    images: torch.Tensor
    labels: np.ndarray
    n_fit: int
    validation_images: torch.Tensor
    on_device: bool

    @property
    def validation_labels(self) -> np.ndarray:
        return self.labels[self.n_fit :]

    @property
    def validating(self) -> bool:
        return self.labels.size > self.n_fit

    @property
    def n_positive(self) -> float:
        return float(self.labels[: self.n_fit].sum())


def _training_data(
    crops: np.ndarray,
    splits: pd.DataFrame,
    kind: str,
    *,
    fit_rows: np.ndarray,
    validation_rows: np.ndarray,
    settings: Mapping[str, Any],
    run: RunSettings,
) -> _TrainingData:
    """Only training-centre rows are copied, as the network's views, where they will be read."""
    labels = pd.to_numeric(splits["clnm"]).to_numpy(dtype=np.float64)
    used_rows = np.concatenate([fit_rows, validation_rows])
    images = view_tensor(crops[used_rows], NETWORK_VIEWS[kind])
    n_fit = fit_rows.size
    on_device = run.on_cuda and switch_setting(
        settings["data_on_device"], fits_on_device(images.numel(), run.device), "data_on_device"
    )
    validation_images = images[n_fit:]
    if on_device:
        validation_images = validation_images.to(run.device)
    elif run.on_cuda:
        validation_images = validation_images.pin_memory()
    return _TrainingData(kind, images, labels[used_rows], n_fit, validation_images, on_device)


def _log_start(
    resolved: Mapping[str, Any],
    crops: np.ndarray,
    data: _TrainingData,
    *,
    n_validation: int,
    n_held: int,
    device: torch.device,
) -> None:
    epochs = int(resolved["training"]["epochs"])
    logger.info(
        "Training the %s network (%s backbone, %d px) on %d training-centre patients "
        "(%d with CLNM); %s; %d held-out patients never seen; device %s",
        data.kind, resolved["network"]["backbone"], crops.shape[-1], data.n_fit,
        int(data.n_positive),
        f"{n_validation} patients validate for early stopping" if data.validating
        else f"fixed schedule, the last of {epochs} epochs kept",
        n_held, device,
    )


@dataclass
class _Best:
    """The epoch kept so far (its weights on the CPU) and the history of every epoch."""

    state: dict[str, torch.Tensor]
    epoch: int = 0
    auc: float = -math.inf
    loss: float = math.inf
    history: list[dict[str, float]] = field(default_factory=list)


def _fit(
    resolved: Mapping[str, Any],
    data: _TrainingData,
    run: RunSettings,
    seed: int,
    on_epoch_end: EpochCallback | None,
) -> _Best:
    """The epochs, with early stopping on the validation AUC; initial weights, dropout, batch
    order and augmentation each drawn from a stream seeded from ``seed``."""
    settings = resolved["training"]
    kind, n_fit = data.kind, data.n_fit
    pos_weight = None
    if settings["imbalance"] == "pos_weight":
        pos_weight = torch.tensor([(n_fit - data.n_positive) / data.n_positive], device=run.device)
    batch_size = int(settings["batch_size"])
    epochs = int(settings["epochs"])
    patience = int(settings["early_stopping_patience"])
    first_kept = min(int(settings["min_epochs"]), epochs) if data.validating else epochs
    model = initialised_network(lambda: build_network(resolved), seed, run.device).to(run.device)
    if run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=float(settings["learning_rate"]),
        weight_decay=float(settings["weight_decay"]),
    )
    scheduler = lr_scheduler(optimizer, settings, batches_per_epoch(n_fit, batch_size))
    criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    view_weight = float(settings["view_loss_weight"]) if len(model.view_heads) else 0.0
    shuffle_generator = torch.Generator().manual_seed(seed + SHUFFLE_STREAM)
    augment_generator = torch.Generator(device=run.device).manual_seed(seed + AUGMENT_STREAM)
    source = BatchSource(
        data.images,
        data.labels,
        workers=0 if data.on_device else run.workers,
        pin_memory=run.on_cuda,
        device=run.device if data.on_device else None,
    )
    fit_positions = np.arange(n_fit)
    best = _Best(cpu_state(model))
    with random_streams(model, seed, run.device):
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            model.train()
            batches = epoch_batches(
                fit_positions,
                data.labels,
                batch_size,
                shuffle_generator,
                balanced=settings["imbalance"] == "balanced_sampler",
            )
            loss_sum = _train_epoch(
                model, source, batches, optimizer=optimizer, scheduler=scheduler,
                criterion=criterion, view_weight=view_weight, resolved=resolved,
                augment_generator=augment_generator, run=run,
                progress={
                    "desc": f"{kind} epoch {epoch}/{epochs}",
                    # the validation AUC of the epoch kept so far: how training is going
                    "postfix": (
                        {"best_val_auc": f"{best.auc:.3f} (epoch {best.epoch})"}
                        if best.epoch
                        else None
                    ),
                },
            )
            learning_rate = optimizer.param_groups[0]["lr"]

            val_loss, val_auc = math.nan, math.nan
            if data.validating:
                val_loss, val_auc = _validate(
                    model, data.validation_images, data.validation_labels, settings, amp=run.amp,
                    kind=kind, epoch=epoch,
                )
            if not math.isfinite(float(loss_sum)):
                raise RuntimeError(
                    f"Training the {kind} network diverged at epoch {epoch} (non-finite "
                    "loss); lower training.learning_rate"
                )
            metrics = {
                "train_loss": float(loss_sum) / n_fit,
                "val_loss": val_loss,
                "val_auc": val_auc,
                "lr": float(learning_rate),
                "seconds": time.perf_counter() - started,
            }
            best.history.append({"epoch": epoch, **metrics})
            better = not data.validating or (
                val_auc > best.auc or (val_auc == best.auc and val_loss < best.loss)
            )
            if epoch >= first_kept and better:
                best.state, best.epoch, best.auc, best.loss = (
                    cpu_state(model),
                    epoch,
                    val_auc,
                    val_loss,
                )
            logger.debug("%s epoch %d: %s", kind, epoch, metrics)
            if on_epoch_end is not None:
                on_epoch_end(epoch, dict(metrics))
            if data.validating and epoch >= first_kept and epoch - best.epoch >= patience:
                logger.info(
                    "%s network: no better validation AUC for %d epochs; stopped at epoch %d",
                    kind,
                    patience,
                    epoch,
                )
                break
    return best


def _train_epoch(
    model: nn.Module,
    source: BatchSource,
    batches: list,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    criterion: nn.Module,
    view_weight: float,
    resolved: Mapping[str, Any],
    augment_generator: torch.Generator,
    run: RunSettings,
    progress: Mapping[str, Any],
) -> torch.Tensor:
    """One pass over the fitted rows, a step per batch; the summed loss (on the device).

    On the CPU the next batch is gathered and augmented on a second core while this one
    trains (:func:`~clnm_kedro.networks.prefetch.prefetched`; the same numbers)."""
    loss_sum = torch.zeros((), device=run.device)
    inputs = (
        (_augmented(images, resolved, augment_generator, run), labels)
        for images, labels in source.iterate(batches)
    )
    if run.device.type == "cpu":
        inputs = prefetched(inputs)
    for x, batch_labels in tqdm(
        inputs,
        total=len(batches),
        unit="batch",
        leave=False,
        # None: only on a terminal
        disable=None if resolved["training"]["progress_bar"] else True,
        **progress,
    ):
        loss = _step_loss(model, criterion, view_weight, x=x, batch_labels=batch_labels, run=run)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach() * batch_labels.numel()
    return loss_sum


def _augmented(
    batch_images: torch.Tensor,
    resolved: Mapping[str, Any],
    augment_generator: torch.Generator,
    run: RunSettings,
) -> torch.Tensor:
    """A uint8 batch as the network's augmented float input on the training device."""
    return augment_batch(to_model_input(batch_images, run.device), resolved, augment_generator)


def _step_loss(
    model: nn.Module,
    criterion: nn.Module,
    view_weight: float,
    *,
    x: torch.Tensor,
    batch_labels: torch.Tensor,
    run: RunSettings,
) -> torch.Tensor:
    """One batch's loss: the fused logit and (weighted) each view's own, on augmented views."""
    y = batch_labels.to(run.device, non_blocking=True)
    with torch.autocast(run.device.type, torch.bfloat16, enabled=run.amp):
        if view_weight > 0:
            logits, view_logits = model(x, with_view_logits=True)
        else:
            logits = model(x)
    loss = criterion(logits.float(), y)
    if view_weight > 0:
        view_losses = [criterion(v.float(), y) for v in view_logits.unbind(dim=1)]
        loss = loss + view_weight * torch.stack(view_losses).mean()
    return loss


def _check_rows(
    splits: pd.DataFrame, fit: np.ndarray, validation: np.ndarray, held: np.ndarray
) -> None:
    """Given rows: training-centre only, disjoint, something to fit on."""
    train = splits["split"].eq("train").to_numpy()
    every = np.concatenate([fit, validation, held])
    if every.size and (every.min() < 0 or every.max() >= len(splits)):
        raise ValueError("Row indices outside patient_splits")
    if not train[every].all():
        raise RuntimeError(
            "External patient(s) reached training, validation or the held-out fold: "
            f"{splits['patient_id'].iloc[every[~train[every]]].tolist()[:10]}"
        )
    if np.unique(every).size != every.size:
        raise ValueError("Fit, validation and held-out rows overlap")
    if fit.size < 2:
        raise ValueError(f"Only {fit.size} patient(s) to fit on")


def _validate(
    model: nn.Module,
    images: torch.Tensor,
    labels: np.ndarray,
    settings: Mapping[str, Any],
    *,
    amp: bool,
    kind: str,
    epoch: int,
) -> tuple[float, float]:
    """Validation loss and AUC of one epoch."""
    logits = batched_outputs(model, images, model, int(settings["eval_batch_size"]), amp).double()
    if not torch.isfinite(logits).all():
        raise RuntimeError(
            f"Training the {kind} network diverged at epoch {epoch} (non-finite "
            "outputs); lower training.learning_rate"
        )
    loss = float(
        nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(labels))
    )
    auc = float(roc_auc_score(labels, logits.numpy())) if np.unique(labels).size == 2 else math.nan
    return loss, auc


def plot_training_curves(
    history: pd.DataFrame, best_epoch: int | None = None, title: str | None = None
) -> Figure:
    """Loss (training, validation) and validation AUC per epoch, the kept epoch marked.

    Parameters
    ----------
    history
        ``TrainingResult.history``.
    best_epoch
        Epoch to mark; by default the highest validation AUC (ties: lower validation loss).
    title
        Figure title.
    """
    missing = [column for column in HISTORY_COLUMNS if column not in history.columns]
    if missing:
        raise ValueError(f"Training history lacks column(s) {missing}")
    if best_epoch is None and len(history):
        ranked = history.sort_values(["val_auc", "val_loss"], ascending=[False, True])
        best_epoch = int(ranked["epoch"].iloc[0])
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    loss_axes, auc_axes = figure.subplots(1, 2)
    loss_axes.plot(history["epoch"], history["train_loss"], marker="o", ms=3, label="training")
    loss_axes.plot(history["epoch"], history["val_loss"], marker="o", ms=3, label="validation")
    loss_axes.set(xlabel="epoch", ylabel="binary cross-entropy", title="Loss")
    auc_axes.plot(history["epoch"], history["val_auc"], marker="o", ms=3, color="tab:green")
    auc_axes.axhline(0.5, color="grey", lw=0.8, ls=":")
    auc_axes.set(xlabel="epoch", ylabel="AUC", title="Internal validation AUC", ylim=(0, 1))
    if best_epoch is not None:
        for axes in (loss_axes, auc_axes):
            axes.axvline(best_epoch, color="tab:red", ls="--", lw=1, label=f"kept: {best_epoch}")
    loss_axes.legend(frameon=False)
    auc_axes.legend(frameon=False, loc="lower right")
    if title:
        figure.suptitle(title)
    return figure
