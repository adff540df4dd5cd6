"""Wiring of the ``preprocessing`` pipeline (see ``nodes.py``).

The cohort is read in two steps that serving repeats on new patients: :func:`table_template`
(the tables checked) and :func:`image_template` (the image files checked, the ROIs cropped,
the cohort table built). Their settings are the dataset ``preprocessing``: the parameter block
here, the training run's settings read from the scoring contract in ``inference``, which
instantiates the same two templates a second time (``inference/pipeline.py``).
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from clnm_kedro.pipelines.preprocessing.nodes import (
    assign_patient_splits,
    build_cohort_table,
    build_data_quality_report,
    check_images,
    crop_rois,
    validate_tables,
)
from clnm_kedro.runner import SIDE_BY_SIDE

# What the templates read besides the cohort: the preprocessing settings, a dataset.
SETTINGS = "preprocessing"


def table_template() -> Pipeline:
    """The cohort's tables checked: ``raw_cohort`` to the validated clinical table."""
    return Pipeline(
        [
            Node(
                validate_tables,
                inputs=["raw_cohort", SETTINGS, "params:split"],
                outputs=["validated_clinical", "roi_boxes", "table_exclusions"],
                name="validate_cohort_tables",
                tags=[SIDE_BY_SIDE],  # one core each, thread-safe (clnm_kedro.runner)
            ),
        ]
    )


def image_template() -> Pipeline:
    """The image files checked, the ROIs cropped and the cohort table built."""
    return Pipeline(
        [
            Node(
                check_images,
                inputs=["raw_cohort", "validated_clinical", "roi_boxes", "table_exclusions"],
                outputs=["image_manifest", "file_exclusions"],
                name="check_image_files",
                tags=[SIDE_BY_SIDE],  # one core each, thread-safe (clnm_kedro.runner)
            ),
            Node(
                crop_rois,
                inputs=["image_manifest", SETTINGS],
                outputs=["roi_crops", "cropped_patients", "crop_exclusions"],
                name="crop_rois",
                tags=[SIDE_BY_SIDE],  # one core each, thread-safe (clnm_kedro.runner)
            ),
            Node(
                build_cohort_table,
                inputs=["validated_clinical", "cropped_patients"],
                outputs="cohort_table",
                name="build_cohort_table",
            ),
        ]
    )


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Validate the cohort, crop and pair the ROIs, report exclusions, assign splits."""
    return Pipeline(
        [
            Pipeline(
                [table_template(), image_template()],
                inputs={SETTINGS: f"params:{SETTINGS}"},
            ),
            Node(
                build_data_quality_report,
                inputs={
                    "raw_cohort": "raw_cohort",
                    "validated_clinical": "validated_clinical",
                    "cohort_table": "cohort_table",
                    "image_manifest": "image_manifest",
                    "table_exclusions": "table_exclusions",
                    "file_exclusions": "file_exclusions",
                    "crop_exclusions": "crop_exclusions",
                    "preprocessing": "params:preprocessing",
                    "split": "params:split",
                },
                outputs=["data_quality_report", "exclusions", "preprocessing_metrics"],
                name="build_data_quality_report",
            ),
            Node(
                assign_patient_splits,
                inputs=["cohort_table", "exclusions", "params:split", "params:seed"],
                outputs="patient_splits",
                name="assign_patient_splits",
            ),
        ]
    )
