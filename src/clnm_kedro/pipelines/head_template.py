"""The classifier-head pipeline: written once, instantiated per model with a namespace.

``clinical_modeling`` instantiates it for the ``clinical`` model, ``fusion`` for
``dl_features`` and ``combined`` (:func:`create_head_pipeline`). Inside a namespace the
datasets have generic names (``model_input``, ``head``, ``predictions``, ...); those used
outside are mapped to plain names (``clinical_head``, ``clinical_predictions``, ...) because
Kedro warns about dotted dataset names consumed outside their namespace.

The nodes, one per step, are in :mod:`clnm_kedro.pipelines.head_nodes` (settings, tuning,
predictions) and :mod:`clnm_kedro.pipelines.head_reports` (comparison, figures, metrics,
selection record); imported here too, so ``from clnm_kedro.pipelines.head_template import
tune_head`` keeps working.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from clnm_kedro.pipelines.head_nodes import (
    HEAD_REQUIREMENTS,
    SPLIT_RANK,
    TRAIN_CV_ESTIMATES,
    HeadSettings,
    log_head_to_mlflow,
    predict_out_of_fold,
    predict_with_head,
    prediction_rows,
    stack_predictions,
    tune_head,
    validate_head_settings,
)
from clnm_kedro.pipelines.head_reports import (
    collect_head_metrics,
    compare_families,
    plot_head_search,
    record_head_selection,
)
from clnm_kedro.registry import HEAD_MODELS, model_spec

__all__ = [
    "HEAD_PARAMETER_BLOCKS",
    "HEAD_REQUIREMENTS",
    "PUBLIC_OUTPUTS",
    "SPLIT_RANK",
    "TRAIN_CV_ESTIMATES",
    "HeadSettings",
    "collect_head_metrics",
    "compare_families",
    "create_head_pipeline",
    "head_template",
    "log_head_to_mlflow",
    "plot_head_search",
    "predict_out_of_fold",
    "predict_with_head",
    "prediction_rows",
    "record_head_selection",
    "stack_predictions",
    "tune_head",
    "validate_head_settings",
]

# Each head model and its parameter block (clnm_kedro.registry): `clinical_modeling` builds the
# clinical head, `fusion` the others, and `inference` scores with all of them.
HEAD_PARAMETER_BLOCKS: dict[str, str] = {
    model: model_spec(model).parameters for model in HEAD_MODELS
}


# --------------------------------------------------------------------------------------
# Template
# --------------------------------------------------------------------------------------


def head_template() -> Pipeline:
    """The head pipeline with generic names (``model_input``, ``head``, ``predictions``...).

    ``heads`` is the ``heads`` block (training: the parameters; serving: the spec read without
    probe fits) and ``optuna_storage`` the store's URL from credentials (serving, which opens no
    store: the ``optuna_storage_url`` parameter). The nodes tagged ``inference`` score with a
    fitted head: ``inference`` instantiates them again.
    """
    return Pipeline(
        [
            Node(
                validate_head_settings,
                inputs=[
                    "heads",
                    "params:model_settings",
                    "params:optuna_storage_url",
                    "params:seed",
                    "optuna_storage",
                ],
                outputs="settings",
                name="validate_head_settings",
                tags=["training", "inference"],
            ),
            Node(  # the searched head: before the nested CV's recalibration
                tune_head,
                inputs=["model_input", "settings"],
                outputs=["head_from_search", "head_search"],
                name="tune_head",
                tags="training",
            ),
            Node(  # train_cv rows, and the final head (its calibration as the nested CV found)
                predict_out_of_fold,
                inputs=["head_from_search", "model_input", "settings"],
                outputs=["out_of_fold_scores", "train_cv_summary", "head"],
                name="predict_out_of_fold",
                tags="training",
            ),
            Node(
                log_head_to_mlflow,
                inputs=["head", "model_input", "settings"],
                outputs="head_mlflow_model",
                name="log_head_to_mlflow",
                tags="training",
            ),
            Node(
                predict_with_head,
                inputs=["head", "model_input", "settings"],
                outputs="fitted_scores",
                name="predict_with_head",
                tags=["training", "inference"],
            ),
            Node(
                stack_predictions,
                inputs=["fitted_scores", "out_of_fold_scores"],
                outputs="predictions",
                name="stack_predictions",
                tags="training",
            ),
            Node(
                compare_families,
                inputs=["head", "head_search", "model_input", "train_cv_summary", "settings"],
                outputs="head_comparison",
                name="compare_families",
                tags="training",
            ),
            Node(
                plot_head_search,
                inputs=["head_search", "settings"],
                outputs=["optimization_history", "param_importances"],
                name="plot_head_search",
                tags="training",
            ),
            Node(
                collect_head_metrics,
                inputs=["head_comparison", "settings"],
                outputs="head_metrics",
                name="collect_head_metrics",
                tags="training",
            ),
            Node(
                record_head_selection,
                inputs=["head", "head_comparison", "train_cv_summary", "settings"],
                outputs="head_selection",
                name="record_head_selection",
                tags="training",
            ),
        ]
    )


# Template outputs used outside the namespace, mapped to ``<model>_<name>``.
PUBLIC_OUTPUTS: tuple[str, ...] = (
    "head",
    "head_mlflow_model",
    "head_selection",
    "predictions",
    "head_comparison",
    "head_metrics",
    "optimization_history",
    "param_importances",
)


def create_head_pipeline(model: str, model_input: str, model_settings: str) -> Pipeline:
    """The head pipeline of one model, in the namespace ``model``.

    Parameters
    ----------
    model
        Model name and namespace (``clinical``, ``dl_features``, ``combined``).
    model_input
        The model-input dataset (e.g. ``clinical_model_input``).
    model_settings
        The model's parameter block (e.g. ``clinical_modeling``, ``fusion.combined``).

    Returns
    -------
    Pipeline
        Outputs ``<model>_head``, ``<model>_head_mlflow_model`` (where MLflow keeps the head),
        ``<model>_head_selection``,
        ``<model>_predictions``, ``<model>_head_comparison``, ``<model>_head_metrics``,
        ``<model>_optimization_history``, ``<model>_param_importances``.
    """
    return Pipeline(
        head_template(),
        namespace=model,
        inputs={
            "model_input": model_input,
            "heads": "params:heads",
            "optuna_storage": "optuna_storage",
        },
        outputs={name: f"{model}_{name}" for name in PUBLIC_OUTPUTS},
        parameters={
            "params:model_settings": f"params:{model_settings}",
            "params:optuna_storage_url": "params:optuna_storage_url",
            "params:seed": "params:seed",
        },
    )
