"""The predictions table: gathering the models' tables, validating them, pairing models.

Every model pipeline writes rows ``patient_id, center, split, model, clnm, probability``
(docs/output_contract.md); ``split`` is ``train`` (model fitted on all training data, scored
on it: the apparent, resubstitution performance), ``train_cv`` (out-of-fold) or ``external``.
This module joins them into one table and refuses tables that would make the evaluation
wrong (a clear message names the model and the
patients).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from clnm_kedro.registry import MODEL_LABELS, MODEL_NAMES

__all__ = [
    "MODEL_LABELS",
    "MODEL_ORDER",
    "PREDICTION_COLUMNS",
    "SPLIT_LABELS",
    "SPLIT_ORDER",
    "PredictionTableError",
    "gather_predictions",
    "model_label",
    "models_in",
    "paired_scores",
    "shown_split",
    "split_label",
    "split_rows",
]

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "center",
    "split",
    "model",
    "clnm",
    "probability",
)
SPLIT_ORDER: tuple[str, ...] = ("train", "train_cv", "external")
SPLIT_LABELS: dict[str, str] = {
    "train": "Training centres (apparent)",
    "train_cv": "Training centres (out-of-fold)",
    "external": "External test set",
}
# Each split as the subject of a sentence ("This <subject> (154 patients, ...) can detect ...").
SPLIT_SUBJECTS: dict[str, str] = {
    "train": "apparent-fit training-centre set",
    "train_cv": "out-of-fold training-centre set",
    "external": "external test set",
}
# The models in the report's order, and their names there (clnm_kedro.registry declares them).
MODEL_ORDER: tuple[str, ...] = MODEL_NAMES

_SHOWN = 5


class PredictionTableError(ValueError):
    """A predictions table that cannot be evaluated as it is."""


def model_label(model: str) -> str:
    """Readable name of a model (the study's wording), or the model id itself."""
    return MODEL_LABELS.get(model, model)


def split_label(split: str) -> str:
    """Readable name of a split, or the split id itself."""
    return SPLIT_LABELS.get(split, split)


def split_subject(split: str) -> str:
    """A split as the subject of a sentence after "This" (e.g. ``external test set``)."""
    return SPLIT_SUBJECTS.get(split, f"{split} set")


def _listed(values: list[str] | pd.Index | np.ndarray) -> str:
    values = [str(value) for value in values]
    more = f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else ""
    return ", ".join(values[:_SHOWN]) + more


def _model_rank(model: str) -> int:
    return MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)


def models_in(predictions: pd.DataFrame, split: str | None = None) -> list[str]:
    """Models present (in ``split`` if given), in the study's order, then alphabetically."""
    rows = predictions if split is None else predictions[predictions["split"] == split]
    return sorted(rows["model"].unique().tolist(), key=lambda m: (_model_rank(m), m))


def _describe(table: pd.DataFrame, position: int) -> str:
    if "model" in table.columns and len(table):
        return f"predictions table {position} (model(s) {_listed(table['model'].unique())})"
    return f"predictions table {position}"


def _check_table(table: object, position: int) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise PredictionTableError(
            f"predictions table {position} is a {type(table).__name__}, not a pandas DataFrame."
        )
    missing = [column for column in PREDICTION_COLUMNS if column not in table.columns]
    if missing:
        raise PredictionTableError(
            f"{_describe(table, position)} lacks column(s) {missing}; every predictions table "
            f"needs {list(PREDICTION_COLUMNS)}."
        )
    return table.loc[:, list(PREDICTION_COLUMNS)].copy()


def _check_values(table: pd.DataFrame) -> pd.DataFrame:
    for column in ("patient_id", "center", "split", "model"):
        empty = table[column].isna()
        if empty.any():
            rows = table[empty]
            raise PredictionTableError(
                f"Column {column!r} is empty in {int(empty.sum())} row(s) of the predictions "
                f"(model(s) {_listed(rows['model'].dropna().unique())}, patient(s) "
                f"{_listed(rows['patient_id'].dropna().unique())})."
            )
        table[column] = table[column].astype(str)

    bad_split = ~table["split"].isin(SPLIT_ORDER)
    if bad_split.any():
        rows = table[bad_split]
        raise PredictionTableError(
            f"Unknown split(s) {_listed(rows['split'].unique())} in the predictions of model(s) "
            f"{_listed(rows['model'].unique())}; split must be one of {list(SPLIT_ORDER)}."
        )

    labels = pd.to_numeric(table["clnm"], errors="coerce")
    bad_label = ~labels.isin((0, 1))
    if bad_label.any():
        rows = table[bad_label]
        raise PredictionTableError(
            "clnm must be 0 or 1 in every predictions row; model(s) "
            f"{_listed(rows['model'].unique())} have {_listed(rows['clnm'].astype(str).unique())} "
            f"for patient(s) {_listed(rows['patient_id'].unique())}."
        )
    table["clnm"] = labels.astype(np.int64)

    probability = pd.to_numeric(table["probability"], errors="coerce")
    bad_probability = ~probability.between(0.0, 1.0)  # also catches NaN and text
    if bad_probability.any():
        rows = table[bad_probability]
        examples = [
            f"{model}/{patient}: {value}"
            for model, patient, value in zip(
                rows["model"], rows["patient_id"], rows["probability"], strict=True
            )
        ]
        raise PredictionTableError(
            "probability must be a number in [0, 1]; "
            f"{len(rows)} row(s) are not (model/patient: value): {_listed(examples)}."
        )
    table["probability"] = probability.astype(np.float64)
    return table


