"""Selection of a head's classifier family: the standard error of a cross-validated score
(log loss or AUC), the one-standard-error rule, and the comparison row of each family's study."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from clnm_kedro.heads.families import SearchSpace, complexity_rank
from clnm_kedro.heads.head_pipeline import resolved_parameters
from clnm_kedro.heads.spec import SELECTION_METRICS, SELECTION_RULES
from clnm_kedro.heads.studies import FOLD_AUCS_ATTR, FOLD_LOG_LOSSES_ATTR

# How each selection metric is named in words, and whether higher is better.
_METRIC_WORDS = {"auc": "AUC", "log_loss": "log loss"}
_HIGHER_IS_BETTER = {"auc": True, "log_loss": False}


def cv_standard_error(fold_aucs: Iterable[float], n_splits: int) -> float:
    """Standard error of a mean cross-validated score (AUC, log loss) from its per-fold values.

    The per-fold scores of k-fold CV (repeated or not) are not independent: their training
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


def _check_metric(metric: str) -> None:
    if metric not in SELECTION_METRICS:
        raise ValueError(
            f"Unknown selection metric {metric!r}; use one of {list(SELECTION_METRICS)}."
        )


def _best_row(
    comparison: pd.DataFrame, metric: str
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """The best family's row, every row's score oriented so that higher is better, which rows
    have a finite score, and every row's complexity rank."""
    values = comparison[f"cv_{metric}"].to_numpy(dtype=float)
    score = values if _HIGHER_IS_BETTER[metric] else -values
    finite = np.isfinite(score)
    if not finite.any():
        raise ValueError(f"No family has a cross-validated {_METRIC_WORDS[metric]} to select on.")
    rank = np.array([complexity_rank(f) for f in comparison["family"]])
    # The best score; among equal scores, the simpler family.
    best = int(min(np.flatnonzero(finite), key=lambda i: (-score[i], rank[i])))
    return best, score, finite, rank


def within_one_standard_error(comparison: pd.DataFrame, metric: str = "log_loss") -> np.ndarray:
    """Which families' cross-validated ``metric`` is within one standard error of the best
    family's (the best family's SE, as :func:`select_family` uses it)."""
    _check_metric(metric)
    best, score, finite, _ = _best_row(comparison, metric)
    se = float(comparison[f"cv_{metric}_se"].iloc[best])
    if not np.isfinite(se):
        se = 0.0
    return finite & (score >= score[best] - se)


def select_family(
    comparison: pd.DataFrame, rule: str = "one_standard_error", metric: str = "log_loss"
) -> tuple[int, str]:
    """The row of ``comparison`` to select, and why, in words.

    ``comparison`` has one row per family: ``family``, ``cv_<metric>`` (the mean CV score of
    its best configuration: ``cv_log_loss``, lower is better, or ``cv_auc``, higher is better)
    and ``cv_<metric>_se`` (its standard error, :func:`cv_standard_error`).

    - ``"best"``: the best score (ties: the simpler family).
    - ``"one_standard_error"`` (Breiman et al. 1984; Hastie, Tibshirani & Friedman, *The
      Elements of Statistical Learning*, 7.10): the simplest family, in the complexity order
      of :data:`~clnm_kedro.heads.families.FAMILIES`, whose score is within the best family's
      standard error of the best score. Differences smaller than that are noise of the folds,
      and picking the best of six tuned families picks the luckiest. Without a standard error
      (a study from before per-fold scores were kept) the best is taken.

    Raises
    ------
    ValueError
        If no family has a finite score, or ``rule`` or ``metric`` is unknown.
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"Unknown selection rule {rule!r}; use one of {list(SELECTION_RULES)}.")
    _check_metric(metric)
    words = _METRIC_WORDS[metric]
    extreme = "highest" if _HIGHER_IS_BETTER[metric] else "lowest"
    values = comparison[f"cv_{metric}"].to_numpy(dtype=float)
    best, score, finite, rank = _best_row(comparison, metric)
    best_name, best_value = comparison["family"].iloc[best], values[best]
    if rule == "best":
        return best, f"{best_name}: {extreme} cross-validated {words} ({best_value:.3f})"
    se = float(comparison[f"cv_{metric}_se"].iloc[best])
    if not np.isfinite(se):
        return best, (
            f"{best_name}: {extreme} cross-validated {words} ({best_value:.3f}); no standard "
            "error (per-fold scores not stored), so the one-standard-error rule could not be "
            "applied"
        )
    eligible = [i for i in np.flatnonzero(finite) if score[i] >= score[best] - se]
    chosen = int(min(eligible, key=lambda i: (rank[i], -score[i])))
    name = comparison["family"].iloc[chosen]
    if _HIGHER_IS_BETTER[metric]:
        bound, relation, sign = best_value - se, ">=", "-"
    else:
        bound, relation, sign = best_value + se, "<=", "+"
    if chosen == best:
        return chosen, (
            f"{name}: {extreme} cross-validated {words} ({best_value:.3f}, SE {se:.3f}) and no "
            f"simpler family within one standard error ({relation} {bound:.3f})"
        )
    return chosen, (
        f"{name}: simplest family within one standard error of the best by cross-validated "
        f"{words} ({name} {values[chosen]:.3f} {relation} {best_name} {best_value:.3f} {sign} "
        f"SE {se:.3f} = {bound:.3f})"
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
    attrs = study.best_trial.user_attrs if complete else {}
    fold_aucs = attrs.get(FOLD_AUCS_ATTR, [])
    fold_log_losses = attrs.get(FOLD_LOG_LOSSES_ATTR, [])
    return {
        "model": model_name,
        "family": family,
        "cv_log_loss": float(np.mean(fold_log_losses)) if fold_log_losses else float("nan"),
        "cv_log_loss_se": cv_standard_error(fold_log_losses, n_splits),
        "cv_auc": float(np.mean(fold_aucs)) if fold_aucs else float("nan"),
        "cv_auc_se": cv_standard_error(fold_aucs, n_splits),
        "n_folds": len(fold_aucs),
        "complexity": complexity_rank(family),
        "n_trials": len(complete) + len(pruned),
        "n_pruned": len(pruned),
        "search_seconds": round(seconds, 2),
        "best_params": json.dumps(best_params, sort_keys=True, default=str),
        "study": study.study_name,
    }
