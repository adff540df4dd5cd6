"""Where a network's random numbers come from while it trains, so that networks trained side
by side in one process (the fold networks under
:class:`~clnm_kedro.runner.SideBySideRunner`) get the numbers each gets alone.

PyTorch has one global RNG per process. Batch order and augmentation draw from generators of
their own (:mod:`clnm_kedro.networks.training`, seeded with the offsets below); here the two
other draws:

- **Initialisation** draws from the global RNG (PyTorch's layers know no other). It runs under
  a process-wide lock, in a forked RNG state seeded with the network's seed
  (:func:`initialised_network`): two networks built at once cannot interleave their draws.
- **Dropout** masks come from a generator of the network's own, seeded from its seed
  (:func:`random_streams`, through :class:`~clnm_kedro.networks.architecture.SeededDropout`).
  A layer that can only draw from the global RNG (torchvision's stochastic depth in
  EfficientNet, a plain ``nn.Dropout``) makes the whole training hold the global RNG, seeded,
  under the same lock: such networks train one at a time, with the same numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from clnm_kedro.networks.architecture import SeededDropout

M = TypeVar("M", bound=nn.Module)

# Offsets of a network's streams from its seed (fold seeds are 1009 apart): batch order and
# augmentation (clnm_kedro.networks.training), dropout, and the global RNG where a layer knows
# no other.
SHUFFLE_STREAM = 0
AUGMENT_STREAM = 1
DROPOUT_STREAM = 2
GLOBAL_STREAM = 3

# Held while a thread seeds and draws from PyTorch's global RNG.
_GLOBAL_RNG = threading.Lock()


def _cuda_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


@contextmanager
def _seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """The global RNG seeded with ``seed`` inside the block, for this thread alone; its state
    before the block is restored after it."""
    with _GLOBAL_RNG, torch.random.fork_rng(devices=_cuda_devices(device)):
        torch.manual_seed(seed)
        yield


def initialised_network(build: Callable[[], M], seed: int, device: torch.device) -> M:
    """``build()`` with its initial weights drawn from the global RNG seeded with ``seed``."""
    with _seeded_global_rng(seed, device):
        return build()


def global_rng_layers(model: nn.Module) -> list[str]:
    """Names of the layers that draw from PyTorch's global RNG while training."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, StochasticDepth | nn.modules.dropout._DropoutNd)
        and not isinstance(module, SeededDropout)
    ]


@contextmanager
def random_streams(model: nn.Module, seed: int, device: torch.device) -> Iterator[None]:
    """Train ``model`` inside this block: its dropout draws from its own generator (seeded
    from ``seed``); with layers that only know the global RNG, the block holds the global RNG,
    seeded from ``seed``, for this thread alone."""
    generator = torch.Generator(device=device).manual_seed(seed + DROPOUT_STREAM)
    dropouts = [module for module in model.modules() if isinstance(module, SeededDropout)]
    for module in dropouts:
        module.generator = generator
    try:
        if global_rng_layers(model):
            with _seeded_global_rng(seed + GLOBAL_STREAM, device):
                yield
        else:
            yield
    finally:
        for module in dropouts:
            module.generator = None  # no training state is saved or logged with the model
