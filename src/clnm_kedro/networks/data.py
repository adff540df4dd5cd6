"""Inputs of the networks: checks, the internal validation split, parameter sections, batches.

The cached ROI crops are a uint8 array ``(N, 2, S, S)`` (axis 1: 0 = longitudinal,
1 = transverse); row ``i`` of ``patient_splits`` describes crop ``i``. Batches stay uint8 until
they reach the training device, where :func:`to_model_input` turns them into floats in [0, 1].
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from clnm_kedro.registry import VIEWS as VIEW_NAMES

SPLIT_COLUMNS: tuple[str, ...] = ("patient_id", "center", "clnm", "split", "fold")
SPLIT_VALUES: frozenset[str] = frozenset({"train", "external"})


def config_section(
    config: Mapping[str, Any] | None, name: str, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """Return one parameter section merged over its defaults.

    Parameters
    ----------
    config
        The whole network parameter block (sections ``network``, ``augment``, ``training``).
    name
        The section to read.
    defaults
        Its default values; a key not among them is a typo and raises.

    Returns
    -------
    dict
        A fresh dict holding every key of ``defaults``.
    """
    section = (config or {}).get(name) or {}
    if not isinstance(section, Mapping):
        raise ValueError(f"Parameter section '{name}' must be a mapping, got {section!r}")
    unknown = sorted(set(section) - set(defaults))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {unknown} in section '{name}'; known: {sorted(defaults)}"
        )
    merged = copy.deepcopy(dict(defaults))
    merged.update(copy.deepcopy(dict(section)))
    return merged


def validate_crops(crops: np.ndarray) -> None:
    """Check that ``crops`` is the cached uint8 array ``(N, 2, S, S)``."""
    if not isinstance(crops, np.ndarray):
        raise TypeError(f"roi_crops must be a numpy array, got {type(crops).__name__}")
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1] != len(VIEW_NAMES):
        raise ValueError(
            "roi_crops must be uint8 with shape (patients, 2 views, size, size); "
            f"got {crops.dtype} {crops.shape}"
        )
    if crops.shape[2] != crops.shape[3]:
        raise ValueError(f"roi_crops must be square crops; got {crops.shape[2]}x{crops.shape[3]}")


def validate_splits(crops: np.ndarray, splits: pd.DataFrame) -> None:
    """Check ``patient_splits`` against the crops (one row per crop, valid split and fold)."""
    validate_crops(crops)
    missing = [column for column in SPLIT_COLUMNS if column not in splits.columns]
    if missing:
        raise ValueError(f"patient_splits lacks column(s) {missing}")
    if len(splits) != len(crops):
        raise ValueError(
            f"patient_splits has {len(splits)} rows but roi_crops holds {len(crops)} patients; "
            "row i of patient_splits must describe roi_crops[i]"
        )
    duplicated = splits.loc[splits["patient_id"].duplicated(), "patient_id"].tolist()
    if duplicated:
        raise ValueError(f"patient_splits lists patient(s) more than once: {duplicated[:10]}")
    bad_split = splits.loc[~splits["split"].isin(SPLIT_VALUES), "patient_id"].tolist()
    if bad_split:
        raise ValueError(
            f"patient_splits.split must be 'train' or 'external'; patient(s) {bad_split[:10]}"
        )
    train = splits["split"].eq("train").to_numpy()
    folds = pd.to_numeric(splits["fold"], errors="coerce").to_numpy()
    bad_fold = splits.loc[train & ~(folds >= 0), "patient_id"].tolist()
    if bad_fold:
        raise ValueError(
            f"training-centre patient(s) {bad_fold[:10]} have no cross-validation fold (fold < 0)"
        )
    labels = pd.to_numeric(splits["clnm"], errors="coerce").to_numpy()
    bad_label = splits.loc[train & ~np.isin(labels, (0, 1)), "patient_id"].tolist()
    if bad_label:
        raise ValueError(
            f"training-centre patient(s) {bad_label[:10]} have no CLNM label 0/1 (column clnm)"
        )


def fit_validation_indices(
    splits: pd.DataFrame, validation_fold: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows the network is fitted on, and the internal validation rows for early stopping.

    Both come from the training centres only: validation is the fold ``validation_fold``,
    fitting uses every other training-centre fold. External patients are never returned.

    Parameters
    ----------
    splits
        ``patient_splits`` (columns ``patient_id, clnm, split, fold``).
    validation_fold
        The training-centre fold held out for early stopping.

    Returns
    -------
    tuple of np.ndarray
        Row indices (int64, ascending) to fit on and to validate on.
    """
    train = splits["split"].eq("train").to_numpy()
    folds = pd.to_numeric(splits["fold"], errors="coerce").to_numpy()
    available = sorted({int(fold) for fold in folds[train]})
    if validation_fold not in available:
        raise ValueError(
            f"training.validation_fold={validation_fold} is not a training-centre fold; "
            f"folds present: {available}"
        )
    fit = np.flatnonzero(train & (folds != validation_fold)).astype(np.int64)
    validation = np.flatnonzero(train & (folds == validation_fold)).astype(np.int64)
    external = np.flatnonzero(splits["split"].eq("external").to_numpy())
    leaked = np.intersect1d(np.concatenate([fit, validation]), external)
    if leaked.size:  # cannot happen with the masks above; kept as a guard against edits
        raise RuntimeError(
            "External patient(s) reached training or validation: "
            f"{splits['patient_id'].iloc[leaked].tolist()[:10]}"
        )
    labels = splits["clnm"].to_numpy()
    for name, rows in (("fitting folds", fit), (f"validation fold {validation_fold}", validation)):
        classes = set(np.unique(labels[rows]).astype(int).tolist())
        if classes != {0, 1}:
            raise ValueError(
                f"The {name} hold {rows.size} patients with CLNM classes {sorted(classes)}; "
                "both classes are needed (more patients or another validation fold)"
            )
    return fit, validation


