"""Nested cross-validation of the whole head procedure (search, selection, calibration): the
honest out-of-fold estimate of the training patients."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from clnm_kedro.heads.families import single_threaded_numerics
from clnm_kedro.heads.search import calibrate_head, finish_head, run_studies
from clnm_kedro.heads.spec import HeadSpec, _check_neighbours, _check_training_data
from clnm_kedro.metrics.recalibration import LogitCalibration, leave_one_out_calibration

logger = logging.getLogger(__name__)


def nested_out_of_fold(
    X: pd.DataFrame,
    y: pd.Series | np.ndarray,
    spec: HeadSpec | Mapping[str, Any],
    *,
    model_name: str = "head",
    seed: int = 0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Nested cross-validation: the honest out-of-fold estimate of the whole head procedure.

    For each of ``spec.outer_splits`` stratified outer folds, the head procedure of
    :func:`~clnm_kedro.heads.search.fit_head` runs on the other folds only (every family
    searched, the selection rule, the refit and the calibration on inner out-of-fold
    predictions; studies kept in memory), and the head it returns scores the left-out fold.
    No patient's probability comes from a search, selection or calibration that saw its
    label.

    Returns
    -------
    tuple
        Calibrated probability of each row of ``X``, and one row per outer fold: ``fold,
        n_patients, family, inner_cv_auc, inner_cv_log_loss, outer_auc, calibration_intercept,
        calibration_slope``.
    """
    spec = HeadSpec.from_params(spec)
    if spec.outer_splits is None:
        raise ValueError("heads.outer_cv.n_splits is not set: no nested cross-validation.")
    y_array = _check_training_data(X, y, spec)
    splits = outer_splits(y_array, spec.outer_splits, seed)
    for train_index, _ in splits:
        _check_neighbours(len(train_index), spec)
    # Every (outer fold, family) study is a task of its own, side by side in spec.processes
    # workers (the folds' studies share nothing, so the numbers are the same either way);
    # each fold's selection, refit and calibration then follow here.
    tasks = [
        {
            "X": X.iloc[train_index],
            "y": y_array[train_index],
            "family": family,
            "storage_url": None,  # in memory: an outer fold's studies are not kept
            "study_name": f"{model_name}.outer{fold}.{family}",
            "seed": seed,
        }
        for fold, (train_index, _) in enumerate(splits)
        for family in spec.families
    ]
    tuned = iter(run_studies(tasks, spec, desc=f"Nested CV of the {model_name} heads"))
    probabilities = np.full(len(X), np.nan)
    rows = []
    for fold, (train_index, test_index) in enumerate(splits):
        inner = finish_head(
            X.iloc[train_index],
            y_array[train_index],
            spec,
            {family: next(tuned) for family in spec.families},
            model_name=f"{model_name}.outer{fold}",
            seed=seed,
            log_level=logging.DEBUG,
        )
        with single_threaded_numerics():
            scores = inner.pipeline.predict_proba(X.iloc[test_index])[:, 1]
        probabilities[test_index] = scores
        selected = inner.comparison["selected"]
        rows.append(
            {
                "fold": fold,
                "n_patients": len(test_index),
                "family": inner.family,
                "inner_cv_auc": inner.cv_auc,
                "inner_cv_log_loss": float(inner.comparison.loc[selected, "cv_log_loss"].iloc[0]),
                "outer_auc": float(roc_auc_score(y_array[test_index], scores)),
                "calibration_intercept": inner.pipeline.calibration.intercept,
                "calibration_slope": inner.pipeline.calibration.slope,
            }
        )
    folds = pd.DataFrame(rows)
    logger.info(
        "%s model, nested CV: out-of-fold AUC %.3f over %d outer folds (families chosen: %s).",
        model_name,
        roc_auc_score(y_array, probabilities),
        spec.outer_splits,
        ", ".join(folds["family"]),
    )
    return probabilities, folds


def outer_splits(y: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The nested CV's outer folds (training rows, left-out rows): stratified on ``y``,
    shuffled with ``seed + 1``."""
    outer = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed + 1)
    return list(outer.split(np.zeros((len(y), 1)), y))


def optimism_correction(
    y: np.ndarray, nested: np.ndarray, model_name: str = "head"
) -> tuple[LogitCalibration, np.ndarray]:
    """The calibration the nested CV measured: for the final head, and left out patient by
    patient for the ``train_cv`` risks.

    The nested risks are honest about the search, the selection and the head's calibration,
    and still too extreme: the head chosen among many trials by its cross-validated log loss
    looks better calibrated on those folds than it is (measured on the demo: inner calibration
    slopes about 1, the outer slope 0.83-0.93). A logistic recalibration fitted on every
    training patient's nested risk measures that optimism, as a shrinkage factor estimated by
    cross-validation does, and is folded into the final head's calibration. Each training
    patient's ``train_cv`` risk passes through the same recalibration fitted on every other
    patient (:func:`~clnm_kedro.metrics.recalibration.leave_one_out_calibration`): not one
    fitted without its whole outer fold, which would leave each outer head's own
    miscalibration out of the map applied to it (on the demo's heads that lowered the pooled
    slope by 0.08-0.14 below the nested risks' own).

    Returns
    -------
    tuple
        The recalibration fitted on all rows, and each row's leave-one-out risk.
    """
    y = np.asarray(y)
    nested = np.asarray(nested, dtype=float)
    correction = calibrate_head(y, nested, model_name)
    return correction, leave_one_out_calibration(y, nested, positive_slope=True)
