"""Project settings (Kedro 1.x).

kedro-mlflow registers its hooks itself through its entry point; its configuration lives in
``conf/<env>/mlflow.yml``. Telemetry is switched off by ``KEDRO_DISABLE_TELEMETRY=true`` in
the README's commands and in CI (clinical data: nothing leaves the machine).
"""

from pathlib import Path

from kedro.config import OmegaConfigLoader


def _working_directory() -> str:
    """The folder Kedro runs in (the project root): ``${cwd:}`` in configuration files."""
    return Path.cwd().as_posix()


CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (paper, test, local) overrides single keys of a parameter block.
    "merge_strategy": {"parameters": "soft"},
    # ${cwd:} makes the MLflow SQLite URI absolute: MLflow caches one store per URI, so a
    # relative "sqlite:///mlflow.db" would stick to the first project opened in a process.
    "custom_resolvers": {"cwd": _working_directory},
    "config_patterns": {
        "catalog": ["catalog*", "catalog*/**", "**/catalog*"],
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"],
    },
}
