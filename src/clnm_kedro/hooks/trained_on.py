"""Scoring the training patients: inference warns when it scores patients the models were
trained on.
"""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline.node import Node

logger = logging.getLogger(__name__)


SCORED_PATIENTS = "inference_scored_patients"
TRAINING_SPLITS_DATASET = "patient_splits"


class TrainedOnHooks:
    """Warn when ``kedro run --pipelines inference`` scores patients the models were fitted on.

    Their probabilities are optimistic (the models have seen them), not a prediction. The
    check uses this project's own ``patient_splits`` (``data/03_primary``), when a training
    run left one; the packaged model carries no patient list.
    """

    def __init__(self) -> None:
        self._catalog: Any = None

    @hook_impl
    def before_pipeline_run(self, catalog: Any) -> None:
        """Keep the catalog, to read the training split later."""
        self._catalog = catalog

    @hook_impl
    def after_node_run(self, node: Node, outputs: dict[str, Any]) -> None:
        """After the patients to score are chosen: are any of them training patients?"""
        scored = outputs.get(SCORED_PATIENTS)
        if scored is None or self._catalog is None:
            return
        try:
            if TRAINING_SPLITS_DATASET not in self._catalog or not self._catalog.exists(
                TRAINING_SPLITS_DATASET
            ):
                return
            splits = self._catalog.load(TRAINING_SPLITS_DATASET)
        except Exception as error:  # a check, never a reason to stop scoring
            logger.debug("No training split to compare the scored patients with: %s", error)
            return
        warn_on_training_patients(scored, splits)


def warn_on_training_patients(scored: Any, splits: Any) -> list[str]:
    """Log a warning naming how many scored patients are training patients; returns them."""
    training = set(splits.loc[splits["split"].astype(str) == "train", "patient_id"].astype(str))
    seen = sorted(set(scored["patient_id"].astype(str)) & training)
    if seen:
        logger.warning(
            "%d of the %d patients scored (e.g. %s) are training patients of this project "
            "(data/03_primary/patient_splits.csv): the models were fitted on them, so their "
            "probabilities are optimistic, not predictions.",
            len(seen),
            len(scored),
            ", ".join(seen[:3]),
        )
    return seen
