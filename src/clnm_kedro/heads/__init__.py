"""Classifier heads: preprocessing, Optuna-tuned classifier families, selection (one-standard-error
rule), refit and calibration of the chosen head, nested CV.

Modules: :mod:`~clnm_kedro.heads.spec` (the ``heads`` settings, the result),
:mod:`~clnm_kedro.heads.families` and :mod:`~clnm_kedro.heads.preprocess` (what a head is
made of), :mod:`~clnm_kedro.heads.head_pipeline` (a head pipeline and its out-of-fold
predictions), :mod:`~clnm_kedro.heads.studies` (Optuna storage, one study per family, workers
sharing it), :mod:`~clnm_kedro.heads.selection` (the family chosen),
:mod:`~clnm_kedro.heads.search` (search, refit and calibration; table-level entry points),
:mod:`~clnm_kedro.heads.nested` (nested CV), :mod:`~clnm_kedro.heads.figures` (Optuna figures),
:mod:`~clnm_kedro.heads.calibrated` (the fitted head with its calibration).

Plain scikit-learn / Optuna code, importable without Kedro. The ``clinical_modeling`` and
``fusion`` pipelines call :func:`fit_head_on_training_rows` (or :func:`fit_head`) once per
model (``clinical``, ``dl_features``, ``combined``); :mod:`clnm_kedro.heads.tables` builds
their input tables.
"""

from __future__ import annotations

from clnm_kedro.heads.calibrated import CalibratedHead
from clnm_kedro.heads.families import (
    FAMILIES,
    EstimatorOptions,
    HyperParameter,
    SearchSpace,
    build_estimator,
    complexity_rank,
    parse_search_space,
)
from clnm_kedro.heads.figures import optuna_figures
from clnm_kedro.heads.head_pipeline import (
    build_head_pipeline,
    cv_splitter,
    out_of_fold_probabilities,
    selection_out_of_fold,
)
from clnm_kedro.heads.nested import nested_out_of_fold
from clnm_kedro.heads.preprocess import (
    REDUCTION_METHODS,
    FeatureColumns,
    build_preprocessor,
    build_reduction,
    feature_columns,
)
from clnm_kedro.heads.search import (
    feature_table,
    fit_head,
    fit_head_on_training_rows,
    predict_head,
    training_rows,
)
from clnm_kedro.heads.selection import cv_standard_error, select_family
from clnm_kedro.heads.spec import NON_FEATURE_COLUMNS, HeadResult, HeadSpec
from clnm_kedro.heads.studies import DEFAULT_STORAGE_URL, open_storage

__all__ = [
    "DEFAULT_STORAGE_URL",
    "FAMILIES",
    "NON_FEATURE_COLUMNS",
    "REDUCTION_METHODS",
    "CalibratedHead",
    "EstimatorOptions",
    "FeatureColumns",
    "HeadResult",
    "HeadSpec",
    "HyperParameter",
    "SearchSpace",
    "build_estimator",
    "build_head_pipeline",
    "build_preprocessor",
    "build_reduction",
    "complexity_rank",
    "cv_splitter",
    "cv_standard_error",
    "feature_columns",
    "feature_table",
    "fit_head",
    "fit_head_on_training_rows",
    "nested_out_of_fold",
    "open_storage",
    "optuna_figures",
    "out_of_fold_probabilities",
    "parse_search_space",
    "predict_head",
    "select_family",
    "selection_out_of_fold",
    "training_rows",
]
