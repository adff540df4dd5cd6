"""Power of the paired DeLong comparison of two AUCs on one test set.

For two models scored on the same ``N`` patients (``m`` with the event, ``N - m`` without), the
paired DeLong test (:func:`clnm_kedro.metrics.delong.delong_test`) refers
``z = (AUC_a - AUC_b) / sd`` to the standard normal, where ``sd**2 = V_a + V_b - 2 C`` is DeLong's
variance of the difference. Two questions a reader of that test asks:

- *What could this test set have detected?* The smallest true difference ``delta`` the two-sided
  test at level ``alpha`` finds with probability ``power``: the root of
  ``Phi(delta / sd - z) + Phi(-delta / sd - z) = power`` with ``z = Phi^-1(1 - alpha / 2)``, i.e.
  ``delta ~ (z_{1-alpha/2} + z_power) * sd`` (2.80 sd at 80 % power and alpha = 0.05).
- *How many patients would the observed difference need?* The size ``N*`` at which that
  difference is detected with probability ``power``, at the same prevalence.

The variance of the difference. DeLong's variance is ``S10 / m + S01 / n`` (structural components
of the cases and of the controls; DeLong et al. 1988). ``S10`` and ``S01`` are population
quantities that do not depend on the sample size, so at a fixed prevalence, where ``m`` and ``n``
both grow in proportion to ``N``, the variance scales exactly as ``1 / N``:
``sd(N*)**2 = sd**2 * N / N*``. This is the sample-size rule of Obuchowski & McClish (1997,
Statistics in Medicine 16: 1529-1542) and of Hanley & McNeil (1983, Radiology 148: 839-843) with
the variance and the correlation of the two AUCs *estimated from the data* instead of read off a
parametric (binormal or exponential) model: it keeps whatever correlation the two models' errors
really have (two networks of the same images often correlate 0.6-0.9, which shrinks the variance
of the difference several-fold), which a parametric model would have to assume.

The variance under the alternative. The test divides the observed difference by the SD
estimated on the same patients, so its power at a true difference ``delta`` depends on the SD
*at* ``delta``, which shrinks as the better AUC nears 1. For the needed sample size the observed
SD is that SD already (the observed difference is the alternative). For the detectable difference
model b keeps its observed AUC and variance, model a is moved to ``AUC_b + delta`` with its
variance rescaled by the ratio of Hanley-McNeil variances (Hanley & McNeil 1982) and the
correlation of the two AUC estimates kept (Obuchowski & McClish 1997 separate the null and the
alternative variance the same way). Without this the detectable difference is overstated by
about 5-10 % (rejection rates of 0.85 instead of 0.80 in simulation). Checked by simulation in
``benchmarks/auc_power_check.py`` and the tests: stated power within 0.05 of the rejection rate
of repeated simulated comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import optimize, stats

from clnm_kedro.metrics.delong import auc_covariance, delong_test

__all__ = [
    "PairedAucPower",
    "detectable_difference",
    "hanley_mcneil_variance",
    "paired_auc_power",
    "power_from_covariance",
    "power_of_difference",
    "power_statement",
    "sample_size_for_difference",
    "sd_at_difference",
    "simulated_rejection_rate",
]

#: the conventional design of a diagnostic comparison: two-sided 5 % test, 80 % power
ALPHA = 0.05
POWER = 0.80


class PairedAucPower(NamedTuple):
    """What a paired AUC comparison on one test set can detect, and what it would need."""

    n: int
    events: int
    auc_a: float
    auc_b: float
    difference: float
    sd_difference: float
    correlation: float
    detectable_difference: float
    n_needed: float
    events_needed: float
    power_observed: float
    alpha: float
    power: float


def _check_probability(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1; got {value!r}.")
    return value


def power_of_difference(difference: float, sd: float, alpha: float = ALPHA) -> float:
    """Probability that the two-sided level-``alpha`` z-test rejects at a true ``difference``.

    ``sd`` is the standard deviation of the estimated difference on the test set in question.
    """
    alpha = _check_probability(alpha, "alpha")
    if not (math.isfinite(sd) and sd > 0.0):
        raise ValueError(f"sd must be a positive number; got {sd!r}.")
    z = stats.norm.ppf(1.0 - alpha / 2.0)
    shift = abs(float(difference)) / sd
    return float(stats.norm.cdf(shift - z) + stats.norm.cdf(-shift - z))


def detectable_difference(sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest true difference detected with probability ``power`` (two-sided, level ``alpha``)."""
    power = _check_probability(power, "power")
    alpha = _check_probability(alpha, "alpha")
    if power <= alpha:
        raise ValueError(f"power ({power}) must exceed alpha ({alpha}).")
    upper = 20.0 * sd
    return float(
        optimize.brentq(
            lambda d: power_of_difference(d, sd, alpha) - power, 0.0, upper, xtol=1e-12 * sd
        )
    )


