"""Optuna search over classifier families, and the refit of the best head.

One Optuna study per (model, family), with a seeded TPE sampler and a median pruner. By
default its name carries a short fingerprint of what makes trials comparable — the training
rows and labels, the family's search space, the CV, class weighting and seed — e.g.
``clinical.logistic_regression.3f9a2c1b``; with ``if_stored_study_differs: error`` or
``replace`` it is plain ``<model>.<family>``. A trial's
objective is the mean ROC AUC of a seeded, stratified, repeated k-fold cross-validation of
the whole head pipeline (preprocessing + reduction + classifier, cloned and fitted inside
every fold). The running mean is reported after each fold so that poor trials stop early.

Only training-centre patients may be passed to the search: :func:`fit_head_on_training_rows`
takes a table with a ``split`` column and keeps the ``train`` rows itself, and
:func:`fit_head` refuses a table that still has identifier, label or split columns.

Studies persist in an Optuna storage (``sqlite:///data/06_models/optuna.db`` by default; any
SQLAlchemy URL, e.g. PostgreSQL, lets several workers share a study). Rerunning continues a
stored study: only the trials still missing to reach ``n_trials`` are run. Several workers
(processes, machines) sharing one study together stop at ``n_trials`` finished trials: each
counts the others' running trials, a trial started beyond the total ends at once as failed
(never counted), and each waits for the others' last trials before it reads the study's best,
so that every worker refits the same head. A study made on
other data or with another search space is never silently continued
(``if_stored_study_differs``):

- ``new_study`` (default): the fingerprint in the name gives other data or settings a study
  of their own, while the same data and settings resume (or share, across workers) theirs;
- ``error``: a stored ``<model>.<family>`` study with another fingerprint stops the run;
- ``replace``: it is deleted and started over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
import optuna
import pandas as pd
import sqlalchemy.exc
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import (
    RepeatedStratifiedKFold,
    StratifiedKFold,
    cross_val_predict,
)
from sklearn.pipeline import Pipeline
from sqlalchemy.engine import make_url
from statsmodels.tools.sm_exceptions import SingularMatrixWarning
from tqdm.auto import tqdm

from clnm_kedro.heads.calibrated import CalibratedHead
from clnm_kedro.heads.families import (
    REDUCTION_PREFIX,
    EstimatorOptions,
    SearchSpace,
    build_estimator,
    complexity_rank,
    draw_family_parameters,
    draw_reduction,
    parse_search_space,
    single_threaded_numerics,
)
from clnm_kedro.heads.preprocess import (
    DEFAULT_DL_PREFIX,
    FeatureColumns,
    build_preprocessor,
    build_reduction,
    feature_columns,
)
from clnm_kedro.metrics.calibration import calibration_intercept_slope
from clnm_kedro.metrics.recalibration import LogitCalibration
from clnm_kedro.reporting.not_drawn import not_drawn

logger = logging.getLogger(__name__)

DEFAULT_STORAGE_URL = "sqlite:///data/06_models/optuna.db"
NON_FEATURE_COLUMNS: tuple[str, ...] = ("patient_id", "center", "clnm", "split", "fold")
FINISHED_STATES: tuple[TrialState, ...] = (TrialState.COMPLETE, TrialState.PRUNED)
# Trials that count towards ``n_trials``: finished ones and those running in any worker.
COUNTED_STATES: tuple[TrialState, ...] = (*FINISHED_STATES, TrialState.RUNNING)
# On a database server (PostgreSQL...), where several workers share studies, a worker's running
# trial writes a heartbeat this often (seconds); one silent for the grace period belongs to a
# worker that died and is marked failed when any worker starts its next trial.
HEARTBEAT_INTERVAL_S = 10
HEARTBEAT_GRACE_S = 60


class SurplusTrialError(RuntimeError):
    """A trial that other workers' trials already make one too many; it is not run."""


STORED_STUDY_POLICIES: tuple[str, ...] = ("new_study", "error", "replace")
FINGERPRINT_LENGTH = 8  # hex digits of the fingerprint in a study name
_HEAD_KEYS = frozenset(
    {
        "search_space",
        "reduction",
        "families",
        "n_trials",
        "timeout_s",
        "cv",
        "class_weight",
        "n_jobs",
        "pruner",
        "if_stored_study_differs",
        "selection",
        "outer_cv",
    }
)
SELECTION_RULES: tuple[str, ...] = ("one_standard_error", "best")
FOLD_AUCS_ATTR = "fold_aucs"  # per-fold AUCs of a trial, kept in the study (Optuna user attr)


