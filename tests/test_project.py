"""The project as Kedro sees it: the registry, the catalog's layers."""

from __future__ import annotations

from graphlib import TopologicalSorter
from pathlib import Path

import pytest
from kedro.framework.project import configure_project, pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from clnm_kedro.pipelines import TRAINING_PIPELINES
from kedro_project import make_project_copy


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


def test_catalog_layers_form_no_cycle_and_every_persisted_dataset_has_one(
    tmp_path: Path,
) -> None:
    """kedro-viz draws layers only when they can be ordered (a cycle empties its layer list)."""
    project = make_project_copy(tmp_path / "project")
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="base") as session:
        catalog = session.load_context().catalog
    demo = _load("demo")

    def layer(name: str) -> str | None:
        dataset = catalog.get(name) if not name.startswith("params:") else None
        return ((getattr(dataset, "metadata", None) or {}).get("kedro-viz") or {}).get("layer")

    persisted = {
        name
        for name in demo.datasets()
        if name != "parameters" and not name.startswith("params:") and name in catalog
    }
    assert persisted, "the catalog resolved no dataset"
    assert not sorted(name for name in persisted if layer(name) is None)

    # Layer of every dataset, carried through in-memory datasets to the nearest layered ones.
    graph: dict[str, set[str]] = {}
    inherited: dict[str, set[str]] = {}
    for node in demo.nodes:  # topologically sorted
        sources: set[str] = set()
        for name in node.inputs:
            sources |= {layer(name)} if layer(name) else inherited.get(name, set())
        for name in node.outputs:
            if layer(name):
                for source in sources:
                    if source != layer(name):
                        graph.setdefault(layer(name), set()).add(source)
            else:
                inherited[name] = sources
    order = list(TopologicalSorter(graph).static_order())  # raises CycleError on a cycle
    assert order.index("raw") < order.index("primary") < order.index("reporting")
