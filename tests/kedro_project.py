"""Run the project's pipelines through Kedro in an isolated copy of the project.

The copy has the project's ``pyproject.toml`` and ``conf/`` and its own empty ``data/`` and
MLflow store, so a test never touches the developer's data, runs or tracking database.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_LAYERS = (
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "05_model_input",
    "06_models",
    "07_model_output",
    "08_reporting",
)


def make_project_copy(target: Path) -> Path:
    """Copy ``pyproject.toml`` and ``conf/`` (not ``conf/local``) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", target / "pyproject.toml")
    shutil.copy2(PROJECT_ROOT / ".telemetry", target / ".telemetry")  # telemetry stays off
    shutil.copytree(
        PROJECT_ROOT / "conf",
        target / "conf",
        ignore=shutil.ignore_patterns("local"),
        dirs_exist_ok=True,
    )
    (target / "conf" / "local").mkdir(exist_ok=True)
    (target / "src").mkdir(exist_ok=True)  # bootstrap_project expects the source folder
    for layer in DATA_LAYERS:
        (target / "data" / layer).mkdir(parents=True, exist_ok=True)
    return target


def run_pipelines(
    project: Path,
    pipelines: list[str],
    env: str = "test",
    runtime_params: dict[str, Any] | None = None,
    **run_kwargs: Any,
) -> dict[str, Any]:
    """Run ``pipelines`` in ``project`` as ``kedro run --pipelines ... --env ...`` would.

    kedro-mlflow reopens its run in every node and closes it once at the end of a ``kedro run``
    process; in a test process the next session would log into the same run, so the run is
    closed here.
    """
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    previous = Path.cwd()
    os.chdir(project)
    try:
        bootstrap_project(project)
        with KedroSession.create(
            project_path=project, env=env, runtime_params=runtime_params or {}
        ) as session:
            return session.run(pipeline_names=pipelines, **run_kwargs)
    finally:
        os.chdir(previous)
        while mlflow.active_run() is not None:
            mlflow.end_run()
