"""Stratified, seeded percentile bootstrap confidence interval for any metric.

Cases (y = 1) and controls (y = 0) are resampled separately, with replacement, keeping their
numbers fixed in every replicate, as pROC's default ``boot.stratified = TRUE`` does. The
interval is the percentile interval of the replicate values (numpy's default "linear"
quantile, which is R's ``quantile(type = 7)`` that pROC uses). Unlike pROC, which reports the
median of the replicates as the middle value, the estimate returned here is the metric on the
original sample.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from clnm_kedro.checks import whole_number
from clnm_kedro.metrics._validation import check_labels, check_level, check_scores

__all__ = ["BootstrapCI", "bootstrap_ci"]

logger = logging.getLogger(__name__)

Metric = Callable[[np.ndarray, np.ndarray], float]
BatchMetric = Callable[[np.ndarray, np.ndarray], np.ndarray]


class BootstrapCI(NamedTuple):
    """Metric on the original sample and its bootstrap percentile interval."""

    estimate: float
    lower: float
    upper: float


def bootstrap_ci(
    y: npt.ArrayLike,
    score: npt.ArrayLike,
    metric: Metric | BatchMetric,
    *,
    seed: int,
    n_boot: int = 2000,
    level: float = 0.95,
    vectorized: bool = False,
) -> BootstrapCI:
    """Stratified bootstrap percentile confidence interval of ``metric(y, score)``.

    Parameters
    ----------
    y
        Outcomes, 1 = event (case), 0 = no event (control); both must be present.
    score
        Model output for the same patients (probability, score, or anything ``metric`` takes).
    metric
        ``metric(y, score) -> float`` on 1-D arrays. With ``vectorized=True`` it is instead
        called once as ``metric(y, score_matrix) -> array`` where ``y`` (1-D) is shared by every
        replicate and row ``i`` of ``score_matrix`` holds replicate ``i``'s scores (possible
        because stratified replicates keep the same cases-then-controls layout), e.g.
        :func:`clnm_kedro.metrics.delong.auc_per_row`.
    seed
        Seed of the random generator; the same seed gives the same interval.
    n_boot
        Number of bootstrap replicates.
    level
        Confidence level, e.g. 0.95.
    vectorized
        Whether ``metric`` takes all replicates at once (see ``metric``).

    Returns
    -------
    BootstrapCI
        ``(estimate, lower, upper)``. Replicates where the metric is undefined (NaN, e.g. a
        PPV without predicted positives) are left out, and the number left out is logged; if
        every replicate is undefined the bounds are NaN.
    """
    labels = check_labels(y)
    values = check_scores(score, labels.size)
    level = check_level(level)
    whole_number(n_boot, "n_boot", 1)

    case_idx = np.flatnonzero(labels == 1)
    control_idx = np.flatnonzero(labels == 0)
    rng = np.random.default_rng(seed)
    # One draw for all replicates: cases first, then controls, in every row.
    resampled = np.concatenate(
        [
            case_idx[rng.integers(0, case_idx.size, size=(n_boot, case_idx.size))],
            control_idx[rng.integers(0, control_idx.size, size=(n_boot, control_idx.size))],
        ],
        axis=1,
    )
    layout = np.concatenate(
        [np.ones(case_idx.size, dtype=np.int64), np.zeros(control_idx.size, dtype=np.int64)]
    )

    if vectorized:
        estimate = float(np.asarray(metric(labels, values[np.newaxis, :])).reshape(-1)[0])
        replicates = np.asarray(metric(layout, values[resampled]), dtype=np.float64).reshape(-1)
        if replicates.size != n_boot:
            raise ValueError(
                f"vectorized metric returned {replicates.size} values for {n_boot} replicates."
            )
    else:
        estimate = float(metric(labels, values))
        replicates = np.array(
            [float(metric(layout, values[rows])) for rows in resampled], dtype=np.float64
        )

    undefined = np.isnan(replicates)
    if undefined.any():
        logger.warning(
            "The metric could not be computed in %d of %d bootstrap resamples; the confidence "
            "interval uses the other %d.",
            int(undefined.sum()),
            n_boot,
            int((~undefined).sum()),
        )
    kept = replicates[~undefined]
    if kept.size == 0:
        return BootstrapCI(estimate, float("nan"), float("nan"))
    alpha = 1.0 - level
    lower, upper = np.quantile(kept, [alpha / 2.0, 1.0 - alpha / 2.0])
    return BootstrapCI(estimate, float(lower), float(upper))
