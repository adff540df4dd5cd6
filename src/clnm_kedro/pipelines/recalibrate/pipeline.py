"""Wiring of the ``recalibrate`` pipeline (see ``nodes.py``).

The cohort folder ``inference.cohort_dir`` (labelled patients of a new centre) is scored by
the same scoring pipeline as ``inference`` (training calibration only, whatever
``inference.centre_calibration`` says), and each model's calibration is refitted on it::

    kedro run --pipelines recalibrate --params inference.cohort_dir=/path/to/centre_b

writes ``data/06_models/centre_calibration.csv`` (beside the model) and
``data/08_reporting/centre_recalibration.csv`` (before/after). Later runs of ``inference``
with ``inference.centre_calibration=true`` apply it.
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from clnm_kedro.pipelines.recalibrate.nodes import fit_centre_calibration

CENTRE_SCORES = "centre_scores"


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Score the centre's labelled cohort, refit each model's calibration on it."""
    # Imported here: the inference pipeline itself imports this package's nodes.
    from clnm_kedro.pipelines.inference.nodes import flatten_inference_cohort  # noqa: PLC0415
    from clnm_kedro.pipelines.inference.pipeline import (  # noqa: PLC0415
        MODEL_INPUT,
        MODEL_OUTPUT,
        create_scoring_pipeline,
    )

    return Pipeline(
        [
            Node(
                flatten_inference_cohort,
                inputs="inference_raw_cohort",
                outputs=MODEL_INPUT,
                name="flatten_centre_cohort",
            ),
            Pipeline(create_scoring_pipeline(), outputs={MODEL_OUTPUT: CENTRE_SCORES}),
            Node(
                fit_centre_calibration,
                inputs=[CENTRE_SCORES, "inference_raw_cohort", "params:recalibrate"],
                outputs=["centre_calibration", "centre_recalibration"],
                name="fit_centre_calibration",
            ),
        ],
        tags="recalibrate",
    )
