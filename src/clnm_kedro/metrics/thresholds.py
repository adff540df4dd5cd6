"""Youden threshold and the classification metrics at a fixed threshold.

Rule used throughout: a patient is classified positive when ``score >= threshold``.

The Youden threshold is chosen on one data set (the training set) and then applied unchanged
to any other (the external set) with :func:`classification_metrics`. On the data set it was
chosen on, its rates are optimistic (the cut-off saw those patients' labels);
:func:`cross_fitted_thresholds` gives each of those patients a cut-off chosen without it.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import StratifiedKFold

from clnm_kedro.metrics._validation import check_labels, check_scores

__all__ = ["classification_metrics", "cross_fitted_thresholds", "youden_threshold"]

logger = logging.getLogger(__name__)


def youden_threshold(y: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity - 1.

    Candidate cut-offs are the distinct observed scores ``s_1 < s_2 < ... < s_k``; cut-off
    ``s_j`` calls ``score >= s_j`` positive. J is compared exactly (as integer counts), and
    among tied maxima the **lowest** cut-off wins, i.e. the one with the highest sensitivity
    (a missed metastasis is the costlier error here). The returned threshold is, as in pROC's
    ``coords(x = "best")``, halfway between the winning score ``s_j`` and the next lower
    distinct score ``s_{j-1}``, so that it classifies the given data exactly as ``s_j`` does
    while leaving a margin for new patients; if ``s_j`` is the lowest score (everyone
    positive, only possible when the scores do not separate the classes at all) ``s_j``
    itself is returned.

    Parameters
    ----------
    y
        Outcomes, 1 = event (case), 0 = no event (control); both must be present.
    score
        Model output, higher meaning more likely an event.

    Returns
    -------
    float
        The threshold, to be used with ``score >= threshold``.
    """
    labels = check_labels(y)
    values = check_scores(score, labels.size)
    n_cases = int(labels.sum())
    n_controls = labels.size - n_cases

    distinct, inverse = np.unique(values, return_inverse=True)
    cases_at = np.bincount(inverse, weights=labels, minlength=distinct.size).astype(np.int64)
    total_at = np.bincount(inverse, minlength=distinct.size).astype(np.int64)
    controls_at = total_at - cases_at
    # Cut-off at distinct[j]: positives are every score >= distinct[j].
    tp = np.cumsum(cases_at[::-1])[::-1]
    fp = np.cumsum(controls_at[::-1])[::-1]
    tn = n_controls - fp
    # J * n_cases * n_controls, exact in integers.
    j_scaled = tp * n_controls + tn * n_cases - n_cases * n_controls
    best = int(np.flatnonzero(j_scaled == j_scaled.max())[0])  # lowest tied cut-off
    if j_scaled[best] <= 0:
        logger.warning(
            "The scores do not separate patients with and without the event (best Youden "
            "index is %.3f); the threshold calls every patient positive.",
            j_scaled[best] / (n_cases * n_controls),
        )
    if best == 0:
        return float(distinct[0])
    return float((distinct[best - 1] + distinct[best]) / 2.0)


def cross_fitted_thresholds(
    y: npt.ArrayLike, score: npt.ArrayLike, n_splits: int = 5, seed: int = 0
) -> np.ndarray:
    """Each patient's Youden threshold chosen without it (stratified K-fold cross-fitting).

    The patients are split into ``n_splits`` stratified folds (fewer when a class has fewer
    patients); the patients of fold ``k`` get the :func:`youden_threshold` of the other folds.
    Rates computed with these cut-offs (``score >= threshold_i``) estimate what the
    threshold-choosing procedure gives patients it has not seen, which rates at the cut-off
    chosen on all of them overstate.

    Returns
    -------
    numpy.ndarray
        One threshold per patient; NaN everywhere when a class has fewer than two patients.
    """
    labels = check_labels(y, both_classes=False)
    values = check_scores(score, labels.size)
    smallest_class = int(min(labels.sum(), labels.size - labels.sum()))
    folds = min(int(n_splits), smallest_class)
    thresholds = np.full(labels.size, np.nan)
    if folds < 2:
        return thresholds
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(values.reshape(-1, 1), labels):
        if len(np.unique(labels[train])) == 2:
            thresholds[test] = youden_threshold(labels[train], values[train])
    return thresholds


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def classification_metrics(
    y: npt.ArrayLike, score: npt.ArrayLike, threshold: float
) -> dict[str, float | int]:
    """Confusion counts and the usual rates at one threshold (``score >= threshold`` positive).

    Parameters
    ----------
    y
        Outcomes, 1 = event (case), 0 = no event (control).
    score
        Model output for the same patients.
    threshold
        Cut-off, e.g. the training-set :func:`youden_threshold`.

    Returns
    -------
    dict
        ``sensitivity, specificity, accuracy, ppv, npv`` (floats) and ``tp, fp, tn, fn``
        (ints). A rate whose denominator is zero (e.g. PPV when nobody is called positive, or
        sensitivity in a group without events) is NaN.
    """
    labels = check_labels(y, both_classes=False)
    values = check_scores(score, labels.size)
    cut = float(threshold)
    if not np.isfinite(cut):
        raise ValueError(f"threshold must be a finite number; got {threshold!r}.")
    predicted = values >= cut
    event = labels == 1
    tp = int(np.sum(predicted & event))
    fp = int(np.sum(predicted & ~event))
    tn = int(np.sum(~predicted & ~event))
    fn = int(np.sum(~predicted & event))
    return {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "accuracy": (tp + tn) / labels.size,
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }
