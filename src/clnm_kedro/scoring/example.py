"""The packaged model's input example: one simulated patient, images embedded in the row.

A row of the model's input needs two ultrasound images, and no real patient may enter the
MLflow store. :func:`simulated_example` draws one patient with the project's simulator
(:mod:`clnm_kedro.simulation`, the run's ``simulate`` parameters, a fixed seed), and gives its
row of the flat cohort table (:mod:`clnm_kedro.scoring.cohort_table`) with both images
embedded as ``data:`` URIs: the example is self-contained, so MLflow stores it inside the
model (``input_example.json``) and it scores wherever the model is loaded or served.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from clnm_kedro.cohort.schemas import VIEWS
from clnm_kedro.datasets import CohortDataset
from clnm_kedro.scoring.cohort_table import (
    ALL_VIEW_COLUMNS,
    SEPARATOR,
    embed_image,
    flatten_cohort,
)
from clnm_kedro.simulation import SyntheticCohort, simulate_cohort

logger = logging.getLogger(__name__)

EXAMPLE_SEED = 20240601
EXAMPLE_ID = "simulated_example"


def simulated_example(
    simulate_params: Mapping[str, Any], contract: Mapping[str, Any]
) -> pd.DataFrame | None:
    """One simulated patient as the model's input, or ``None`` (logged) when the simulator
    does not make every clinical column the model was trained on (a real cohort's own)."""
    clinical = [str(name) for name in contract["clinical_columns"]]
    params = {
        **dict(simulate_params),
        "n_patients": len(simulate_params["centers"]),  # the fewest the simulator draws
        "n_jobs": 1,
    }
    simulator = logging.getLogger("clnm_kedro.simulation")
    level = simulator.level
    simulator.setLevel(logging.WARNING)  # its cohort-size lines would speak of a cohort
    try:
        cohort = simulate_cohort(params, seed=EXAMPLE_SEED)
        example = _first_row(cohort, clinical)
    finally:
        simulator.setLevel(level)
    if example is not None:
        logger.info(
            "The scoring model's input example is one simulated patient, %r, images embedded "
            "(MLflow scores it once as it logs the model).",
            EXAMPLE_ID,
        )
    return example


def _first_row(cohort: SyntheticCohort, clinical: list[str]) -> pd.DataFrame | None:
    """The cohort's first patient as a row of the flat table, images embedded."""
    lacking = [name for name in clinical if name not in cohort.clinical_table().columns]
    if lacking:
        logger.info(
            "The scoring model is logged without an input example: the simulator makes no "
            "%s column, which the model was trained on.",
            lacking,
        )
        return None
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "cohort"
        cohort.write(folder)
        table = flatten_cohort(CohortDataset(str(folder)).load()).head(1)
        row = table[["patient_id", "center", *clinical, *ALL_VIEW_COLUMNS]].copy()
        for view in VIEWS:
            paths = str(row.at[0, f"{view}_image"]).split(SEPARATOR)
            row.at[0, f"{view}_image"] = SEPARATOR.join(embed_image(Path(p)) for p in paths)
    row["patient_id"] = EXAMPLE_ID
    return row.astype(object).where(row.notna(), None).reset_index(drop=True)
