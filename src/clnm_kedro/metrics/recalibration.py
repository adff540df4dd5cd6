"""Logistic recalibration: turn a score into a calibrated risk.

The map is ``risk = expit(a + b * logit(p))`` (Platt scaling on the logit; Cox 1958), fitted by
unpenalised maximum likelihood on out-of-fold predictions of the training centres only, and
stored with the model (:meth:`LogitCalibration.to_dict`). The identity map (``a = 0, b = 1``)
leaves probabilities unchanged. The same map refitted on labelled patients of a new centre is
the usual "recalibration for a new setting" (Steyerberg, *Clinical Prediction Models*, 2nd ed.,
ch. 20): discrimination is untouched, only intercept and slope change.

Probabilities are clipped to ``[1e-15, 1 - 1e-15]`` before taking logits, as in
:mod:`clnm_kedro.metrics.calibration`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import statsmodels.api as sm
from scipy import special

from clnm_kedro.metrics._validation import check_labels, check_scores

__all__ = ["LogitCalibration", "cross_fitted_calibration"]

PROBABILITY_CLIP = 1e-15


def _logit(p: np.ndarray) -> np.ndarray:
    return special.logit(np.clip(p, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP))


@dataclass(frozen=True)
class LogitCalibration:
    """``risk = expit(intercept + slope * logit(p))``; fitted on out-of-fold predictions."""

    intercept: float = 0.0
    slope: float = 1.0
    n: int = 0
    events: int = 0

    @classmethod
    def identity(cls) -> LogitCalibration:
        """The map that leaves probabilities unchanged."""
        return cls()

    @classmethod
    def fit(cls, y: npt.ArrayLike, p: npt.ArrayLike) -> LogitCalibration:
        """Fit intercept and slope by maximum likelihood (logistic regression of ``y`` on
        ``logit(p)``, no penalty).

        Raises
        ------
        ValueError
            If ``y`` is not 0/1 with both classes, ``p`` is not a probability per patient, or
            the two do not have the same length.
        """
        labels = check_labels(y)
        scores = check_scores(p, n=len(labels), name="p", probability=True)
        design = sm.add_constant(_logit(scores), has_constant="add")
        fit = sm.GLM(labels, design, family=sm.families.Binomial()).fit()
        intercept, slope = (float(v) for v in fit.params)
        if not (np.isfinite(intercept) and np.isfinite(slope)):
            raise ValueError(
                "the recalibration did not converge (the scores separate the classes "
                "perfectly or carry no information); check the out-of-fold predictions"
            )
        return cls(intercept, slope, n=len(labels), events=int(labels.sum()))

    def apply(self, p: npt.ArrayLike) -> np.ndarray:
        """Calibrated risks of the probabilities ``p`` (NaN stays NaN)."""
        scores = np.asarray(p, dtype=float)
        out = np.full(scores.shape, np.nan)
        finite = np.isfinite(scores)
        out[finite] = special.expit(self.intercept + self.slope * _logit(scores[finite]))
        return out

    def followed_by(self, second: LogitCalibration) -> LogitCalibration:
        """This map, then ``second``, as one map (``n`` and ``events``: ``second``'s).

        ``expit(a2 + b2 * logit(expit(a1 + b1 * logit(p))))`` is
        ``expit((a2 + b2 * a1) + b2 * b1 * logit(p))``.
        """
        return LogitCalibration(
            second.intercept + second.slope * self.intercept,
            second.slope * self.slope,
            n=second.n,
            events=second.events,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored beside the model)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogitCalibration:
        """Read back what :meth:`to_dict` wrote; an unknown key is an error."""
        unknown = set(data) - {"intercept", "slope", "n", "events"}
        if unknown:
            raise ValueError(f"unknown calibration keys: {sorted(unknown)}")
        return cls(**data)


def cross_fitted_calibration(
    labels: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    groups: npt.ArrayLike,
    fit: Callable[[np.ndarray, np.ndarray], LogitCalibration] = LogitCalibration.fit,
) -> np.ndarray:
    """Each group's ``probabilities`` through a calibration ``fit`` on the other groups' rows.

    Out-of-fold predictions recalibrated on the rows they describe would have seen each row's
    label; here no row's risk comes from a calibration fitted on it (its group's rows are left
    out).

    Raises
    ------
    ValueError
        If the lengths differ, or the rows outside a group lack an outcome class (that
        group's calibration cannot be fitted: fewer groups, or more events, are needed).
    """
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=float)
    groups = np.asarray(groups)
    if not len(labels) == len(probabilities) == len(groups):
        raise ValueError(
            f"{len(labels)} labels, {len(probabilities)} probabilities and {len(groups)} groups"
        )
    risks = np.full(len(labels), np.nan)
    for group in np.unique(groups):
        rows = groups == group
        others = ~rows
        if len(np.unique(labels[others])) < 2:
            raise ValueError(
                f"the training patients outside fold group {group} all have the same outcome: "
                "their calibration cannot be fitted"
            )
        risks[rows] = fit(labels[others], probabilities[others]).apply(probabilities[rows])
    return risks
