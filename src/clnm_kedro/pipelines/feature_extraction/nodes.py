"""Nodes of the ``feature_extraction`` pipeline: batched, gradient-free inference.

Every patient of ``patient_splits`` (training and external) goes through each trained
network: its penultimate-layer features (the DL features) and its CLNM probability.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from clnm_kedro.networks import (
    features_and_probabilities,
    features_table,
    predict_probabilities,
    predictions_table,
    select_device,
)
from clnm_kedro.networks.data import validate_crops

logger = logging.getLogger(__name__)

_SETTINGS_KEYS: frozenset[str] = frozenset({"batch_size", "device"})
PROBABILITY_COLUMNS: tuple[str, ...] = ("patient_id", "probability")


def _checked(
    network: nn.Module,
    roi_crops: np.ndarray,
    patient_splits: pd.DataFrame,
    settings: Mapping[str, Any],
) -> tuple[nn.Module, int]:
    """Validate the inputs; the network on the inference device and the batch size."""
    if not isinstance(network, nn.Module):
        raise TypeError(f"Expected a trained network (nn.Module), got {type(network).__name__}")
    unknown = sorted(set(settings) - _SETTINGS_KEYS)
    if unknown:
        raise ValueError(
            f"Unknown keys {unknown} in feature_extraction; allowed: {sorted(_SETTINGS_KEYS)}"
        )
    batch_size = settings.get("batch_size", 256)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"feature_extraction.batch_size must be a whole number >= 1, got {batch_size!r}"
        )
    validate_crops(roi_crops)
    if len(patient_splits) != len(roi_crops):
        raise ValueError(
            f"patient_splits has {len(patient_splits)} rows but roi_crops holds "
            f"{len(roi_crops)} patients; row i of patient_splits must describe roi_crops[i]"
        )
    device = select_device(settings.get("device", "auto"))
    return network.to(device).eval(), batch_size


def _probability_table(patient_splits: pd.DataFrame, probabilities: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": patient_splits["patient_id"].astype(str).to_numpy(),
            "probability": probabilities,
        }
    )


def score_with_network(
    network: nn.Module,
    roi_crops: np.ndarray,
    patient_splits: pd.DataFrame,
    feature_extraction: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """DL features (``patient_id, dl_000, ...``) and CLNM probability (``patient_id,
    probability``) of every patient from one network, in one pass through it.

    One row per patient in each table, in the order of ``patient_splits``.
    """
    network, batch_size = _checked(network, roi_crops, patient_splits, feature_extraction)
    features, probabilities = features_and_probabilities(network, roi_crops, batch_size)
    table = features_table(features, patient_splits["patient_id"])
    logger.info("%d DL features extracted for each of %d patients.", features.shape[1], len(table))
    return table, _probability_table(patient_splits, probabilities)


def predict_network_probabilities(
    network: nn.Module,
    roi_crops: np.ndarray,
    patient_splits: pd.DataFrame,
    feature_extraction: dict[str, Any],
) -> pd.DataFrame:
    """CLNM probability of every patient from one network: ``patient_id, probability``."""
    network, batch_size = _checked(network, roi_crops, patient_splits, feature_extraction)
    return _probability_table(patient_splits, predict_probabilities(network, roi_crops, batch_size))


def gather_network_predictions(
    patient_splits: pd.DataFrame, **probabilities: pd.DataFrame
) -> pd.DataFrame:
    """The networks' rows of the predictions table (DESIGN.md output contract).

    Parameters
    ----------
    patient_splits
        Centre, split (``train`` or ``external``) and label of every patient.
    probabilities
        Keyword = model name (``dl_dual``, ...), value = its ``patient_id, probability``
        table in the order of ``patient_splits``.

    Returns
    -------
    pandas.DataFrame
        ``patient_id, center, split, model, clnm, probability``: one row per patient and
        network, networks in the order given.
    """
    expected = patient_splits["patient_id"].astype(str).to_numpy()
    tables = []
    for model, table in probabilities.items():
        ids = table["patient_id"].astype(str).to_numpy()
        if ids.shape != expected.shape or not np.array_equal(ids, expected):
            raise ValueError(
                f"The {model} probabilities are not in the patient order of patient_splits"
            )
        tables.append(predictions_table(table["probability"].to_numpy(), patient_splits, model))
    return pd.concat(tables, ignore_index=True)
