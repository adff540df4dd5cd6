"""Calibration with confidence intervals, and smoothed calibration curves with a band.

Every interval here is analytic (Wald), so it exists whether or not the bootstrap is on:

- Brier score ``mean((p - y)^2)``: normal interval with the standard error of that mean;
  scaled Brier ``1 - Brier / (ybar (1 - ybar))`` (Steyerberg; 0 = no better than the
  prevalence, 1 = perfect), its interval the Brier interval mapped the same way (prevalence
  held fixed);
- calibration-in-the-large ``a`` of ``logit P(y=1) = a + offset(logit p)`` (ideal 0): Wald
  interval from its Fisher information ``sum q (1 - q)``;
- calibration slope ``b`` of ``logit P(y=1) = a + b logit p`` (ideal 1): statsmodels' Wald
  interval;
- observed/expected ratio ``O/E = sum(y) / sum(p)`` (ideal 1): interval on the log scale with
  ``se(ln O/E) = sqrt((1 - O/n) / O)`` (Debray et al., BMJ 2017;356:i6460).

The smoothed curve is a logistic regression of the outcome on a restricted cubic spline of
``logit p`` (3 knots at the 10th, 50th and 90th percentiles, Harrell's placement), drawn with a
pointwise Wald band (delta method on the linear predictor) — the flexible calibration curve of
Van Calster et al. (J Clin Epidemiol 2016), fitted rather than binned.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import numpy.typing as npt
import pandas as pd
import statsmodels.api as sm
from scipy import special, stats

from clnm_kedro.metrics import calibration_intercept_slope

__all__ = [
    "CALIBRATION_KEYS",
    "calibration_with_ci",
    "rcs_basis",
    "smoothed_calibration",
]

logger = logging.getLogger(__name__)

CALIBRATION_KEYS: tuple[str, ...] = (
    "brier",
    "brier_lower",
    "brier_upper",
    "scaled_brier",
    "scaled_brier_lower",
    "scaled_brier_upper",
    "calibration_intercept",
    "calibration_intercept_lower",
    "calibration_intercept_upper",
    "calibration_slope",
    "calibration_slope_lower",
    "calibration_slope_upper",
    "observed_expected",
    "observed_expected_lower",
    "observed_expected_upper",
)
_CLIP = 1e-15
NAN = math.nan


def _logit(p: np.ndarray) -> np.ndarray:
    return special.logit(np.clip(p, _CLIP, 1.0 - _CLIP))


def calibration_with_ci(y: npt.ArrayLike, p: npt.ArrayLike, level: float = 0.95) -> dict:
    """Every value of :data:`CALIBRATION_KEYS` for outcomes ``y`` and probabilities ``p``.

    NaN marks what cannot be estimated (one outcome class, or a slope without a finite
    estimate).
    """
    labels = np.asarray(y, dtype=np.float64)
    probs = np.asarray(p, dtype=np.float64)
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    result = dict.fromkeys(CALIBRATION_KEYS, NAN)
    n = labels.size
    if n == 0:
        return result
    squared = (probs - labels) ** 2
    brier = float(squared.mean())
    se = float(squared.std(ddof=1) / math.sqrt(n)) if n > 1 else NAN
    result.update(brier=brier, brier_lower=brier - z * se, brier_upper=brier + z * se)
    events = float(labels.sum())
    if events in (0.0, float(n)):
        return result
    ybar = events / n
    reference = ybar * (1.0 - ybar)
    result.update(
        scaled_brier=1.0 - brier / reference,
        scaled_brier_lower=1.0 - (brier + z * se) / reference,
        scaled_brier_upper=1.0 - (brier - z * se) / reference,
    )
    expected = float(probs.sum())
    ratio = events / expected
    se_log = math.sqrt((1.0 - ybar) / events)
    result.update(
        observed_expected=ratio,
        observed_expected_lower=ratio * math.exp(-z * se_log),
        observed_expected_upper=ratio * math.exp(z * se_log),
    )
    try:
        fit = calibration_intercept_slope(labels.astype(np.int64), probs)
    except (RuntimeError, ValueError) as error:
        logger.warning("Calibration intercept and slope not estimable (%s).", error)
        return result
    logit = _logit(probs)
    q = special.expit(fit.intercept + logit)
    information = float(np.sum(q * (1.0 - q)))
    if information > 0.0:
        se_a = 1.0 / math.sqrt(information)
        result.update(
            calibration_intercept=fit.intercept,
            calibration_intercept_lower=fit.intercept - z * se_a,
            calibration_intercept_upper=fit.intercept + z * se_a,
        )
    if math.isfinite(fit.slope):
        design = sm.add_constant(logit, has_constant="add")
        model = sm.GLM(labels, design, family=sm.families.Binomial()).fit()
        low, high = np.asarray(model.conf_int(alpha=1.0 - level))[1]
        result.update(
            calibration_slope=fit.slope,
            calibration_slope_lower=float(low),
            calibration_slope_upper=float(high),
        )
    return result


def rcs_basis(x: npt.ArrayLike, knots: npt.ArrayLike) -> np.ndarray:
    """Restricted cubic spline basis (Harrell): ``x`` and ``k - 2`` nonlinear columns.

    Linear beyond the outer knots; the nonlinear columns are scaled by ``(t_k - t_1)^2``.
    """
    values = np.asarray(x, dtype=np.float64)
    t = np.asarray(knots, dtype=np.float64)
    k = t.size
    scale = (t[-1] - t[0]) ** 2

    def cube(u: np.ndarray) -> np.ndarray:
        return np.maximum(u, 0.0) ** 3

    columns = [values]
    for j in range(k - 2):
        term = (
            cube(values - t[j])
            - cube(values - t[k - 2]) * (t[k - 1] - t[j]) / (t[k - 1] - t[k - 2])
            + cube(values - t[k - 1]) * (t[k - 2] - t[j]) / (t[k - 1] - t[k - 2])
        )
        columns.append(term / scale)
    return np.column_stack(columns)


def smoothed_calibration(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    level: float = 0.95,
    n_points: int = 60,
) -> pd.DataFrame:
    """Smoothed calibration curve with a pointwise confidence band.

    Returns
    -------
    pandas.DataFrame
        ``predicted`` (a grid over the 1st-99th percentiles of ``p``), ``observed``,
        ``lower``, ``upper``; empty when the curve cannot be fitted (one outcome class, tied
        predictions, or a fit that separates the outcome).
    """
    labels = np.asarray(y, dtype=np.float64)
    probs = np.asarray(p, dtype=np.float64)
    empty = pd.DataFrame(columns=["predicted", "observed", "lower", "upper"])
    if labels.size < 10 or labels.min() == labels.max():
        return empty
    logit = _logit(probs)
    knots = np.unique(np.quantile(logit, [0.1, 0.5, 0.9]))
    design = (
        sm.add_constant(rcs_basis(logit, knots), has_constant="add")
        if knots.size == 3
        else sm.add_constant(logit, has_constant="add")
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = sm.GLM(labels, design, family=sm.families.Binomial()).fit()
    except (np.linalg.LinAlgError, ValueError) as error:
        logger.warning("Smoothed calibration curve not fitted (%s).", error)
        return empty
    params = np.asarray(model.params)
    covariance = np.asarray(model.cov_params())
    if not (np.all(np.isfinite(params)) and np.all(np.isfinite(covariance))):
        return empty
    low, high = np.quantile(probs, [0.01, 0.99])
    if high <= low:
        return empty
    grid = np.linspace(low, high, n_points)
    grid_logit = _logit(grid)
    grid_design = (
        sm.add_constant(rcs_basis(grid_logit, knots), has_constant="add")
        if knots.size == 3
        else sm.add_constant(grid_logit, has_constant="add")
    )
    linear = grid_design @ params
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", grid_design, covariance, grid_design), 0))
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    return pd.DataFrame(
        {
            "predicted": grid,
            "observed": special.expit(linear),
            "lower": special.expit(linear - z * se),
            "upper": special.expit(linear + z * se),
        }
    )
