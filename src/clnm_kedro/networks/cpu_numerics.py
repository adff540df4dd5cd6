"""CPU numerics that do not depend on the machine's thread or core count.

PyTorch splits a convolution's sums between its threads: oneDNN's weight gradients differ in the
last bits between 1 and 2 threads, and PyTorch's own convolution (im2col and MKL matrix
products) between 2 and 3 or more; over a few epochs those bits become other weights. oneDNN
(and NNPACK, PyTorch's other fast convolution) also choose their blocking by CPU and promise the
same sums only on the same CPU, while MKL's matrix products, with the instruction set pinned
(``MKL_CBWR``, set by ``clnm_kedro/__init__.py``), give the same bits on every CPU with that
instruction set. So on the CPU a network trains and predicts with **one intra-op thread and
PyTorch's own convolution (oneDNN and NNPACK off)**, whatever ``torch.set_num_threads`` the
process has: its numbers are then the same with any thread count. Cores are put to use by
training several fold networks side by side (``kedro run --runner ParallelRunner``), not by
splitting one network's sums. CUDA devices are untouched. See docs/reproducibility.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

# Intra-op threads a network uses on the CPU: one, so that no sum is split between threads.
CPU_NETWORK_THREADS = 1


@contextmanager
def thread_independent_numerics(device: torch.device | str) -> Iterator[None]:
    """On the CPU: one intra-op thread and PyTorch's own convolution inside the block.

    oneDNN and NNPACK are switched off (convolutions become im2col and MKL matrix products).
    The process's thread count and switches are restored afterwards. On another device the
    block runs unchanged.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    onednn, nnpack = torch.backends.mkldnn.enabled, torch._C._get_nnpack_enabled()
    if threads != CPU_NETWORK_THREADS:
        torch.set_num_threads(CPU_NETWORK_THREADS)
    # The switches alone: `torch.backends.mkldnn.flags` would also reset its TF32 settings.
    torch.backends.mkldnn.enabled = False
    torch._C._set_nnpack_enabled(False)
    try:
        yield
    finally:
        torch._C._set_nnpack_enabled(nnpack)
        torch.backends.mkldnn.enabled = onednn
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