def view_tensor(crops: np.ndarray, views: Sequence[int]) -> torch.Tensor:
    """The views a network reads, as a contiguous uint8 tensor ``(N, V, S, S)`` (a copy)."""
    return torch.from_numpy(np.array(crops[:, list(views)], dtype=np.uint8, order="C"))


def to_model_input(
    images: torch.Tensor, device: torch.device, channels_last: bool = False
) -> torch.Tensor:
    """Move a uint8 batch to ``device`` (non-blocking) and scale it to floats in [0, 1]."""
    batch = images.to(device, non_blocking=True).float().div_(255.0)
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def epoch_batches(
    rows: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    generator: torch.Generator,
    balanced: bool = False,
) -> list[torch.Tensor]:
    """Shuffled row batches for one epoch.

    Parameters
    ----------
    rows
        Row indices into the crops that may be drawn.
    labels
        0/1 label of every row of the crops (indexed by ``rows``).
    batch_size
        Patients per batch; a last batch of one patient joins the batch before it (batch
        normalisation needs two).
    generator
        CPU generator; the only source of randomness.
    balanced
        Draw ``len(rows)`` rows with replacement, each class with equal probability, instead of
        a permutation.

    Returns
    -------
    list of torch.Tensor
        int64 index tensors into the crops.
    """
    rows_t = torch.as_tensor(rows, dtype=torch.int64)
    if balanced:
        row_labels = torch.as_tensor(labels[rows], dtype=torch.int64)
        counts = torch.bincount(row_labels, minlength=2).double()
        weights = 1.0 / counts[row_labels]
        order = torch.multinomial(weights, rows_t.numel(), replacement=True, generator=generator)
    else:
        order = torch.randperm(rows_t.numel(), generator=generator)
    chosen = rows_t[order]
    batches = list(torch.split(chosen, batch_size))
    if len(batches) > 1 and batches[-1].numel() == 1:
        tail = batches.pop()
        batches[-1] = torch.cat([batches[-1], tail])
    return batches


