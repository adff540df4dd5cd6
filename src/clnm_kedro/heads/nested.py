"""Nested cross-validation of the whole head procedure (search, selection, calibration): the
honest out-of-fold estimate of the training patients."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from clnm_kedro.heads.families import single_threaded_numerics
from clnm_kedro.heads.search import fit_head
from clnm_kedro.heads.spec import HeadSpec, _check_training_data

logger = logging.getLogger(__name__)


def _outer_fold(
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_test: pd.DataFrame,
    spec: HeadSpec,
    *,
    model_name: str,
    seed: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One outer fold of :func:`nested_out_of_fold`: the whole head procedure on its training
    part (studies in memory), then its calibrated risks of the left-out patients."""
    inner = fit_head(X_train, y_train, spec, storage_url=None, model_name=model_name, seed=seed)
    with single_threaded_numerics():
        scores = inner.pipeline.predict_proba(X_test)[:, 1]
    calibration = inner.pipeline.calibration
    return scores, {
        "family": inner.family,
        "inner_cv_auc": inner.cv_auc,
        "inner_cv_log_loss": float(
            inner.comparison.loc[inner.comparison["selected"], "cv_log_loss"].iloc[0]
        ),
        "calibration_intercept": calibration.intercept,
        "calibration_slope": calibration.slope,
    }


def nested_out_of_fold(
    X: pd.DataFrame,
    y: pd.Series | np.ndarray,
    spec: HeadSpec | Mapping[str, Any],
    *,
    model_name: str = "head",
    seed: int = 0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Nested cross-validation: the honest out-of-fold estimate of the whole head procedure.

    For each of ``spec.outer_splits`` stratified outer folds, :func:`fit_head` runs on the
    other folds only (every family searched, the selection rule, the refit and the
    calibration on inner out-of-fold predictions; studies kept in memory), and the head it
    returns scores the left-out fold. No patient's probability comes from a search, selection
    or calibration that saw its label.

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
    outer = StratifiedKFold(n_splits=spec.outer_splits, shuffle=True, random_state=seed + 1)
    splits = list(outer.split(X, y_array))
    # Each outer fold in a process of its own when outer_jobs allows (loky; sequential, in
    # this process, with 1): the folds share nothing, so the numbers are the same either way.
    results = joblib.Parallel(n_jobs=spec.outer_jobs, backend="loky")(
        joblib.delayed(_outer_fold)(
            X.iloc[train_index],
            y_array[train_index],
            X.iloc[test_index],
            spec,
            model_name=f"{model_name}.outer{fold}",
            seed=seed,
        )
        for fold, (train_index, test_index) in enumerate(splits)
    )
    probabilities = np.full(len(X), np.nan)
    rows = []
    for fold, ((_, test_index), (scores, row)) in enumerate(zip(splits, results, strict=True)):
        probabilities[test_index] = scores
        outer_auc = float(roc_auc_score(y_array[test_index], scores))
        rows.append(
            {
                "fold": fold,
                "n_patients": len(test_index),
                "family": row["family"],
                "inner_cv_auc": row["inner_cv_auc"],
                "inner_cv_log_loss": row["inner_cv_log_loss"],
                "outer_auc": outer_auc,
                "calibration_intercept": row["calibration_intercept"],
                "calibration_slope": row["calibration_slope"],
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
