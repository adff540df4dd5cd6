"""AUC with DeLong's variance, its confidence interval and the paired DeLong test.

Implements the fast midrank algorithm of Sun & Xu (2014, IEEE Signal Processing Letters 21:
1389-1393) for the structural components of DeLong, DeLong & Clarke-Pearson (1988,
Biometrics 44: 837-845). The numbers are those of R's pROC (Robin et al. 2011):

- :func:`delong_ci` equals ``pROC::ci.auc(roc, method = "delong")``: a normal interval on the
  AUC scale, ``auc +/- z * sqrt(var)``, truncated to [0, 1];
- :func:`delong_test` equals ``pROC::roc.test(roc1, roc2, method = "delong", paired = TRUE)``
  (two-sided).

Direction. pROC's ``direction = "auto"`` picks, per marker, whichever direction gives an AUC
above 0.5. Here the direction is fixed to pROC's ``"<"``: controls (y = 0) are expected to have
*lower* scores than cases (y = 1), as for a model that outputs the probability of the event. A
model worse than chance therefore gets an AUC below 0.5 instead of being silently flipped.
Ties between a case and a control count one half.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats

from clnm_kedro.metrics._validation import check_labels, check_level, check_scores

__all__ = [
    "AucCI",
    "AucVariance",
    "DelongTest",
    "auc_covariance",
    "auc_delong",
    "auc_per_row",
    "delong_ci",
    "delong_test",
]


class AucVariance(NamedTuple):
    """AUC and its DeLong variance."""

    auc: float
    variance: float


class AucCI(NamedTuple):
    """AUC and the bounds of its confidence interval."""

    auc: float
    lower: float
    upper: float


class DelongTest(NamedTuple):
    """Paired DeLong comparison of two AUCs measured on the same patients."""

    auc_a: float
    auc_b: float
    z: float
    p: float


def _structural_components(
    y: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong placement values of ``k`` markers, by midranks (Sun & Xu 2014).

    Parameters
    ----------
    y
        Validated 0/1 outcomes, shape (n,), both classes present.
    scores
        Validated scores, shape (k, n).

    Returns
    -------
    auc
        Shape (k,).
    v10
        Case placements, shape (k, m): for each case, the fraction of controls scored lower
        (ties one half).
    v01
        Control placements, shape (k, n_controls): for each control, the fraction of cases
        scored higher (ties one half).
    """
    cases = scores[:, y == 1]
    controls = scores[:, y == 0]
    m = cases.shape[1]
    n = controls.shape[1]
    rank_cases = stats.rankdata(cases, axis=1)  # midranks within cases
    rank_controls = stats.rankdata(controls, axis=1)  # midranks within controls
    rank_all = stats.rankdata(np.concatenate([cases, controls], axis=1), axis=1)
    v10 = (rank_all[:, :m] - rank_cases) / n
    v01 = 1.0 - (rank_all[:, m:] - rank_controls) / m
    auc = (rank_all[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    return auc, v10, v01


def _delong_covariance(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance matrix (k, k)."""
    auc, v10, v01 = _structural_components(y, scores)
    m = v10.shape[1]
    n = v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10, ddof=1))
    s01 = np.atleast_2d(np.cov(v01, ddof=1))
    return auc, s10 / m + s01 / n


def _prepare(y: npt.ArrayLike, *scores: tuple[str, npt.ArrayLike]) -> tuple[np.ndarray, ...]:
    labels = check_labels(y)
    if labels.sum() < 2 or (labels.size - labels.sum()) < 2:
        raise ValueError(
            "DeLong's variance needs at least two patients with and two without the event; "
            f"got {int(labels.sum())} with and {int(labels.size - labels.sum())} without."
        )
    arrays = [check_scores(values, labels.size, name=name) for name, values in scores]
    return labels, np.vstack(arrays)


def auc_covariance(
    y: npt.ArrayLike, *scores: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated labels, the AUCs (k,) and their DeLong covariance matrix (k, k).

    Equals ``pROC::cov(roc_a, roc_b, method = "delong")`` off the diagonal and
    ``pROC::var(method = "delong")`` on it.
    """
    labels, matrix = _prepare(y, *((f"score_{i}", s) for i, s in enumerate(scores)))
    auc, cov = _delong_covariance(labels, matrix)
    return labels, auc, cov


def auc_delong(y: npt.ArrayLike, score: npt.ArrayLike) -> AucVariance:
    """AUC and its DeLong variance (pROC's ``auc`` and ``var(method = "delong")``).

    Parameters
    ----------
    y
        Outcomes, 1 = event (case), 0 = no event (control).
    score
        Model output, higher meaning more likely an event.

    Returns
    -------
    AucVariance
        ``(auc, variance)``.
    """
    labels, scores = _prepare(y, ("score", score))
    auc, cov = _delong_covariance(labels, scores)
    return AucVariance(float(auc[0]), float(cov[0, 0]))


def delong_ci(y: npt.ArrayLike, score: npt.ArrayLike, level: float = 0.95) -> AucCI:
    """AUC with its DeLong confidence interval, as ``pROC::ci.auc(method = "delong")``.

    Parameters
    ----------
    y
        Outcomes, 1 = event (case), 0 = no event (control).
    score
        Model output, higher meaning more likely an event.
    level
        Confidence level, e.g. 0.95.

    Returns
    -------
    AucCI
        ``(auc, lower, upper)``; the normal interval on the AUC scale, cut to [0, 1].
    """
    level = check_level(level)
    auc, variance = auc_delong(y, score)
    half_width = stats.norm.ppf(0.5 + level / 2.0) * np.sqrt(variance)
    lower = min(max(auc - half_width, 0.0), 1.0)
    upper = min(max(auc + half_width, 0.0), 1.0)
    return AucCI(auc, float(lower), float(upper))


def delong_test(y: npt.ArrayLike, score_a: npt.ArrayLike, score_b: npt.ArrayLike) -> DelongTest:
    """Two-sided paired DeLong test of AUC(a) = AUC(b) on the same patients.

    Equals ``pROC::roc.test(roc_a, roc_b, method = "delong", paired = TRUE)``. When the two
    AUCs are equal and their difference has zero variance (e.g. the same scores twice), the
    test returns ``z = 0`` and ``p = 1``, as pROC does.

    Parameters
    ----------
    y
        Outcomes, 1 = event (case), 0 = no event (control).
    score_a, score_b
        Outputs of the two models for the same patients, in the same order.

    Returns
    -------
    DelongTest
        ``(auc_a, auc_b, z, p)`` with ``z = (auc_a - auc_b) / sd(auc_a - auc_b)``.
    """
    labels, scores = _prepare(y, ("score_a", score_a), ("score_b", score_b))
    auc, cov = _delong_covariance(labels, scores)
    difference = float(auc[0] - auc[1])
    variance = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if variance <= 0.0:
        if np.isclose(difference, 0.0, rtol=0.0, atol=1e-12):
            z = 0.0
        else:
            z = float(np.copysign(np.inf, difference))
    else:
        z = difference / np.sqrt(variance)
    p = float(2.0 * stats.norm.sf(abs(z)))
    return DelongTest(float(auc[0]), float(auc[1]), float(z), p)


def auc_per_row(y: npt.ArrayLike, score_matrix: npt.ArrayLike) -> np.ndarray:
    """AUC of every row of ``score_matrix`` against the same outcomes ``y`` (vectorised).

    Used by the stratified bootstrap, whose replicates all share one label vector.

    Parameters
    ----------
    y
        Outcomes, shape (n,), both classes present.
    score_matrix
        Scores, shape (r, n); row ``i`` is one set of scores for the patients in ``y``.

    Returns
    -------
    numpy.ndarray
        Shape (r,), the AUC (direction ``"<"``) of each row.
    """
    labels = check_labels(y)
    matrix = np.asarray(score_matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != labels.size:
        raise ValueError(f"score_matrix must have shape (r, {labels.size}); got {matrix.shape}.")
    if not np.isfinite(matrix).all():
        raise ValueError("score_matrix has missing or infinite values.")
    cases = labels == 1
    m = int(cases.sum())
    n = labels.size - m
    ranks = stats.rankdata(matrix, axis=1)
    return (ranks[:, cases].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
