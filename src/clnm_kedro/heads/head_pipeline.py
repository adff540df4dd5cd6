"""The head pipeline (preprocessing + reduction + classifier) and its cross-validation: the
search's splitter and out-of-fold probabilities."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline

from clnm_kedro.heads.families import (
    REDUCTION_PREFIX,
    EstimatorOptions,
    SearchSpace,
    build_estimator,
)
from clnm_kedro.heads.preprocess import FeatureColumns, build_preprocessor, build_reduction
from clnm_kedro.heads.spec import HeadSpec


def resolved_parameters(
    family: str, params: Mapping[str, Any], space: SearchSpace
) -> dict[str, Any]:
    """Add the family's fixed values to the searched ``params`` of a trial."""
    fixed = {name: hp.value for name, hp in space.families[family].items() if hp.kind == "fixed"}
    return {**fixed, **params}


def build_head_pipeline(
    columns: FeatureColumns,
    family: str,
    params: Mapping[str, Any],
    options: EstimatorOptions,
) -> Pipeline:
    """Build an unfitted head: column preprocessing (+ reduction of DL columns) + classifier.

    Parameters
    ----------
    columns
        Feature column groups of the table.
    family
        Classifier family.
    params
        Hyperparameters (family names, plus ``reduction_method`` and
        ``reduction_n_components`` for the deep-learning columns).
    options
        Seed, class weighting, threads.

    Returns
    -------
    Pipeline
        Steps ``preprocess`` (a ``ColumnTransformer``) and ``classifier``.
    """
    classifier_params = {k: v for k, v in params.items() if not k.startswith(REDUCTION_PREFIX)}
    reduction = "passthrough"
    method = params.get(REDUCTION_PREFIX + "method", "none")
    if columns.dl and method != "none":
        reduction = build_reduction(
            method,
            params.get(REDUCTION_PREFIX + "n_components"),
            len(columns.dl),
            options.seed,
            options.class_weight,
        )
    return Pipeline(
        [
            ("preprocess", build_preprocessor(columns, reduction)),
            ("classifier", build_estimator(family, classifier_params, options)),
        ]
    )


def cv_splitter(spec: HeadSpec, seed: int) -> RepeatedStratifiedKFold:
    """The seeded, stratified, repeated k-fold CV of the search."""
    return RepeatedStratifiedKFold(
        n_splits=spec.n_splits, n_repeats=spec.n_repeats, random_state=seed
    )


def out_of_fold_probabilities(
    pipeline: Pipeline,
    X: pd.DataFrame,
    y: pd.Series | np.ndarray,
    cv: int | StratifiedKFold | Iterable[Any] = 5,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold CLNM probabilities of training patients (the ``train_cv`` predictions).

    The pipeline (with its chosen hyperparameters) is cloned and refitted in every fold; each
    patient's probability comes from the fold that left that patient out.

    Parameters
    ----------
    pipeline
        A head pipeline (fitted or not; only its settings are used).
    X, y
        Training features and labels only.
    cv
        Number of stratified folds (shuffled with ``seed``), a splitter, or an iterable of
        (train, test) index pairs that partitions the rows.
    seed
        Shuffling seed when ``cv`` is a number.

    Returns
    -------
    np.ndarray
        Probability of CLNM, one per row of ``X``.
    """
    if isinstance(cv, int):
        cv = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    probabilities = cross_val_predict(
        clone(pipeline), X, np.asarray(y), cv=cv, method="predict_proba"
    )
    return probabilities[:, 1]


def selection_out_of_fold(
    pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, spec: HeadSpec, seed: int
) -> np.ndarray:
    """Uncalibrated out-of-fold probabilities of ``pipeline``'s configuration on the search's
    folds: each repeat partitions the patients; a patient's probability is the mean over the
    repeats."""
    folds = list(cv_splitter(spec, seed).split(X, y))
    repeats = [folds[i : i + spec.n_splits] for i in range(0, len(folds), spec.n_splits)]
    return np.mean(
        [out_of_fold_probabilities(pipeline, X, y, cv=repeat) for repeat in repeats], axis=0
    )
