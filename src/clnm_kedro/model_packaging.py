"""The packaged scoring model describes its input: a hook gives it the run's signature.

kedro-mlflow logs the scoring pipeline at the end of a training run with the
``log_model_kwargs`` fixed when the pipeline was registered
(:func:`clnm_kedro.pipelines.inference.pipeline.with_packaged_model`). The input columns
depend on the training cohort's clinical columns, known only once the run has written its
scoring contract, so :class:`PackagedModelHooks` adds the signature
(:func:`clnm_kedro.scoring.signature.model_signature`) just before kedro-mlflow logs the model.
"""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro_mlflow.pipeline.pipeline_ml import PipelineML

from clnm_kedro.scoring.signature import model_signature

CONTRACT_DATASET = "scoring_contract"


class PackagedModelHooks:
    """Give the model kedro-mlflow is about to log the signature of this run's cohort."""

    @hook_impl(tryfirst=True)  # before kedro-mlflow's after_pipeline_run logs the model
    def after_pipeline_run(self, pipeline: Pipeline, catalog: Any) -> None:
        if not isinstance(pipeline, PipelineML):  # a plain pipeline logs no model
            return
        contract = catalog.get(CONTRACT_DATASET).load()
        # a new dict: the registered pipeline's own kwargs stay as they were
        pipeline.log_model_kwargs = {
            **pipeline.log_model_kwargs,
            "signature": model_signature(contract),
        }
