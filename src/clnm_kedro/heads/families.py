"""Classifier families of a head and their Optuna search spaces.

A *family* is one kind of classifier (logistic regression, SVM, ...). Its hyperparameters
are searched by Optuna within a *search space* given in the parameters, never in code::

    search_space:
      logistic_regression:
        C: {type: float, low: 1.0e-3, high: 100.0, log: true}
        penalty: {type: categorical, choices: [l1, l2, elasticnet]}
        l1_ratio: {type: float, low: 0.0, high: 1.0}
      catboost:
        iterations: 200            # a plain value is fixed, not searched
        depth: {type: int, low: 2, high: 6}
    reduction:                     # only used for tables with deep-learning features
      method: {type: categorical, choices: [none, pca, l1, kbest]}
      n_components: {type: int, low: 2, high: 32}

Hyperparameter names are those of the scikit-learn / CatBoost estimator, plus a few
family-level names that map onto them:

- ``logistic_regression.penalty`` (``l1``, ``l2``, ``elasticnet``) sets ``l1_ratio`` (1, 0 or
  the searched ``l1_ratio``) and a solver that supports it (liblinear, lbfgs, saga);
  ``l1_ratio`` is only searched when the penalty is elastic net.
- ``mlp.hidden_units`` and ``mlp.hidden_layers`` set ``hidden_layer_sizes``.
- ``svm`` hyperparameters are those of the RBF ``SVC``; probabilities come from
  ``CalibratedClassifierCV(method="sigmoid", cv=3)`` (Platt scaling on a seeded, stratified
  3-fold split of the training data, averaged over the three calibrated SVMs), which is
  seeded and reuses scikit-learn's calibration instead of libsvm's internal one.

:func:`parse_search_space` validates all of it before any trial runs.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import optuna
from catboost import CatBoostClassifier
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from clnm_kedro.heads.preprocess import REDUCTION_METHODS

HyperParameterKind = Literal["float", "int", "categorical", "fixed"]
REDUCTION_PREFIX = "reduction_"
PENALTIES: tuple[str, ...] = ("l1", "l2", "elasticnet")
CLASS_WEIGHTS: tuple[str | None, ...] = ("balanced", None)
_SPEC_KEYS: dict[str, frozenset[str]] = {
    "float": frozenset({"type", "low", "high", "log", "step"}),
    "int": frozenset({"type", "low", "high", "log", "step"}),
    "categorical": frozenset({"type", "choices"}),
}


@dataclass(frozen=True)
class EstimatorOptions:
    """Settings shared by every family (not searched).

    Attributes
    ----------
    seed
        Random seed of every estimator.
    class_weight
        ``None`` (default) fits every class as it is, so probabilities keep the training
        prevalence; ``"balanced"`` weights classes inversely to their frequency (CatBoost:
        ``auto_class_weights="Balanced"``) where the estimator supports it, which shifts every
        logit by about ``log(n_negative / n_positive)``: the head's calibration, fitted on its
        out-of-fold predictions, takes that offset out again.
    n_jobs
        Threads for random forest and CatBoost (``-1``: all cores).
    """

    seed: int = 0
    class_weight: str | None = None
    n_jobs: int = 1

    def __post_init__(self) -> None:
        if self.class_weight not in CLASS_WEIGHTS:
            raise ValueError(f"class_weight must be 'balanced' or null; got {self.class_weight!r}.")
        if not isinstance(self.n_jobs, int) or self.n_jobs == 0 or self.n_jobs < -1:
            raise ValueError(f"n_jobs must be a positive integer or -1; got {self.n_jobs!r}.")


@dataclass(frozen=True)
class HyperParameter:
    """One entry of a search space: a searched range, a list of choices, or a fixed value."""

    name: str
    kind: HyperParameterKind
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None

    def suggest(self, trial: optuna.Trial, trial_name: str | None = None) -> Any:
        """Draw this hyperparameter's value for ``trial`` (the fixed value if not searched)."""
        name = trial_name or self.name
        if self.kind == "float":
            return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step or 1)
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        return self.value

    def probe_values(self) -> list[Any]:
        """Values tried when checking that the estimator accepts this hyperparameter."""
        if self.kind in ("float", "int"):
            return [self.low] if self.low == self.high else [self.low, self.high]
        if self.kind == "categorical":
            return list(self.choices)
        return [self.value]