@dataclass(frozen=True)
class HeadSpec:
    """Validated settings of a head search (the ``heads`` parameter block).

    Attributes
    ----------
    search_space
        Hyperparameters per family and of the deep-learning feature reduction.
    families
        Families searched (the selection ranks them by the complexity order of
        :data:`~clnm_kedro.heads.families.FAMILIES`, not by this list).
    n_trials
        Trials per family (finished trials of a stored study count).
    timeout_s
        Seconds per family for new trials in this run (``None``: no limit).
    n_splits, n_repeats
        Stratified k-fold cross-validation, repeated ``n_repeats`` times.
    class_weight
        ``None`` (default) or ``"balanced"`` (its offset is taken out by the calibration).
    n_jobs
        Threads for random forest and CatBoost.
    pruner_startup_trials, pruner_warmup_folds
        Median pruner: trials before pruning starts; folds before a trial can be pruned.
    if_stored_study_differs
        ``"new_study"`` (default: study names carry a fingerprint of data and settings, so
        other data or settings start a study of their own), ``"error"`` or ``"replace"``
        (plain ``<model>.<family>`` names; a stored study made on other data or with another
        search space / CV / seed stops the run, or is deleted and started over).
    selection_rule
        ``"one_standard_error"`` (default): the simplest family (complexity order of
        :data:`~clnm_kedro.heads.families.FAMILIES`) whose CV AUC is within one standard error
        of the best; ``"best"``: the highest CV AUC.
    outer_splits
        ``None``: the ``train_cv`` estimate is the selection CV itself (optimistic: the same
        folds chose the family and hyperparameters); ``k >= 2``: nested CV, the whole search
        (every family, its trials, the selection and the calibration) repeated inside each of
        ``k`` outer folds, each scoring the training patients it left out.
    outer_jobs
        Processes that run the outer folds side by side (``-1``: one per CPU core). The
        numbers do not depend on it: each fold is seeded and single-threaded.
    """

    search_space: SearchSpace
    families: tuple[str, ...]
    n_trials: int = 20
    timeout_s: float | None = 30.0
    n_splits: int = 5
    n_repeats: int = 1
    class_weight: str | None = None
    n_jobs: int = 1
    pruner_startup_trials: int = 5
    pruner_warmup_folds: int = 1
    if_stored_study_differs: Literal["new_study", "error", "replace"] = "new_study"
    selection_rule: Literal["one_standard_error", "best"] = "one_standard_error"
    outer_splits: int | None = None
    outer_jobs: int = 1

    def __post_init__(self) -> None:
        _check_positive_int("n_trials", self.n_trials)
        _check_positive_int("cv.n_splits", self.n_splits, minimum=2)
        _check_positive_int("cv.n_repeats", self.n_repeats)
        _check_positive_int("pruner.n_startup_trials", self.pruner_startup_trials, minimum=0)
        _check_positive_int("pruner.n_warmup_steps", self.pruner_warmup_folds, minimum=0)
        if self.timeout_s is not None and (
            isinstance(self.timeout_s, bool)
            or not isinstance(self.timeout_s, int | float)
            or self.timeout_s <= 0
        ):
            raise ValueError(
                f"heads.timeout_s must be a positive number or null; got {self.timeout_s!r}."
            )
        if self.if_stored_study_differs not in STORED_STUDY_POLICIES:
            raise ValueError(
                "heads.if_stored_study_differs must be 'new_study', 'error' or 'replace'; got "
                f"{self.if_stored_study_differs!r}."
            )
        if self.selection_rule not in SELECTION_RULES:
            raise ValueError(
                f"heads.selection.rule must be one of {list(SELECTION_RULES)}; got "
                f"{self.selection_rule!r}."
            )
        if self.outer_splits is not None:
            _check_positive_int("outer_cv.n_splits", self.outer_splits, minimum=2)
        if self.outer_jobs != -1:
            _check_positive_int("outer_cv.n_jobs (or -1)", self.outer_jobs)
        if not self.families:
            raise ValueError("heads.families is empty: name at least one classifier family.")
        missing = [f for f in self.families if f not in self.search_space.families]
        if missing:
            raise ValueError(
                f"heads.families names {missing}, which have no entry in heads.search_space."
            )
        EstimatorOptions(class_weight=self.class_weight, n_jobs=self.n_jobs)

    @property
    def options(self) -> EstimatorOptions:
        """Estimator options without a seed (the seed is given per fit)."""
        return EstimatorOptions(class_weight=self.class_weight, n_jobs=self.n_jobs)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], check_values: bool = True) -> HeadSpec:
        """Build and validate a spec from the ``heads`` parameter block (see module doc).

        ``check_values=False`` skips the probe fits of every search-space value (for scoring
        with a fitted head, where nothing is searched).
        """
        if isinstance(params, HeadSpec):
            return params
        if not isinstance(params, Mapping):
            raise ValueError(
                f"The heads parameters must be a mapping; got {type(params).__name__}."
            )
        unknown = sorted(set(params) - _HEAD_KEYS)
        if unknown:
            raise ValueError(f"heads: unknown keys {unknown}; allowed: {sorted(_HEAD_KEYS)}.")
        if "search_space" not in params:
            raise ValueError("heads.search_space is missing.")
        blocks = {
            name: params.get(name) or {} for name in ("cv", "pruner", "selection", "outer_cv")
        }
        for block, allowed in (
            ("cv", {"n_splits", "n_repeats"}),
            ("pruner", {"n_startup_trials", "n_warmup_steps"}),
            ("selection", {"rule"}),
            ("outer_cv", {"n_splits", "n_jobs"}),
        ):
            if not isinstance(blocks[block], Mapping):
                raise ValueError(f"heads.{block} must be a mapping; got {blocks[block]!r}.")
            extra = sorted(set(blocks[block]) - allowed)
            if extra:
                raise ValueError(
                    f"heads.{block}: unknown keys {extra}; allowed: {sorted(allowed)}."
                )
        cv, pruner = dict(blocks["cv"]), dict(blocks["pruner"])
        class_weight = params.get("class_weight")
        n_jobs = params.get("n_jobs", 1)
        options = EstimatorOptions(class_weight=class_weight, n_jobs=n_jobs)
        space = parse_search_space(
            params["search_space"],
            params.get("reduction"),
            options=options,
            check_values=check_values,
        )
        families = params.get("families") or list(space.families)
        if isinstance(families, str) or not isinstance(families, list | tuple):
            raise ValueError(f"heads.families must be a list of family names; got {families!r}.")
        return cls(
            search_space=space,
            families=tuple(families),
            n_trials=params.get("n_trials", 20),
            timeout_s=params.get("timeout_s", 30.0),
            n_splits=cv.get("n_splits", 5),
            n_repeats=cv.get("n_repeats", 1),
            class_weight=class_weight,
            n_jobs=n_jobs,
            pruner_startup_trials=pruner.get("n_startup_trials", 5),
            pruner_warmup_folds=pruner.get("n_warmup_steps", 1),
            if_stored_study_differs=params.get("if_stored_study_differs", "new_study"),
            selection_rule=blocks["selection"].get("rule", "one_standard_error"),
            outer_splits=blocks["outer_cv"].get("n_splits"),
            outer_jobs=blocks["outer_cv"].get("n_jobs", 1),
        )


