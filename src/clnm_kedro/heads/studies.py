"""Optuna studies of the head search: storage, study names and fingerprints, the tuning of
one family, and the coordination of workers that share a study.

One Optuna study per (model, family), with a seeded TPE sampler and a median pruner. By
default its name carries a short fingerprint of what makes trials comparable — the training
rows and labels, the family's search space, the CV, class weighting and seed — e.g.
``clinical.logistic_regression.3f9a2c1b``; with ``if_stored_study_differs: error`` or
``replace`` it is plain ``<model>.<family>``. A trial's
objective (``heads.selection.metric``) is the mean log loss (default; minimised) or the mean
ROC AUC (maximised) of a seeded, stratified, repeated k-fold cross-validation of the whole head
pipeline (preprocessing + reduction + classifier, cloned and fitted inside every fold); both
are kept per fold for every trial. The running mean is reported after each fold so that poor
trials stop early.

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
import time
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState
from sklearn.metrics import log_loss, roc_auc_score
from sqlalchemy.engine import URL, make_url
from tqdm.auto import tqdm

from clnm_kedro.heads.families import (
    REDUCTION_PREFIX,
    EstimatorOptions,
    draw_family_parameters,
    draw_reduction,
)
from clnm_kedro.heads.head_pipeline import PreprocessedFolds, cv_splitter
from clnm_kedro.heads.preprocess import DEFAULT_DL_PREFIX, feature_columns
from clnm_kedro.heads.spec import HeadSpec

logger = logging.getLogger(__name__)

DEFAULT_STORAGE_URL = "sqlite:///data/06_models/optuna.db"
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


FINGERPRINT_LENGTH = 8  # hex digits of the fingerprint in a study name
FOLD_AUCS_ATTR = "fold_aucs"  # per-fold AUCs of a trial, kept in the study (Optuna user attr)
FOLD_LOG_LOSSES_ATTR = "fold_log_losses"  # and its per-fold log losses
# Per-fold scores of a trial, by selection metric (the standard error of the selection).
FOLD_ATTRS = {"auc": FOLD_AUCS_ATTR, "log_loss": FOLD_LOG_LOSSES_ATTR}
# A probability of exactly 0 or 1 (k-NN, a random forest's votes) is clipped before the log.
LOG_LOSS_CLIP = 1e-6


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
    """Optuna objective: the mean CV ``spec.selection_metric`` (log loss or AUC) of
    ``family`` on the training rows ``X``, ``y``; both scores are kept per fold."""
    columns = feature_columns(X, DEFAULT_DL_PREFIX)
    folds = PreprocessedFolds(X, y, columns, _fold_indices(X, y, spec, seed))
    options = EstimatorOptions(seed=seed, class_weight=spec.class_weight, n_jobs=spec.n_jobs)
    space = spec.search_space

    def objective(trial: optuna.Trial) -> float:
        params = draw_family_parameters(trial, family, space.families[family])
        if columns.dl and space.reduction:
            method, n_components = draw_reduction(trial, space.reduction)
            params[REDUCTION_PREFIX + "method"] = method
            if n_components is not None:
                params[REDUCTION_PREFIX + "n_components"] = n_components
        scores: dict[str, list[float]] = {"auc": [], "log_loss": []}
        for fold, (_, test_index) in enumerate(folds.folds):
            probabilities = folds.predict(fold, family, params, options)
            scores["auc"].append(float(roc_auc_score(y[test_index], probabilities)))
            clipped = np.clip(probabilities, LOG_LOSS_CLIP, 1.0 - LOG_LOSS_CLIP)
            scores["log_loss"].append(float(log_loss(y[test_index], clipped, labels=[0, 1])))
            trial.report(float(np.mean(scores[spec.selection_metric])), fold)
            if trial.should_prune():
                raise optuna.TrialPruned()
        for metric, attr in FOLD_ATTRS.items():  # for the standard error of the selection
            trial.set_user_attr(attr, scores[metric])
        return float(np.mean(scores[spec.selection_metric]))

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
        spec.selection_metric,
    )
    digest.update(repr(settings).encode())
    return digest.hexdigest()


def _parsed_url(storage_url: str) -> URL:
    try:
        return make_url(storage_url)
    except Exception as error:
        raise ValueError(f"Not a valid Optuna storage URL: {storage_url!r} ({error}).") from error


def _sqlite_file(url: URL) -> str | None:
    """The database file of a SQLite URL; ``None`` for another database or in-memory SQLite."""
    if url.drivername.startswith("sqlite") and url.database not in (None, "", ":memory:"):
        return url.database
    return None


def absolute_storage_url(storage_url: str | None) -> str | None:
    """``storage_url`` with a relative SQLite path made absolute (from the current folder), so
    that a worker process started in another folder opens the same database."""
    if storage_url is None:
        return None
    url = _parsed_url(storage_url)
    database = _sqlite_file(url)
    if database is None:
        return storage_url
    return url.set(database=str(Path(database).resolve())).render_as_string(hide_password=False)


def open_storage(storage_url: str | None) -> optuna.storages.BaseStorage:
    """Open an Optuna storage; ``None`` keeps studies in memory (nothing persists).

    For ``sqlite:///path`` the folder of ``path`` is created if needed.
    """
    if storage_url is None:
        return optuna.storages.InMemoryStorage()
    url = _parsed_url(storage_url)
    database = _sqlite_file(url)
    if database is not None:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
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


# What every trial's value is, by selection metric (shown under this name by optuna-dashboard
# instead of "Objective Value"), and whether a study maximises or minimises it.
OBJECTIVE_NAMES = {"log_loss": "cv_log_loss", "auc": "cv_auc"}
DIRECTIONS = {"log_loss": "minimize", "auc": "maximize"}


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
            direction=DIRECTIONS[spec.selection_metric],
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
    name = OBJECTIVE_NAMES[spec.selection_metric]
    if study.metric_names != [name]:  # optuna-dashboard's name of the objective
        with warnings.catch_warnings():  # Optuna marks it experimental: its notice, not ours
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([name])
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
    progress: bool = True,
) -> tuple[optuna.Study, float]:
    """Run (or continue) the study of one family; returns it and the seconds spent.

    ``progress``: a bar over its trials on a terminal (off in worker processes, whose bars
    would interleave).

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
            total=missing,
            desc=f"{family} trials",
            unit="trial",
            leave=False,
            disable=None if progress else True,
        ) as bar:

            def show_progress(study: optuna.Study, trial: FrozenTrial) -> None:
                bar.update(1)
                if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
                    best = {OBJECTIVE_NAMES[spec.selection_metric]: f"{study.best_value:.3f}"}
                    bar.set_postfix(best, refresh=False)

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