def batches_per_epoch(n_rows: int, batch_size: int) -> int:
    """How many batches :func:`epoch_batches` yields for ``n_rows`` rows."""
    n_batches = -(-n_rows // batch_size)
    if n_batches > 1 and n_rows % batch_size == 1:
        n_batches -= 1
    return n_batches


def default_loader_workers() -> int:
    """Loader processes for a GPU run: one per spare CPU core, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(8, (cores or 1) - 1))


class _IndexedCrops(Dataset):
    """Whole batches by index tensor (the loader's sampler yields index tensors)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[rows], self.labels[rows]


class _EpochSampler(Sampler):
    """Yields the index batches of the current epoch (set in the main process)."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class BatchSource:
    """Feeds uint8 batches and float labels of an in-memory crop tensor.

    Three ways, all yielding the same batches:

    - ``device`` given (GPU runs whose crops fit in GPU memory): the crops are copied to the
      GPU once and batches are gathered there (no copies per step).
    - ``workers > 0`` (GPU runs otherwise): a persistent :class:`~torch.utils.data.DataLoader`
      gathers batches in worker processes into pinned memory, so that copies to the GPU are
      non-blocking.
    - neither (CPU runs): batches are indexed directly, no worker processes.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: np.ndarray,
        workers: int = 0,
        pin_memory: bool = False,
        device: torch.device | None = None,
    ) -> None:
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.float32)
        self.pin_memory = pin_memory
        self.device = device
        self._sampler: _EpochSampler | None = None
        self._loader: DataLoader | None = None
        if device is not None:
            self.images = images.to(device)
            self.labels = self.labels.to(device)
        elif workers > 0:
            self._sampler = _EpochSampler()
            self._loader = DataLoader(
                _IndexedCrops(self.images, self.labels),
                sampler=self._sampler,
                batch_size=None,
                num_workers=workers,
                pin_memory=pin_memory,
                persistent_workers=True,
                prefetch_factor=4,
                # forking a process that already runs CUDA threads can deadlock
                multiprocessing_context="spawn" if torch.cuda.is_initialized() else None,
                generator=torch.Generator().manual_seed(0),  # keeps the global RNG untouched
            )

    def iterate(self, batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(uint8 images, float labels)`` for each index batch, in order."""
        if self._loader is not None and self._sampler is not None:
            self._sampler.batches = batches
            yield from self._loader
            return
        for batch_rows in batches:
            rows = batch_rows if self.device is None else batch_rows.to(self.device)
            images, labels = self.images[rows], self.labels[rows]
            if self.pin_memory and self.device is None:
                images, labels = images.pin_memory(), labels.pin_memory()
            yield images, labels


def fits_on_device(n_bytes: int, device: torch.device, share: float = 0.25) -> bool:
    """Whether ``n_bytes`` take at most ``share`` of the free memory of a CUDA ``device``."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return n_bytes <= share * free


def crop_batches(
    crops: np.ndarray | torch.Tensor, views: Sequence[int], batch_size: int
) -> Iterator[torch.Tensor]:
    """Consecutive uint8 batches ``(b, V, S, S)`` of the chosen views, in row order.

    A numpy array is read batch by batch (no copy of the whole array; a read-only or memory-
    mapped array is copied one batch at a time); a tensor is assumed to hold the views already.
    """
    if isinstance(crops, torch.Tensor):
        yield from torch.split(crops, batch_size)
        return
    views = list(views)
    every_view = views == list(range(crops.shape[1]))
    for start in range(0, crops.shape[0], batch_size):
        block = crops[start : start + batch_size]
        block = block if every_view else block[:, views]
        plain = type(block) is np.ndarray and block.flags.c_contiguous
        if not (plain and block.flags.writeable):
            block = np.array(block, dtype=np.uint8, order="C")
        yield torch.from_numpy(block)
