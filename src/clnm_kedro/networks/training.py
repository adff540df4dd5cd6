"""Training recipe shared by the dual-view and the single-view networks, and checkpoints.

One recipe for every network: AdamW, a linear warm-up then cosine schedule (or one-cycle),
class imbalance through ``pos_weight`` or a balanced sampler, ultrasound augmentation on the
training device, early stopping on the validation AUC of one training-centre fold, and the best
epoch's weights kept. External patients never enter: only training-centre rows are copied into
the tensors the network sees.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm.auto import tqdm

from clnm_kedro.networks.architecture import (
    NETWORK_DEFAULTS,
    NETWORK_VIEWS,
    UltrasoundNetwork,
    build_network,
    network_settings,
)
from clnm_kedro.networks.augment import AUGMENT_DEFAULTS, augment_batch, augment_settings
from clnm_kedro.networks.cpu_numerics import thread_independent_numerics
from clnm_kedro.networks.data import (
    BatchSource,
    batches_per_epoch,
    config_section,
    default_loader_workers,
    epoch_batches,
    fit_validation_indices,
    fits_on_device,
    to_model_input,
    validate_splits,
    view_tensor,
)
from clnm_kedro.networks.inference import batched_outputs, use_bf16

logger = logging.getLogger(__name__)

SCHEDULES: tuple[str, ...] = ("warmup_cosine", "one_cycle")
IMBALANCE: tuple[str, ...] = ("pos_weight", "balanced_sampler", "none")
HISTORY_COLUMNS: tuple[str, ...] = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_auc",
    "lr",
    "seconds",
)
CHECKPOINT_FORMAT = "clnm_kedro.network/1"

TRAINING_DEFAULTS: dict[str, Any] = {
    "validation_fold": 0,  # training-centre fold used for early stopping
    "epochs": 30,
    "batch_size": 32,
    "learning_rate": 0.002,
    "weight_decay": 0.01,
    "schedule": "warmup_cosine",  # warmup_cosine | one_cycle
    "warmup_epochs": 2,
    "min_lr_ratio": 0.01,  # cosine floor, fraction of learning_rate
    "imbalance": "pos_weight",  # pos_weight | balanced_sampler | none
    "view_loss_weight": 0.5,  # dual network: weight of the mean loss of each view's own
    #                           classifier (deep supervision; 0 = fused loss only)
    "early_stopping_patience": 8,  # epochs without a better validation AUC
    "min_epochs": 10,  # no checkpoint kept and no stop before this epoch (AUC of a few dozen
    #                    validation patients is noisy; an untrained network can look best)
    "eval_batch_size": 256,
    "device": "auto",  # auto (cuda if available, else cpu) | cpu | cuda | cuda:1 ...
    "mixed_precision": "auto",  # auto (bf16 on CUDA) | true | false
    "channels_last": "auto",  # auto (on CUDA) | true | false
    "data_on_device": "auto",  # auto (CUDA: crops copied to the GPU when they fit) | bool
    "loader_workers": "auto",  # auto (CUDA: spare cores, at most 8; CPU: 0) | a number
    "progress_bar": True,
}

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainingResult:
    """What :func:`train_network` returns.

    Attributes
    ----------
    state_dict
        Weights of the best epoch (CPU tensors).
    config
        The resolved parameter block (every section, defaults filled in).
    history
        One row per epoch: ``epoch, train_loss, val_loss, val_auc, lr, seconds``
        (``train_loss`` is the objective: the fused loss plus the weighted view losses).
    best_epoch, best_val_auc
        The epoch whose weights were kept and its validation AUC.
    seed
        The seed of the run.
    fit_patient_ids, validation_patient_ids, held_out_patient_ids
        Patients the network was fitted on, the internal validation patients (none with a
        fixed schedule), and the training-centre patients it never saw (cross-fitting).
    """

    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]
    history: pd.DataFrame
    best_epoch: int
    best_val_auc: float
    seed: int = 0
    fit_patient_ids: list[str] = field(default_factory=list)
    validation_patient_ids: list[str] = field(default_factory=list)
    held_out_patient_ids: list[str] = field(default_factory=list)

    def network(self, device: str | torch.device = "cpu") -> UltrasoundNetwork:
        """The trained network with the best weights, in eval mode."""
        return model_from_state(self.state_dict, self.config, device)


def training_settings(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``training`` section merged over :data:`TRAINING_DEFAULTS`, checked."""
    settings = config_section(config, "training", TRAINING_DEFAULTS)
    if settings["schedule"] not in SCHEDULES:
        raise ValueError(f"training.schedule={settings['schedule']!r} is not one of {SCHEDULES}")
    if settings["imbalance"] not in IMBALANCE:
        raise ValueError(f"training.imbalance={settings['imbalance']!r} is not one of {IMBALANCE}")
    for key in ("epochs", "batch_size", "eval_batch_size", "early_stopping_patience", "min_epochs"):
        if int(settings[key]) < 1:
            raise ValueError(f"training.{key} must be >= 1, got {settings[key]}")
    if int(settings["batch_size"]) < 2:
        raise ValueError("training.batch_size must be >= 2 (batch normalisation)")
    if float(settings["view_loss_weight"]) < 0:
        raise ValueError(
            f"training.view_loss_weight must be >= 0, got {settings['view_loss_weight']}"
        )
    if float(settings["learning_rate"]) <= 0:
        raise ValueError(f"training.learning_rate must be > 0, got {settings['learning_rate']}")
    return settings