@dataclass(frozen=True)
class SearchSpace:
    """Validated search space: hyperparameters per family and of the DL-feature reduction."""

    families: dict[str, dict[str, HyperParameter]]
    reduction: dict[str, HyperParameter] = field(default_factory=dict)


@contextlib.contextmanager
def single_threaded_numerics() -> Iterator[None]:
    """Run BLAS and OpenMP single-threaded inside the block.

    Head tables are small (hundreds of patients); multi-threaded BLAS only adds overhead on
    such matrices (Platt calibration was about 9 times slower on a busy 2-core machine).
    Random forest and CatBoost threads are set by ``n_jobs`` and are not affected.
    """
    with threadpool_limits(limits=1):
        yield


# --------------------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------------------


def _build_logistic_regression(params: dict[str, Any], options: EstimatorOptions) -> BaseEstimator:
    params = dict(params)
    penalty = params.pop("penalty", None)
    if penalty == "l1":
        params["l1_ratio"] = 1.0
    elif penalty == "l2":
        params["l1_ratio"] = 0.0
    elif penalty == "elasticnet":
        params.setdefault("l1_ratio", 0.5)
    l1_ratio = float(params.get("l1_ratio", 0.0))
    if "solver" not in params:
        # liblinear handles pure L1 / pure L2 quickly; only saga handles elastic net.
        params["solver"] = "liblinear" if l1_ratio in (0.0, 1.0) else "saga"
    params.setdefault("max_iter", 5000 if params["solver"] == "saga" else 1000)
    base = {"class_weight": options.class_weight, "random_state": options.seed}
    return LogisticRegression(**{**base, **params})


def _build_svm(params: dict[str, Any], options: EstimatorOptions) -> BaseEstimator:
    base = {"kernel": "rbf", "class_weight": options.class_weight, "random_state": options.seed}
    svc = SVC(**{**base, **params})
    calibration_folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=options.seed)
    return CalibratedClassifierCV(svc, method="sigmoid", cv=calibration_folds)


def _build_random_forest(params: dict[str, Any], options: EstimatorOptions) -> BaseEstimator:
    base = {
        "class_weight": options.class_weight,
        "n_jobs": options.n_jobs,
        "random_state": options.seed,
    }
    return RandomForestClassifier(**{**base, **params})


def _build_catboost(params: dict[str, Any], options: EstimatorOptions) -> BaseEstimator:
    base: dict[str, Any] = {
        "iterations": 200,
        "boosting_type": "Plain",
        "border_count": 32,
        "thread_count": options.n_jobs,
        "random_seed": options.seed,
        "verbose": 0,
        "allow_writing_files": False,
    }
    if options.class_weight == "balanced":
        base["auto_class_weights"] = "Balanced"
    return CatBoostClassifier(**{**base, **params})


def _build_knn(params: dict[str, Any], options: EstimatorOptions) -> BaseEstimator:
    return KNeighborsClassifier(**params)


def _build_mlp(params: dict[str, Any], options: EstimatorOptions) -> BaseEstimator:
    params = dict(params)
    units = params.pop("hidden_units", None)
    layers = params.pop("hidden_layers", None)
    if units is not None or layers is not None:
        params["hidden_layer_sizes"] = (int(units or 100),) * int(layers or 1)
    base = {"early_stopping": True, "max_iter": 500, "random_state": options.seed}
    return MLPClassifier(**{**base, **params})


@dataclass(frozen=True)
class Family:
    """A classifier family: how to build it and which hyperparameter names it accepts."""

    name: str
    estimator_class: type
    build_estimator: Callable[[dict[str, Any], EstimatorOptions], BaseEstimator]
    family_parameters: frozenset[str] = frozenset()
    # hyperparameter -> (controlling hyperparameter, values of it for which it is searched)
    conditions: Mapping[str, tuple[str, frozenset[Any]]] = field(default_factory=dict)
    # settings that keep the validation fits of parse_search_space quick
    probe_settings: Mapping[str, Any] = field(default_factory=dict)
    # CPU time of a study relative to logistic regression's (the demo's tables, default search
    # space): only the order in which worker processes take the studies, most costly first,
    # so that they finish together; no result depends on it
    relative_cost: float = 1.0

    def accepted_parameters(self) -> frozenset[str]:
        """Names a search space may use for this family."""
        signature = inspect.signature(self.estimator_class.__init__).parameters
        names = {
            name
            for name, parameter in signature.items()
            if name != "self"
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        }
        names |= set(self.estimator_class().get_params(deep=False))
        return frozenset(names | self.family_parameters)

    def is_searched(self, name: str, drawn: Mapping[str, Any], space: Mapping[str, Any]) -> bool:
        """Whether ``name`` is used given the values ``drawn`` so far in this trial."""
        if name not in self.conditions:
            return True
        controller, values = self.conditions[name]
        return controller not in space or drawn.get(controller) in values


