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

:func:`with_scoring_artifacts` adds the first piece to a training pipeline; at the end of a
run of it, ``clnm_kedro.model_packaging`` logs the scoring pipeline with the fitted networks,
heads, contract and thresholds as one MLflow model, registered as ``clnm_kedro``. Serving is
built from the training templates, instantiated a second time on the new patients: the
preprocessing templates (``preprocessing/pipeline.py``), the networks' inference template
and the head template's nodes tagged ``inference``; each node function is wired once.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from kedro.pipeline import Node, Pipeline

from clnm_kedro.pipelines.evaluation.pipeline import SETTINGS as EVALUATION_SETTINGS
from clnm_kedro.pipelines.feature_extraction.pipeline import network_inference_template
from clnm_kedro.pipelines.head_inputs import model_input_node
from clnm_kedro.pipelines.head_template import HEAD_PARAMETER_BLOCKS, head_template
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
from clnm_kedro.pipelines.preprocessing.pipeline import SETTINGS, image_template, table_template
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
                inputs=["predictions", EVALUATION_SETTINGS],
                outputs="risk_thresholds",
                name="fit_risk_thresholds",
                tags="training",
            ),
        ]
    )


def _serving(template: Pipeline, namespace: str, **renamed: str) -> Pipeline:
    """A preprocessing template on the new patients: its datasets named ``inference_<name>``
    (``renamed``: otherwise), its settings the training run's."""
    names = {name: f"inference_{name}" for name in template.datasets() - {SETTINGS, "params:split"}}
    names |= {"raw_cohort": "inference_cohort_files", SETTINGS: "inference_preprocessing"}
    names |= renamed
    return Pipeline(
        template,
        namespace=namespace,
        inputs={name: names[name] for name in template.inputs() if name != "params:split"},
        outputs={name: names[name] for name in template.all_outputs()},
        parameters={"params:split": "params:split"} if "params:split" in template.inputs() else {},
    )


def _preprocessing_pipeline() -> Pipeline:
    """The preprocessing templates of training on the cohort table, with the training run's
    settings; between the two, the clinical columns checked against the training cohort's."""
    return Pipeline(
        [
            Node(
                open_inference_cohort,
                inputs=[MODEL_INPUT, "scoring_contract"],
                outputs=["inference_cohort_files", "inference_preprocessing"],
                name="open_inference_cohort",
            ),
            _serving(
                table_template(),
                "inference_tables",
                validated_clinical="inference_clinical_as_read",
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
            _serving(image_template(), "inference_images"),
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
    """One head's nodes tagged ``inference`` in the head template (its settings and its
    predictions), on the new patients' model input with the fitted head."""
    return Pipeline(
        head_template().only_nodes_with_tags("inference"),
        namespace=f"{model}_inference",
        inputs={
            "heads": "inference_head_spec",
            # serving opens no store: the settings keep the parameter's URL (unused)
            "optuna_storage": "params:optuna_storage_url",
            "head": f"{model}_head",
            "model_input": f"{model}_inference_input",
        },
        outputs={"fitted_scores": f"{model}_inference_scores"},
        parameters={
            "params:model_settings": f"params:{model_settings}",
            "params:optuna_storage_url": "params:optuna_storage_url",
            "params:seed": "params:seed",
        },
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


def with_scoring_artifacts(training: Pipeline) -> Pipeline:
    """``training`` plus the scoring contract and risk thresholds: a run of it fits everything
    :func:`create_scoring_pipeline` needs, and ``clnm_kedro.model_packaging``'s hook logs that
    pipeline with the fitted artifacts as one MLflow model, registered as ``clnm_kedro``."""
    return training + create_training_artifacts_pipeline()


def log_model_kwargs() -> dict[str, Any]:
    """How the packaged model is logged (``mlflow.pyfunc.log_model``), its signature aside."""
    return {
        "name": "clnm_model",
        "registered_model_name": REGISTERED_MODEL_NAME,
        "pip_requirements": [f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS],
        # The project itself travels as a wheel in the model's code/ folder, named in its
        # requirements.txt (clnm_kedro.model_packaging.packaged_code), at the version recorded
        # in the model's metadata.
        "metadata": {"clnm_kedro_version": version("clnm_kedro")},
    }
