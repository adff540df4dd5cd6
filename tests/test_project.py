"""The project as Kedro sees it: the registry, the catalog's layers, the run's record."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
from graphlib import TopologicalSorter
from pathlib import Path

import pytest
from kedro.framework.cli.utils import _split_params
from kedro.framework.project import configure_project, pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.runner import ParallelRunner, SequentialRunner

from clnm_kedro import pipeline_registry
from clnm_kedro.pipeline_registry import registered_names
from clnm_kedro.pipelines import TRAINING_PIPELINES
from clnm_kedro.plugin_init import TYPE_HINT_NOTICE
from clnm_kedro.run_report import kedro_command
from kedro_project import PROJECT_ROOT, make_project_copy


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


def test_an_unknown_pipeline_name_stops_with_one_line_naming_the_registered_ones(
    tmp_path: Path,
) -> None:
    """`kedro run --pipelines evalution`: one line, not Kedro's ImportError traceback."""
    from click.testing import CliRunner  # noqa: PLC0415
    from kedro.framework.cli.cli import KedroCLI  # noqa: PLC0415

    project = make_project_copy(tmp_path / "project")
    previous = Path.cwd()
    os.chdir(project)
    try:
        cli = KedroCLI(project_path=project)
        result = CliRunner().invoke(cli, ["run", "--pipelines", "evalution"])
    finally:
        os.chdir(previous)
        pipelines.set_requested(None)
    assert result.exit_code == 1
    (line,) = [text for text in result.output.splitlines() if text.strip()]
    assert line == (
        "Error: no pipeline 'evalution' (did you mean 'evaluation'?); registered: "
        + ", ".join(registered_names())
    )
    assert "Traceback" not in result.output
    assert {"__default__", "demo", "evaluation", "inference", *TRAINING_PIPELINES} <= set(
        registered_names()
    )
    # Every registered name does load.
    for name in registered_names():
        assert _load(name).nodes, name


def test_a_failing_pipeline_import_is_not_reported_as_an_unknown_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(**_: object) -> dict:
        raise ImportError("An error occurred while importing the 'x' module.") from ValueError()

    monkeypatch.setattr(pipeline_registry, "find_pipelines", broken)
    with pytest.raises(ImportError, match="'x' module"):
        pipeline_registry.register_pipelines()


def test_the_mlflow_kedro_command_repeats_the_run() -> None:
    run_params = {
        "env": None,
        "pipeline_names": ["demo"],
        "tags": [],
        "node_names": None,
        "from_nodes": ["dl_dual.train_network"],
        "to_nodes": [],
        "from_inputs": [],
        "to_outputs": [],
        "namespaces": [],
        "load_versions": {},
        "runtime_params": {
            "cohort_dir": "/data/my cohort",
            "split": {"external_centers": ["HOSPITAL_B"]},
            "heads": {"n_trials": 2, "timeout_s": None, "cv": {"n_splits": 3}},
        },
        "runner": "SequentialRunner",
        "only_missing_outputs": True,
    }
    command = kedro_command(run_params)
    assert shlex.split(command) == [
        "kedro",
        "run",
        "--pipelines=demo",
        "--from-nodes=dl_dual.train_network",
        "--params=cohort_dir=/data/my cohort,split.external_centers=[HOSPITAL_B],"
        "heads.n_trials=2,heads.timeout_s=null,heads.cv.n_splits=3",
        "--only-missing-outputs",
    ]
    # What Kedro's CLI makes of that --params is the run's runtime_params again.
    params = shlex.split(command)[4].removeprefix("--params=")
    assert _split_params(None, None, params) == run_params["runtime_params"]
    assert kedro_command({**run_params, "env": "paper", "runtime_params": {}}).startswith(
        "kedro run --env=paper --pipelines=demo"
    )
    assert "--env" not in kedro_command({**run_params, "env": "local"})  # Kedro's default
    assert kedro_command({"pipeline_names": ["__default__"], "runner": "None"}) == "kedro run"
    assert kedro_command({"runner": "ThreadRunner"}) == "kedro run --runner=ThreadRunner"
    # `kedro run` hands Kedro a runner object; run_params then hold its repr.
    sequential = f"<{SequentialRunner.__module__}.SequentialRunner object at 0x7f1416889710>"
    assert kedro_command({"runner": sequential}) == "kedro run"
    assert kedro_command({"runner": str(ParallelRunner())}) == "kedro run --runner=ParallelRunner"


def _stderr_of(code: str) -> str:
    """What a fresh Python process running ``code`` prints on stderr."""
    environment = {**os.environ, "PYTHONWARNINGS": "default"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True
    )
    return result.stderr


def test_kedro_starts_without_mlflows_notice_on_kedro_mlflows_model_class() -> None:
    """kedro-mlflow's KedroPipelineModel has an untyped ``predict``; MLflow prints a notice when
    the class is defined, which every ``kedro`` command did. The ``kedro.init`` entry point
    imports it without that one notice, and nothing else is hidden."""
    declared = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert declared["project"]["entry-points"]["kedro.init"] == {
        "clnm_kedro": "clnm_kedro.plugin_init:import_kedro_mlflow_model"
    }
    # The notice is real (if kedro-mlflow types its predict one day, drop plugin_init) ...
    assert TYPE_HINT_NOTICE in _stderr_of("import kedro_mlflow.mlflow")
    # ... and gone after the entry point, while other warnings still show.
    quiet = _stderr_of(
        "import warnings\n"
        "from clnm_kedro.plugin_init import import_kedro_mlflow_model\n"
        "import_kedro_mlflow_model()\n"
        "import kedro_mlflow.mlflow\n"
        "warnings.warn('still shown')\n"
    )
    assert TYPE_HINT_NOTICE not in quiet and "UserWarning: still shown" in quiet
