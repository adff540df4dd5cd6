"""The results of scoring a cohort: one row per patient, and the error records.

Every patient of the cohort gets one row, in the cohort's order. A scored patient has the
combined model's probability (the primary answer) and its risk group at the training Youden
threshold, and every model's probability. A patient who could not be scored (a missing or
unreadable view, a bad box) has ``scored = False``, empty probabilities, and the files and
reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

# The answer (PRIMARY_MODEL) and the models scored, the primary one first.
from clnm_kedro.registry import PRIMARY_MODEL, SCORED_MODELS

logger = logging.getLogger(__name__)

HIGH, LOW = "high", "low"
RESULT_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "center",
    "scored",
    "probability",
    "risk_group",
    "threshold",
    *(f"probability_{model}" for model in SCORED_MODELS),
    "error_file",
    "error_reason",
)
ERROR_COLUMNS: tuple[str, ...] = ("patient_id", "center", "view", "file", "reason")


def error_table(*exclusions: pd.DataFrame) -> pd.DataFrame:
    """Every problem that kept a patient from being scored: ``ERROR_COLUMNS``, one per row."""
    parts = [table for table in exclusions if table is not None and not table.empty]
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in ERROR_COLUMNS})
    table = pd.concat(parts, ignore_index=True)
    return table.loc[:, list(ERROR_COLUMNS)].astype(object).reset_index(drop=True)


def _joined(values: pd.Series) -> str:
    return "; ".join(dict.fromkeys(str(v) for v in values if isinstance(v, str) and v))


def assemble_results(
    patients: pd.DataFrame,
    scores: Mapping[str, pd.DataFrame],
    errors: pd.DataFrame,
    thresholds: Mapping[str, Mapping[str, Any]],
) -> pd.DataFrame:
    """One row per patient of ``patients``: probabilities, risk group, or why not scored.

    Parameters
    ----------
    patients
        Every patient of the cohort (``patient_id``, ``center``), in the cohort's order.
    scores
        Model name -> table with ``patient_id, probability`` of the scored patients.
    errors
        From :func:`error_table`.
    thresholds
        ``{model: {"threshold": float | None, ...}}`` from the training run.

    Returns
    -------
    pandas.DataFrame
        ``RESULT_COLUMNS``. ``risk_group`` is ``high`` when the combined probability is at
        or above its threshold, else ``low``.

    Raises
    ------
    ValueError
        If a model's scores are missing or name a patient twice or one not in ``patients``.
    """
    ids = patients["patient_id"].astype(str).reset_index(drop=True)
    table = pd.DataFrame({"patient_id": ids, "center": patients["center"].to_numpy()})
    for model in SCORED_MODELS:
        if model not in scores:
            raise ValueError(f"No scores of the {model} model; the scoring pipeline is broken.")
        rows = scores[model]
        rows_ids = rows["patient_id"].astype(str)
        if rows_ids.duplicated().any() or not set(rows_ids) <= set(ids):
            raise ValueError(f"The {model} scores do not match the cohort's patients.")
        probability = dict(zip(rows_ids, rows["probability"].astype(float), strict=True))
        table[f"probability_{model}"] = ids.map(probability).astype(float)
    table["scored"] = table[f"probability_{PRIMARY_MODEL}"].notna()
    table["probability"] = table[f"probability_{PRIMARY_MODEL}"]
    threshold = (thresholds.get(PRIMARY_MODEL) or {}).get("threshold")
    table["threshold"] = np.nan if threshold is None else float(threshold)
    table["risk_group"] = None
    if threshold is None:
        logger.warning(
            "The combined model has no training threshold (its training predictions had one "
            "outcome only), so no risk group is given."
        )
    else:
        high = table["probability"] >= float(threshold)
        table.loc[table["scored"], "risk_group"] = np.where(high[table["scored"]], HIGH, LOW)
    errors = errors.assign(patient_id=errors["patient_id"].astype(str))
    by_patient = errors.groupby("patient_id", sort=False)
    table["error_file"] = ids.map(by_patient["file"].agg(_joined)).astype(object)
    table["error_reason"] = ids.map(by_patient["reason"].agg(_joined)).astype(object)
    unexplained = table.loc[~table["scored"] & table["error_reason"].isna(), "patient_id"]
    if not unexplained.empty:
        raise ValueError(
            f"Patients {unexplained.tolist()[:10]} were neither scored nor excluded with a "
            "reason; the scoring pipeline is broken."
        )
    n_scored = int(table["scored"].sum())
    logger.info(
        "%d of %d patients scored (%d at high risk); %d could not be scored.",
        n_scored,
        len(table),
        int((table["risk_group"] == HIGH).sum()),
        len(table) - n_scored,
    )
    return table.loc[:, list(RESULT_COLUMNS)]
