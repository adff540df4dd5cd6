"""The next training batch prepared on a second core while the network trains on this one.

On the CPU a network trains on one thread (:mod:`clnm_kedro.networks.cpu_numerics`), and
gathering and augmenting a batch took about a fifth of each step. :func:`prefetched` runs that
work one step ahead in a background thread: the batches are made in the same order, by one
thread, from the same generator (augmentation draws only from its own ``torch.Generator``,
never from the global RNG that dropout uses), with one intra-op thread each, so the numbers are
those of the plain loop.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_POLL_S = 0.05  # how often a blocked producer checks whether the consumer stopped


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield ``items`` in order while a background thread makes the next ``depth`` of them.

    An exception raised while making an item is raised here, at that item. Closing the
    generator early (an error in the training step, ``break``) stops the thread.
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be at least 1, got {depth}")
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, end))
        except BaseException as error:  # handed to the consumer, raised there
            put((False, error))

    thread = threading.Thread(target=produce, name="clnm-batch-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = ready.get()
            if not ok:
                raise item  # type: ignore[misc]
            if item is end:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
