"""Calibration of predicted probabilities: reliability curve, Brier score, calibration
intercept and slope, Hosmer-Lemeshow test.

Definitions (Van Calster et al., "A calibration hierarchy for risk models was defined",
J Clin Epidemiol 2016; "Calibration: the Achilles heel of predictive analytics", BMC Med 2019):

- **calibration slope** ``b`` from the logistic model ``logit P(y=1) = a + b * logit(p)``;
  1 is ideal, below 1 means predictions too extreme (overfitting);
- **calibration intercept** (calibration-in-the-large) ``a`` from
  ``logit P(y=1) = a + offset(logit(p))``, i.e. with the slope fixed at 1; 0 is ideal, above 0
  means risks are underestimated on average. Note that ``rms::val.prob`` prints as
  "Intercept" the ``a`` of the two-parameter model instead; that number is not reported here.

Both models are fitted by maximum likelihood: the slope model with statsmodels' GLM (binomial
family); the intercept, one parameter, as the root of its score equation
``sum(y - expit(a + logit(p))) = 0`` (monotone in ``a``), which stays exact where IRLS breaks
down: probabilities of exactly 0 or 1 (k-nearest-neighbour heads) give logits of about ±35 and
made the GLM overflow and stop at a meaningless intercept.
Probabilities are clipped to [1e-15, 1 - 1e-15] before taking logits.

Grouping for the reliability curve and the Hosmer-Lemeshow test ("deciles of risk"): group
edges are the quantiles of ``p`` at 0, 1/g, ..., 1 (numpy's linear rule, R's type 7); each
group is a right-closed interval (the first also holds the minimum), which is what
``ResourceSelection::hoslem.test`` does with ``cut(..., include.lowest = TRUE)``. Repeated
edges (tied probabilities) merge groups, and empty groups are dropped, so fewer than ``g``
groups may result.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
import statsmodels.api as sm
from scipy import optimize, special, stats

from clnm_kedro.checks import whole_number
from clnm_kedro.metrics._validation import check_labels, check_scores

__all__ = [
    "CalibrationFit",
    "HosmerLemeshow",
    "brier_score",
    "calibration_intercept_slope",
    "hosmer_lemeshow",
    "quantile_groups",
    "reliability_curve",
]

logger = logging.getLogger(__name__)

PROBABILITY_CLIP = 1e-15


class CalibrationFit(NamedTuple):
    """Calibration intercept (slope fixed at 1) and calibration slope."""

    intercept: float
    slope: float


class HosmerLemeshow(NamedTuple):
    """Hosmer-Lemeshow goodness-of-fit statistic, its degrees of freedom and p-value."""

    statistic: float
    dof: int
    p_value: float


def _check_groups(n_groups: int, n: int, *, name: str) -> int:
    whole_number(n_groups, name, 1)
    if n_groups > n:
        raise ValueError(f"{name}={n_groups} is more than the {n} patients available.")
    return int(n_groups)


def quantile_groups(p: npt.ArrayLike, n_groups: int) -> np.ndarray:
    """Group index (0, 1, ...) of each probability by quantiles of ``p`` (see module notes).

    Parameters
    ----------
    p
        Predicted probabilities.
    n_groups
        Number of quantile groups asked for (10 gives deciles).

    Returns
    -------
    numpy.ndarray
        Integer group of each patient, consecutive from 0 in increasing order of risk.
    """
    values = check_scores(p, np.asarray(p).size, name="p", probability=True)
    n_groups = _check_groups(n_groups, values.size, name="n_groups")
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, n_groups + 1)))
    codes = np.searchsorted(edges[1:-1], values, side="left")
    return np.unique(codes, return_inverse=True)[1].astype(np.int64)


def reliability_curve(y: npt.ArrayLike, p: npt.ArrayLike, n_bins: int = 10) -> pd.DataFrame:
    """Observed event rate against mean predicted probability in quantile bins of ``p``.

    Parameters
    ----------
    y
        Outcomes, 1 = event, 0 = no event.
    p
        Predicted probabilities of the event.
    n_bins
        Number of quantile bins asked for (fewer result when probabilities tie).

    Returns
    -------
    pandas.DataFrame
        One row per bin, in increasing order of risk: ``bin`` (0, 1, ...), ``mean_predicted``,
        ``observed_rate``, ``n``.
    """
    labels = check_labels(y, both_classes=False)
    probs = check_scores(p, labels.size, name="p", probability=True)
    groups = quantile_groups(probs, n_bins)
    n = np.bincount(groups)
    return pd.DataFrame(
        {
            "bin": np.arange(n.size, dtype=np.int64),
            "mean_predicted": np.bincount(groups, weights=probs) / n,
            "observed_rate": np.bincount(groups, weights=labels) / n,
            "n": n.astype(np.int64),
        }
    )


def brier_score(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Mean squared difference between predicted probability and outcome (0 is perfect).

    Parameters
    ----------
    y
        Outcomes, 1 = event, 0 = no event.
    p
        Predicted probabilities of the event.

    Returns
    -------
    float
        ``mean((p - y) ** 2)``.
    """
    labels = check_labels(y, both_classes=False)
    probs = check_scores(p, labels.size, name="p", probability=True)
    return float(np.mean((probs - labels) ** 2))