@dataclass
class HeadResult:
    """The tuned head of one model.

    Attributes
    ----------
    pipeline
        The selected family's pipeline refitted on all training rows, with its calibration
        (a :class:`~clnm_kedro.heads.calibrated.CalibratedHead`: ``predict_proba`` gives
        calibrated risks).
    family
        Selected family (``spec.selection_rule``; see :func:`select_family`).
    params
        Its hyperparameters: searched and fixed, reduction as ``reduction_method`` /
        ``reduction_n_components``.
    cv_auc
        Its best mean cross-validated AUC.
    comparison
        One row per family: ``model, family, cv_auc, cv_auc_se, n_folds, complexity,
        within_one_se, n_trials, n_pruned, search_seconds, best_params`` (JSON), ``study``
        (its Optuna study name), ``selected``.
    out_of_fold
        Uncalibrated out-of-fold probabilities of the selected configuration on the search's
        folds (mean over repeats), one per training row: what the calibration was fitted on.
    selection_reason
        Why the family was selected, in words.
    studies
        The Optuna study of each family.
    """

    pipeline: CalibratedHead
    family: str
    params: dict[str, Any]
    cv_auc: float
    comparison: pd.DataFrame
    out_of_fold: np.ndarray = field(default_factory=lambda: np.empty(0))
    selection_reason: str = ""
    studies: dict[str, optuna.Study] = field(default_factory=dict)


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"heads.{name} must be a whole number >= {minimum}; got {value!r}.")


