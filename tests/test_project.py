"""The project as Kedro sees it: the registry, the catalog's layers."""

from __future__ import annotations

import pytest
from kedro.framework.project import configure_project, pipelines

from clnm_kedro.pipelines import TRAINING_PIPELINES


@pytest.fixture(scope="module", autouse=True)
def _configured() -> None:
    configure_project("clnm_kedro")


def _load(name: str):
    """A pipeline as `kedro run --pipelines <name>` loads it (only the folders it names)."""
    pipelines.set_requested([name])
    try:
        return pipelines[name]
    finally:
        pipelines.set_requested(None)


def test_demo_is_simulate_then_a_whole_training_run() -> None:
    demo = _load("demo")
    names = {node.name for node in demo.nodes}
    for part in ("simulate", *TRAINING_PIPELINES):
        assert {node.name for node in _load(part).nodes} <= names, part


def test_default_run_never_simulates() -> None:
    default = _load("__default__")
    simulate = {node.name for node in _load("simulate").nodes}
    assert not simulate & {node.name for node in default.nodes}
    assert "raw_cohort" in default.inputs()
    assert {"report", "metrics", "predictions"} <= default.all_outputs()
