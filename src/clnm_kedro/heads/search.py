"""Search over classifier families and the refit of the best head, from features or from a
head table.

:func:`fit_head` tunes every family (one Optuna study each, :mod:`clnm_kedro.heads.studies`),
selects one (:mod:`clnm_kedro.heads.selection`), refits it on all training rows and calibrates
it on its out-of-fold predictions.

Only training-centre patients may be passed to the search: :func:`fit_head_on_training_rows`
takes a table with a ``split`` column and keeps the ``train`` rows itself, and
:func:`fit_head` refuses a table that still has identifier, label or split columns.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import joblib
import numpy as np
import optuna
import pandas as pd
from sklearn.pipeline import Pipeline
from statsmodels.tools.sm_exceptions import SingularMatrixWarning
from tqdm.auto import tqdm

from clnm_kedro.heads.calibrated import CalibratedHead
from clnm_kedro.heads.families import FAMILIES, EstimatorOptions, single_threaded_numerics
from clnm_kedro.heads.figures import optuna_figures
from clnm_kedro.heads.head_pipeline import (
    build_head_pipeline,
    cv_splitter,
    out_of_fold_probabilities,
    resolved_parameters,
    selection_out_of_fold,
)
from clnm_kedro.heads.preprocess import DEFAULT_DL_PREFIX, feature_columns
from clnm_kedro.heads.selection import (
    _comparison_row,
    cv_standard_error,
    select_family,
    within_one_standard_error,
)
from clnm_kedro.heads.spec import (
    NON_FEATURE_COLUMNS,
    HeadResult,
    HeadSpec,
    _check_neighbours,
    _check_training_data,
)
from clnm_kedro.heads.studies import (
    DEFAULT_STORAGE_URL,
    absolute_storage_url,
    open_storage,
    quiet_optuna,
    tune_family,
)
from clnm_kedro.metrics.calibration import calibration_intercept_slope
from clnm_kedro.metrics.recalibration import LogitCalibration

logger = logging.getLogger(__name__)

# This module once held the whole search; the names that moved out stay importable from here
# (the package, clnm_kedro.heads, exports them all). To patch one in a test, patch its new home.
__all__ = [
    "DEFAULT_STORAGE_URL",
    "NON_FEATURE_COLUMNS",
    "HeadResult",
    "HeadSpec",
    "build_head_pipeline",
    "calibrate_head",
    "cv_splitter",
    "cv_standard_error",
    "feature_table",
    "finish_head",
    "fit_head",
    "fit_head_on_training_rows",
    "open_storage",
    "optuna_figures",
    "out_of_fold_probabilities",
    "predict_head",
    "select_family",
    "selection_out_of_fold",
    "training_rows",
    "tune_family",
]


def tune_one_family(
    *,
    X: pd.DataFrame,
    y: np.ndarray,
    family: str,
    spec: HeadSpec,
    storage_url: str | None,
    study_name: str,
    seed: int,
    progress: bool = True,
) -> tuple[optuna.Study, float]:
    """One family's study (in this process or a worker's): its storage opened here, Optuna
    quiet, BLAS single-threaded. Returns the study and the seconds it took."""
    with quiet_optuna(), single_threaded_numerics():
        return tune_family(
            X,
            y,
            family,
            spec,
            storage=open_storage(storage_url),
            study_name=study_name,
            seed=seed,
            progress=progress,
        )


def searched_in_processes(spec: HeadSpec, n_tasks: int) -> int:
    """Worker processes for ``n_tasks`` studies: ``spec.processes`` (-1: one per core), at
    most one per study; 1 runs them in this process."""
    processes = joblib.cpu_count() if spec.processes == -1 else spec.processes
    return max(1, min(processes, n_tasks))


def run_studies(
    tasks: list[dict[str, Any]], spec: HeadSpec, *, desc: str
) -> list[tuple[optuna.Study, float]]:
    """Run the studies ``tasks`` (each the keyword arguments of :func:`tune_one_family` but
    ``spec``) side by side in ``spec.processes`` worker processes; results in task order.

    The numbers do not depend on where a study runs: each is seeded and single-threaded, and
    shares nothing with the others.
    """
    processes = searched_in_processes(spec, len(tasks))
    if processes == 1:
        return [tune_one_family(spec=spec, **task) for task in tqdm(tasks, desc=desc, disable=None)]
    # The most costly studies first (longest processing time first), so the workers end together.
    order = sorted(range(len(tasks)), key=lambda i: -FAMILIES[tasks[i]["family"]].relative_cost)
    calls = (
        joblib.delayed(tune_one_family)(spec=spec, progress=False, **tasks[i]) for i in order
    )
    results = joblib.Parallel(n_jobs=processes, backend="loky", return_as="generator")(calls)
    progress = tqdm(results, total=len(tasks), desc=desc, disable=None)
    finished = dict(zip(order, progress, strict=True))
    return [finished[i] for i in range(len(tasks))]


def fit_head(
    X: pd.DataFrame,
    y: pd.Series | np.ndarray,
    spec: HeadSpec | Mapping[str, Any],
    *,
    storage_url: str | None = DEFAULT_STORAGE_URL,
    model_name: str = "head",
    seed: int = 0,
) -> HeadResult:
    """Tune every family by cross-validation, pick the best, refit it on all training rows.

    The caller must pass training-centre patients only (features and CLNM labels); prefer
    :func:`fit_head_on_training_rows`, which selects them from a table with a ``split``
    column.

    Parameters
    ----------
    X
        Training features (no identifier, label or split columns).
    y
        CLNM labels (0/1) of the same rows.
    spec
        A :class:`HeadSpec` or the ``heads`` parameter block.
    storage_url
        Optuna storage URL (``None``: in memory, nothing persists).
    model_name
        Prefix of the study names (``<model_name>.<family>``, plus the fingerprint by
        default), e.g. ``clinical``.
    seed
        Seed of the CV split, the TPE sampler and every estimator.

    Returns
    -------
    HeadResult
        The refitted selected head with its calibration, its parameters and CV AUC, the
        family comparison, the out-of-fold predictions the calibration was fitted on, the
        studies.
    """
    spec = HeadSpec.from_params(spec)
    y_array = _check_training_data(X, y, spec)
    _check_neighbours(len(X), spec)
    # One database for every worker, whatever folder it was started in; a new database's
    # tables are made here, before any worker opens it.
    storage_url = absolute_storage_url(storage_url)
    open_storage(storage_url)
    tasks = [
        {
            "X": X,
            "y": y_array,
            "family": family,
            "storage_url": storage_url,
            "study_name": f"{model_name}.{family}",
            "seed": seed,
        }
        for family in spec.families
    ]
    tuned = run_studies(tasks, spec, desc=f"Tuning {model_name} heads")
    return finish_head(
        X,
        y_array,
        spec,
        dict(zip(spec.families, tuned, strict=True)),
        model_name=model_name,
        seed=seed,
    )


def finish_head(
    X: pd.DataFrame,
    y: np.ndarray,
    spec: HeadSpec,
    tuned: Mapping[str, tuple[optuna.Study, float]],
    *,
    model_name: str,
    seed: int,
    log_level: int = logging.INFO,
) -> HeadResult:
    """Compare the tuned families (``tuned``: study and seconds per family), select one by
    ``spec``'s rule, refit it on all of ``X`` and calibrate it on its out-of-fold predictions.
    """
    studies = {family: study for family, (study, _) in tuned.items()}
    rows: list[dict[str, Any]] = []
    for family, (study, seconds) in tuned.items():
        row = _comparison_row(
            model_name, family, study, seconds, spec.search_space, n_splits=spec.n_splits
        )
        rows.append(row)
        logger.log(
            log_level,
            "%s model, %s: best cross-validated log loss %.3f (AUC %.3f) over %d trials "
            "(%d stopped early), %.1f s.",
            model_name,
            family,
            row["cv_log_loss"],
            row["cv_auc"],
            row["n_trials"],
            row["n_pruned"],
            seconds,
        )
    comparison = pd.DataFrame(rows)
    if comparison[f"cv_{spec.selection_metric}"].isna().all():
        raise ValueError(
            f"No trial of any family completed for model {model_name!r}; raise heads.timeout_s."
        )
    best, reason = select_family(comparison, spec.selection_rule, spec.selection_metric)
    comparison["within_one_se"] = within_one_standard_error(comparison, spec.selection_metric)
    comparison["selected"] = np.arange(len(comparison)) == best
    family = str(comparison.loc[best, "family"])
    params = resolved_parameters(family, studies[family].best_params, spec.search_space)
    options = EstimatorOptions(seed=seed, class_weight=spec.class_weight, n_jobs=spec.n_jobs)
    columns = feature_columns(X, DEFAULT_DL_PREFIX)
    with single_threaded_numerics():
        pipeline = build_head_pipeline(columns, family, params, options).fit(X, y)
        out_of_fold = selection_out_of_fold(pipeline, X, y, spec, seed)
    calibration = calibrate_head(y, out_of_fold, model_name)
    cv_auc = float(comparison.loc[best, "cv_auc"])
    logger.log(
        log_level,
        "%s model: selected %s (%s), refitted on %d training patients; calibration on its "
        "out-of-fold predictions: intercept %.3f, slope %.3f.",
        model_name,
        family,
        reason,
        len(X),
        calibration.intercept,
        calibration.slope,
    )
    return HeadResult(
        CalibratedHead(pipeline, calibration),
        family,
        params,
        cv_auc,
        comparison,
        out_of_fold,
        reason,
        studies,
    )


def calibrate_head(
    y: np.ndarray, out_of_fold: np.ndarray, model_name: str = "head"
) -> LogitCalibration:
    """The head's calibration: intercept and slope on its out-of-fold predictions.

    A slope that is not positive would reverse the head's ranking. It happens when the
    out-of-fold predictions carry no information (a head that shrank every coefficient to
    zero predicts, in each fold, about the prevalence of that fold's training part, which is
    lower where the held-out part has more events). Then only the intercept is refitted
    (slope kept at 1: calibration-in-the-large), with a warning.
    """
    with warnings.catch_warnings():
        # Predictions that hardly vary make the slope's design nearly singular (see above).
        warnings.simplefilter("ignore", SingularMatrixWarning)
        calibration = LogitCalibration.fit(y, out_of_fold)
        if calibration.slope > 0:
            return calibration
        intercept = calibration_intercept_slope(y, out_of_fold).intercept
    logger.warning(
        "%s model: the calibration slope of the selected head's out-of-fold predictions is "
        "%.3f (they carry no information about CLNM); only its intercept is recalibrated.",
        model_name,
        calibration.slope,
    )
    return LogitCalibration(float(intercept), 1.0, n=calibration.n, events=calibration.events)


# --------------------------------------------------------------------------------------
# Table-level entry points (training rows selected here, never by the caller)
# --------------------------------------------------------------------------------------


def feature_table(
    table: pd.DataFrame, non_feature_columns: Iterable[str] = NON_FEATURE_COLUMNS
) -> pd.DataFrame:
    """The feature columns of a head table (identifier, label and split columns dropped)."""
    return table.drop(columns=[c for c in non_feature_columns if c in table.columns])


def training_rows(
    table: pd.DataFrame, split_column: str = "split", train_value: str = "train"
) -> pd.DataFrame:
    """The rows of ``table`` whose ``split`` is ``train``; raises if there are none."""
    if split_column not in table.columns:
        raise ValueError(
            f"The table has no {split_column!r} column, so training-centre patients cannot be "
            "told apart from external ones."
        )
    rows = table[table[split_column] == train_value]
    if rows.empty:
        found = sorted(map(str, table[split_column].dropna().unique()))
        raise ValueError(
            f"The table has no training rows ({split_column} == {train_value!r}); splits "
            f"present: {found}."
        )
    return rows


def fit_head_on_training_rows(
    table: pd.DataFrame,
    spec: HeadSpec | Mapping[str, Any],
    *,
    storage_url: str | None = DEFAULT_STORAGE_URL,
    model_name: str = "head",
    seed: int = 0,
    target: str = "clnm",
    non_feature_columns: Iterable[str] = NON_FEATURE_COLUMNS,
) -> HeadResult:
    """Fit a head on the training rows of a table that also holds external patients.

    Only rows with ``split == "train"`` are used for tuning, selection and the refit;
    external rows are dropped here, before anything is fitted.

    Parameters
    ----------
    table
        Head table: ``patient_id``, ``split``, ``clnm`` (+ other non-feature columns) and
        the feature columns.
    spec, storage_url, model_name, seed
        As in :func:`fit_head`.
    target
        Label column.
    non_feature_columns
        Columns that are never features.

    Returns
    -------
    HeadResult
        As :func:`fit_head`.
    """
    train = training_rows(table)
    if target not in train.columns:
        raise ValueError(f"The table has no label column {target!r}.")
    missing = train[train[target].isna()]
    if not missing.empty:
        who = list(missing.get("patient_id", missing.index)[:10])
        raise ValueError(f"Training patients without a {target} label: {who}.")
    return fit_head(
        feature_table(train, non_feature_columns),
        train[target].to_numpy(),
        spec,
        storage_url=storage_url,
        model_name=model_name,
        seed=seed,
    )


def predict_head(
    pipeline: Pipeline,
    table: pd.DataFrame,
    non_feature_columns: Iterable[str] = NON_FEATURE_COLUMNS,
) -> np.ndarray:
    """CLNM probability of every row of ``table`` from a fitted head.

    Raises
    ------
    ValueError
        If ``table`` lacks a feature column the head was fitted on.
    """
    features = feature_table(table, non_feature_columns)
    missing = [name for name in pipeline.feature_names_in_ if name not in features.columns]
    if missing:
        raise ValueError(f"The table lacks the feature columns the head was fitted on: {missing}.")
    return pipeline.predict_proba(features)[:, 1]