# --------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------


def _fold_indices(
    X: pd.DataFrame, y: np.ndarray, spec: HeadSpec, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(cv_splitter(spec, seed).split(X, y))


def make_objective(
    X: pd.DataFrame,
    y: np.ndarray,
    family: str,
    spec: HeadSpec,
    seed: int,
) -> Any:
    """Optuna objective: mean CV AUC of ``family`` on the training rows ``X``, ``y``."""
    columns = feature_columns(X, DEFAULT_DL_PREFIX)
    folds = _fold_indices(X, y, spec, seed)
    options = EstimatorOptions(seed=seed, class_weight=spec.class_weight, n_jobs=spec.n_jobs)
    space = spec.search_space

    def objective(trial: optuna.Trial) -> float:
        params = draw_family_parameters(trial, family, space.families[family])
        if columns.dl and space.reduction:
            method, n_components = draw_reduction(trial, space.reduction)
            params[REDUCTION_PREFIX + "method"] = method
            if n_components is not None:
                params[REDUCTION_PREFIX + "n_components"] = n_components
        pipeline = build_head_pipeline(columns, family, params, options)
        aucs: list[float] = []
        for fold, (train_index, test_index) in enumerate(folds):
            fitted = clone(pipeline).fit(X.iloc[train_index], y[train_index])
            probabilities = fitted.predict_proba(X.iloc[test_index])[:, 1]
            aucs.append(float(roc_auc_score(y[test_index], probabilities)))
            trial.report(float(np.mean(aucs)), fold)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr(FOLD_AUCS_ATTR, aucs)  # for the standard error of the selection
        return float(np.mean(aucs))

    return objective


def _fingerprint(X: pd.DataFrame, y: np.ndarray, family: str, spec: HeadSpec, seed: int) -> str:
    """Hash of everything that makes stored trials comparable: data, space, CV, seed."""
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(X, index=False).to_numpy().tobytes())
    digest.update(json.dumps([str(c) for c in X.columns]).encode())
    digest.update(np.asarray(y, dtype=np.int64).tobytes())
    settings = (
        family,
        spec.search_space.families[family],
        spec.search_space.reduction if feature_columns(X, DEFAULT_DL_PREFIX).dl else None,
        spec.n_splits,
        spec.n_repeats,
        spec.class_weight,
        DEFAULT_DL_PREFIX,
        seed,
    )
    digest.update(repr(settings).encode())
    return digest.hexdigest()


def open_storage(storage_url: str | None) -> optuna.storages.BaseStorage:
    """Open an Optuna storage; ``None`` keeps studies in memory (nothing persists).

    For ``sqlite:///path`` the folder of ``path`` is created if needed.
    """
    if storage_url is None:
        return optuna.storages.InMemoryStorage()
    try:
        url = make_url(storage_url)
    except Exception as error:
        raise ValueError(f"Not a valid Optuna storage URL: {storage_url!r} ({error}).") from error
    if url.drivername.startswith("sqlite") and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    heartbeat = {}
    if not url.drivername.startswith("sqlite"):
        heartbeat = {"heartbeat_interval": HEARTBEAT_INTERVAL_S, "grace_period": HEARTBEAT_GRACE_S}
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                # Optuna flags the heartbeat arguments as experimental (an API-stability note;
                # optuna is pinned), and ignores the same warning for its own heartbeat calls.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(storage_url, **heartbeat)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Two workers starting on an empty database both create Optuna's tables; the
            # slower one fails on a name the other just made, and finds the tables next time.
            if attempt == 2:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


# What every trial's value is: the mean cross-validated AUC (shown under this name by
# optuna-dashboard instead of "Objective Value").
OBJECTIVE_NAME = "cv_auc"


