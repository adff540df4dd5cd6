"""The packaged scoring model: logged to MLflow at the end of a run that fitted it.

A run whose pipeline produces every artifact the scoring pipeline reads (a whole training run:
``__default__`` or ``demo``, see ``with_scoring_artifacts`` in ``pipelines/inference``) ends by
logging :func:`~clnm_kedro.pipelines.inference.pipeline.create_scoring_pipeline` with
those artifacts and the run's parameters as one pyfunc model (kedro-mlflow's public
``KedroPipelineModel``; input: the flat cohort table), registered as ``clnm_kedro``. A partial
run (``--from-nodes``, ``--only-missing-outputs``, a single pipeline) fits only part of them and
logs no model. The input columns depend on the training cohort's clinical columns, so the
signature is read from the run's scoring contract
(:func:`clnm_kedro.scoring.signature.model_signature`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

from clnm_kedro.scoring.signature import model_signature

CONTRACT_DATASET = "scoring_contract"

logger = logging.getLogger(__name__)


def fits_scoring_model(pipeline: Pipeline, scoring: Pipeline, input_name: str) -> bool:
    """Whether a run of ``pipeline`` produces every artifact ``scoring`` reads."""
    artifacts = {
        name for name in scoring.inputs() if name != input_name and not name.startswith("params:")
    }
    return artifacts <= pipeline.all_outputs()


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
    with TemporaryDirectory() as folder:
        model = KedroPipelineModel(pipeline=scoring, catalog=catalog, input_name=MODEL_INPUT)
        artifacts = model.extract_pipeline_artifacts(parameters_saving_folder=Path(folder))
        mlflow.pyfunc.log_model(
            python_model=model,
            artifacts=artifacts,
            signature=model_signature(catalog.get(CONTRACT_DATASET).load()),
            **log_model_kwargs(),
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
