"""Wiring of the ``inference`` pipeline, and of the model packaged in MLflow.

Three pieces (see ``nodes.py``):

- :func:`create_training_artifacts_pipeline` (tagged ``training``): the scoring contract and
  the risk thresholds, written at the end of a training run;
- :func:`create_scoring_pipeline` (tagged ``inference``): from the flat cohort table
  ``inference_cohort`` to ``inference_results``, one row per patient. It reuses the
  preprocessing nodes (validation, crops), the networks' inference template (namespaces
  ``<model>_inference``) and the heads' inference functions. This is the model logged to
  MLflow;
- :func:`create_pipeline`, the ``inference`` pipeline: the cohort folder ``inference.cohort_dir``
  flattened into ``inference_cohort``, the scoring, the error list and optional Grad-CAM.

:func:`with_packaged_model` turns a training pipeline into a kedro-mlflow ``PipelineML``: at
the end of its run the scoring pipeline, with the fitted networks, heads, contract and
thresholds, is logged as one MLflow model and registered as ``clnm_kedro``.
"""

from __future__ import annotations

import logging
from importlib.metadata import version
from typing import Any

from kedro.pipeline import Node, Pipeline
from kedro_mlflow.pipeline.pipeline_ml import KedroMlflowPipelineMLError, PipelineML

from clnm_kedro.pipelines.feature_extraction.pipeline import network_inference_template
from clnm_kedro.pipelines.head_inputs import model_input_node
from clnm_kedro.pipelines.head_template import (
    HEAD_PARAMETER_BLOCKS,
    predict_with_head,
    validate_head_settings,
)
from clnm_kedro.pipelines.inference.nodes import (
    check_training_columns,
    draw_inference_gradcam,
    fit_risk_thresholds,
    flatten_inference_cohort,
    gather_inference_results,
    list_inference_errors,
    open_inference_cohort,
    read_head_spec,
    record_scoring_contract,
    select_scored_patients,
)
from clnm_kedro.pipelines.preprocessing.nodes import (
    build_cohort_table,
    check_images,
    crop_rois,
    validate_tables,
)
from clnm_kedro.pipelines.recalibrate.nodes import apply_centre_calibration
from clnm_kedro.registry import FEATURE_NETWORK, HEAD_MODELS, NETWORK_MODELS

# Name of the packaged model in the MLflow model registry (versions 1, 2, ... per training run).
REGISTERED_MODEL_NAME = "clnm_kedro"
# The packaged model's input: the flat cohort table (clnm_kedro.scoring.cohort_table).
MODEL_INPUT = "inference_cohort"
MODEL_OUTPUT = "inference_results"
# The scoring pipeline's results before a new centre's calibration (recalibrate pipeline).
TRAINING_CALIBRATED = "inference_results_training_calibration"
# What the packaged model needs besides this project (pinned from this environment).
MODEL_REQUIREMENTS: tuple[str, ...] = (
    "kedro",
    "kedro-datasets",
    "kedro-mlflow",
    "mlflow",
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "pandera",
    "pillow",
    "pydicom",
    "scikit-learn",
    "catboost",
    "skops",
    "optuna",
    "sqlalchemy",
    "scipy",
    "matplotlib",
    "grad-cam",
    "dcurves",  # imported by clnm_kedro.metrics (calibration, recalibration), which scoring uses
    "statsmodels",
)
# The DL features of new patients, from the feature network (the heads' input).
INFERENCE_FEATURES = f"inference_{FEATURE_NETWORK}_features"
EXCLUSIONS: tuple[str, ...] = (
    "inference_table_exclusions",
    "inference_file_exclusions",
    "inference_crop_exclusions",
)


def create_training_artifacts_pipeline() -> Pipeline:
    """Scoring contract and risk thresholds, from the training run's outputs."""
    return Pipeline(
        [
            Node(
                record_scoring_contract,
                inputs=["cohort_table", "params:preprocessing"],
                outputs="scoring_contract",
                name="record_scoring_contract",
                tags="training",
            ),
            Node(
                fit_risk_thresholds,
                inputs=["predictions", "params:evaluation"],
                outputs="risk_thresholds",
                name="fit_risk_thresholds",
                tags="training",
            ),
        ]
    )