def finished_trials(study: optuna.Study) -> int:
    """Number of complete or pruned trials of ``study``."""
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def _open_study(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    seed: int,
    spec: HeadSpec,
    fingerprint: str,
) -> optuna.Study:
    def create() -> optuna.Study:
        return optuna.create_study(
            storage=storage,
            study_name=study_name,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.MedianPruner(
                n_startup_trials=spec.pruner_startup_trials,
                n_warmup_steps=spec.pruner_warmup_folds,
            ),
            load_if_exists=True,
        )

    study = create()
    stored = study.user_attrs.get("fingerprint")
    if study.trials and stored != fingerprint:
        if spec.if_stored_study_differs != "replace":
            raise ValueError(
                f"The stored Optuna study {study_name!r} was made on other training data or "
                "with another search space, CV or seed, so its trials cannot be continued. "
                "Use another storage_url or model name, delete the study, or set "
                "heads.if_stored_study_differs: new_study (a study per data and settings) or "
                "replace."
            )
        logger.warning(
            "Replacing the stored Optuna study %r: it was made on other training data or settings.",
            study_name,
        )
        optuna.delete_study(study_name=study_name, storage=storage)
        study = create()
    if stored != fingerprint:
        study.set_user_attr("fingerprint", fingerprint)
    if study.metric_names != [OBJECTIVE_NAME]:  # optuna-dashboard's name of the objective
        with warnings.catch_warnings():  # Optuna marks it experimental: its notice, not ours
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([OBJECTIVE_NAME])
    return study


def tune_family(
    X: pd.DataFrame,
    y: np.ndarray,
    family: str,
    spec: HeadSpec,
    *,
    storage: optuna.storages.BaseStorage,
    study_name: str,
    seed: int,
) -> tuple[optuna.Study, float]:
    """Run (or continue) the study of one family; returns it and the seconds spent.

    With ``spec.if_stored_study_differs == "new_study"`` the study is named
    ``<study_name>.<fingerprint>``, otherwise ``study_name``.
    """
    fingerprint = _fingerprint(X, y, family, spec, seed)
    if spec.if_stored_study_differs == "new_study":
        study_name = f"{study_name}.{fingerprint[:FINGERPRINT_LENGTH]}"
    study = _open_study(storage, study_name, seed, spec, fingerprint)
    missing = spec.n_trials - finished_trials(study)
    start = time.perf_counter()
    # Running trials of other workers count towards n_trials. Without heartbeats (SQLite) a
    # trial left running by a killed process would count for ever, so there only trials
    # started after this worker began count (SQLite suits one worker; see the README).
    heartbeat = getattr(storage, "get_heartbeat_interval", lambda: None)()
    since = None if heartbeat is not None else datetime.now()
    if missing > 0:
        objective = make_objective(X, y, family, spec, seed)

        def counted_objective(trial: optuna.Trial) -> float:
            # Two workers can start a trial at the same moment; the later one stands down.
            ahead = [t for t in counted_trials(trial.study, since) if t.number < trial.number]
            if len(ahead) >= spec.n_trials:
                trial.study.stop()
                raise SurplusTrialError(
                    f"study {trial.study.study_name} already has {spec.n_trials} trials "
                    "finished or running in other workers"
                )
            return objective(trial)

        def stop_at_total(study: optuna.Study, trial: FrozenTrial) -> None:
            if len(counted_trials(study, since)) >= spec.n_trials:
                study.stop()

        # A bar over this family's trials (on a terminal only, like the bar over families).
        with tqdm(
            total=missing, desc=f"{family} trials", unit="trial", leave=False, disable=None
        ) as bar:

            def show_progress(study: optuna.Study, trial: FrozenTrial) -> None:
                bar.update(1)
                if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
                    bar.set_postfix(best_cv_auc=f"{study.best_value:.3f}", refresh=False)

            study.optimize(
                counted_objective,
                n_trials=missing,
                timeout=spec.timeout_s,
                catch=(SurplusTrialError,),
                callbacks=[stop_at_total, show_progress],
            )
    if not isinstance(storage, optuna.storages.InMemoryStorage):  # only a stored study is shared
        wait_for_other_workers(study, since)
    return study, time.perf_counter() - start


