"""One check for the whole-number settings of every layer (seeds, counts, sizes, folds).

Kedro-free: the libraries and the nodes call it with the setting's full name, so a bad value
stops the run up front with one sentence naming it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def whole_number(
    value: Any,
    name: str,
    minimum: int | None = None,
    *,
    error: type[Exception] = ValueError,
) -> int:
    """``value`` as an ``int``: a whole number (not a bool, not a float) of at least
    ``minimum``; otherwise ``error`` naming the setting ``name`` and the value given."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or (minimum is not None and value < minimum)
    ):
        if minimum is None:
            wanted = "a whole number"
        elif minimum == 1:
            wanted = "a positive whole number"
        else:
            wanted = f"a whole number >= {minimum}"
        raise error(f"{name} must be {wanted}; got {value!r}.")
    return int(value)
