"""Wiring of the ``evaluation`` pipeline (see ``nodes.py``)."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from clnm_kedro.pipelines.evaluation.nodes import (
    assess_development_sample_size,
    build_calibration_table,
    build_report,
    build_study_table,
    build_table_one,
    collect_mlflow_metrics,
    collect_run_parameters,
    compare_models,
    compare_with_oracle,
    compute_metrics,
    compute_net_benefit,
    compute_subgroup_auc,
    fit_clinical_odds_ratios,
    gather_predictions,
    gradcam_node,
    plot_calibration,
    plot_decision_curves,
    plot_net_benefit_difference,
    plot_roc,
    plot_training_curves,
    summarise_results,
    validate_evaluation_settings,
)
from clnm_kedro.registry import HEAD_MODELS, NETWORK_MODELS

# The `evaluation` parameter block, checked once by the pipeline's first node: every node
# reads this typed object (a MemoryDataset: no catalog entry), never the raw block.
SETTINGS = "evaluation_settings"
# Every model pipeline's predictions table, gathered into `predictions`: the networks' one
# (feature_extraction) and each head's.
PREDICTION_TABLES = ["dl_predictions", *(f"{model}_predictions" for model in HEAD_MODELS)]
NETWORKS = list(NETWORK_MODELS)
# The heads' classifier comparisons (clinical_modeling and fusion), shown in the report.
HEAD_COMPARISONS = [f"{model}_head_comparison" for model in HEAD_MODELS]
# The parameter blocks of a training run, shown in the report. Named one by one rather than
# taking Kedro's whole "parameters": kedro-mlflow logs a node's "parameters" input again under
# "parameters.<key>", which doubled every MLflow parameter of the run.
REPORTED_PARAMETERS = [
    "seed",
    "cohort_dir",
    "split",
    "preprocessing",
    "dl_training",
    "feature_extraction",
    "heads",
    "optuna_storage_url",
    "clinical_modeling",
    "fusion",
    "evaluation",
]


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Metrics with CIs, DeLong tests, subgroups, oracle, figures, Grad-CAM and the report."""
    gradcam_nodes = [
        Node(
            gradcam_node(network),
            inputs=[
                f"{network}_network",
                "roi_crops",
                "patient_splits",
                SETTINGS,
                "params:seed",
            ],
            outputs=f"gradcam_{network}_figure",
            name=f"plot_gradcam_{network}",
        )
        for network in NETWORKS
    ]
    return Pipeline(
        [
            Node(
                validate_evaluation_settings,
                inputs="params:evaluation",
                outputs=SETTINGS,
                name="validate_evaluation_settings",
            ),
            Node(
                gather_predictions,
                inputs=PREDICTION_TABLES,
                outputs="predictions",
                name="gather_predictions",
            ),
            Node(
                compute_metrics,
                inputs=["predictions", SETTINGS, "params:seed"],
                outputs="metrics",
                name="compute_metrics",
            ),
            Node(
                compare_models,
                inputs=["predictions", SETTINGS],
                outputs="delong_tests",
                name="compare_models_delong",
            ),
            Node(
                build_study_table,
                inputs=["metrics", "delong_tests"],
                outputs="study_table",
                name="build_study_table",
            ),
            Node(
                build_calibration_table,
                inputs="metrics",
                outputs="calibration_table",
                name="build_calibration_table",
            ),
            Node(
                build_table_one,
                inputs=["cohort_table", "patient_splits"],
                outputs=["table_one_by_centre", "table_one_by_outcome"],
                name="build_table_one",
            ),
            Node(
                fit_clinical_odds_ratios,
                inputs=[
                    "cohort_table",
                    "patient_splits",
                    "params:clinical_modeling",
                    SETTINGS,
                ],
                outputs="clinical_odds_ratios",
                name="fit_clinical_odds_ratios",
            ),
            Node(
                compute_net_benefit,
                inputs=["predictions", SETTINGS, "params:seed"],
                outputs="net_benefit",
                name="compute_net_benefit",
            ),
            Node(
                assess_development_sample_size,
                inputs=[
                    "predictions",
                    "clinical_model_input",
                    "combined_model_input",
                    SETTINGS,
                ],
                outputs="sample_size",
                name="assess_sample_size",
            ),
            Node(
                summarise_results,
                inputs=[
                    "metrics",
                    "delong_tests",
                    "net_benefit",
                    "sample_size",
                    SETTINGS,
                ],
                outputs="plain_summary",
                name="summarise_results",
            ),
            Node(
                compute_subgroup_auc,
                inputs=["predictions", "cohort_table", SETTINGS],
                outputs="subgroup_auc",
                name="compute_subgroup_auc",
            ),
            Node(
                compare_with_oracle,
                inputs=["predictions", "simulation_oracle", SETTINGS],
                outputs="oracle_comparison",
                name="compare_with_oracle",
            ),
            Node(
                collect_mlflow_metrics,
                inputs=["metrics", "delong_tests", "oracle_comparison"],
                outputs="evaluation_metrics",
                name="collect_mlflow_metrics",
            ),
            Node(
                plot_roc,
                inputs=["predictions", SETTINGS],
                outputs="roc_curves_figure",
                name="plot_roc_curves",
            ),
            Node(
                plot_calibration,
                inputs=["predictions", SETTINGS],
                outputs="calibration_curves_figure",
                name="plot_calibration_curves",
            ),
            Node(
                plot_decision_curves,
                inputs=["predictions", SETTINGS],
                outputs="decision_curves_figure",
                name="plot_decision_curves",
            ),
            Node(
                plot_net_benefit_difference,
                inputs=["net_benefit", SETTINGS],
                outputs="net_benefit_difference_figure",
                name="plot_net_benefit_difference",
            ),
            Node(
                plot_training_curves,
                inputs={network: f"{network}_training_history" for network in NETWORKS},
                outputs="training_curves_figure",
                name="plot_training_curves",
            ),
            *gradcam_nodes,
            Node(
                collect_run_parameters,
                inputs={block: f"params:{block}" for block in REPORTED_PARAMETERS},
                outputs="run_parameters",
                name="collect_run_parameters",
            ),
            Node(
                build_report,
                inputs={
                    "metrics": "metrics",
                    "delong_tests": "delong_tests",
                    "subgroup_auc": "subgroup_auc",
                    "oracle_comparison": "oracle_comparison",
                    "data_quality_report": "data_quality_report",
                    "parameters": "run_parameters",
                    "table_one_by_centre": "table_one_by_centre",
                    "table_one_by_outcome": "table_one_by_outcome",
                    "clinical_odds_ratios": "clinical_odds_ratios",
                    "net_benefit": "net_benefit",
                    "sample_size": "sample_size",
                    "plain_summary": "plain_summary",
                    "settings": SETTINGS,
                    **{name: name for name in HEAD_COMPARISONS},
                    # the figures, read back from their PNG files (the template places them)
                    "roc_curves": "roc_curves_figure",
                    "calibration_curves": "calibration_curves_figure",
                    "decision_curves": "decision_curves_figure",
                    "net_benefit_difference": "net_benefit_difference_figure",
                    "training_curves": "training_curves_figure",
                    **{f"gradcam_{net}": f"gradcam_{net}_figure" for net in NETWORKS},
                },
                outputs="report",
                name="build_report",
            ),
        ]
    )
