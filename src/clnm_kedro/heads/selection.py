"""Selection of a head's classifier family: the standard error of a cross-validated AUC, the
one-standard-error rule, and the comparison row of each family's study."""

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
from clnm_kedro.heads.spec import SELECTION_RULES
from clnm_kedro.heads.studies import FOLD_AUCS_ATTR


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
