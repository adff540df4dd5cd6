"""What a training run fixes for scoring new patients, and the check that a cohort fits it.

The *scoring contract* is recorded at training time from the cohort the models were fitted on:
the clinical columns (and whether each was a number or a category) and the crop settings.
Scoring reads a new cohort with exactly these settings, so that a parameter changed after
training cannot silently feed the networks other crops or the heads other columns.

The *risk thresholds* are each model's Youden cut-off chosen on its training predictions by
the evaluation's rule (:func:`clnm_kedro.reporting.model_metrics.choose_thresholds`), never
on the external centre.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from clnm_kedro.cohort.errors import CohortError
from clnm_kedro.cohort.schemas import IDENTITY_COLUMNS, VIEWS
from clnm_kedro.reporting.model_metrics import choose_thresholds

logger = logging.getLogger(__name__)

NUMBER, CATEGORY = "number", "category"
CROP_SETTINGS: tuple[str, ...] = ("image_size", "roi_margin", "intensity_percentiles")


def scoring_contract(cohort_table: pd.DataFrame, preprocessing: Mapping[str, Any]) -> dict:
    """The clinical columns the models were trained on, with their kind, and the crop settings.

    Parameters
    ----------
    cohort_table
        The training cohort as preprocessing left it (only the named clinical columns).
    preprocessing
        The ``preprocessing`` parameters the crops were made with.

    Returns
    -------
    dict
        ``clinical_columns`` ({name: "number" | "category"}, in cohort_table order),
        ``preprocessing`` (``image_size``, ``roi_margin``, ``intensity_percentiles``) and
        ``views``.
    """
    columns = {
        str(name): NUMBER if pd.api.types.is_numeric_dtype(cohort_table[name]) else CATEGORY
        for name in cohort_table.columns
        if name not in IDENTITY_COLUMNS
    }
    crop = {name: preprocessing.get(name) for name in CROP_SETTINGS}
    if crop["intensity_percentiles"] is not None:
        crop["intensity_percentiles"] = [float(v) for v in crop["intensity_percentiles"]]
    return {"clinical_columns": columns, "preprocessing": crop, "views": list(VIEWS)}


def _checked_contract(contract: Mapping[str, Any]) -> dict[str, str]:
    try:
        columns = dict(contract["clinical_columns"])
        crop = contract["preprocessing"]
    except (KeyError, TypeError) as error:
        raise ValueError(
            "The scoring contract (data/06_models/scoring_contract.json) is incomplete; rerun "
            f"the training (kedro run) to write it again. Missing: {error}"
        ) from error
    if list(contract.get("views", VIEWS)) != list(VIEWS) or not isinstance(crop, Mapping):
        raise ValueError(
            f"The scoring contract does not describe views {list(VIEWS)} and crop settings; "
            "rerun the training (kedro run) to write it again."
        )
    return columns


def inference_preprocessing(contract: Mapping[str, Any], progress_bar: bool) -> dict[str, Any]:
    """The ``preprocessing`` block that reads a new cohort as the training cohort was read.

    The crop settings and clinical columns are the training run's; labels are not required.
    """
    columns = _checked_contract(contract)
    return {
        **dict(contract["preprocessing"]),
        "clinical_columns": list(columns),
        "require_labels": False,
        "progress_bar": bool(progress_bar),
    }


def _as_category(values: pd.Series) -> pd.Series:
    """Numbers parsed from a category column back to their text (2.0 -> '2')."""
    return values.map(lambda v: None if pd.isna(v) else f"{float(v):g}").astype(object)


def match_training_columns(
    validated_clinical: pd.DataFrame, contract: Mapping[str, Any], source: str = "clinical.csv"
) -> pd.DataFrame:
    """The validated clinical table with the columns and kinds the models were trained on.

    Parameters
    ----------
    validated_clinical
        From :func:`clnm_kedro.cohort.validate_clinical`, read with the training columns.
    contract
        From :func:`scoring_contract`.
    source
        How the cohort's clinical file is named in messages.

    Raises
    ------
    CohortError
        Naming the columns, if a training column is absent or holds text where the model was
        trained on numbers.
    """
    columns = _checked_contract(contract)
    missing = [name for name in columns if name not in validated_clinical.columns]
    if missing:
        raise CohortError(
            f"{source} lacks the clinical column(s) {missing} that the model was trained on. "
            f"The model needs {list(columns)}; add the missing column(s) (an empty cell is "
            "allowed where a value is unknown and the column allows it)."
        )
    table = validated_clinical.loc[:, [*IDENTITY_COLUMNS, *columns]].copy()
    wrong = []
    for name, kind in columns.items():
        values = table[name]
        numeric = pd.api.types.is_numeric_dtype(values)
        if kind == NUMBER and not numeric:
            if values.isna().all():
                table[name] = values.astype(float)
            else:
                example = values.dropna().astype(str).head(3).tolist()
                wrong.append(f"{name} (a number in training, text here: {example})")
        elif kind == CATEGORY and numeric:
            logger.info("Clinical column '%s' holds only numbers; read as categories.", name)
            table[name] = _as_category(values)
    if wrong:
        raise CohortError(
            f"{source}: the clinical column(s) {', '.join(wrong)} do not match what the model "
            "was trained on."
        )
    return table


def risk_thresholds(
    predictions: pd.DataFrame, threshold_splits: list[str] | tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Each model's Youden threshold from its training predictions (the evaluation's rule).

    Returns
    -------
    dict
        ``{model: {"threshold": float | None, "chosen_on": split | None}}``; ``None`` where no
        threshold could be chosen (training predictions of one outcome only).
    """
    chosen = choose_thresholds(predictions, threshold_splits)
    return {
        model: {
            "threshold": float(value) if math.isfinite(value) else None,
            "chosen_on": split,
        }
        for model, (value, split) in chosen.items()
    }