def sample_size_for_difference(
    difference: float, sd: float, n: int, alpha: float = ALPHA, power: float = POWER
) -> float:
    """Patients needed (same prevalence) to detect ``difference`` when ``n`` patients give ``sd``.

    The variance of the difference scales as ``1 / N`` (module notes). ``inf`` when the
    difference is zero. Not rounded: the caller decides how to state it.
    """
    if difference == 0.0 or not math.isfinite(difference):
        return math.inf
    # sd(N*) = sd * sqrt(n / N*) must equal the detectable difference at unit sd, scaled
    unit = detectable_difference(1.0, alpha, power)
    return float(n * (unit * sd / abs(difference)) ** 2)


def hanley_mcneil_variance(auc: float, events: int, non_events: int) -> float:
    """Variance of an AUC estimate from Hanley & McNeil (1982, Radiology 143: 29-36, eq. 2)."""
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc**2 / (1.0 + auc)
    return float(
        (auc * (1.0 - auc) + (events - 1) * (q1 - auc**2) + (non_events - 1) * (q2 - auc**2))
        / (events * non_events)
    )


def sd_at_difference(
    difference: float,
    *,
    auc_a: float,
    auc_b: float,
    cov: np.ndarray,
    events: int,
    non_events: int,
) -> float:
    """SD of the AUC difference if model a's true AUC were ``auc_b + difference``.

    Model b keeps its DeLong variance; model a's is rescaled by the ratio of Hanley-McNeil
    variances at its new and its observed AUC (the variance of an AUC shrinks as it nears 1);
    the correlation of the two AUC estimates is kept. At ``difference = auc_a - auc_b`` this is
    the observed DeLong SD of the difference.
    """
    var_a, var_b = float(cov[0, 0]), float(cov[1, 1])
    corr = float(cov[0, 1]) / math.sqrt(var_a * var_b) if var_a * var_b > 0 else 0.0
    target = min(max(auc_b + difference, 1e-6), 1.0 - 1e-6)
    ratio = hanley_mcneil_variance(target, events, non_events) / hanley_mcneil_variance(
        min(max(auc_a, 1e-6), 1.0 - 1e-6), events, non_events
    )
    var_new = var_a * ratio
    variance = var_new + var_b - 2.0 * corr * math.sqrt(var_new * var_b)
    return math.sqrt(max(variance, 0.0))


