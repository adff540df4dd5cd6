"""Classifier heads: preprocessing, Optuna-tuned classifier families, selection (one-standard-error
rule), refit and calibration of the chosen head, nested CV.

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
from clnm_kedro.heads.preprocess import (
    REDUCTION_METHODS,
    FeatureColumns,
    build_preprocessor,
    build_reduction,
    feature_columns,
)
from clnm_kedro.heads.search import (
    DEFAULT_STORAGE_URL,
    NON_FEATURE_COLUMNS,
    HeadResult,
    HeadSpec,
    build_head_pipeline,
    cv_splitter,
    cv_standard_error,
    feature_table,
    fit_head,
    fit_head_on_training_rows,
    nested_out_of_fold,
    open_storage,
    optuna_figures,
    out_of_fold_probabilities,
    predict_head,
    select_family,
    selection_out_of_fold,
    training_rows,
)

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
