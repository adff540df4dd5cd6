"""Comparing numbers computed along two code paths.

Two code paths that compute the same probabilities (a batch of other patients, another batch
size, a reloaded checkpoint, another process with another thread count, another CPU's
instruction set) agree only to float precision: oneDNN, MKL and ATen pick kernels by instruction
set and split sums by thread, so the last bits move. Bit-equality is asserted only for a repeat
of one code path in one process.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# float32 networks: a few ulps of float32 on values of order 1.
RTOL = 1e-5
ATOL = 1e-6


def assert_same_numbers(actual: Any, expected: Any, err_msg: str = "") -> None:
    """Assert two arrays hold the same numbers up to float32 rounding (NaN equal to NaN)."""
    np.testing.assert_allclose(
        np.asarray(actual, dtype=float),
        np.asarray(expected, dtype=float),
        rtol=RTOL,
        atol=ATOL,
        err_msg=err_msg,
    )
