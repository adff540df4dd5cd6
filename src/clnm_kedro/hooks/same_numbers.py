"""The same numbers on any machine: PyTorch's threads outside the networks' passes, and
OpenBLAS's kernels checked.
"""

from __future__ import annotations

import logging
import os

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


TORCH_THREADS_ENV = "CLNM_TORCH_THREADS"
# PyTorch threads for the work outside the networks' own passes. No number depends on it: the
# networks train and predict with one thread whatever it says (PyTorch splits a convolution's
# sums by thread; clnm_kedro.networks.cpu_numerics). A fixed count rather than every core keeps
# a run from crowding a shared machine. 0 or "auto": PyTorch's own choice (all cores).
DEFAULT_TORCH_THREADS = 2


def torch_threads() -> int | None:
    """The intra-op thread count a run uses (``None``: PyTorch's default)."""
    text = os.environ.get(TORCH_THREADS_ENV, "").strip().lower()
    if not text:
        return DEFAULT_TORCH_THREADS
    if text in ("0", "auto"):
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(
            f"{TORCH_THREADS_ENV}={text!r}: give a number of threads (1, 2, ...) or 0/auto."
        )
    return count


# OpenBLAS kernels that give the same numbers as on any AVX2 machine (Zen uses Haswell's).
AVX2_BLAS_KERNELS = ("haswell", "zen")


def check_blas_kernels() -> str | None:
    """A warning when NumPy's OpenBLAS runs wider (AVX-512) kernels than an AVX2 machine has.

    Their sums differ in the last bits, and so do the heads fitted with them. The kernel is
    chosen when NumPy loads, so only ``OPENBLAS_CORETYPE=Haswell`` in the environment of the
    command (the Makefile exports it) can change it.
    """
    from threadpoolctl import threadpool_info  # noqa: PLC0415 - scikit-learn's dependency

    for library in threadpool_info():
        architecture = str(library.get("architecture") or "")
        if library.get("internal_api") != "openblas" or not architecture:
            continue
        if architecture.lower() not in AVX2_BLAS_KERNELS:
            message = (
                f"OpenBLAS uses its {architecture} kernels: the heads' numbers may differ in "
                "the last digits from another machine's. For the numbers of any AVX2 machine, "
                "start the run with OPENBLAS_CORETYPE=Haswell in the environment (`make run` "
                "does), or CLNM_PIN_CPU_KERNELS=0 to silence this."
            )
            logger.warning(message)
            return message
    return None


class SameNumbersHooks:
    """The same numbers on any x86-64 machine with AVX2 (docs/reproducibility.md).

    PyTorch runs with :func:`torch_threads` intra-op threads (the networks' own passes with
    one, see :mod:`clnm_kedro.networks.cpu_numerics`); a warning says when NumPy's OpenBLAS
    runs AVX-512 kernels (see :func:`check_blas_kernels`).
    """

    @hook_impl
    def before_pipeline_run(self) -> None:
        """Fix the thread count before any node runs."""
        if os.environ.get("CLNM_PIN_CPU_KERNELS", "1").strip() not in ("0", "false", "no"):
            check_blas_kernels()
        count = torch_threads()
        if count is None:
            return
        import torch  # noqa: PLC0415 - only runs that use it pay for the import

        if torch.get_num_threads() != count:
            logger.info(
                "PyTorch runs with %d thread(s) (%s; the networks train with one).",
                count,
                TORCH_THREADS_ENV,
            )
            torch.set_num_threads(count)
