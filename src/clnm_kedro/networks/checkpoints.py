"""A trained network: :class:`TrainingResult`, and its checkpoint file (written, read back)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from clnm_kedro.networks.architecture import (
    UltrasoundNetwork,
    build_network,
)
from clnm_kedro.networks.training_config import resolve_config

CHECKPOINT_FORMAT = "clnm_kedro.network/1"


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