def _intercept_with_unit_slope(labels: np.ndarray, logit: np.ndarray) -> float:
    """Maximum-likelihood ``a`` of ``logit P(y=1) = a + offset(logit)``.

    The score ``sum(y - expit(a + logit))`` falls strictly from ``sum(y) > 0`` to
    ``sum(y) - n < 0`` as ``a`` grows (both outcomes present), so it has exactly one root, the
    bracketing of which follows from the range of the offsets.
    """

    def score(a: float) -> float:
        return float(np.sum(labels - special.expit(a + logit)))

    # expit(a + logit) is within 1e-300 of 0 (or 1) for every patient beyond these bounds.
    low, high = -float(logit.max()) - 700.0, -float(logit.min()) + 700.0
    return float(optimize.brentq(score, low, high, xtol=1e-12, rtol=1e-12, maxiter=500))


def calibration_intercept_slope(y: npt.ArrayLike, p: npt.ArrayLike) -> CalibrationFit:
    """Calibration intercept (calibration-in-the-large) and calibration slope.

    See the module notes for the two logistic models. The slope is NaN (and a message is
    logged) when it has no finite estimate: all probabilities equal, or the probabilities
    separate events from non-events completely, in which case the likelihood grows without
    bound as the slope grows.

    Parameters
    ----------
    y
        Outcomes, 1 = event, 0 = no event; both must be present.
    p
        Predicted probabilities of the event.

    Returns
    -------
    CalibrationFit
        ``(intercept, slope)``; ideal values 0 and 1.
    """
    labels = check_labels(y)
    probs = check_scores(p, labels.size, name="p", probability=True)
    logit = special.logit(np.clip(probs, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP))
    ones = np.ones((labels.size, 1))

    intercept = _intercept_with_unit_slope(labels, logit)

    events = logit[labels == 1]
    non_events = logit[labels == 0]
    if np.ptp(logit) == 0.0:
        logger.warning(
            "Every patient has the same predicted probability, so the calibration slope is "
            "undefined (reported as NaN)."
        )
        return CalibrationFit(intercept, float("nan"))
    if events.min() >= non_events.max() or events.max() <= non_events.min():
        logger.warning(
            "The predicted probabilities separate patients with and without the event "
            "completely, so the calibration slope is infinite (reported as NaN)."
        )
        return CalibrationFit(intercept, float("nan"))

    design = np.column_stack([ones, logit])
    recalibration = sm.GLM(labels, design, family=sm.families.Binomial()).fit()
    if not recalibration.converged:
        raise RuntimeError(
            "The logistic calibration fit did not converge; check the predicted probabilities."
        )
    return CalibrationFit(intercept, float(np.asarray(recalibration.params)[1]))


def hosmer_lemeshow(
    y: npt.ArrayLike, p: npt.ArrayLike, n_groups: int = 10, *, dof_reduction: int = 2
) -> HosmerLemeshow:
    """Hosmer-Lemeshow goodness-of-fit test over quantile groups ("deciles of risk") of ``p``.

    ``statistic = sum_g (O_g - E_g)^2 / (E_g * (1 - E_g / n_g))`` with ``O_g`` observed and
    ``E_g = sum(p)`` expected events in group ``g``; compared with a chi-square distribution
    with ``G - dof_reduction`` degrees of freedom, ``G`` the number of (non-empty) groups.
    ``G - 2`` (the default, as ``ResourceSelection::hoslem.test``) is for the data the model
    was fitted on; on an external set, where nothing was estimated, the reference is ``G``
    degrees of freedom (``dof_reduction=0``; Hosmer & Lemeshow, Applied Logistic Regression,
    3rd ed., section 5.5).

    Parameters
    ----------
    y
        Outcomes, 1 = event, 0 = no event.
    p
        Predicted probabilities of the event (clipped to [1e-15, 1 - 1e-15] so that no group
        has zero expected events).
    n_groups
        Number of quantile groups asked for.
    dof_reduction
        2 on the development data (default), 0 on an external validation set.

    Returns
    -------
    HosmerLemeshow
        ``(statistic, dof, p_value)``.
    """
    labels = check_labels(y, both_classes=False)
    probs = check_scores(p, labels.size, name="p", probability=True)
    groups = quantile_groups(probs, n_groups)
    n_found = int(groups.max()) + 1
    if n_found < 3:
        raise ValueError(
            f"The Hosmer-Lemeshow test needs at least 3 risk groups; the predicted "
            f"probabilities form only {n_found} (too many tied values or n_groups too small)."
        )
    clipped = np.clip(probs, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
    n = np.bincount(groups).astype(np.float64)
    observed = np.bincount(groups, weights=labels)
    expected = np.bincount(groups, weights=clipped)
    statistic = float(np.sum((observed - expected) ** 2 / (expected * (1.0 - expected / n))))
    if dof_reduction not in (0, 2):
        raise ValueError(
            f"dof_reduction must be 2 (development) or 0 (external); got {dof_reduction!r}."
        )
    dof = n_found - dof_reduction
    return HosmerLemeshow(statistic, dof, float(stats.chi2.sf(statistic, dof)))
