"""Does the stated power of the paired DeLong test hold? Repeat the comparison and count rejections.

Two checks of :mod:`clnm_kedro.metrics.power`:

1. **Known populations** (binormal, two correlated models). For each setting the standard
   deviation of the AUC difference at ``n`` patients is taken from one large sample with equal
   AUCs; the detectable difference ``delta`` (80 % power, alpha 0.05) follows. Then model a is
   made better by exactly ``delta`` and ``--repeats`` cohorts of ``n`` patients are drawn: the
   share of paired DeLong tests with p < 0.05 should be 0.80 (within 0.05). The sample size the
   module states for a smaller difference is checked the same way, at that size.
2. **Resampled cohorts** (optional, ``--predictions``): a ``predictions.csv`` of an evaluation run.
   For each study comparison on the external set, the external patients are the population: its
   true difference is the observed one. Cohorts are resampled (stratified by outcome, so at the
   same prevalence) at the stated needed size and at the set's own size; their rejection rates
   should equal 0.80 and the stated ``power_observed``.

Run from the project root::

    PYTHONPATH=src .venv/bin/python benchmarks/auc_power_check.py [--repeats 2000] \\
        [--predictions data/07_model_output/predictions.csv] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from clnm_kedro.metrics.delong import auc_covariance
from clnm_kedro.metrics.power import (
    paired_auc_power,
    power_from_covariance,
    power_of_difference,
    sample_size_for_difference,
    simulated_rejection_rate,
)
from clnm_kedro.registry import STUDY_COMPARISONS
from clnm_kedro.reporting.predictions import paired_scores


def binormal_sampler(n: int, prevalence: float, auc_a: float, auc_b: float, rho: float):
    """Cohorts of ``n`` patients: two unit-variance normal scores, correlation ``rho``, whose
    case-control shifts give the binormal AUCs ``auc_a`` and ``auc_b``."""
    shift = np.sqrt(2.0) * stats.norm.ppf([auc_a, auc_b])
    events = round(n * prevalence)
    cov = [[1.0, rho], [rho, 1.0]]

    def sample(rng: np.random.Generator):
        y = np.r_[np.ones(events, int), np.zeros(n - events, int)]
        z = rng.multivariate_normal([0.0, 0.0], cov, size=n)
        return y, z[:, 0] + shift[0] * y, z[:, 1] + shift[1] * y

    return sample


def design_at(sampler_big, n_big: int, n: int, prevalence: float, rng: np.random.Generator):
    """The power figures at ``n`` patients, from AUCs and DeLong covariance of one sample of
    ``n_big`` patients scaled to ``n`` (1 / N)."""
    y, a, b = sampler_big(rng)
    _, auc, cov = auc_covariance(y, a, b)
    return power_from_covariance(auc, cov * n_big / n, round(n * prevalence), n)


def known_populations(repeats: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for n, prevalence, auc_b, rho in [
        (154, 0.32, 0.75, 0.7),  # the study's external centre
        (154, 0.32, 0.80, 0.9),
        (300, 0.30, 0.70, 0.5),
        (1000, 0.32, 0.75, 0.8),
    ]:
        big = 200_000
        design = design_at(
            binormal_sampler(big, prevalence, auc_b, auc_b, rho), big, n, prevalence, rng
        )
        sd, delta = design.sd_difference, design.detectable_difference
        detected = simulated_rejection_rate(
            rng, binormal_sampler(n, prevalence, auc_b + delta, auc_b, rho), repeats
        )
        # the size the module states for half that difference, checked at that size
        half = delta / 2.0
        n_half = math.ceil(sample_size_for_difference(half, sd, n))
        at_size = simulated_rejection_rate(
            rng, binormal_sampler(n_half, prevalence, auc_b + half, auc_b, rho), repeats
        )
        rows.append(
            {
                "n": n,
                "prevalence": prevalence,
                "auc_b": auc_b,
                "correlation_of_scores": rho,
                "sd_difference": sd,
                "detectable_difference": delta,
                "rejection_rate_at_detectable_difference": detected,
                "half_difference": half,
                "n_needed_for_half": n_half,
                "rejection_rate_at_n_needed": at_size,
                "stated_power": 0.80,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def resample_sampler(y: np.ndarray, a: np.ndarray, b: np.ndarray, n: int):
    """Stratified bootstrap cohorts of ``n`` patients at the prevalence of ``y``."""
    cases, controls = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    m = round(n * cases.size / y.size)

    def sample(rng: np.random.Generator):
        idx = np.r_[rng.choice(cases, m), rng.choice(controls, n - m)]
        return y[idx], a[idx], b[idx]

    return sample


def resampled_cohorts(predictions: Path, repeats: int, seed: int) -> list[dict]:
    table = pd.read_csv(predictions, dtype={"patient_id": str})
    rng = np.random.default_rng(seed)
    rows = []
    for model_a, model_b in STUDY_COMPARISONS:
        if not {model_a, model_b} <= set(table["model"]):
            continue
        y, a, b = paired_scores(table, "external", model_a, model_b)
        result = paired_auc_power(y, a, b)
        row = {"model_a": model_a, "model_b": model_b, **result._asdict()}
        row["rejection_rate_at_n"] = simulated_rejection_rate(
            rng, resample_sampler(y, a, b, result.n), repeats
        )
        if math.isfinite(result.n_needed) and result.n_needed < 50_000:
            size = max(math.ceil(result.n_needed), 20)
            row["rejection_rate_at_n_needed"] = simulated_rejection_rate(
                rng, resample_sampler(y, a, b, size), repeats
            )
            row["stated_power_at_rounded_n_needed"] = power_of_difference(
                result.difference, result.sd_difference * math.sqrt(result.n / size)
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--predictions", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--skip-known", action="store_true", help="only the resampled cohorts")
    args = parser.parse_args()
    result = (
        {} if args.skip_known else {"known_populations": known_populations(args.repeats, args.seed)}
    )
    if args.predictions:
        result["resampled_cohorts"] = resampled_cohorts(args.predictions, args.repeats, args.seed)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
