"""Wiring of the ``simulate`` pipeline (see ``nodes.py``)."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from clnm_kedro.pipelines.simulate.nodes import export_cohort, simulate_cohort, summarise_simulation
from clnm_kedro.runner import SIDE_BY_SIDE


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Sample the synthetic cohort, write it and its oracle, summarise it."""
    return Pipeline(
        [
            Node(
                simulate_cohort,
                inputs=["params:simulate", "params:seed"],
                outputs="synthetic_cohort",
                name="simulate_cohort",
            ),
            Node(
                export_cohort,
                inputs="synthetic_cohort",
                outputs=["raw_cohort", "simulation_oracle"],
                name="write_synthetic_cohort",
            ),
            Node(
                summarise_simulation,
                inputs=["synthetic_cohort", "simulation_oracle"],
                outputs=["simulation_summary", "simulation_metrics"],
                name="summarise_simulation",
                # one core, thread-safe: beside the image checks and crops (clnm_kedro.runner)
                tags=[SIDE_BY_SIDE],
            ),
        ]
    )
