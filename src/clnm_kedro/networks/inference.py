"""Batched, gradient-free inference: CLNM probabilities and penultimate-layer DL features."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from clnm_kedro.networks.cpu_numerics import thread_independent_numerics
from clnm_kedro.networks.data import crop_batches, to_model_input, validate_crops
from clnm_kedro.registry import DL_PREFIX

DEFAULT_INFERENCE_BATCH = 256


def model_device(model: nn.Module) -> torch.device:
    """The device holding the model's parameters."""
    return next(model.parameters()).device


def use_bf16(device: torch.device) -> bool:
    """bf16 autocast on CUDA devices that support it; float32 elsewhere."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def batched_outputs(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    output: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = DEFAULT_INFERENCE_BATCH,
    autocast: bool | None = None,
) -> torch.Tensor:
    """Apply ``output`` (``model`` or ``model.features``) batch by batch, in eval mode.

    Parameters
    ----------
    model
        The network (put in eval mode; its mode is restored afterwards).
    images
        The cached uint8 crops ``(N, 2, S, S)`` as a numpy array (the model's views are picked
        batch by batch), or a uint8 tensor ``(N, V, S, S)`` already holding its views (on the
        CPU or on the model's device).
    output
        Function of a float batch returning ``(B, ...)``.
    batch_size
        Patients per forward pass.
    autocast
        bf16 autocast; ``None`` = on for CUDA devices that support it.

    Returns
    -------
    torch.Tensor
        float32 outputs on the CPU, rows in the order of ``images``.

    On the CPU the passes run with one thread and oneDNN off (the same numbers with any
    thread count: :mod:`clnm_kedro.networks.cpu_numerics`).
    """
    device = model_device(model)
    amp = use_bf16(device) if autocast is None else autocast
    was_training = model.training
    model.eval()
    chunks: list[torch.Tensor] = []
    try:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, torch.bfloat16, enabled=amp),
            thread_independent_numerics(device),
        ):
            for batch in crop_batches(images, model.views, batch_size):
                chunks.append(output(to_model_input(batch, device)).float())
        result = torch.cat(chunks).cpu() if chunks else torch.empty(0)
    finally:
        model.train(was_training)
    return result


def predict_probabilities(
    model: nn.Module, crops: np.ndarray, batch_size: int = DEFAULT_INFERENCE_BATCH
) -> np.ndarray:
    """CLNM probability of every patient.

    Parameters
    ----------
    model
        A network from ``build_network`` / ``load_checkpoint`` (it selects its own views).
    crops
        The cached uint8 crops ``(N, 2, S, S)``.
    batch_size
        Patients per forward pass.

    Returns
    -------
    np.ndarray
        ``(N,)`` float64 probabilities, row ``i`` for ``crops[i]``.
    """
    validate_crops(crops)
    logits = batched_outputs(model, crops, model, batch_size)
    return torch.sigmoid(logits).double().numpy()


def extract_features(
    model: nn.Module, crops: np.ndarray, batch_size: int = DEFAULT_INFERENCE_BATCH
) -> np.ndarray:
    """Penultimate-layer features of every patient.

    Parameters
    ----------
    model
        A network from ``build_network`` / ``load_checkpoint``.
    crops
        The cached uint8 crops ``(N, 2, S, S)``.
    batch_size
        Patients per forward pass.

    Returns
    -------
    np.ndarray
        ``(N, D)`` float32 features, row ``i`` for ``crops[i]``.
    """
    validate_crops(crops)
    features = batched_outputs(model, crops, model.features, batch_size)
    return features.numpy()


def features_and_probabilities(
    model: nn.Module, crops: np.ndarray, batch_size: int = DEFAULT_INFERENCE_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate-layer features and CLNM probability of every patient, in one pass.

    Equal to :func:`extract_features` and :func:`predict_probabilities` (the classifier is
    applied to the same batch's features), at the cost of one pass through the network instead
    of two. ``model`` is an :class:`~clnm_kedro.networks.UltrasoundNetwork`.

    Returns
    -------
    tuple of np.ndarray
        ``(N, D)`` float32 features and ``(N,)`` float64 probabilities, row ``i`` for
        ``crops[i]``.
    """
    validate_crops(crops)

    def features_then_logit(x: torch.Tensor) -> torch.Tensor:
        features = model.features(x)
        return torch.cat([features, model.head(features)], dim=1)

    outputs = batched_outputs(model, crops, features_then_logit, batch_size)
    # contiguous: the vectorised sigmoid of a strided column can differ in the last bit
    logits = outputs[:, -1].contiguous()
    return outputs[:, :-1].contiguous().numpy(), torch.sigmoid(logits).double().numpy()


def features_table(
    features: np.ndarray, patient_ids: pd.Series | list[str], prefix: str = DL_PREFIX
) -> pd.DataFrame:
    """DL features keyed by patient: columns ``patient_id, dl_000, dl_001, ...``.

    Parameters
    ----------
    features
        ``(N, D)`` array from :func:`extract_features`.
    patient_ids
        ``N`` patient IDs in the same row order (``patient_splits.patient_id``).
    prefix
        Column-name prefix of the features.
    """
    ids = pd.Series(patient_ids, dtype=str).reset_index(drop=True)
    if features.ndim != 2 or features.shape[0] != len(ids):
        raise ValueError(f"features {features.shape} do not line up with {len(ids)} patient IDs")
    if ids.duplicated().any():
        raise ValueError(f"Duplicated patient IDs: {ids[ids.duplicated()].tolist()[:10]}")
    width = max(3, len(str(features.shape[1] - 1)))
    columns = [f"{prefix}{index:0{width}d}" for index in range(features.shape[1])]
    table = pd.DataFrame(features, columns=columns)
    table.insert(0, "patient_id", ids)
    return table


def predictions_table(
    probabilities: np.ndarray, splits: pd.DataFrame, model_name: str
) -> pd.DataFrame:
    """Rows of the predictions table: ``patient_id, center, split, model, clnm, probability``.

    Parameters
    ----------
    probabilities
        ``(N,)`` from :func:`predict_probabilities`, in the row order of ``splits``.
    splits
        ``patient_splits`` (its ``split`` is ``train`` or ``external``).
    model_name
        ``dl_dual``, ``dl_longitudinal`` or ``dl_transverse``.
    """
    if len(probabilities) != len(splits):
        raise ValueError(
            f"{len(probabilities)} probabilities for {len(splits)} patients in patient_splits"
        )
    table = splits.loc[:, ["patient_id", "center", "split", "clnm"]].reset_index(drop=True)
    table.insert(3, "model", model_name)
    table["probability"] = np.asarray(probabilities, dtype=float)
    return table
