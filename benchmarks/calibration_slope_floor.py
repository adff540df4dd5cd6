"""How low a correct calibration's leave-one-out slope falls, and how far its true slope spreads.

A training patient's ``train_cv`` risk passes through a logistic calibration fitted on every
other training patient (:func:`clnm_kedro.metrics.recalibration.leave_one_out_calibration`).
Pooled over patients, those risks' calibration slope sits below 1 even when nothing is wrong:
each patient's map is fitted without its own label, which moves its risk a little against its
outcome. ``docs/architecture.md`` states the size as about ``1 - 2/chi2``, ``chi2`` being the
likelihood-ratio statistic of the calibration's fit (two parameters, each worth about
``1/chi2``). This script measures that statement, and sets it beside the truth: the slope the
map fitted on all patients has on new patients of the same centre.

Generic data, not the project's simulator: each cohort has ``--n`` patients with one predictor
``x ~ N(0, 1)`` and outcomes from ``logit P(event) = a + beta * x`` (``a`` gives
``--prevalence``), scored by an over-extreme, offset model ``0.7 + 1.6 * x`` (the shape of an
uncalibrated network's logit). ``beta`` sets the strength; each strength of ``--strengths``
gets ``--cohorts`` cohorts and one sample of ``--fresh`` new patients for the truth. Per
strength it reports the median ``chi2``, the leave-one-out slope (mean, SD, median departure
from ``1 - 2/chi2``), the true slope (median, mean, SD) and how often each lies within 0.9-1.1.

Run from the project root::

    PYTHONPATH=src .venv/bin/python benchmarks/calibration_slope_floor.py [--cohorts 300]

Result of the shipped run: ``benchmarks/results/calibration_slope_floor.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _results import emit, share_within
from scipy import optimize, special

from clnm_kedro.metrics.calibration import calibration_intercept_slope
from clnm_kedro.metrics.recalibration import LogitCalibration, leave_one_out_calibration

SCORE_OFFSET, SCORE_SCALE = 0.7, 1.6


def intercept_for(beta: float, prevalence: float, x: np.ndarray) -> float:
    """``a`` with mean ``expit(a + beta * x)`` equal to ``prevalence`` over ``x``."""
    return float(
        optimize.brentq(lambda a: special.expit(a + beta * x).mean() - prevalence, -20.0, 20.0)
    )


def score(x: np.ndarray) -> np.ndarray:
    """The model under calibration: offset and over-extreme probabilities."""
    return special.expit(SCORE_OFFSET + SCORE_SCALE * x)


def likelihood_ratio(y: np.ndarray, risks: np.ndarray) -> float:
    """The calibration fit's likelihood-ratio statistic against a constant risk."""
    base = y.mean()
    fitted = np.sum(y * np.log(risks) + (1 - y) * np.log1p(-risks))
    constant = np.sum(y * np.log(base) + (1 - y) * np.log1p(-base))
    return float(2.0 * (fitted - constant))


def one_cohort(
    rng: np.random.Generator, n: int, a: float, beta: float, fresh: tuple[np.ndarray, np.ndarray]
) -> tuple[float, float, float]:
    """(chi2, pooled leave-one-out slope, true slope on new patients) of one cohort."""
    x = rng.normal(size=n)
    y = rng.binomial(1, special.expit(a + beta * x))
    scores = score(x)
    calibration = LogitCalibration.fit(y, scores)
    chi2 = likelihood_ratio(y, calibration.apply(scores))
    left_out = calibration_intercept_slope(y, leave_one_out_calibration(y, scores)).slope
    truth = calibration_intercept_slope(fresh[1], calibration.apply(score(fresh[0]))).slope
    return chi2, left_out, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", type=int, default=300)
    parser.add_argument("--n", type=int, default=307, help="training patients per cohort")
    parser.add_argument("--prevalence", type=float, default=0.3)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.45, 0.55, 0.7, 0.9, 1.2])
    parser.add_argument("--fresh", type=int, default=100_000, help="new patients for the truth")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the summary as JSON")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    summary: dict = {"cohorts": args.cohorts, "n": args.n, "prevalence": args.prevalence}
    for beta in args.strengths:
        x_fresh = rng.normal(size=args.fresh)
        a = intercept_for(beta, args.prevalence, x_fresh)
        fresh = (x_fresh, rng.binomial(1, special.expit(a + beta * x_fresh)))
        rows = np.array([one_cohort(rng, args.n, a, beta, fresh) for _ in range(args.cohorts)])
        chi2, left_out, truth = rows.T
        summary[f"beta_{beta}"] = {
            "chi2_median": float(np.median(chi2)),
            "loo_slope_mean": float(left_out.mean()),
            "loo_slope_sd": float(left_out.std(ddof=1)),
            "loo_minus_floor_median": float(np.median(left_out - (1.0 - 2.0 / chi2))),
            "loo_share_within_0.9_1.1": share_within(left_out),
            "true_slope_median": float(np.median(truth)),
            "true_slope_mean": float(truth.mean()),
            "true_slope_sd": float(truth.std(ddof=1)),
            "true_share_within_0.9_1.1": share_within(truth),
        }
    emit(summary, args.out)


if __name__ == "__main__":
    main()
