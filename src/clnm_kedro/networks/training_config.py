"""The networks' parameter block: defaults, validation, one block per network kind."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from clnm_kedro.networks.architecture import (
    NETWORK_DEFAULTS,
    NETWORK_VIEWS,
    network_settings,
)
from clnm_kedro.networks.augment import AUGMENT_DEFAULTS, augment_settings
from clnm_kedro.networks.data import config_section

SCHEDULES: tuple[str, ...] = ("warmup_cosine", "one_cycle")
IMBALANCE: tuple[str, ...] = ("pos_weight", "balanced_sampler", "none")

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
