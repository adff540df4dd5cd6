"""Settings of a head search (the ``heads`` parameter block), its result, and the checks of
training data against them.

:class:`HeadSpec` parses and validates the block once, before anything is fitted;
:class:`HeadResult` is what :func:`~clnm_kedro.heads.search.fit_head` returns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd

from clnm_kedro.checks import whole_number
from clnm_kedro.heads.calibrated import CalibratedHead
from clnm_kedro.heads.families import EstimatorOptions, SearchSpace, parse_search_space

NON_FEATURE_COLUMNS: tuple[str, ...] = ("patient_id", "center", "clnm", "split", "fold")

STORED_STUDY_POLICIES: tuple[str, ...] = ("new_study", "error", "replace")
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
        "processes",
    }
)
SELECTION_RULES: tuple[str, ...] = ("one_standard_error", "best")
# What the search optimises and the selection compares: the mean cross-validated log loss (a
# proper scoring rule: it rewards discrimination and calibration together, so a penalty cannot
# run to a bound that flattens every probability, as it can when only the ranking counts) or
# the mean cross-validated AUC.
SELECTION_METRICS: tuple[str, ...] = ("log_loss", "auc")


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
        :data:`~clnm_kedro.heads.families.FAMILIES`) whose CV score is within one standard
        error of the best; ``"best"``: the best CV score.
    selection_metric
        The CV score the trials optimise and the selection compares: ``"log_loss"`` (default,
        lower is better) or ``"auc"``.
    outer_splits
        ``None``: the ``train_cv`` estimate is the selection CV itself (optimistic: the same
        folds chose the family and hyperparameters); ``k >= 2``: nested CV, the whole search
        (every family, its trials, the selection and the calibration) repeated inside each of
        ``k`` outer folds, each scoring the training patients it left out.
    processes
        Worker processes the studies run in side by side: every family's study of a search,
        and with nested CV every (outer fold, family) study (``-1``: one per CPU core; ``1``:
        all in this process). The numbers do not depend on it: each study is seeded and
        single-threaded.
    """

    search_space: SearchSpace
    families: tuple[str, ...]
    n_trials: int = 12
    timeout_s: float | None = None
    n_splits: int = 5
    n_repeats: int = 1
    class_weight: str | None = None
    n_jobs: int = 1
    pruner_startup_trials: int = 5
    pruner_warmup_folds: int = 1
    if_stored_study_differs: Literal["new_study", "error", "replace"] = "new_study"
    selection_rule: Literal["one_standard_error", "best"] = "one_standard_error"
    selection_metric: Literal["log_loss", "auc"] = "log_loss"
    outer_splits: int | None = 5
    processes: int = -1

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
        if self.selection_metric not in SELECTION_METRICS:
            raise ValueError(
                f"heads.selection.metric must be one of {list(SELECTION_METRICS)}; got "
                f"{self.selection_metric!r}."
            )
        if self.outer_splits is not None:
            _check_positive_int("outer_cv.n_splits", self.outer_splits, minimum=2)
        if self.processes != -1:
            _check_positive_int("processes (or -1)", self.processes)
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
        if isinstance(blocks["outer_cv"], Mapping) and "n_jobs" in blocks["outer_cv"]:
            raise ValueError(
                "heads.outer_cv.n_jobs is now heads.processes (worker processes for the "
                "searches' studies, nested or not); move the value there."
            )
        for block, allowed in (
            ("cv", {"n_splits", "n_repeats"}),
            ("pruner", {"n_startup_trials", "n_warmup_steps"}),
            ("selection", {"rule", "metric"}),
            ("outer_cv", {"n_splits"}),
        ):
            if not isinstance(blocks[block], Mapping):
                raise ValueError(f"heads.{block} must be a mapping; got {blocks[block]!r}.")
            extra = sorted(set(blocks[block]) - allowed)
            if extra:
                raise ValueError(
                    f"heads.{block}: unknown keys {extra}; allowed: {sorted(allowed)}."
                )
        cv, pruner = dict(blocks["cv"]), dict(blocks["pruner"])
        defaults = {f.name: f.default for f in fields(cls)}
        class_weight = params.get("class_weight", defaults["class_weight"])
        n_jobs = params.get("n_jobs", defaults["n_jobs"])
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
        # Each setting from its block when given (null included), else the field's default:
        # the defaults are declared once, on the fields above (conf/base states the same values).
        where = {
            "n_trials": (params, "n_trials"),
            "timeout_s": (params, "timeout_s"),
            "n_splits": (cv, "n_splits"),
            "n_repeats": (cv, "n_repeats"),
            "pruner_startup_trials": (pruner, "n_startup_trials"),
            "pruner_warmup_folds": (pruner, "n_warmup_steps"),
            "if_stored_study_differs": (params, "if_stored_study_differs"),
            "selection_rule": (blocks["selection"], "rule"),
            "selection_metric": (blocks["selection"], "metric"),
            "outer_splits": (blocks["outer_cv"], "n_splits"),
            "processes": (params, "processes"),
        }
        given = {name: block[key] for name, (block, key) in where.items() if key in block}
        return cls(
            search_space=space,
            families=tuple(families),
            class_weight=class_weight,
            n_jobs=n_jobs,
            **given,
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
        The mean cross-validated AUC of its best trial.
    comparison
        One row per family: ``model, family, cv_log_loss, cv_log_loss_se, cv_auc, cv_auc_se,
        n_folds, complexity,
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
    whole_number(value, f"heads.{name}", minimum)


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