# Listed from the simplest family to the most complex: the one place that order is declared.
# The one-standard-error rule (clnm_kedro.heads.selection.select_family) picks the first family
# whose cross-validated AUC is within one standard error of the best. A linear model first;
# k-NN (one smoothing parameter) and the RBF SVM (a smooth kernel) next; then the tree
# ensembles, whose depth and number of leaves let them fit interactions; the neural network
# last.
FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            "logistic_regression",
            LogisticRegression,
            _build_logistic_regression,
            frozenset({"penalty"}),
            {"l1_ratio": ("penalty", frozenset({"elasticnet"}))},
        ),
        Family("knn", KNeighborsClassifier, _build_knn, relative_cost=0.8),
        Family("svm", SVC, _build_svm, relative_cost=1.6),
        Family(
            "random_forest",
            RandomForestClassifier,
            _build_random_forest,
            probe_settings={"n_estimators": 5},
            relative_cost=3.2,
        ),
        Family(
            "catboost",
            CatBoostClassifier,
            _build_catboost,
            probe_settings={"iterations": 5},
            relative_cost=1.1,
        ),
        Family(
            "mlp",
            MLPClassifier,
            _build_mlp,
            frozenset({"hidden_units", "hidden_layers"}),
            probe_settings={"max_iter": 5},
            relative_cost=1.6,
        ),
    )
}


def complexity_rank(family: str) -> int:
    """Place of ``family`` in the complexity order of :data:`FAMILIES` (0: simplest)."""
    if family not in FAMILIES:
        raise ValueError(f"Unknown classifier family {family!r}; known: {sorted(FAMILIES)}.")
    return list(FAMILIES).index(family)


def build_estimator(
    family: str, params: Mapping[str, Any], options: EstimatorOptions | None = None
) -> BaseEstimator:
    """Build the unfitted classifier of ``family`` with hyperparameters ``params``.

    Parameters
    ----------
    family
        A name in :data:`FAMILIES`.
    params
        Hyperparameter values (searched and fixed), by search-space name.
    options
        Seed, class weighting and threads.

    Returns
    -------
    BaseEstimator
        A scikit-learn compatible classifier with ``predict_proba``.
    """
    if family not in FAMILIES:
        raise ValueError(f"Unknown classifier family {family!r}; known: {sorted(FAMILIES)}.")
    return FAMILIES[family].build_estimator(dict(params), options or EstimatorOptions())


def draw_family_parameters(
    trial: optuna.Trial, family: str, space: Mapping[str, HyperParameter]
) -> dict[str, Any]:
    """Draw the hyperparameters of ``family`` for ``trial``; fixed values are included."""
    conditions = FAMILIES[family].conditions
    drawn: dict[str, Any] = {}
    # Unconditional hyperparameters first, so a controlling one (penalty) is drawn before
    # the ones it switches on (l1_ratio).
    for name in sorted(space, key=lambda name: name in conditions):
        if FAMILIES[family].is_searched(name, drawn, space):
            drawn[name] = space[name].suggest(trial)
    return drawn


def draw_reduction(
    trial: optuna.Trial, space: Mapping[str, HyperParameter]
) -> tuple[str, int | None]:
    """Draw the reduction method and size of the deep-learning features for ``trial``."""
    if "method" not in space:
        return "none", None
    method = space["method"].suggest(trial, REDUCTION_PREFIX + "method")
    if method == "none":
        return method, None
    return method, space["n_components"].suggest(trial, REDUCTION_PREFIX + "n_components")


