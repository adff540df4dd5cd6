"""Scoring new patients with a trained model (no Kedro needed).

- :mod:`clnm_kedro.scoring.cohort_table`: a cohort folder as one flat table (one row per
  patient: clinical values, each view's image path and ROI box) and back into the object the
  preprocessing validation reads, so that a folder (``kedro run --pipelines inference``) and a
  table (the packaged MLflow model) go through the very same validation and cropping;
- :mod:`clnm_kedro.scoring.contract`: what a training run fixes for scoring (the clinical
  columns and their kinds, the crop settings, each model's Youden threshold) and the check
  that a new cohort matches it;
- :mod:`clnm_kedro.scoring.results`: the per-patient results table and the error records;
- :mod:`clnm_kedro.scoring.signature`: the packaged MLflow model's signature (input columns
  from the scoring contract, the results table as output).
"""

from clnm_kedro.scoring.cohort_table import (
    VIEW_FIELDS,
    TableCohort,
    cohort_from_table,
    embed_image,
    flatten_cohort,
    view_columns,
)
from clnm_kedro.scoring.contract import (
    inference_preprocessing,
    match_training_columns,
    risk_thresholds,
    scoring_contract,
)
from clnm_kedro.scoring.results import (
    ERROR_COLUMNS,
    RESULT_COLUMNS,
    SCORED_MODELS,
    assemble_results,
    error_table,
)

__all__ = [
    "ERROR_COLUMNS",
    "RESULT_COLUMNS",
    "SCORED_MODELS",
    "VIEW_FIELDS",
    "TableCohort",
    "assemble_results",
    "cohort_from_table",
    "embed_image",
    "error_table",
    "flatten_cohort",
    "inference_preprocessing",
    "match_training_columns",
    "risk_thresholds",
    "scoring_contract",
    "view_columns",
]
