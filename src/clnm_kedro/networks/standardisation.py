"""Label-free standardisation of each fold network's outputs.

K fold networks trained on different patients end with logits of their own offset and scale
(on the demo cohort the five dual networks' out-of-fold fused logits have means from -0.39 to
+0.09 and SDs from 0.72 to 0.99). Pooled, their out-of-fold logits mix K scales, so a single
calibration fitted on the pool is too steep for some networks and too flat for others, and the
pooled out-of-fold calibration slope falls below 1; the heads, too, would read one DL input on
K different scales.

Each network's outputs are therefore standardised by the mean and standard deviation of its
outputs on the patients it never saw: its held-out fold group. No label is used. For a
training patient, the mean and SD of its own network leave that patient out (leave-one-out),
so no statistic applied to a patient was computed from it. Every other patient (external, new)
gets the stored mean and SD of each network, and the ensemble's output is the mean of the K
standardised outputs. With ``K = 1`` (a single network, nothing held out) the map is the
identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["OutputStandardisation"]

MIN_HELD_OUT = 3  # patients a network must hold out for a leave-one-out SD


def _checked_scale(sd: np.ndarray) -> np.ndarray:
    """An SD of 0 (a network whose output is constant) leaves the output unscaled."""
    return np.where(np.isfinite(sd) & (sd > 1e-12), sd, 1.0)


@dataclass(frozen=True)
class OutputStandardisation:
    """``(output - location[k]) / scale[k]`` for fold network ``k``.

    Attributes
    ----------
    location, scale
        ``(K, C)``: per fold network and output column (the fused logit, then each view's),
        the mean and SD of the network's outputs on the patients it held out.
    """

    location: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        location = np.asarray(self.location, dtype=np.float64)
        scale = np.asarray(self.scale, dtype=np.float64)
        if location.ndim != 2 or location.shape != scale.shape:
            raise ValueError(
                f"standardisation location {location.shape} and scale {scale.shape} must both "
                "be (fold networks, outputs)"
            )
        if not (np.isfinite(location).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("standardisation location and scale must be finite, scale > 0")
        object.__setattr__(self, "location", location)
        object.__setattr__(self, "scale", scale)

    @classmethod
    def identity(cls, n_networks: int, n_outputs: int) -> OutputStandardisation:
        """The map that leaves every output unchanged."""
        return cls(np.zeros((n_networks, n_outputs)), np.ones((n_networks, n_outputs)))

    @classmethod
    def fit(cls, per_model: np.ndarray, assignment: np.ndarray) -> OutputStandardisation:
        """Mean and SD of network ``k``'s outputs on the rows with ``assignment == k``.

        Parameters
        ----------
        per_model
            ``(K, N, C)``: every network's outputs for every patient.
        assignment
            ``(N,)``: the fold network that held each patient out (``-1``: none). With no
            held-out patient at all (``K = 1``) the identity is returned.

        Raises
        ------
        ValueError
            If a network held out fewer than three patients.
        """
        per_model = np.asarray(per_model, dtype=np.float64)
        assignment = np.asarray(assignment)
        n_networks, n_rows, n_outputs = per_model.shape
        if len(assignment) != n_rows:
            raise ValueError(f"{len(assignment)} fold assignments for {n_rows} patients")
        if not (assignment >= 0).any():
            return cls.identity(n_networks, n_outputs)
        location = np.zeros((n_networks, n_outputs))
        scale = np.ones((n_networks, n_outputs))
        for k in range(n_networks):
            rows = assignment == k
            if rows.sum() < MIN_HELD_OUT:
                raise ValueError(
                    f"fold network {k} held out {int(rows.sum())} patient(s); at least "
                    f"{MIN_HELD_OUT} are needed to standardise its outputs"
                )
            location[k] = per_model[k, rows].mean(axis=0)
            scale[k] = _checked_scale(per_model[k, rows].std(axis=0, ddof=1))
        return cls(location, scale)

    @property
    def n_networks(self) -> int:
        return self.location.shape[0]

    @property
    def is_identity(self) -> bool:
        """True for the map that changes nothing (``K = 1``, or an older checkpoint)."""
        return bool(np.all(self.location == 0) and np.all(self.scale == 1))

    def apply(self, per_model: np.ndarray) -> np.ndarray:
        """``(K, N, C)`` standardised outputs with the stored mean and SD."""
        per_model = np.asarray(per_model, dtype=np.float64)
        return (per_model - self.location[:, None, :]) / self.scale[:, None, :]

    def apply_held_out(self, per_model: np.ndarray, assignment: np.ndarray) -> np.ndarray:
        """``(N, C)``: each held-out patient's output from the network that held it out,
        standardised with that network's mean and SD over its *other* held-out patients;
        rows with ``assignment == -1`` are NaN.

        With the identity map (``K = 1``) the output is unchanged.
        """
        per_model = np.asarray(per_model, dtype=np.float64)
        assignment = np.asarray(assignment)
        out = np.full(per_model.shape[1:], np.nan)
        for k in range(per_model.shape[0]):
            rows = np.flatnonzero(assignment == k)
            if not len(rows):
                continue
            values = per_model[k, rows]
            if self.is_identity:
                out[rows] = values
                continue
            n = len(rows)
            total, squares = values.sum(axis=0), (values**2).sum(axis=0)
            mean = (total - values) / (n - 1)  # leave-one-out
            variance = (squares - values**2 - (n - 1) * mean**2) / (n - 2)
            out[rows] = (values - mean) / _checked_scale(np.sqrt(np.maximum(variance, 0.0)))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, for the checkpoint."""
        return {"location": self.location.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutputStandardisation:
        return cls(np.asarray(data["location"]), np.asarray(data["scale"]))