# --------------------------------------------------------------------------------------
# Validation of the search space
# --------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_choice(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def parse_hyperparameter(where: str, name: str, spec: Any) -> HyperParameter:
    """Validate one search-space entry; ``where`` names it in error messages."""
    label = f"{where}.{name}"
    if not isinstance(spec, Mapping):
        value = tuple(spec) if isinstance(spec, list | tuple) else spec
        return HyperParameter(name, "fixed", value=value)
    kind = spec.get("type")
    if kind not in _SPEC_KEYS:
        raise ValueError(
            f"Search space {label}: unknown type {kind!r}; use float, int or categorical "
            "(or give a plain value to fix it)."
        )
    unknown = sorted(set(spec) - _SPEC_KEYS[kind])
    if unknown:
        raise ValueError(
            f"Search space {label}: keys {unknown} are not allowed for type {kind!r}; "
            f"allowed: {sorted(_SPEC_KEYS[kind])}."
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list | tuple) or len(choices) == 0:
            raise ValueError(f"Search space {label}: 'choices' must be a non-empty list.")
        bad = [choice for choice in choices if not _is_choice(choice)]
        if bad:
            raise ValueError(
                f"Search space {label}: choices must be plain values (text, numbers, true/false, "
                f"null); got {bad!r}."
            )
        if len(set(map(repr, choices))) != len(choices):
            raise ValueError(f"Search space {label}: 'choices' {list(choices)} has duplicates.")
        return HyperParameter(name, "categorical", choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    if not _is_number(low) or not _is_number(high):
        raise ValueError(
            f"Search space {label}: 'low' and 'high' must be finite numbers; got "
            f"low={low!r}, high={high!r}."
        )
    if low > high:
        raise ValueError(f"Search space {label}: low ({low}) is greater than high ({high}).")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"Search space {label}: 'log' must be true or false; got {log!r}.")
    if log and low <= 0:
        raise ValueError(f"Search space {label}: a log-uniform range needs low > 0; got low={low}.")
    step = spec.get("step")
    if step is not None:
        if not _is_number(step) or step <= 0:
            raise ValueError(
                f"Search space {label}: 'step' must be a positive number; got {step!r}."
            )
        if log and (kind == "float" or step != 1):
            raise ValueError(f"Search space {label}: 'step' cannot be combined with log: true.")
    if kind == "int":
        values = {"low": low, "high": high} | ({"step": step} if step is not None else {})
        not_integer = {key: value for key, value in values.items() if float(value) != int(value)}
        if not_integer:
            raise ValueError(f"Search space {label}: {not_integer} must be whole numbers.")
        return HyperParameter(
            name, "int", int(low), int(high), log, int(step) if step is not None else None
        )
    return HyperParameter(name, "float", float(low), float(high), log, step)


def _check_family_names(family: str, space: Mapping[str, HyperParameter]) -> None:
    accepted = FAMILIES[family].accepted_parameters()
    for name in space:
        if name not in accepted:
            raise ValueError(
                f"Search space {family}.{name}: {FAMILIES[family].estimator_class.__name__} has "
                f"no hyperparameter {name!r}."
            )
    if family == "logistic_regression" and "penalty" in space:
        bad = [value for value in space["penalty"].probe_values() if value not in PENALTIES]
        if bad:
            raise ValueError(
                f"Search space logistic_regression.penalty: {bad!r} not supported; use "
                f"{list(PENALTIES)}."
            )
    if family == "mlp":
        for name in ("hidden_units", "hidden_layers"):
            if name in space:
                bad = [v for v in space[name].probe_values() if not _is_number(v) or v < 1]
                if bad:
                    raise ValueError(f"Search space mlp.{name}: must be whole numbers >= 1.")


# (family, search space, options) whose values passed the probe fits in this process
_PROBED: set[str] = set()


def _probe_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1, 0], 40)
    X = rng.normal(size=(y.size, 4)) + y[:, None]
    return X, y


def _probe_fit(family: str, params: Mapping[str, Any], options: EstimatorOptions) -> None:
    X, y = _probe_data(options.seed)
    with warnings.catch_warnings(), single_threaded_numerics():
        # A probe fit on throw-away data; convergence warnings here mean nothing.
        warnings.simplefilter("ignore")
        build_estimator(family, params, options).fit(X, y).predict_proba(X)


