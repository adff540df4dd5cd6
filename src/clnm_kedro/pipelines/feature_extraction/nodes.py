"""Nodes of the ``feature_extraction`` pipeline: batched, gradient-free inference.

Every patient of ``patient_splits`` (training and external) goes through each network model's
fold ensemble. The DL features are the logits of the fused classifier and of each view's
classifier: for a training patient from the fold network that never saw it (out-of-fold), for
every other patient the mean over the fold networks. The probability is the calibrated risk of
the fused logit (the calibration stored with the ensemble).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from clnm_kedro.checks import whole_number
from clnm_kedro.networks import (
    features_and_probabilities,
    features_table,
    predict_probabilities,
    predictions_table,
    select_device,
)
from clnm_kedro.networks.cross_fitting import (
    ENSEMBLE,
    FoldEnsemble,
    cross_fitted_logits,
    cross_fitted_risks,
    fold_assignment,
)
from clnm_kedro.networks.data import validate_crops
from clnm_kedro.networks.inference import DEFAULT_INFERENCE_BATCH

logger = logging.getLogger(__name__)

_SETTINGS_KEYS: frozenset[str] = frozenset({"batch_size", "device"})
PROBABILITY_COLUMNS: tuple[str, ...] = ("patient_id", "probability")
# Extra columns of a fold ensemble's probability table: who scored the patient (fold_<k> or
# ensemble) and the ensemble's probability (the apparent one for a training patient).
SOURCE_COLUMN = "source"
ENSEMBLE_COLUMN = "ensemble_probability"


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
    batch_size = settings.get("batch_size", DEFAULT_INFERENCE_BATCH)
    whole_number(batch_size, "feature_extraction.batch_size", 1)
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
    out_of_fold: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """DL features (``patient_id, dl_000, ...``) and CLNM probability (``patient_id,
    probability``) of every patient from one network model, in one pass per fold network.

    With a fold ensemble (:class:`~clnm_kedro.networks.cross_fitting.FoldEnsemble`): the
    features are the fused and per-view logits, out-of-fold for the patients a fold network
    held out when ``out_of_fold`` (the training run), the ensemble's mean otherwise (new
    patients: ``inference`` passes ``False`` so a reused patient ID never picks one fold
    network); the probability is the calibrated risk of the fused logit (for an out-of-fold
    row through the calibration fitted on the other rows: :func:`cross_fitted_risks`), and
    the table also has ``source`` and ``ensemble_probability``. A single network (an older
    checkpoint): penultimate-layer features and its probability.

    One row per patient in each table, in the order of ``patient_splits``.
    """
    network, batch_size = _checked(network, roi_crops, patient_splits, feature_extraction)
    ids = patient_splits["patient_id"].astype(str)
    if not isinstance(network, FoldEnsemble):
        features, probabilities = features_and_probabilities(network, roi_crops, batch_size)
        table = features_table(features, ids)
        logger.info(
            "%d DL features extracted for each of %d patients.", features.shape[1], len(table)
        )
        return table, _probability_table(patient_splits, probabilities)
    assignment = fold_assignment(network, patient_splits) if out_of_fold else None
    outputs = cross_fitted_logits(network, roi_crops, assignment, batch_size)
    table = features_table(outputs.logits, ids)
    oof = outputs.out_of_fold
    ensemble_logits = outputs.ensemble
    risks = network.risk(outputs.logits[:, 0])
    if oof.any():  # train_cv risks: the calibration left out as well
        labels = pd.to_numeric(patient_splits["clnm"], errors="coerce").to_numpy()
        risks[oof] = cross_fitted_risks(labels[oof], outputs.logits[oof, 0])
    probabilities = _probability_table(patient_splits, risks)
    probabilities[SOURCE_COLUMN] = outputs.source.astype(str)
    probabilities[ENSEMBLE_COLUMN] = network.risk(ensemble_logits[:, 0])
    logger.info(
        "DL outputs (%s logits) of %d patients: %d out-of-fold, %d from the ensemble of %d "
        "fold networks.",
        ", ".join(outputs.names), len(table), int(oof.sum()), int((~oof).sum()),
        network.n_folds,
    )
    return table, probabilities


def predict_network_probabilities(
    network: nn.Module,
    roi_crops: np.ndarray,
    patient_splits: pd.DataFrame,
    feature_extraction: dict[str, Any],
) -> pd.DataFrame:
    """CLNM probability of every patient from one network model: ``patient_id, probability``
    (a fold ensemble: its calibrated risk, the ensemble's for every patient)."""
    if isinstance(network, FoldEnsemble):
        _features, probabilities = score_with_network(
            network, roi_crops, patient_splits, feature_extraction, out_of_fold=False
        )
        return probabilities.loc[:, list(PROBABILITY_COLUMNS)]
    network, batch_size = _checked(network, roi_crops, patient_splits, feature_extraction)
    return _probability_table(patient_splits, predict_probabilities(network, roi_crops, batch_size))


def score_new_patients(
    network: nn.Module,
    roi_crops: np.ndarray,
    patient_splits: pd.DataFrame,
    feature_extraction: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`score_with_network` for patients outside the training run: the fold ensemble
    for everyone, whatever their ID."""
    features, probabilities = score_with_network(
        network, roi_crops, patient_splits, feature_extraction, out_of_fold=False
    )
    return features, probabilities.loc[:, list(PROBABILITY_COLUMNS)]


def network_prediction_rows(
    table: pd.DataFrame, patient_splits: pd.DataFrame, model: str
) -> pd.DataFrame:
    """One network model's rows of the predictions table.

    A fold ensemble's table (with ``source``): ``train`` rows are the ensemble's (apparent:
    most fold networks saw the patient), ``train_cv`` the out-of-fold ones, ``external`` the
    ensemble's. A single network's: ``train`` and ``external`` rows of its probability.
    """
    if SOURCE_COLUMN not in table.columns:
        return predictions_table(table["probability"].to_numpy(), patient_splits, model)
    train = patient_splits["split"].eq("train").to_numpy()
    oof = table[SOURCE_COLUMN].ne(ENSEMBLE).to_numpy() & train
    rows = predictions_table(table[ENSEMBLE_COLUMN].to_numpy(), patient_splits, model)
    cross_fitted = predictions_table(table["probability"].to_numpy(), patient_splits, model)
    cross_fitted = cross_fitted.loc[oof].assign(split="train_cv")
    return pd.concat([rows, cross_fitted], ignore_index=True)


def gather_network_predictions(
    patient_splits: pd.DataFrame, **probabilities: pd.DataFrame
) -> pd.DataFrame:
    """The networks' rows of the predictions table (docs/output_contract.md).

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
        ``patient_id, center, split, model, clnm, probability``: per network (in the order
        given) ``train`` (apparent) and ``external`` rows for every patient and, for a fold
        ensemble, ``train_cv`` (out-of-fold) rows (:func:`network_prediction_rows`).
    """
    expected = patient_splits["patient_id"].astype(str).to_numpy()
    tables = []
    for model, table in probabilities.items():
        ids = table["patient_id"].astype(str).to_numpy()
        if ids.shape != expected.shape or not np.array_equal(ids, expected):
            raise ValueError(
                f"The {model} probabilities are not in the patient order of patient_splits"
            )
        tables.append(network_prediction_rows(table, patient_splits, model))
    return pd.concat(tables, ignore_index=True)
