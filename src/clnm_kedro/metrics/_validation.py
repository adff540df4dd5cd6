"""Input checks shared by the metrics modules.

Every public metric validates its inputs here, so that bad data fails with a message naming
the parameter and the offending rows, never with a traceback from deep inside numpy or scipy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_MAX_ROWS_SHOWN = 5


def _rows(mask: np.ndarray) -> str:
    """Describe the (0-based) positions where ``mask`` is true, at most a few of them."""
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:_MAX_ROWS_SHOWN])
    more = f" and {idx.size - _MAX_ROWS_SHOWN} more" if idx.size > _MAX_ROWS_SHOWN else ""
    return f"row(s) {shown}{more}"


def check_labels(y: npt.ArrayLike, *, name: str = "y", both_classes: bool = True) -> np.ndarray:
    """Return ``y`` as a 1-D int array of 0/1 outcomes, or raise ``ValueError``.

    Parameters
    ----------
    y
        Outcomes, 1 = event (case), 0 = no event (control). Booleans are accepted.
    name
        Parameter name used in error messages.
    both_classes
        Require at least one case and one control.
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} is empty.")
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must hold numeric 0/1 outcomes; got dtype {arr.dtype}.")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        raise ValueError(
            f"{name} must contain only 0 (no event) and 1 (event); "
            f"{_rows(bad)} hold {arr[bad][:_MAX_ROWS_SHOWN].tolist()}."
        )
    labels = arr.astype(np.int64)
    if both_classes:
        n_cases = int(labels.sum())
        if n_cases in (0, labels.size):
            only = "events (1)" if n_cases else "non-events (0)"
            raise ValueError(
                f"{name} contains only {only}; this metric needs both patients with and "
                "without the event."
            )
    return labels


def check_scores(
    score: npt.ArrayLike, n: int, *, name: str = "score", probability: bool = False
) -> np.ndarray:
    """Return ``score`` as a 1-D float array of length ``n``, or raise ``ValueError``.

    Parameters
    ----------
    score
        Model outputs, one per patient.
    n
        Expected length (the number of outcomes).
    name
        Parameter name used in error messages.
    probability
        Also require every value to lie in [0, 1].
    """
    arr = np.asarray(score)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {arr.shape}.")
    if arr.size != n:
        raise ValueError(f"{name} has {arr.size} values but there are {n} outcomes.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}.")
    values = arr.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"{name} has missing or infinite values at {_rows(bad)}.")
    if probability:
        bad = (values < 0.0) | (values > 1.0)
        if bad.any():
            raise ValueError(
                f"{name} must be probabilities in [0, 1]; {_rows(bad)} hold "
                f"{values[bad][:_MAX_ROWS_SHOWN].tolist()}."
            )
    return values


def check_level(level: float, *, name: str = "level") -> float:
    """Return a confidence level strictly between 0 and 1, or raise ``ValueError``."""
    value = float(level)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1; got {level!r}.")
    return value


def check_thresholds(thresholds: Sequence[float] | npt.ArrayLike, *, name: str) -> np.ndarray:
    """Return decision thresholds as a 1-D float array within [0, 1), or raise ``ValueError``."""
    try:
        arr = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numbers; got {thresholds!r}.") from err
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty list of numbers.")
    bad = ~np.isfinite(arr) | (arr < 0.0) | (arr >= 1.0)
    if bad.any():
        raise ValueError(
            f"{name} must lie in [0, 1) (a threshold probability of 1 makes the harm of a "
            f"false positive infinite); got {arr[bad][:_MAX_ROWS_SHOWN].tolist()}."
        )
    return arr