def _check_family_values(
    family: str, space: Mapping[str, HyperParameter], options: EstimatorOptions
) -> None:
    """Fit the estimator briefly on synthetic data with each end of every range and every
    choice (one hyperparameter at a time, then all together), so that a value the estimator
    rejects fails now, naming the hyperparameter. A space already probed with the same options
    in this process (the three heads share theirs) is not probed again."""
    probed = repr((family, sorted(space.items()), options))
    if probed in _PROBED:
        return
    estimator_name = FAMILIES[family].estimator_class.__name__
    conditions = FAMILIES[family].conditions
    probe_settings = FAMILIES[family].probe_settings
    for name, hyperparameter in space.items():
        context: dict[str, Any] = {}
        if name in conditions and conditions[name][0] in space:
            controller, active = conditions[name]
            enabling = [v for v in space[controller].probe_values() if v in active]
            if enabling:  # probe the hyperparameter where it is actually used
                context[controller] = enabling[0]
        for value in hyperparameter.probe_values():
            try:
                _probe_fit(family, {**probe_settings, **context, name: value}, options)
            except Exception as error:  # the library's own message is reported
                raise ValueError(
                    f"Search space {family}.{name}: the value {value!r} is not accepted by "
                    f"{estimator_name}: {error}"
                ) from error
    together = {name: hp.probe_values()[0] for name, hp in space.items()}
    try:
        _probe_fit(family, {**together, **probe_settings}, options)
    except Exception as error:
        raise ValueError(
            f"Search space {family}: the values {together} do not work together in "
            f"{estimator_name}: {error}"
        ) from error
    _PROBED.add(probed)


def _parse_reduction(reduction: Mapping[str, Any] | None) -> dict[str, HyperParameter]:
    if not reduction:
        return {}
    if not isinstance(reduction, Mapping):
        raise ValueError(f"The reduction search space must be a mapping; got {reduction!r}.")
    unknown = sorted(set(reduction) - {"method", "n_components"})
    if unknown:
        raise ValueError(
            f"Reduction search space: unknown keys {unknown}; allowed: method, n_components."
        )
    if "method" not in reduction:
        raise ValueError("Reduction search space: 'method' is missing.")
    space = {
        name: parse_hyperparameter("reduction", name, spec) for name, spec in reduction.items()
    }
    methods = space["method"].probe_values()
    bad = [method for method in methods if method not in REDUCTION_METHODS]
    if space["method"].kind in ("float", "int") or bad:
        raise ValueError(
            f"Reduction search space: method {bad or methods!r} not supported; use "
            f"{list(REDUCTION_METHODS)}."
        )
    if any(method != "none" for method in methods):
        if "n_components" not in space:
            raise ValueError("Reduction search space: 'n_components' is needed for pca, l1, kbest.")
        sizes = space["n_components"]
        values = sizes.probe_values()
        if sizes.kind in ("float", "categorical") or not all(
            _is_number(v) and float(v) == int(v) and v >= 1 for v in values
        ):
            raise ValueError(
                "Reduction search space: n_components must be a whole number >= 1 (a fixed value "
                "or type int)."
            )
    return space


def parse_search_space(
    search_space: Mapping[str, Any],
    reduction: Mapping[str, Any] | None = None,
    *,
    options: EstimatorOptions | None = None,
    check_values: bool = True,
) -> SearchSpace:
    """Validate a search space from the parameters before any trial runs.

    Parameters
    ----------
    search_space
        ``{family: {hyperparameter: spec}}``; a spec is ``{type: float|int, low, high,
        log?, step?}``, ``{type: categorical, choices: [...]}`` or a plain value (fixed).
    reduction
        ``{method: spec, n_components: spec}`` for the deep-learning feature reduction.
    options
        Seed, class weighting and threads used when checking values.
    check_values
        Also fit each estimator briefly on 120 synthetic rows at the ends of every range and
        with every choice, so values the estimator rejects are reported now (about a second;
        a k-NN asking for more than 120 neighbours is reported too).

    Returns
    -------
    SearchSpace
        The validated space.

    Raises
    ------
    ValueError
        Naming the family and hyperparameter: unknown family, unknown type, low > high,
        log range with low <= 0, empty choices, or a hyperparameter or value the
        estimator does not accept.
    """
    if not isinstance(search_space, Mapping) or not search_space:
        raise ValueError("The search space must map at least one classifier family to its space.")
    options = options or EstimatorOptions()
    families: dict[str, dict[str, HyperParameter]] = {}
    for family, family_spec in search_space.items():
        if family not in FAMILIES:
            raise ValueError(
                f"Search space: unknown classifier family {family!r}; known: {sorted(FAMILIES)}."
            )
        if not isinstance(family_spec, Mapping | None):
            raise ValueError(
                f"Search space {family}: expected a mapping of hyperparameters; got "
                f"{family_spec!r}."
            )
        space = {
            str(name): parse_hyperparameter(family, str(name), spec)
            for name, spec in (family_spec or {}).items()
        }
        _check_family_names(family, space)
        if check_values:
            _check_family_values(family, space, options)
        families[family] = space
    return SearchSpace(families, _parse_reduction(reduction))
