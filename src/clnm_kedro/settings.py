"""Project settings (Kedro 1.x).

kedro-mlflow registers its hooks itself through its entry point; its configuration lives in
``conf/<env>/mlflow.yml``. Telemetry is switched off by ``KEDRO_DISABLE_TELEMETRY=true`` in
the README's commands and in CI (clinical data: nothing leaves the machine).
"""

from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.utils import find_kedro_project

from clnm_kedro.hooks import (
    RunLockHooks,
    RunStatusHooks,
    SameNumbersHooks,
    TrainedOnHooks,
    UnfinishedOutputsHooks,
)
from clnm_kedro.model_packaging import PackagedModelHooks
from clnm_kedro.plugin_init import import_kedro_mlflow_model
from clnm_kedro.run_report import RunReportHooks, quiet_dependencies

# One run at a time per project data folder; a failed or killed run leaves nothing that
# `kedro run --only-missing-outputs` would take for finished, and its MLflow run says how it
# ended; inference warns when it scores the training patients (see clnm_kedro.hooks and the
# README's "Resuming a run that stopped").
# RunReportHooks: one console line per finished step, a closing summary (report, external
# AUCs), and the MLflow tags that repeat the run (`kedro_command` with --env and --params).
# PackagedModelHooks: the scoring model logged to MLflow by a run that fitted all it reads.
HOOKS = (
    UnfinishedOutputsHooks(),
    RunLockHooks(),
    RunStatusHooks(),
    TrainedOnHooks(),
    SameNumbersHooks(),  # the same numbers on any machine (docs/reproducibility.md)
    RunReportHooks(),
    PackagedModelHooks(),
)
quiet_dependencies()  # no library notice that says nothing about the run (run_report.py)
import_kedro_mlflow_model()  # done by the `kedro` command already; here for notebooks, tests


def _project_root() -> str:
    """The Kedro project Kedro runs in, found upwards from the working folder.

    ``${project_root:}`` in configuration files: the same folder whether ``kedro`` is started
    in the project root, in ``notebooks/`` or in ``src/``.
    """
    here = Path.cwd()
    return Path(find_kedro_project(here) or here).as_posix()


def _without_trailing_slash(path: str) -> str:
    """``${strip_slash:...}``: ``/data/cohort/`` → ``/data/cohort``, to build sibling paths."""
    return str(path).rstrip("/") or "/"


CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (paper, test, local) overrides single keys of a parameter block.
    "merge_strategy": {"parameters": "soft"},
    # ${project_root:} makes the MLflow SQLite URI absolute: MLflow caches one store per URI,
    # so a relative "sqlite:///mlflow.db" would stick to the first project opened in a process.
    "custom_resolvers": {"project_root": _project_root, "strip_slash": _without_trailing_slash},
    "config_patterns": {
        "catalog": ["catalog*", "catalog*/**", "**/catalog*"],
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"],
    },
}
