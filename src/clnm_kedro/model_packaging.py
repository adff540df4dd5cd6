"""The packaged scoring model: logged to MLflow at the end of a run that fitted it, with its
input described and the project as a wheel.

A run whose pipeline produces every artifact the scoring pipeline reads (a whole training run:
``__default__`` or ``demo``, see ``with_scoring_artifacts`` in ``pipelines/inference``) ends by
logging :func:`~clnm_kedro.pipelines.inference.pipeline.create_scoring_pipeline` with
those artifacts and the run's parameters as one pyfunc model (kedro-mlflow's public
``KedroPipelineModel``; input: the flat cohort table), registered as ``clnm_kedro``. A partial
run (``--from-nodes``, ``--only-missing-outputs``, a single pipeline) fits only part of them and
logs no model. The model carries:

- the **signature** (:func:`clnm_kedro.scoring.signature.model_signature`): the input columns
  follow the training cohort's clinical columns, known once the run wrote its scoring contract;
- the **input example**: one simulated patient with both images embedded in the row
  (:func:`clnm_kedro.scoring.example.simulated_example`; no real patient enters the store);
- the **project wheel** (:func:`build_project_wheel`): the project package at its version,
  built from the source the run imported, shipped in the model's ``code/`` folder and named in
  its ``requirements.txt`` by that relative path (MLflow installs a model's requirements from
  the model folder, as ``pip install -r requirements.txt`` run there does).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

import clnm_kedro
from clnm_kedro.scoring.example import simulated_example
from clnm_kedro.scoring.signature import model_signature

logger = logging.getLogger(__name__)

CONTRACT_DATASET = "scoring_contract"
SIMULATE_PARAMETERS = "params:simulate"
# The project package; its source checkout (pyproject.toml) is two folders up in `src` layout.
PACKAGE_DIR = Path(clnm_kedro.__file__).parent
# Where the model keeps its code (MLflow's `code_paths` land in the model's `code/` folder).
MODEL_CODE_DIR = "code"


def _source_checkout(package_dir: Path) -> Path | None:
    """The project checkout the package was imported from, if it is one (not a wheel)."""
    root = package_dir.parent.parent
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return root if project.get("project", {}).get("name") == package_dir.name else None


def build_project_wheel(target: Path, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The project package as a wheel in ``target``, built from the source that was imported
    (a copy of it: the checkout gets no build folders), or ``None`` when the package was not
    imported from a checkout."""
    root = _source_checkout(package_dir)
    if root is None:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch)
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).is_file():
                shutil.copy2(root / name, source / name)
        shutil.copytree(
            package_dir,
            source / "src" / package_dir.name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
             "--no-build-isolation", "--no-cache-dir", "--quiet", "--wheel-dir", str(target)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    return next(target.glob(f"{package_dir.name}-*.whl"))


def _scratch_folder() -> Path:
    """A folder for the wheel that lives until the process ends."""
    folder = Path(tempfile.mkdtemp(prefix="clnm_kedro_model_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def packaged_code(log_model_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``log_model_kwargs`` with the project as a wheel: in ``code/`` and in the requirements
    (by its path in the model folder). Without a checkout to build it from, the package
    folder itself is shipped in ``code/`` (MLflow puts it on ``sys.path`` when loading)."""
    try:
        wheel = build_project_wheel(_scratch_folder())
    except subprocess.CalledProcessError as error:
        logger.warning("Could not build the project wheel (%s); shipping the package "
                       "folder in the model instead.", error.stderr.strip()[-500:])  # fmt: skip
        wheel = None
    if wheel is None:
        return {**log_model_kwargs, "code_paths": [str(PACKAGE_DIR)]}
    return {
        **log_model_kwargs,
        "code_paths": [str(wheel)],
        "pip_requirements": [
            *log_model_kwargs["pip_requirements"],
            f"{MODEL_CODE_DIR}/{wheel.name}",
        ],
    }


def fits_scoring_model(pipeline: Pipeline, scoring: Pipeline, input_name: str) -> bool:
    """Whether a run of ``pipeline`` produces every artifact ``scoring`` reads."""
    artifacts = {
        name for name in scoring.inputs() if name != input_name and not name.startswith("params:")
    }
    return artifacts <= pipeline.all_outputs()


def _input_example(catalog: Any, contract: Any) -> Any:
    """One simulated patient in the model's input format, or ``None`` (with the reason logged)
    when the simulator cannot make this cohort's columns."""
    try:
        return simulated_example(catalog.load(SIMULATE_PARAMETERS), contract)
    except Exception as error:
        logger.warning("The scoring model is logged without an input example: %s", error)
        return None


@contextlib.contextmanager
def _project_logs_at(level: int) -> Iterator[None]:
    """The project's loggers at ``level`` or above for the duration of the block."""
    project = logging.getLogger("clnm_kedro")
    before = project.level
    project.setLevel(max(level, project.getEffectiveLevel()))
    try:
        yield
    finally:
        project.setLevel(before)


def log_scoring_model(catalog: Any) -> None:
    """Log the scoring pipeline with this run's artifacts as one MLflow model and register it."""
    # Imported here: the pipelines import torch and the whole project; settings.py imports us.
    from kedro_mlflow.mlflow import KedroPipelineModel  # noqa: PLC0415

    from clnm_kedro.pipelines.inference.pipeline import (  # noqa: PLC0415
        MODEL_INPUT,
        create_scoring_pipeline,
        log_model_kwargs,
    )

    scoring = create_scoring_pipeline()
    for name in scoring.inputs():  # dataset factories (e.g. the networks) become entries
        catalog.exists(name)
    contract = catalog.get(CONTRACT_DATASET).load()
    with TemporaryDirectory() as folder, _project_logs_at(logging.WARNING):
        # MLflow scores the input example once as it logs the model: its scoring steps are
        # not this run's, so their progress lines stay out of the console (warnings still show)
        model = KedroPipelineModel(pipeline=scoring, catalog=catalog, input_name=MODEL_INPUT)
        artifacts = model.extract_pipeline_artifacts(parameters_saving_folder=Path(folder))
        mlflow.pyfunc.log_model(
            python_model=model,
            artifacts=artifacts,
            signature=model_signature(contract),
            input_example=_input_example(catalog, contract),
            **packaged_code(log_model_kwargs()),
        )


class PackagedModelHooks:
    """Log the scoring model at the end of a run that fitted all it needs."""

    @hook_impl(tryfirst=True)  # before kedro-mlflow's after_pipeline_run ends the MLflow run
    def after_pipeline_run(self, pipeline: Pipeline, catalog: Any) -> None:
        from clnm_kedro.pipelines.inference.pipeline import (  # noqa: PLC0415
            MODEL_INPUT,
            create_scoring_pipeline,
        )

        if mlflow.active_run() is None:  # tracking off for this pipeline
            return
        if not fits_scoring_model(pipeline, create_scoring_pipeline(), MODEL_INPUT):
            if CONTRACT_DATASET in pipeline.all_outputs():
                logger.info(
                    "This run covers only part of the training pipeline, so it does not log "
                    "the scoring model to MLflow; a whole `kedro run` does."
                )
            return
        log_scoring_model(catalog)
