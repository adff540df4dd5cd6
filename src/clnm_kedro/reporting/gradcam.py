"""Grad-CAM heatmaps of each view a network reads, with the ``pytorch-grad-cam`` library.

Grad-CAM (Selvaraju et al., ICCV 2017) weights the feature maps of a convolutional layer by the
mean gradient of the CLNM logit with respect to them; the positive part of the weighted sum,
scaled to [0, 1] per image and resized to the crop, shows where the network looked.

The target layer is found generically: the last ``nn.Conv2d`` registered inside each CNN
branch (``network.branches``), so it works for the compact CNN and every torchvision backbone.
A network with one branch per view gives each view's heatmap from its own branch. A network
whose single branch reads every view (shared weights) runs that branch on a batch of
``B * V`` images in patient-major order (as :class:`~clnm_kedro.networks.UltrasoundNetwork`
does), and the heatmaps are split back per view in the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget
from torch import nn

from clnm_kedro.networks.cpu_numerics import thread_independent_numerics

__all__ = [
    "GradCamResult",
    "branch_target_layers",
    "choose_gradcam_patients",
    "gradcam_heatmaps",
    "last_conv_layer",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GradCamResult:
    """Grad-CAM heatmaps of some patients for the views a network reads.

    Attributes
    ----------
    heatmaps
        float32 ``(N, V, S, S)`` in [0, 1], column ``v`` for crop view ``views[v]``.
    views
        Index of each heatmap column in the crops (0 longitudinal, 1 transverse).
    probabilities
        ``(N,)`` the network's CLNM probability of each patient.
    """

    heatmaps: np.ndarray
    views: tuple[int, ...]
    probabilities: np.ndarray


def last_conv_layer(module: nn.Module) -> nn.Conv2d:
    """The last ``nn.Conv2d`` registered inside ``module`` (its deepest feature maps)."""
    convs = [layer for layer in module.modules() if isinstance(layer, nn.Conv2d)]
    if not convs:
        raise ValueError(
            f"{type(module).__name__} has no 2-D convolution layer, so Grad-CAM has no feature "
            "maps to explain."
        )
    return convs[-1]


def branch_target_layers(network: nn.Module) -> list[nn.Conv2d]:
    """Grad-CAM target layer of each CNN branch (``network.branches``, else the whole net)."""
    branches = getattr(network, "branches", None)
    if isinstance(branches, nn.ModuleList) and len(branches):
        return [last_conv_layer(branch) for branch in branches]
    return [last_conv_layer(network)]


def _as_uint8_crops(crops: np.ndarray) -> np.ndarray:
    array = np.asarray(crops)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[2] != array.shape[3]:
        raise ValueError(
            "Grad-CAM needs uint8 crops shaped (patients, views, size, size); got "
            f"{array.dtype} {array.shape}."
        )
    return array


def gradcam_heatmaps(
    network: nn.Module, crops: np.ndarray, views: Sequence[int] | None = None
) -> GradCamResult:
    """Grad-CAM heatmap of every view the network reads, for every patient of ``crops``.

    Parameters
    ----------
    network
        A trained network taking floats ``(B, V, S, S)`` in [0, 1] and returning one CLNM
        logit per patient ``(B,)``.
    crops
        uint8 crops ``(N, 2, S, S)`` (all views; the network's own are selected).
    views
        Crop views the network reads; default ``network.views`` (else every view).

    Returns
    -------
    GradCamResult
        Heatmaps ``(N, V, S, S)`` in [0, 1] and the network's probabilities.
    """
    array = _as_uint8_crops(crops)
    chosen = tuple(
        int(v)
        for v in (views if views is not None else getattr(network, "views", range(array.shape[1])))
    )
    if not chosen or any(v < 0 or v >= array.shape[1] for v in chosen):
        raise ValueError(f"Views {chosen} do not exist in crops with {array.shape[1]} views.")
    n_patients, n_views = array.shape[0], len(chosen)
    size = array.shape[2]
    device = next(network.parameters()).device
    inputs = torch.from_numpy(np.ascontiguousarray(array[:, list(chosen)])).to(device)
    inputs = inputs.float().div(255.0)
    layers = branch_target_layers(network)
    if len(layers) not in (1, n_views):
        raise ValueError(
            f"The network has {len(layers)} CNN branches for {n_views} view(s); Grad-CAM needs "
            "one branch per view or one shared branch."
        )
    targets = [BinaryClassifierOutputTarget(1) for _ in range(n_patients)]
    was_training = network.training
    heatmaps = np.zeros((n_patients, n_views, size, size), dtype=np.float32)
    logits: torch.Tensor | None = None
    try:
        # one thread, oneDNN off: the probabilities are those of the network's predictions
        with thread_independent_numerics(device):
            for branch, layer in enumerate(layers):
                cam = GradCAM(model=network, target_layers=[layer])
                try:
                    maps = cam(input_tensor=inputs, targets=targets)
                    logits = cam.outputs.detach().float().reshape(-1).cpu()
                finally:
                    cam.activations_and_grads.release()
                if len(layers) == n_views and maps.shape[0] == n_patients:
                    heatmaps[:, branch] = maps
                elif len(layers) == 1 and maps.shape[0] == n_patients * n_views:
                    heatmaps[:] = maps.reshape(n_patients, n_views, size, size)
                else:
                    raise ValueError(
                        f"Grad-CAM gave {maps.shape[0]} maps for {n_patients} patient(s) and "
                        f"{n_views} view(s) from branch {branch}; cannot tell which view each is."
                    )
    finally:
        network.zero_grad(set_to_none=True)
        network.train(was_training)
    if logits is None:  # pragma: no cover - branch_target_layers returns at least one layer
        raise RuntimeError("Grad-CAM ran no target layer.")
    probabilities = torch.sigmoid(logits).double().numpy()
    return GradCamResult(np.clip(heatmaps, 0.0, 1.0), chosen, probabilities)


def choose_gradcam_patients(
    patient_splits: pd.DataFrame, split: str, n_patients: int, seed: int
) -> np.ndarray:
    """Rows of ``patient_splits`` (= rows of the crops) to show, a seeded choice.

    Half the patients (rounded up) are drawn among those with CLNM and the rest among those
    without, where there are enough; shown with CLNM first, then in crop order.

    Parameters
    ----------
    patient_splits
        Row ``i`` describes crop ``i`` (``split``, ``clnm``).
    split
        Data set to draw from (``external`` by default in the parameters).
    n_patients
        How many patients to show (fewer if the split has fewer).
    seed
        Seed of the draw.
    """
    missing = [column for column in ("split", "clnm") if column not in patient_splits.columns]
    if missing:
        raise ValueError(f"patient_splits lacks column(s) {missing}.")
    in_split = patient_splits["split"].astype(str).to_numpy() == split
    labels = pd.to_numeric(patient_splits["clnm"], errors="coerce").to_numpy()
    events = np.flatnonzero(in_split & (labels == 1))
    others = np.flatnonzero(in_split & (labels != 1))
    n_events = min(events.size, -(-n_patients // 2))
    n_others = min(others.size, n_patients - n_events)
    n_events = min(events.size, n_patients - n_others)
    rng = np.random.default_rng(seed)
    chosen_events = np.sort(rng.choice(events, size=n_events, replace=False))
    chosen_others = np.sort(rng.choice(others, size=n_others, replace=False))
    return np.concatenate([chosen_events, chosen_others]).astype(np.int64)
