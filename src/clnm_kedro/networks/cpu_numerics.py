"""CPU numerics that do not depend on the machine's thread or core count.

PyTorch splits a convolution's sums between its threads: oneDNN's weight gradients differ in the
last bits between 1 and 2 threads, and PyTorch's own convolution (im2col and MKL matrix
products) between 2 and 3 or more; over a few epochs those bits become other weights. oneDNN
(and NNPACK, PyTorch's other fast convolution) may also choose their blocking by CPU, and oneDNN
promises the same sums only on the same CPU, while MKL's matrix products, with the instruction
set pinned (``MKL_CBWR``, set by ``clnm_kedro/__init__.py``), give the same bits on every CPU
with that instruction set. So on the CPU a network trains and predicts with **one intra-op
thread and PyTorch's own convolution (oneDNN and NNPACK off)**, whatever
``torch.set_num_threads`` the process has: its numbers are then the same with any thread count.
Cores are put to use by training several fold networks side by side (``make run``'s
:class:`~clnm_kedro.runner.SideBySideRunner` in threads, or ``kedro run --runner
ParallelRunner``) and by scoring with several fold networks at once, not by splitting one
network's sums. CUDA devices are untouched. See docs/reproducibility.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# Intra-op threads a network uses on the CPU: one, so that no sum is split between threads.
CPU_NETWORK_THREADS = 1

class _ProcessSwitches:
    """The switches are process-wide: with several blocks open at once (nodes of a
    ThreadRunner), the settings found by the first are restored when the last one ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = 0
        self._saved: tuple[int, bool, bool] | None = None

    def enter(self) -> None:
        with self._lock:
            if self._open == 0:
                self._saved = (
                    torch.get_num_threads(),
                    torch.backends.mkldnn.enabled,
                    torch._C._get_nnpack_enabled(),
                )
                # The switches alone: `torch.backends.mkldnn.flags` would also reset its TF32
                # settings.
                torch.backends.mkldnn.enabled = False
                torch._C._set_nnpack_enabled(False)
            self._open += 1
            torch.set_num_threads(CPU_NETWORK_THREADS)  # also this thread's OpenMP setting

    def exit(self) -> None:
        with self._lock:
            self._open -= 1
            if self._open == 0 and self._saved is not None:
                threads, onednn, nnpack = self._saved
                self._saved = None
                torch._C._set_nnpack_enabled(nnpack)
                torch.backends.mkldnn.enabled = onednn
                torch.set_num_threads(threads)


_SWITCHES = _ProcessSwitches()


@contextmanager
def thread_independent_numerics(device: torch.device | str) -> Iterator[None]:
    """On the CPU: one intra-op thread and PyTorch's own convolution inside the block.

    oneDNN and NNPACK are switched off (convolutions become im2col and MKL matrix products).
    The thread count and switches found are restored when the last open block ends. On another
    device the block runs unchanged.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    _SWITCHES.enter()
    try:
        yield
    finally:
        _SWITCHES.exit()
