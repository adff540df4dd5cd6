"""The MLflow signature of the packaged scoring model, from the training run's contract.

Input: the flat cohort table (:mod:`clnm_kedro.scoring.cohort_table`), one row per patient:
``patient_id``, ``center``, the clinical columns the models were trained on (the scoring
contract), each view's image and box; ``clnm`` may be given or left out. Every column is of
any type: cells may be numbers or text (they are read as text, as the cohort files are), and
the pipeline validates them itself with messages naming the patients. Columns the model was not
trained on are dropped by MLflow before the pipeline sees them.

Output: the results table (:data:`clnm_kedro.scoring.results.RESULT_COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlflow.models.signature import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, Schema

from clnm_kedro.scoring.cohort_table import ALL_VIEW_COLUMNS
from clnm_kedro.scoring.results import RESULT_COLUMNS

_OUTPUT_TYPES = {"scored": "boolean", "patient_id": "string", "center": "string"}
_TEXT_OUTPUTS = ("risk_group", "error_file", "error_reason")


def model_signature(contract: Mapping[str, Any]) -> ModelSignature:
    """The packaged model's input and output schema for a training run's scoring contract."""
    clinical = [str(name) for name in contract["clinical_columns"]]
    inputs = [
        ColSpec(AnyType(), "patient_id"),
        ColSpec(AnyType(), "center"),
        ColSpec(AnyType(), "clnm", required=False),  # labels, where present, are ignored
        *(ColSpec(AnyType(), name) for name in clinical),
        *(ColSpec(AnyType(), name) for name in ALL_VIEW_COLUMNS),
    ]
    outputs = [
        ColSpec(
            _OUTPUT_TYPES.get(name, "string" if name in _TEXT_OUTPUTS else "double"),
            name,
            required=name not in ("error_file", "error_reason"),
        )
        for name in RESULT_COLUMNS
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))
