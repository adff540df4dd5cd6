"""Pandera schemas of the input contract's tables, after their text cells have been parsed.

The cohort tables are read as text (:func:`clnm_kedro.datasets.cohort_dataset.read_table`).
:mod:`clnm_kedro.cohort.validation` first turns numeric columns into numbers itself (so that
"age = 'abc'" is reported with its patient), then checks the parsed tables against these
schemas with ``lazy=True`` and turns every failure case into a message naming the patient.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import pandera.pandas as pa

from clnm_kedro.registry import VIEWS  # axis 1 of roi_crops, in this order

IDENTITY_COLUMNS = ("patient_id", "center", "clnm")
REQUIRED_INDICATORS = ("age", "sex", "tumor_size_mm")
REQUIRED_CLINICAL_COLUMNS = IDENTITY_COLUMNS + REQUIRED_INDICATORS
BINARY_INDICATORS = ("capsule_contact", "microcalcification", "hashimoto")
OPTIONAL_INDICATORS = (*BINARY_INDICATORS, "location")
DEFAULT_INDICATORS = REQUIRED_INDICATORS + OPTIONAL_INDICATORS

SEX_CODES = ("F", "M")
LOCATIONS = ("upper", "middle", "lower", "isthmus")
ROI_COLUMNS = ("patient_id", "view", "x_min", "y_min", "x_max", "y_max")
BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")

# Values outside these ranges are data-entry errors, not rare patients.
AGE_YEARS = (0.0, 120.0)  # 0 < age <= 120
TUMOR_SIZE_MM = (0.0, 100.0)  # 0 < size <= 100 (a thyroid nodule beyond 10 cm is a typo)

# A patient_id names its image folder: it must be one plain path component.
SAFE_PATIENT_ID = r"^(?!\.{1,2}$)[^/\\]+$"


def _binary(name: str, nullable: bool) -> pa.Column:
    return pa.Column(
        float,
        pa.Check.isin([0, 1], error=f"{name} must be 0 or 1"),
        nullable=nullable,
        required=True,
    )


def clinical_schema(
    indicators: Sequence[str],
    require_labels: bool = True,
    numeric_extras: Iterable[str] = (),
) -> pa.DataFrameSchema:
    """Schema of ``clinical.csv`` after parsing, restricted to the columns carried downstream.

    Parameters
    ----------
    indicators
        The clinical indicators carried (columns other than patient_id, center and clnm).
    require_labels
        Whether ``clnm`` must be filled for every patient.
    numeric_extras
        User-named extra indicators that were parsed as numbers (any other extra is text).

    Notes
    -----
    Binary columns (``clnm``, capsule contact, microcalcification, Hashimoto) are checked as
    floats, before being cast to nullable integers. ``strict=True``: a column that is not named
    is an error, so nothing unnamed can reach ``cohort_table``.
    """
    numeric_extras = set(numeric_extras)
    columns: dict[str, pa.Column] = {
        "patient_id": pa.Column(
            str,
            pa.Check.str_matches(
                SAFE_PATIENT_ID, error="patient_id must be a plain folder name (no / or \\)"
            ),
            nullable=False,
            unique=True,
        ),
        "center": pa.Column(str, nullable=False),
        "clnm": _binary("clnm", nullable=not require_labels),
    }
    for name in indicators:
        if name == "age":
            columns[name] = pa.Column(
                float,
                [
                    pa.Check.gt(AGE_YEARS[0], error=f"age must be above {AGE_YEARS[0]:g} years"),
                    pa.Check.le(AGE_YEARS[1], error=f"age must be at most {AGE_YEARS[1]:g} years"),
                ],
                nullable=False,
            )
        elif name == "tumor_size_mm":
            columns[name] = pa.Column(
                float,
                [
                    pa.Check.gt(TUMOR_SIZE_MM[0], error="tumor_size_mm must be above 0 mm"),
                    pa.Check.le(
                        TUMOR_SIZE_MM[1],
                        error=f"tumor_size_mm must be at most {TUMOR_SIZE_MM[1]:g} mm",
                    ),
                ],
                nullable=False,
            )
        elif name == "sex":
            columns[name] = pa.Column(
                str, pa.Check.isin(SEX_CODES, error="sex must be F or M"), nullable=False
            )
        elif name in BINARY_INDICATORS:
            columns[name] = _binary(name, nullable=True)
        elif name == "location":
            columns[name] = pa.Column(
                str,
                pa.Check.isin(LOCATIONS, error=f"location must be one of {', '.join(LOCATIONS)}"),
                nullable=True,
            )
        elif name in numeric_extras:
            columns[name] = pa.Column(float, nullable=True)
        else:
            columns[name] = pa.Column(str, nullable=True)
    return pa.DataFrameSchema(columns, strict=True, ordered=True, name="clinical.csv")


def roi_schema(known_patient_ids: Iterable[str]) -> pa.DataFrameSchema:
    """Schema of the fatal checks on ``rois.csv`` (box values are checked per patient)."""
    known = sorted(set(known_patient_ids))
    return pa.DataFrameSchema(
        {
            "patient_id": pa.Column(
                str,
                pa.Check.isin(known, error="patient_id is not in clinical.csv"),
                nullable=False,
            ),
            "view": pa.Column(
                str,
                pa.Check.isin(VIEWS, error=f"view must be {' or '.join(VIEWS)}"),
                nullable=False,
            ),
            **{name: pa.Column(float, nullable=True) for name in BOX_COLUMNS},
        },
        strict="filter",
        name="rois.csv",
    )


def failure_messages(
    error: pa.errors.SchemaErrors,
    raw: pd.DataFrame,
    label_of_row: dict[int, str],
    already_reported: set[tuple[int, str]] = frozenset(),
) -> list[str]:
    """Turn pandera's failure cases into one line per bad cell, naming the patient.

    Parameters
    ----------
    error
        Raised by ``schema.validate(..., lazy=True)``.
    raw
        The table as read (text), to quote each bad value as the user wrote it.
    label_of_row
        Row index → how to name the row ("patient P007 (line 9)").
    already_reported
        ``(row, column)`` cells already reported (e.g. as "not a number"): not repeated.
    """
    messages = []
    for case in error.failure_cases.itertuples(index=False):
        column, check, row = case.column, str(case.check), case.index
        if row is None or pd.isna(row):
            messages.append(f"column {column}: {check} ({case.failure_case})")
            continue
        row = int(row)
        if (row, column) in already_reported:
            continue
        where = label_of_row.get(row, f"row {row}")
        value = raw.at[row, column] if column in raw.columns else case.failure_case
        if check == "not_nullable":
            messages.append(f"{where}: {column} is empty")
        elif check == "field_uniqueness":
            messages.append(f"{where}: {column} {value!r} appears more than once")
        else:
            shown = "(empty)" if pd.isna(value) else repr(value)
            messages.append(f"{where}: {column} = {shown} — {check}")
    return list(dict.fromkeys(messages))