def counted_trials(study: optuna.Study, since: datetime | None = None) -> list[FrozenTrial]:
    """Trials that count towards ``n_trials``: finished ones, and running ones of any worker.

    ``since``: count only running trials started at or after this time (storages without
    heartbeats, where a dead worker's trial would otherwise stay running for ever).
    """
    return [
        trial
        for trial in study.get_trials(deepcopy=False, states=COUNTED_STATES)
        if trial.state != TrialState.RUNNING
        or since is None
        or (trial.datetime_start is not None and trial.datetime_start >= since)
    ]


def wait_for_other_workers(
    study: optuna.Study, since: datetime | None = None, poll_s: float = 0.2
) -> None:
    """Wait until no other worker runs a counted trial of ``study``, so that its best is final.

    A worker that died leaves a running trial whose heartbeat stops; after the grace period
    the wait ends anyway (and the next trial any worker starts marks that trial failed).
    """
    deadline = time.monotonic() + 2 * HEARTBEAT_GRACE_S + HEARTBEAT_INTERVAL_S

    def running() -> list[FrozenTrial]:
        return [t for t in counted_trials(study, since) if t.state == TrialState.RUNNING]

    announced = False
    while running():
        if time.monotonic() > deadline:
            logger.warning(
                "Study %s still has running trials that no worker updates; using the best of "
                "its finished trials.",
                study.study_name,
            )
            return
        if not announced:
            logger.info("Waiting for other workers' trials of study %s.", study.study_name)
            announced = True
        time.sleep(poll_s)


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Show only Optuna's warnings (not one line per trial) inside the block."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _check_training_data(X: pd.DataFrame, y: Any, spec: HeadSpec) -> np.ndarray:
    if not isinstance(X, pd.DataFrame):
        raise ValueError(f"X must be a pandas DataFrame of features; got {type(X).__name__}.")
    forbidden = [name for name in NON_FEATURE_COLUMNS if name in X.columns]
    if forbidden:
        raise ValueError(
            f"The feature table still has the columns {forbidden}. Pass features only, or pass "
            "the whole table to fit_head_on_training_rows, which keeps the training rows and "
            "drops identifier, label and split columns itself."
        )
    labels = pd.Series(np.asarray(y, dtype=object).ravel())
    if len(labels) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(labels)} labels.")
    bad = labels[~labels.isin([0, 1])]
    if not bad.empty:
        rows = list(X.index[bad.index[:10]])
        raise ValueError(
            f"CLNM labels must be 0 or 1 (no missing values); rows {rows} have "
            f"{list(bad.iloc[:10])}."
        )
    y_array = labels.to_numpy(dtype=np.int64)
    counts = np.bincount(y_array, minlength=2)
    if counts.min() < spec.n_splits:
        raise ValueError(
            f"Stratified {spec.n_splits}-fold cross-validation needs at least {spec.n_splits} "
            f"training patients with and without CLNM; got {counts[1]} with and {counts[0]} "
            "without."
        )
    return y_array


def _check_neighbours(n_rows: int, spec: HeadSpec) -> None:
    """k-NN cannot ask for more neighbours than a training fold has patients."""
    neighbours = spec.search_space.families.get("knn", {}).get("n_neighbors")
    if "knn" not in spec.families or neighbours is None:
        return
    if neighbours.kind in ("int", "float"):
        largest = neighbours.high
    elif neighbours.kind == "categorical":
        largest = max(neighbours.choices)
    else:
        largest = neighbours.value
    fold_size = n_rows - math.ceil(n_rows / spec.n_splits)
    if largest > fold_size:
        raise ValueError(
            f"heads.search_space.knn.n_neighbors goes up to {largest}, but a training fold of "
            f"{spec.n_splits}-fold cross-validation has only {fold_size} of the {n_rows} "
            f"training patients; lower it to at most {fold_size}."
        )


def cv_standard_error(fold_aucs: Iterable[float], n_splits: int) -> float:
    """Standard error of a mean cross-validated AUC from its per-fold AUCs.

    The per-fold AUCs of k-fold CV (repeated or not) are not independent: their training
    sets overlap. The naive ``sd / sqrt(n_folds)`` is too small, and shrinks further with
    every repeat although repeats add little information. This uses the corrected
    resampled variance of Nadeau & Bengio (2003, *Machine Learning* 52:239), as Bouckaert &
    Frank (2004) apply it to repeated k-fold CV: ``sd * sqrt(1 / n_folds + 1 / (k - 1))``
    (``n_test / n_train = 1 / (k - 1)``). NaN with fewer than two folds.
    """
    values = np.asarray(list(fold_aucs), dtype=float)
    if values.size < 2 or n_splits < 2:
        return float("nan")
    return float(values.std(ddof=1) * math.sqrt(1.0 / values.size + 1.0 / (n_splits - 1)))