def _preprocessing_pipeline() -> Pipeline:
    """The preprocessing nodes on the cohort table, with the training run's settings."""
    return Pipeline(
        [
            Node(
                open_inference_cohort,
                inputs=[MODEL_INPUT, "scoring_contract"],
                outputs=["inference_cohort_files", "inference_preprocessing"],
                name="open_inference_cohort",
            ),
            Node(
                validate_tables,
                inputs=["inference_cohort_files", "inference_preprocessing", "params:split"],
                outputs=[
                    "inference_clinical_as_read",
                    "inference_roi_boxes",
                    "inference_table_exclusions",
                ],
                name="validate_inference_tables",
            ),
            Node(
                check_training_columns,
                inputs=[
                    "inference_clinical_as_read",
                    "inference_cohort_files",
                    "scoring_contract",
                ],
                outputs="inference_validated_clinical",
                name="check_training_columns",
            ),
            Node(
                check_images,
                inputs=[
                    "inference_cohort_files",
                    "inference_validated_clinical",
                    "inference_roi_boxes",
                    "inference_table_exclusions",
                ],
                outputs=["inference_image_manifest", "inference_file_exclusions"],
                name="check_inference_images",
            ),
            Node(
                crop_rois,
                inputs=["inference_image_manifest", "inference_preprocessing"],
                outputs=[
                    "inference_roi_crops",
                    "inference_cropped_patients",
                    "inference_crop_exclusions",
                ],
                name="crop_inference_rois",
            ),
            Node(
                build_cohort_table,
                inputs=["inference_validated_clinical", "inference_cropped_patients"],
                outputs="inference_cohort_table",
                name="build_inference_cohort_table",
            ),
            Node(
                select_scored_patients,
                inputs=["inference_cohort_table", *EXCLUSIONS],
                outputs="inference_scored_patients",
                name="select_scored_patients",
            ),
        ]
    )


def _network_pipeline(model: str) -> Pipeline:
    """One network's inference nodes (features only from the feature network, which feeds the
    heads); the same template as ``feature_extraction``, every patient scored by the fold
    ensemble and its stored calibration."""
    with_features = model == FEATURE_NETWORK
    template = network_inference_template(with_features=with_features, out_of_fold=False)
    outputs = {"probabilities": f"{model}_inference_probabilities"}
    if with_features:
        outputs["features"] = INFERENCE_FEATURES
    return Pipeline(
        template,
        namespace=f"{model}_inference",
        inputs={
            "network": f"{model}_network",
            "roi_crops": "inference_roi_crops",
            "patient_splits": "inference_scored_patients",
        },
        outputs=outputs,
        parameters={"params:feature_extraction": "params:feature_extraction"},
    )


def _head_pipeline(model: str, model_settings: str) -> Pipeline:
    """One head's inference nodes, the head template's own functions: its settings (from the
    search spec read without probe fits: nothing is tuned here) and its predictions."""
    return Pipeline(
        [
            Node(
                validate_head_settings,
                inputs=[
                    "inference_head_spec",
                    f"params:{model_settings}",
                    "params:optuna_storage_url",
                    "params:seed",
                ],
                outputs=f"{model}_inference_settings",
                name=f"validate_{model}_head_settings",
            ),
            Node(
                predict_with_head,
                inputs=[f"{model}_head", f"{model}_inference_input", f"{model}_inference_settings"],
                outputs=f"{model}_inference_scores",
                name=f"predict_with_{model}_head",
            ),
        ]
    )


def create_scoring_pipeline() -> Pipeline:
    """From the flat cohort table to one row per patient: the model packaged in MLflow."""
    model_inputs = Pipeline(
        [
            model_input_node(
                model,
                dl_features=INFERENCE_FEATURES,
                cohort_table="inference_cohort_table",
                patient_splits="inference_scored_patients",
                output=f"{model}_inference_input",
                name=f"build_{model}_inference_input",
            )
            for model in HEAD_MODELS
        ]
    )
    scores = {model: f"{model}_inference_probabilities" for model in NETWORK_MODELS}
    scores |= {model: f"{model}_inference_scores" for model in HEAD_PARAMETER_BLOCKS}
    gather = Node(
        gather_inference_results,
        inputs={
            "validated_clinical": "inference_validated_clinical",
            "table_exclusions": "inference_table_exclusions",
            "file_exclusions": "inference_file_exclusions",
            "crop_exclusions": "inference_crop_exclusions",
            "risk_thresholds": "risk_thresholds",
            **scores,
        },
        outputs=MODEL_OUTPUT,
        name="gather_inference_results",
    )
    head_spec = Node(
        read_head_spec, inputs="params:heads", outputs="inference_head_spec", name="read_head_spec"
    )
    return Pipeline(
        [
            _preprocessing_pipeline(),
            head_spec,
            *(_network_pipeline(model) for model in NETWORK_MODELS),
            model_inputs,
            *(_head_pipeline(model, block) for model, block in HEAD_PARAMETER_BLOCKS.items()),
            gather,
        ],
        tags="inference",
    )


