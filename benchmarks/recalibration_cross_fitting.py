"""Leaving the recalibration out of a training patient's out-of-fold risk: by fold or by patient.

The project's ``train_cv`` risks pass through a logistic recalibration (a head's optimism
correction, a fold ensemble's calibration) that is fitted on every training patient's
out-of-fold risk; applied to those same risks it would have seen each patient's label, so each
patient's risk goes through one fitted without it. Two ways were candidates:

- **by fold**: leave out the whole group of patients that one fold model scored (an outer fold
  of the nested CV, a fold network's held-out patients);
- **by patient**: leave-one-out
  (:func:`clnm_kedro.metrics.recalibration.leave_one_out_calibration`).

This script measures which one tells the truth, on generic logistic data (not the project's
simulator): each cohort of ``--n`` patients gets a tuned L2 logistic regression (``C`` chosen by
5-fold CV log loss) in 5 outer folds, the recalibration fitted on all the nested risks, and a
final model refitted on all patients followed by that recalibration. The truth is the final
model's calibration slope and intercept on ``--fresh`` new patients of the same population.
For each way, and for the nested risks left uncorrected, it reports the mean and SD of the
out-of-fold slope over ``--cohorts`` cohorts, its root-mean-square error against the truth,
and how often it lies within 0.9-1.1.

Run from the project root::

    PYTHONPATH=src .venv/bin/python benchmarks/recalibration_cross_fitting.py [--cohorts 100]

Result of the shipped run: ``benchmarks/results/recalibration_cross_fitting.json``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from _results import emit, share_within
from scipy import special
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold

from clnm_kedro.metrics.calibration import calibration_intercept_slope
from clnm_kedro.metrics.recalibration import LogitCalibration, leave_one_out_calibration

# Five informative predictors of decreasing weight and five noise ones; about 30% events.
COEFFICIENTS = np.array([0.9, 0.6, 0.45, 0.3, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0])
INTERCEPT = -1.0
OUTER_FOLDS = 5


def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` patients: predictors and 0/1 outcomes."""
    X = rng.normal(size=(n, len(COEFFICIENTS)))
    return X, rng.binomial(1, special.expit(INTERCEPT + X @ COEFFICIENTS))


def tuned_model() -> LogisticRegressionCV:
    """The procedure under study: L2 logistic regression, ``C`` chosen by CV log loss."""
    return LogisticRegressionCV(Cs=np.logspace(-3, 1, 8), cv=5, scoring="neg_log_loss")


def by_fold(y: np.ndarray, risks: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each group's risks through a recalibration fitted on the other groups."""
    out = np.empty(len(y))
    for group in np.unique(groups):
        rows = groups == group
        out[rows] = LogitCalibration.fit(y[~rows], risks[~rows]).apply(risks[rows])
    return out


def one_cohort(rng: np.random.Generator, n: int, fresh: tuple[np.ndarray, np.ndarray], seed: int):
    """(truth, by fold, by patient, uncorrected) as (intercept, slope) pairs."""
    X, y = draw(rng, n)
    nested, groups = np.empty(n), np.empty(n, dtype=int)
    outer = StratifiedKFold(OUTER_FOLDS, shuffle=True, random_state=seed)
    for fold, (train, test) in enumerate(outer.split(X, y)):
        nested[test] = tuned_model().fit(X[train], y[train]).predict_proba(X[test])[:, 1]
        groups[test] = fold
    correction = LogitCalibration.fit(y, nested)
    final = tuned_model().fit(X, y)
    truth = calibration_intercept_slope(
        fresh[1], correction.apply(final.predict_proba(fresh[0])[:, 1])
    )
    estimates = [
        by_fold(y, nested, groups),
        leave_one_out_calibration(y, nested),
        nested,
    ]
    return [truth] + [calibration_intercept_slope(y, risks) for risks in estimates]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", type=int, default=100)
    parser.add_argument("--n", type=int, default=307, help="training patients per cohort")
    parser.add_argument("--fresh", type=int, default=200_000, help="patients for the truth")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the summary as JSON")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)  # scikit-learn's API notices
    rng = np.random.default_rng(args.seed)
    fresh = draw(rng, args.fresh)
    fits = np.array(
        [
            [(f.intercept, f.slope) for f in one_cohort(rng, args.n, fresh, args.seed + c)]
            for c in range(args.cohorts)
        ]
    )  # (cohort, estimate, intercept/slope)
    truth = fits[:, 0]
    summary = {
        "cohorts": args.cohorts,
        "n": args.n,
        "truth": {
            "slope_mean": float(truth[:, 1].mean()),
            "slope_sd": float(truth[:, 1].std(ddof=1)),
            "intercept_mean": float(truth[:, 0].mean()),
        },
    }
    for index, name in enumerate(["by_fold", "by_patient", "uncorrected"], start=1):
        slope, intercept = fits[:, index, 1], fits[:, index, 0]
        summary[name] = {
            "slope_mean": float(slope.mean()),
            "slope_sd": float(slope.std(ddof=1)),
            "slope_rmse_vs_truth": float(np.sqrt(np.mean((slope - truth[:, 1]) ** 2))),
            "intercept_rmse_vs_truth": float(np.sqrt(np.mean((intercept - truth[:, 0]) ** 2))),
            "share_slope_within_0.9_1.1": share_within(slope),
        }
    emit(summary, args.out)


if __name__ == "__main__":
    main()
