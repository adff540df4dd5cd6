"""Where and how a network trains: the device, bf16 autocast, memory layout and loader
workers (:class:`RunSettings`), (on the CPU) deterministic torch settings, the learning-rate
schedule, and the CPU copy of the weights kept."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from clnm_kedro.networks.cpu_numerics import thread_independent_numerics
from clnm_kedro.networks.data import (
    default_loader_workers,
)
from clnm_kedro.networks.inference import use_bf16


def select_device(requested: str | torch.device | None = None) -> torch.device:
    """``cuda`` when available and nothing else is asked for, else ``cpu``."""
    if requested is None or str(requested) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"training.device={requested!r} but no CUDA device is available")
    return device


def switch_setting(value: Any, auto: bool, name: str) -> bool:
    if value == "auto":
        return auto
    if isinstance(value, bool):
        return value
    raise ValueError(f"training.{name} must be auto, true or false, got {value!r}")


@contextmanager
def reproducible(device: torch.device) -> Iterator[None]:
    """On the CPU, deterministic algorithms with one thread and oneDNN off
    (:func:`thread_independent_numerics`); on CUDA, cuDNN's autotuner. The settings are
    process-wide: with several blocks open at once (networks trained side by side in threads)
    those found by the first are restored when the last one ends. Where the random numbers come
    from: :mod:`clnm_kedro.networks.random_streams`."""
    with thread_independent_numerics(device), _SWITCHES.open(device):
        yield


class _DeterminismSwitches:
    """Deterministic algorithms on the CPU (without the NaN fill of fresh memory, a debugging
    aid that doubles a step's CPU cost; every kernel used here writes all of its output) and
    cuDNN's autotuner on CUDA, counted like :func:`thread_independent_numerics`'s switches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = 0
        self._saved: tuple[bool, bool, bool, bool] | None = None

    @contextmanager
    def open(self, device: torch.device) -> Iterator[None]:
        with self._lock:
            if self._open == 0:
                self._saved = (
                    torch.are_deterministic_algorithms_enabled(),
                    torch.is_deterministic_algorithms_warn_only_enabled(),
                    torch.utils.deterministic.fill_uninitialized_memory,
                    torch.backends.cudnn.benchmark,
                )
            self._open += 1
            if device.type == "cpu":
                torch.use_deterministic_algorithms(True)
                torch.utils.deterministic.fill_uninitialized_memory = False
            else:
                torch.backends.cudnn.benchmark = True
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1
                if self._open == 0 and self._saved is not None:
                    deterministic, warn_only, fill_memory, benchmark = self._saved
                    self._saved = None
                    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
                    torch.utils.deterministic.fill_uninitialized_memory = fill_memory
                    torch.backends.cudnn.benchmark = benchmark


_SWITCHES = _DeterminismSwitches()


def lr_scheduler(
    optimizer: torch.optim.Optimizer, settings: Mapping[str, Any], steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    total = int(settings["epochs"]) * steps_per_epoch
    warmup = min(total - 1, int(settings["warmup_epochs"]) * steps_per_epoch)
    if settings["schedule"] == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=float(settings["learning_rate"]),
            total_steps=total,
            pct_start=max(warmup, 1) / total,
        )
    floor = float(settings["min_lr_ratio"])

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        key: value.detach().to("cpu", copy=True).contiguous()
        for key, value in model.state_dict().items()
    }


@dataclass(frozen=True)
class RunSettings:
    """Where and how a network trains: device, bf16 autocast, memory layout, loader workers."""

    device: torch.device
    amp: bool
    channels_last: bool
    workers: int

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"


def run_settings(settings: Mapping[str, Any], device: str | torch.device | None) -> RunSettings:
    torch_device = select_device(device if device is not None else settings["device"])
    on_cuda = torch_device.type == "cuda"
    amp = switch_setting(settings["mixed_precision"], use_bf16(torch_device), "mixed_precision")
    channels_last = switch_setting(settings["channels_last"], on_cuda, "channels_last")
    workers = settings["loader_workers"]
    workers = (default_loader_workers() if on_cuda else 0) if workers == "auto" else int(workers)
    return RunSettings(torch_device, amp, channels_last, workers)