def create_pipeline(**kwargs: Any) -> Pipeline:
    """``inference``: score the cohort folder ``inference.cohort_dir`` with the trained model."""
    return Pipeline(
        [
            Node(
                flatten_inference_cohort,
                inputs="inference_raw_cohort",
                outputs=MODEL_INPUT,
                name="flatten_inference_cohort",
            ),
            # The packaged model's results, then a new centre's calibration when asked
            # (inference.centre_calibration; made by the `recalibrate` pipeline).
            Pipeline(create_scoring_pipeline(), outputs={MODEL_OUTPUT: TRAINING_CALIBRATED}),
            Node(
                apply_centre_calibration,
                inputs=[TRAINING_CALIBRATED, "centre_calibration", "params:inference"],
                outputs=MODEL_OUTPUT,
                name="apply_centre_calibration",
            ),
            Node(
                list_inference_errors,
                inputs=list(EXCLUSIONS),
                outputs="inference_errors",
                name="list_inference_errors",
            ),
            Node(
                draw_inference_gradcam,
                inputs=[
                    f"{FEATURE_NETWORK}_network",
                    "inference_roi_crops",
                    "inference_scored_patients",
                    MODEL_OUTPUT,
                    "params:inference",
                ],
                outputs="inference_gradcam",
                name="draw_inference_gradcam",
            ),
        ],
        tags="inference",
    )


logger = logging.getLogger(__name__)


class PackagedTrainingPipeline(PipelineML):
    """A kedro-mlflow ``PipelineML`` whose partial runs fall back to a plain pipeline.

    kedro-mlflow turns every filtered part of a ``PipelineML`` (``--from-nodes``,
    ``--only-missing-outputs``, and Kedro's own resume suggestion after a failed node) into a new
    ``PipelineML`` and raises when that part does not produce every fitted artifact of the
    scoring pipeline; after a failure that error replaced the node's own. Here such a part runs
    as a plain pipeline and logs no model (the model is only logged by a run that fits it).
    """

    def _turn_pipeline_to_ml(self, pipeline: Pipeline) -> Pipeline:
        try:
            return PackagedTrainingPipeline(
                nodes=pipeline.nodes,
                inference=self.inference,
                input_name=self.input_name,
                kpm_kwargs=self.kpm_kwargs,
                log_model_kwargs=self.log_model_kwargs,
            )
        except KedroMlflowPipelineMLError:
            logger.info(
                "This run covers only part of the training pipeline (%d of %d steps), so it "
                "does not log the scoring model to MLflow; a whole `kedro run` does.",
                len(pipeline.nodes),
                len(self.nodes),
            )
            return Pipeline(pipeline.nodes)


def with_packaged_model(training: Pipeline) -> PipelineML:
    """``training`` plus the scoring artifacts, logging the scoring pipeline to MLflow.

    At the end of a run of the returned pipeline, kedro-mlflow logs
    :func:`create_scoring_pipeline` with the fitted networks, heads, scoring contract, risk
    thresholds and parameters as one pyfunc model (input: the flat cohort table) and
    registers it as ``clnm_kedro`` (a new version per run).
    """
    return PackagedTrainingPipeline(
        nodes=(training + create_training_artifacts_pipeline()).nodes,
        inference=create_scoring_pipeline(),
        input_name=MODEL_INPUT,
        log_model_kwargs={
            "name": "clnm_model",
            "registered_model_name": REGISTERED_MODEL_NAME,
            # The input columns follow the training cohort: clnm_kedro.model_packaging's hook
            # sets the signature from the run's scoring contract, adds a simulated patient as
            # the input example, and the project wheel (code/, named in requirements.txt).
            "signature": None,
            "pip_requirements": [f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS],
            "metadata": {"clnm_kedro_version": version("clnm_kedro")},
        },
    )