def power_from_covariance(
    auc: npt.ArrayLike,
    cov: npt.ArrayLike,
    events: int,
    n: int,
    *,
    alpha: float = ALPHA,
    power: float = POWER,
) -> PairedAucPower:
    """:func:`paired_auc_power` from two AUCs and their DeLong covariance on ``n`` patients."""
    alpha = _check_probability(alpha, "alpha")
    power = _check_probability(power, "power")
    auc = np.asarray(auc, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    non_events = n - events
    difference = float(auc[0] - auc[1])
    variance = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    denominator = math.sqrt(max(float(cov[0, 0] * cov[1, 1]), 0.0))
    correlation = float(cov[0, 1] / denominator) if denominator > 0 else math.nan
    if not variance > 0.0:  # identical rankings: nothing to detect, nothing to power
        nan = math.nan
        return PairedAucPower(
            n, events, float(auc[0]), float(auc[1]), difference, 0.0, correlation,
            nan, nan, nan, nan, alpha, power,
        )  # fmt: skip
    sd = math.sqrt(variance)
    unit = detectable_difference(1.0, alpha, power)
    # the smallest delta with delta = unit * sd(delta): the test's SD at that true difference
    room = 1.0 - float(auc[1]) - 1e-6

    def gap(d: float) -> float:
        return d - unit * sd_at_difference(
            d, auc_a=auc[0], auc_b=auc[1], cov=cov, events=events, non_events=non_events
        )

    detectable = float(optimize.brentq(gap, 0.0, room)) if gap(room) > 0 else math.nan
    n_needed = sample_size_for_difference(difference, sd, n, alpha, power)
    return PairedAucPower(
        n=n,
        events=events,
        auc_a=float(auc[0]),
        auc_b=float(auc[1]),
        difference=difference,
        sd_difference=sd,
        correlation=correlation,
        detectable_difference=detectable,
        n_needed=n_needed,
        events_needed=n_needed * events / n,
        power_observed=power_of_difference(difference, sd, alpha),
        alpha=alpha,
        power=power,
    )


def paired_auc_power(
    y: npt.ArrayLike,
    score_a: npt.ArrayLike,
    score_b: npt.ArrayLike,
    alpha: float = ALPHA,
    power: float = POWER,
) -> PairedAucPower:
    """Detectable difference and needed sample size of the paired DeLong test of ``a`` vs ``b``.

    Parameters
    ----------
    y
        Outcomes of the test set, 1 = event.
    score_a, score_b
        The two models' scores for the same patients, in the same order.
    alpha, power
        Level of the two-sided test and the power wanted (default 0.05 and 0.80).

    Returns
    -------
    PairedAucPower
        ``detectable_difference`` (AUC units, model a above model b's observed AUC; NaN when even
        an AUC of 1 would not be detected), ``n_needed`` and ``events_needed`` (patients at the
        same prevalence to detect the observed difference; ``inf`` when it is zero),
        ``power_observed`` (the power this set has *if* the true difference were the observed
        one; a description of the design, not evidence about the models), the DeLong ``sd`` of
        the difference and the correlation of the two AUC estimates.
    """
    labels, auc, cov = auc_covariance(y, score_a, score_b)
    return power_from_covariance(
        auc, cov, int(labels.sum()), int(labels.size), alpha=alpha, power=power
    )


def _about(count: float) -> str:
    """A patient count rounded to two significant figures, written with thousands separators."""
    if count < 100:
        return f"{math.ceil(count):,d}"
    digits = math.floor(math.log10(count)) - 1
    return f"{int(round(count, -digits)):,d}"


def power_statement(result: PairedAucPower, name_a: str, name_b: str, where: str) -> str:
    """One sentence a clinician reads, e.g.

    "This external test set (154 patients, 49 with CLNM) can detect an AUC difference between
    Dual and Longitudinal of 0.08 or more (80 % power, two-sided 5 % test); the observed
    difference of 0.02 would need about 1,900 patients at the same CLNM prevalence."
    """
    head = f"This {where} ({result.n:,d} patients, {result.events:,d} with CLNM)"
    if not math.isfinite(result.detectable_difference):
        return f"{head}: {name_a} and {name_b} rank the patients identically; no power to state."
    design = f"{result.power:.0%} power, two-sided {result.alpha:.0%} test"
    sentence = (
        f"{head} can detect an AUC difference between {name_a} and {name_b} of "
        f"{result.detectable_difference:.2f} or more ({design})"
    )
    observed = abs(result.difference)
    if not math.isfinite(result.n_needed) or observed < 0.0005:
        return f"{sentence}; the observed AUCs are equal, so no size would show a difference."
    if result.n_needed <= result.n:
        return (
            f"{sentence}; the observed difference of {observed:.3f} is within its reach "
            f"(about {_about(result.n_needed)} patients would suffice)."
        )
    return (
        f"{sentence}; the observed difference of {observed:.3f} would need about "
        f"{_about(result.n_needed)} patients at the same CLNM prevalence."
    )


def simulated_rejection_rate(
    rng: np.random.Generator,
    sample: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray, np.ndarray]],
    n_repeats: int,
    alpha: float = ALPHA,
) -> float:
    """Share of ``n_repeats`` simulated cohorts on which the paired DeLong test rejects.

    ``sample(rng)`` returns ``(y, score_a, score_b)`` of one cohort. Used to check the stated
    power against repeated comparisons.
    """
    rejections = 0
    for _ in range(int(n_repeats)):
        y, a, b = sample(rng)
        rejections += delong_test(y, a, b).p < alpha
    return rejections / int(n_repeats)
