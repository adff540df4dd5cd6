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


def _reduction(
    columns: FeatureColumns, params: Mapping[str, Any], options: EstimatorOptions
) -> object:
    """The reduction step of the deep-learning columns that ``params`` ask for (unfitted), or
    ``"passthrough"``."""
    method = params.get(REDUCTION_PREFIX + "method", "none")
    if not columns.dl or method == "none":
        return "passthrough"
    return build_reduction(
        method,
        params.get(REDUCTION_PREFIX + "n_components"),
        len(columns.dl),
        options.seed,
        options.class_weight,
    )


def _classifier_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if not k.startswith(REDUCTION_PREFIX)}


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
    return Pipeline(
        [
            ("preprocess", build_preprocessor(columns, _reduction(columns, params, options))),
            ("classifier", build_estimator(family, _classifier_parameters(params), options)),
        ]
    )


class PreprocessedFolds:
    """The search's folds with the column preprocessing fitted once per fold.

    Imputation, scaling and one-hot encoding depend on a fold's training rows only, not on a
    trial's hyperparameters, so every trial of a study reuses them; a trial fits only its
    reduction of the deep-learning columns and its classifier. The probabilities are those of
    :func:`build_head_pipeline`'s pipeline fitted on the fold (the same steps on the same
    numbers, in the same order), at a fraction of the cost: refitting the preprocessing took
    most of a small search's time.
    """

    def __init__(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        columns: FeatureColumns,
        folds: Iterable[tuple[np.ndarray, np.ndarray]],
    ) -> None:
        self.columns = columns
        self.folds = list(folds)
        self._y = np.asarray(y)
        self._prepared = []
        for train_index, test_index in self.folds:
            preprocessor = build_preprocessor(columns)
            train = preprocessor.fit_transform(X.iloc[train_index], self._y[train_index])
            test = preprocessor.transform(X.iloc[test_index])
            dl = preprocessor.output_indices_["dl"] if columns.dl else slice(0, 0)
            self._prepared.append((train, test, dl))

    def predict(
        self, fold: int, family: str, params: Mapping[str, Any], options: EstimatorOptions
    ) -> np.ndarray:
        """CLNM probabilities of fold ``fold``'s left-out rows from the head ``family`` with
        ``params``, fitted on the fold's training rows."""
        train, test, dl = self._prepared[fold]
        y_train = self._y[self.folds[fold][0]]
        reduction = _reduction(self.columns, params, options)
        if not isinstance(reduction, str):  # "passthrough": the preprocessed columns as they are
            reduction = clone(reduction)
            train = np.hstack(
                [
                    train[:, : dl.start],
                    reduction.fit_transform(train[:, dl], y_train),
                    train[:, dl.stop :],
                ]
            )
            test = np.hstack(
                [test[:, : dl.start], reduction.transform(test[:, dl]), test[:, dl.stop :]]
            )
        classifier = build_estimator(family, _classifier_parameters(params), options)
        return classifier.fit(train, y_train).predict_proba(test)[:, 1]


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
