"""The runner ``make run`` uses: nodes tagged ``side_by_side`` run together in threads, every
other node alone; errors reach the caller; and the random streams that make threaded network
training repeat the sequential numbers."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline

from clnm_kedro.networks.architecture import SeededDropout
from clnm_kedro.networks.random_streams import (
    global_rng_layers,
    initialised_network,
    random_streams,
)
from clnm_kedro.runner import SIDE_BY_SIDE, SideBySideRunner

PAUSE_S = 0.3


class Timeline:
    """Which nodes were running at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running: set[str] = set()
        self.overlaps: dict[str, set[str]] = {}

    def step(self, name: str):
        def work(*_: object) -> int:
            with self._lock:
                self.overlaps.setdefault(name, set()).update(self.running)
                for other in self.running:
                    self.overlaps.setdefault(other, set()).add(name)
                self.running.add(name)
            time.sleep(PAUSE_S)
            with self._lock:
                self.running.discard(name)
            return 1

        return work


def _pipeline(timeline: Timeline, n_folds: int = 4) -> Pipeline:
    folds = [
        Node(timeline.step(f"fold_{k}"), "start", f"fold_{k}_out", name=f"fold_{k}",
             tags=[SIDE_BY_SIDE])
        for k in range(n_folds)
    ]
    return Pipeline(
        [
            Node(timeline.step("prepare"), "seed", "start", name="prepare"),
            *folds,
            # independent of the folds, untagged: may never share the machine with them
            Node(timeline.step("report"), "start", "report_out", name="report"),
            Node(
                timeline.step("gather"), [f"fold_{k}_out" for k in range(n_folds)], "gathered",
                name="gather",
            ),
        ]
    )


def _catalog() -> DataCatalog:
    return DataCatalog({"seed": MemoryDataset(0)})


def test_tagged_nodes_run_together_and_every_other_node_alone() -> None:
    timeline = Timeline()
    SideBySideRunner(max_workers=2).run(_pipeline(timeline), _catalog())
    folds = {f"fold_{k}" for k in range(4)}
    for name in ("prepare", "report", "gather"):
        assert timeline.overlaps[name] == set(), name
    for fold in folds:
        assert timeline.overlaps[fold] <= folds
        assert len(timeline.overlaps[fold]) >= 1  # each shared the machine with another fold


def test_one_worker_runs_every_node_alone() -> None:
    timeline = Timeline()
    SideBySideRunner(max_workers=1).run(_pipeline(timeline), _catalog())
    assert all(not others for others in timeline.overlaps.values())


def test_an_error_in_a_node_run_side_by_side_reaches_the_caller() -> None:
    timeline = Timeline()

    def broken(_: int) -> int:
        raise RuntimeError("fold network 2 diverged")

    pipeline = _pipeline(timeline, n_folds=2) + Pipeline(
        [Node(broken, "start", "broken_out", name="broken_fold", tags=[SIDE_BY_SIDE])]
    )
    with pytest.raises(RuntimeError, match="fold network 2 diverged"):
        SideBySideRunner(max_workers=2).run(pipeline, _catalog())
    assert "gather" not in timeline.overlaps  # nothing downstream of the failure ran


def test_bad_runner_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_workers must be at least 1"):
        SideBySideRunner(max_workers=0)
    with pytest.raises(ValueError, match="drop --async"):
        SideBySideRunner(is_async=True)


def _small_network() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(8, 16), SeededDropout(0.5), torch.nn.Linear(16, 1))


def _train_steps(seed: int) -> torch.Tensor:
    """A few SGD steps of a dropout network; the final weights."""
    cpu = torch.device("cpu")
    model = initialised_network(_small_network, seed, cpu)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.linspace(-1, 1, 64 * 8).reshape(64, 8)
    with random_streams(model, seed, cpu):
        for _ in range(20):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_networks_trained_in_threads_get_the_numbers_they_get_alone() -> None:
    """Initial weights and dropout masks come from each network's own streams: two networks
    trained at once in threads end as each does alone, and the global RNG is left as it was."""
    alone = {seed: _train_steps(seed) for seed in (1, 2)}
    torch.manual_seed(123)
    expected_global = torch.rand(3)
    torch.manual_seed(123)
    results: dict[int, torch.Tensor] = {}
    threads = [
        threading.Thread(target=lambda s=seed: results.__setitem__(s, _train_steps(s)))
        for seed in (1, 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert torch.equal(torch.rand(3), expected_global)
    for seed in (1, 2):
        torch.testing.assert_close(results[seed], alone[seed])
    assert not torch.equal(alone[1], alone[2])


def test_a_layer_that_only_knows_the_global_rng_is_found_and_its_generator_cleared() -> None:
    model = torch.nn.Sequential(torch.nn.Dropout(0.2), SeededDropout(0.2))
    assert global_rng_layers(model) == ["0"]
    with random_streams(model, 0, torch.device("cpu")):
        assert model[1].generator is not None
    assert model[1].generator is None  # no training state stays on the saved model
    assert global_rng_layers(_small_network()) == []