def _check_consistency(table: pd.DataFrame) -> None:
    repeated = table.duplicated(["patient_id", "model", "split"], keep=False)
    if repeated.any():
        rows = table[repeated].drop_duplicates(["patient_id", "model", "split"])
        examples = [
            f"{model}/{split}/{patient}"
            for model, split, patient in zip(
                rows["model"], rows["split"], rows["patient_id"], strict=True
            )
        ]
        raise PredictionTableError(
            "Each patient may have one prediction per model and split; repeated "
            f"(model/split/patient): {_listed(examples)}."
        )

    label_counts = table.groupby("patient_id")["clnm"].nunique()
    disagreeing = label_counts.index[label_counts > 1]
    if len(disagreeing):
        patient = disagreeing[0]
        rows = table[table["patient_id"] == patient]
        detail = ", ".join(
            f"{model} ({split}) says {label}"
            for model, split, label in zip(rows["model"], rows["split"], rows["clnm"], strict=True)
        )
        raise PredictionTableError(
            f"The models disagree on the CLNM label of {len(disagreeing)} patient(s) "
            f"({_listed(disagreeing)}); patient {patient}: {detail}. Every model must be "
            "scored against the same outcome."
        )

    center_counts = table.groupby("patient_id")["center"].nunique()
    moved = center_counts.index[center_counts > 1]
    if len(moved):
        raise PredictionTableError(
            f"Patient(s) {_listed(moved)} are listed under more than one centre in the predictions."
        )

    external = set(table.loc[table["split"] == "external", "patient_id"])
    training = set(table.loc[table["split"] != "external", "patient_id"])
    both = sorted(external & training)
    if both:
        raise PredictionTableError(
            f"Patient(s) {_listed(both)} appear both in the external test set and in the "
            "training data; the external centre must stay apart from everything fitted."
        )


def gather_predictions(*tables: pd.DataFrame) -> pd.DataFrame:
    """Join the models' predictions tables into one validated table.

    Parameters
    ----------
    *tables
        Any number of tables with columns :data:`PREDICTION_COLUMNS`. Empty tables (a model
        not built in this run) are skipped with a log line.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PREDICTION_COLUMNS`, sorted by model (study order), split and patient.

    Raises
    ------
    PredictionTableError
        On a missing column, an empty identifier, an unknown split, a label other than 0/1, a
        probability outside [0, 1], a repeated patient/model/split, patients whose label
        differs between models, or a patient both in training and external data.
    """
    checked: list[pd.DataFrame] = []
    for position, table in enumerate(tables, start=1):
        if isinstance(table, pd.DataFrame) and table.empty:
            logger.info("Predictions table %d is empty and is left out.", position)
            continue
        checked.append(_check_table(table, position))
    if not checked:
        raise PredictionTableError("There are no predictions to evaluate: every table is empty.")
    combined = _check_values(pd.concat(checked, ignore_index=True))
    _check_consistency(combined)

    combined["_model_rank"] = combined["model"].map(_model_rank)
    combined["_split_rank"] = combined["split"].map(SPLIT_ORDER.index)
    combined = combined.sort_values(
        ["_model_rank", "model", "_split_rank", "patient_id"], kind="stable"
    ).drop(columns=["_model_rank", "_split_rank"])
    combined = combined.reset_index(drop=True)
    for model in models_in(combined):
        rows = combined[combined["model"] == model]
        counts = ", ".join(
            f"{split} {n}" for split, n in rows["split"].value_counts().sort_index().items()
        )
        logger.info("Predictions of %s: %s patients.", model_label(model), counts)
    return combined


def split_rows(predictions: pd.DataFrame, model: str, split: str) -> pd.DataFrame:
    """Rows of one model in one split (may be empty)."""
    mask = (predictions["model"] == model) & (predictions["split"] == split)
    return predictions.loc[mask]


def shown_split(predictions: pd.DataFrame, model: str, split: str) -> str:
    """The split whose rows stand for ``split`` of ``model`` in tables and figures.

    The training centres are shown by their out-of-fold (``train_cv``) predictions; a model
    without them (only a resubstitution fit) falls back to its ``train`` rows, which every
    table and figure then labels "apparent". Other splits are themselves.
    """
    if split == "train_cv" and split_rows(predictions, model, "train_cv").empty:
        return "train"
    return split


def paired_scores(
    predictions: pd.DataFrame, split: str, model_a: str, model_b: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and both models' probabilities on the patients scored by both, in one order.

    Returns
    -------
    tuple
        ``(y, probability_a, probability_b)``, aligned by patient.
    """
    a = split_rows(predictions, model_a, split).set_index("patient_id")
    b = split_rows(predictions, model_b, split).set_index("patient_id")
    common = a.index.intersection(b.index).sort_values()
    if len(common) < max(len(a), len(b)):
        logger.warning(
            "%s and %s were scored on different %s patients; they are compared on the %d "
            "patients both scored.",
            model_label(model_a),
            model_label(model_b),
            split_label(split).lower(),
            len(common),
        )
    return (
        a.loc[common, "clnm"].to_numpy(dtype=np.int64),
        a.loc[common, "probability"].to_numpy(dtype=np.float64),
        b.loc[common, "probability"].to_numpy(dtype=np.float64),
    )