def resolve_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The whole parameter block with defaults filled in and every value checked.

    Parameters
    ----------
    config
        Mapping with optional sections ``network``, ``augment`` (or ``augment: false``) and
        ``training``; an unknown section or key raises ``ValueError``.

    Returns
    -------
    dict
        Plain dict ``{"network": ..., "augment": ..., "training": ...}``.
    """
    config = dict(config or {})
    unknown = sorted(set(config) - {"network", "augment", "training"})
    if unknown:
        raise ValueError(
            f"Unknown network parameter section(s) {unknown}; known: network, augment, training"
        )
    return {
        "network": network_settings(config),
        "augment": augment_settings(config),
        "training": training_settings(config),
    }


def default_config() -> dict[str, Any]:
    """A copy of every default (the parameter block with nothing overridden)."""
    return copy.deepcopy(
        {"network": NETWORK_DEFAULTS, "augment": AUGMENT_DEFAULTS, "training": TRAINING_DEFAULTS}
    )


def config_for_kind(config: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    """The parameter block ``config`` with ``network.kind`` set (one recipe, three networks)."""
    if kind not in NETWORK_VIEWS:
        raise ValueError(f"network kind {kind!r} is not one of {sorted(NETWORK_VIEWS)}")
    block = copy.deepcopy(dict(config or {}))
    block["network"] = {**(block.get("network") or {}), "kind": kind}
    return block


def select_device(requested: str | torch.device | None = None) -> torch.device:
    """``cuda`` when available and nothing else is asked for, else ``cpu``."""
    if requested is None or str(requested) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"training.device={requested!r} but no CUDA device is available")
    return device


def _switch(value: Any, auto: bool, name: str) -> bool:
    if value == "auto":
        return auto
    if isinstance(value, bool):
        return value
    raise ValueError(f"training.{name} must be auto, true or false, got {value!r}")


@contextmanager
def _reproducible(device: torch.device, seed: int) -> Iterator[None]:
    """Seed torch inside a forked RNG state; on the CPU also force deterministic algorithms,
    with one thread and oneDNN off (:func:`thread_independent_numerics`)."""
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill_memory = torch.utils.deterministic.fill_uninitialized_memory
    benchmark = torch.backends.cudnn.benchmark
    with torch.random.fork_rng(devices=cuda_devices), thread_independent_numerics(device):
        torch.manual_seed(seed)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True)
            # Filling fresh memory with NaN is a debugging aid that doubles the CPU cost of a
            # step; every kernel used here writes all of its output.
            torch.utils.deterministic.fill_uninitialized_memory = False
        else:
            torch.backends.cudnn.benchmark = True
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.utils.deterministic.fill_uninitialized_memory = fill_memory
            torch.backends.cudnn.benchmark = benchmark


def _scheduler(
    optimizer: torch.optim.Optimizer, settings: Mapping[str, Any], steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    total = int(settings["epochs"]) * steps_per_epoch
    warmup = min(total - 1, int(settings["warmup_epochs"]) * steps_per_epoch)
    if settings["schedule"] == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=float(settings["learning_rate"]),
            total_steps=total,
            pct_start=max(warmup, 1) / total,
        )
    floor = float(settings["min_lr_ratio"])

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        key: value.detach().to("cpu", copy=True).contiguous()
        for key, value in model.state_dict().items()
    }


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
    if rows is None:
        fit_rows, validation_rows = fit_validation_indices(
            splits, int(settings["validation_fold"])
        )
        held_rows = np.zeros(0, dtype=np.int64)
    else:
        fit_rows, validation_rows, held_rows = (np.asarray(r, dtype=np.int64) for r in rows)
        _check_rows(splits, fit_rows, validation_rows, held_rows)
    validating = validation_rows.size > 0
    torch_device = select_device(device if device is not None else settings["device"])
    on_cuda = torch_device.type == "cuda"
    amp = _switch(settings["mixed_precision"], use_bf16(torch_device), "mixed_precision")
    channels_last = _switch(settings["channels_last"], on_cuda, "channels_last")
    workers = settings["loader_workers"]
    workers = (default_loader_workers() if on_cuda else 0) if workers == "auto" else int(workers)

    # Only training-centre rows are copied: positions [0, n_fit) are fitted on, the rest validate.
    labels = pd.to_numeric(splits["clnm"]).to_numpy(dtype=np.float64)
    used_rows = np.concatenate([fit_rows, validation_rows])
    images = view_tensor(crops[used_rows], NETWORK_VIEWS[kind])
    used_labels = labels[used_rows]
    n_fit = fit_rows.size
    fit_positions = np.arange(n_fit)
    validation_labels = used_labels[n_fit:]
    on_device = on_cuda and _switch(
        settings["data_on_device"], fits_on_device(images.numel(), torch_device), "data_on_device"
    )
    validation_images = images[n_fit:]
    if on_device:
        validation_images = validation_images.to(torch_device)
    elif on_cuda:
        validation_images = validation_images.pin_memory()

    n_positive = float(used_labels[:n_fit].sum())
    balanced = settings["imbalance"] == "balanced_sampler"
    pos_weight = None
    if settings["imbalance"] == "pos_weight":
        pos_weight = torch.tensor([(n_fit - n_positive) / n_positive], device=torch_device)
    batch_size = int(settings["batch_size"])
    steps_per_epoch = batches_per_epoch(n_fit, batch_size)
    epochs = int(settings["epochs"])
    patience = int(settings["early_stopping_patience"])
    first_kept = min(int(settings["min_epochs"]), epochs) if validating else epochs

    logger.info(
        "Training the %s network (%s backbone, %d px) on %d training-centre patients "
        "(%d with CLNM); %s; %d held-out patients never seen; device %s",
        kind, resolved["network"]["backbone"], crops.shape[-1], n_fit, int(n_positive),
        f"{validation_rows.size} patients validate for early stopping" if validating
        else f"fixed schedule, the last of {epochs} epochs kept",
        held_rows.size, torch_device,
    )

    history: list[dict[str, float]] = []
    with _reproducible(torch_device, seed):
        model = build_network(resolved).to(torch_device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=float(settings["learning_rate"]),
            weight_decay=float(settings["weight_decay"]),
        )
        scheduler = _scheduler(optimizer, settings, steps_per_epoch)
        criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        view_weight = float(settings["view_loss_weight"]) if len(model.view_heads) else 0.0
        shuffle_generator = torch.Generator().manual_seed(seed)
        augment_generator = torch.Generator(device=torch_device).manual_seed(seed + 1)
        source = BatchSource(
            images,
            used_labels,
            workers=0 if on_device else workers,
            pin_memory=on_cuda,
            device=torch_device if on_device else None,
        )

        best_state = _cpu_state(model)
        best_epoch, best_auc, best_loss = 0, -math.inf, math.inf
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            model.train()
            batches = epoch_batches(
                fit_positions, used_labels, batch_size, shuffle_generator, balanced=balanced
            )
            loss_sum = torch.zeros((), device=torch_device)
            for batch_images, batch_labels in tqdm(
                source.iterate(batches),
                total=len(batches),
                desc=f"{kind} epoch {epoch}/{epochs}",
                unit="batch",
                leave=False,
                disable=None if settings["progress_bar"] else True,  # None: only on a terminal
                # the validation AUC of the epoch kept so far: how training is going
                postfix=(
                    {"best_val_auc": f"{best_auc:.3f} (epoch {best_epoch})"} if best_epoch else None
                ),
            ):
                x = to_model_input(batch_images, torch_device)
                x = augment_batch(x, resolved, augment_generator)
                y = batch_labels.to(torch_device, non_blocking=True)
                with torch.autocast(torch_device.type, torch.bfloat16, enabled=amp):
                    if view_weight > 0:
                        logits, view_logits = model(x, with_view_logits=True)
                    else:
                        logits = model(x)
                loss = criterion(logits.float(), y)
                if view_weight > 0:
                    view_losses = [criterion(v.float(), y) for v in view_logits.unbind(dim=1)]
                    loss = loss + view_weight * torch.stack(view_losses).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach() * y.numel()
            learning_rate = optimizer.param_groups[0]["lr"]

            val_loss, val_auc = math.nan, math.nan
            if validating:
                val_loss, val_auc = _validate(
                    model, validation_images, validation_labels, settings, amp=amp, kind=kind,
                    epoch=epoch,
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
            history.append({"epoch": epoch, **metrics})
            better = not validating or (
                val_auc > best_auc or (val_auc == best_auc and val_loss < best_loss)
            )
            if epoch >= first_kept and better:
                best_state, best_epoch, best_auc, best_loss = (
                    _cpu_state(model),
                    epoch,
                    val_auc,
                    val_loss,
                )
            logger.debug("%s epoch %d: %s", kind, epoch, metrics)
            if on_epoch_end is not None:
                on_epoch_end(epoch, dict(metrics))
            if validating and epoch >= first_kept and epoch - best_epoch >= patience:
                logger.info(
                    "%s network: no better validation AUC for %d epochs; stopped at epoch %d",
                    kind,
                    patience,
                    epoch,
                )
                break

    table = pd.DataFrame(history, columns=list(HISTORY_COLUMNS))
    if validating:
        logger.info(
            "%s network: epoch %d kept (internal-validation AUC %.3f; %.0f s in all)",
            kind, best_epoch, best_auc, table["seconds"].sum(),
        )
    else:  # a fixed schedule: nothing to report beyond the step's own duration line
        best_auc = math.nan
        logger.debug(
            "%s network: last epoch %d kept (fixed schedule; %.0f s in all)",
            kind, best_epoch, table["seconds"].sum(),
        )
    patient_ids = splits["patient_id"].astype(str).to_numpy()
    return TrainingResult(
        state_dict=best_state,
        config=resolved,
        history=table,
        best_epoch=best_epoch,
        best_val_auc=best_auc,
        seed=int(seed),
        fit_patient_ids=patient_ids[fit_rows].tolist(),
        validation_patient_ids=patient_ids[validation_rows].tolist(),
        held_out_patient_ids=patient_ids[held_rows].tolist(),
    )


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


def model_from_state(
    state_dict: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    device: str | torch.device = "cpu",
) -> UltrasoundNetwork:
    """Rebuild a trained network from its weights and parameter block (eval mode).

    Pretrained-weight settings are ignored: the weights come from ``state_dict``, so nothing is
    downloaded. A dual network saved before it had per-view classifiers (``view_heads``, used
    only in training) loads too: they are the only weights allowed to be missing.
    """
    resolved = resolve_config(config)
    resolved["network"]["pretrained"] = None
    model = build_network(resolved)
    result = model.load_state_dict(state_dict, strict=False)
    missing = [key for key in result.missing_keys if not key.startswith("view_heads.")]
    if missing or result.unexpected_keys:
        raise ValueError(
            "The saved weights do not fit the network their settings describe: missing "
            f"{missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    # The per-view classifiers are outputs only when they were trained (and saved).
    model.trained_view_heads = (
        bool(len(model.view_heads))
        and float(resolved["training"]["view_loss_weight"]) > 0
        and not any(key.startswith("view_heads.") for key in result.missing_keys)
    )
    return model.to(device).eval()


def save_checkpoint(result: TrainingResult, path: str | Path) -> None:
    """Write the best weights, config and history to one torch file (loadable weights-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": result.state_dict,
        "config": copy.deepcopy(result.config),
        "seed": int(result.seed),
        "best_epoch": int(result.best_epoch),
        "best_val_auc": float(result.best_val_auc),
        "history": {
            column: result.history[column].astype(float).tolist()
            for column in result.history.columns
        },
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[UltrasoundNetwork, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    tuple
        The network (eval mode, on ``device``) and its resolved parameter block.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Network checkpoint {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a clnm_kedro network checkpoint ({CHECKPOINT_FORMAT})")
    config = payload["config"]
    return model_from_state(payload["state_dict"], config, device), config


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