def select_family(comparison: pd.DataFrame, rule: str = "one_standard_error") -> tuple[int, str]:
    """The row of ``comparison`` to select, and why, in words.

    ``comparison`` has one row per family: ``family``, ``cv_auc`` (mean CV AUC of its best
    configuration) and ``cv_auc_se`` (its standard error, :func:`cv_standard_error`).

    - ``"best"``: the highest ``cv_auc`` (ties: the simpler family).
    - ``"one_standard_error"`` (Breiman et al. 1984; Hastie, Tibshirani & Friedman, *The
      Elements of Statistical Learning*, 7.10): the simplest family, in the complexity order
      of :data:`~clnm_kedro.heads.families.FAMILIES`, whose ``cv_auc`` is at least the best
      ``cv_auc`` minus the best family's standard error. Differences smaller than that are
      noise of the folds, and picking the maximum of six tuned families picks the luckiest.
      Without a standard error (a study from before per-fold AUCs were kept) the best is taken.

    Raises
    ------
    ValueError
        If no family has a finite ``cv_auc`` or ``rule`` is unknown.
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"Unknown selection rule {rule!r}; use one of {list(SELECTION_RULES)}.")
    auc = comparison["cv_auc"].to_numpy(dtype=float)
    finite = np.isfinite(auc)
    if not finite.any():
        raise ValueError("No family has a cross-validated AUC to select on.")
    rank = np.array([complexity_rank(f) for f in comparison["family"]])
    # Highest AUC; among equal AUCs, the simpler family.
    order = sorted(np.flatnonzero(finite), key=lambda i: (-auc[i], rank[i]))
    best = int(order[0])
    best_name, best_auc = comparison["family"].iloc[best], auc[best]
    if rule == "best":
        return best, f"{best_name}: highest cross-validated AUC ({best_auc:.3f})"
    se = float(comparison["cv_auc_se"].iloc[best])
    if not np.isfinite(se):
        return best, (
            f"{best_name}: highest cross-validated AUC ({best_auc:.3f}); no standard error "
            "(per-fold AUCs not stored), so the one-standard-error rule could not be applied"
        )
    floor = best_auc - se
    eligible = [i for i in np.flatnonzero(finite) if auc[i] >= floor]
    chosen = int(min(eligible, key=lambda i: (rank[i], -auc[i])))
    name = comparison["family"].iloc[chosen]
    if chosen == best:
        return chosen, (
            f"{name}: highest cross-validated AUC ({best_auc:.3f}, SE {se:.3f}) and no simpler "
            f"family within one standard error (>= {floor:.3f})"
        )
    return chosen, (
        f"{name}: simplest family within one standard error of the best ({name} "
        f"{auc[chosen]:.3f} >= {best_name} {best_auc:.3f} - SE {se:.3f} = {floor:.3f})"
    )


def _comparison_row(
    model_name: str,
    family: str,
    study: optuna.Study,
    seconds: float,
    space: SearchSpace,
    *,
    n_splits: int,
) -> dict[str, Any]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    best_params = resolved_parameters(family, study.best_trial.params, space) if complete else None
    fold_aucs = study.best_trial.user_attrs.get(FOLD_AUCS_ATTR, []) if complete else []
    return {
        "model": model_name,
        "family": family,
        "cv_auc": study.best_value if complete else float("nan"),
        "cv_auc_se": cv_standard_error(fold_aucs, n_splits),
        "n_folds": len(fold_aucs),
        "complexity": complexity_rank(family),
        "n_trials": len(complete) + len(pruned),
        "n_pruned": len(pruned),
        "search_seconds": round(seconds, 2),
        "best_params": json.dumps(best_params, sort_keys=True, default=str),
        "study": study.study_name,
    }


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
    columns = feature_columns(X, DEFAULT_DL_PREFIX)
    storage = open_storage(storage_url)
    studies: dict[str, optuna.Study] = {}
    rows: list[dict[str, Any]] = []
    with quiet_optuna(), single_threaded_numerics():
        for family in tqdm(spec.families, desc=f"Tuning {model_name} heads", disable=None):
            study, seconds = tune_family(
                X,
                y_array,
                family,
                spec,
                storage=storage,
                study_name=f"{model_name}.{family}",
                seed=seed,
            )
            studies[family] = study
            row = _comparison_row(
                model_name, family, study, seconds, spec.search_space, n_splits=spec.n_splits
            )
            rows.append(row)
            logger.info(
                "%s model, %s: best cross-validated AUC %.3f over %d trials (%d stopped early), "
                "%.1f s.",
                model_name,
                family,
                row["cv_auc"],
                row["n_trials"],
                row["n_pruned"],
                seconds,
            )
    comparison = pd.DataFrame(rows)
    if comparison["cv_auc"].isna().all():
        raise ValueError(
            f"No trial of any family completed for model {model_name!r}; raise heads.timeout_s."
        )
    best, reason = select_family(comparison, spec.selection_rule)
    top = comparison["cv_auc"].max()
    floor = top - comparison.loc[comparison["cv_auc"].idxmax(), "cv_auc_se"]
    comparison["within_one_se"] = comparison["cv_auc"] >= floor
    comparison["selected"] = np.arange(len(comparison)) == best
    family = str(comparison.loc[best, "family"])
    params = resolved_parameters(family, studies[family].best_params, spec.search_space)
    options = EstimatorOptions(seed=seed, class_weight=spec.class_weight, n_jobs=spec.n_jobs)
    with single_threaded_numerics():
        pipeline = build_head_pipeline(columns, family, params, options).fit(X, y_array)
        out_of_fold = selection_out_of_fold(pipeline, X, y_array, spec, seed)
    calibration = calibrate_head(y_array, out_of_fold, model_name)
    cv_auc = float(comparison.loc[best, "cv_auc"])
    logger.info(
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
        n_patients, family, inner_cv_auc, outer_auc, calibration_intercept,
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


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def optuna_figures(study: optuna.Study) -> dict[str, Figure | None]:
    """Optuna's optimisation-history and parameter-importance figures of ``study``.

    Returns
    -------
    dict
        ``{"optimization_history": Figure | None, "param_importances": Figure | None}``;
        ``None`` where the study has fewer than two complete trials (or, for importances,
        no searched hyperparameter or no CV AUC that varies: fANOVA has nothing to explain). A
        plot that fails anyway never fails the run: it is logged, and its figure only says that
        it could not be drawn and why.
    """
    import warnings  # noqa: PLC0415

    import matplotlib  # noqa: PLC0415
    from optuna.visualization import matplotlib as optuna_matplotlib  # noqa: PLC0415

    figures: dict[str, Figure | None] = {"optimization_history": None, "param_importances": None}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return figures
    # Optuna switches matplotlib to its "ggplot" style for good; keep that to these figures.
    with warnings.catch_warnings(), matplotlib.rc_context():
        # optuna marks its matplotlib plots as experimental; that is optuna's own notice.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            axes = optuna_matplotlib.plot_optimization_history(study)
            axes.set_title(f"Optimisation history: {study.study_name}")
            axes.set_ylabel("Mean cross-validated AUC")  # the objective; pruned trials not shown
            figures["optimization_history"] = axes.figure
        except Exception as error:  # a figure never sinks a run
            figures["optimization_history"] = not_drawn(
                f"Optimisation history: {study.study_name}", error
            )
        varying = {
            name
            for name in complete[0].params
            if all(name in t.params for t in complete)
            and len({repr(t.params[name]) for t in complete}) > 1
        }
        if varying and len({t.value for t in complete}) > 1:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)  # repeatable
            try:
                axes = optuna_matplotlib.plot_param_importances(
                    study, evaluator=evaluator, params=sorted(varying)
                )
                # Optuna's own title sits on the left: replace it rather than overlap it.
                axes.set_title(f"Hyperparameter importance: {study.study_name}", loc="left")
                axes.figure.set_layout_engine("tight")  # room for long hyperparameter names
                figures["param_importances"] = axes.figure
            except Exception as error:  # e.g. tied trials: "zero total variance in all trees"
                figures["param_importances"] = not_drawn(
                    f"Hyperparameter importance: {study.study_name}", error
                )
    return figures
