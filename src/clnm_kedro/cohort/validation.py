"""Check a cohort folder against the input contract (docs/input_contract.md).

Two outcomes, never a silent drop:

- a problem that makes the whole run meaningless raises :class:`CohortError` naming the file
  and the rows or patients (missing required column, duplicate ``patient_id``, a patient in two
  centres, a label other than 0/1, an unknown sex code, a non-numeric or impossible age or size,
  an unknown view name or patient in ``rois.csv``...);
- a problem with one patient's images or boxes excludes that patient and returns an exclusion
  record ``patient_id, center, clnm, view, file, reason`` for the data-quality report.
"""

from __future__ import annotations

import logging
import math
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pandera.pandas as pa

from clnm_kedro.cohort.errors import CohortError, ImageReadError
from clnm_kedro.cohort.images import image_size
from clnm_kedro.cohort.roi import box_problem
from clnm_kedro.cohort.schemas import (
    BINARY_INDICATORS,
    BOX_COLUMNS,
    DEFAULT_INDICATORS,
    IDENTITY_COLUMNS,
    REQUIRED_CLINICAL_COLUMNS,
    REQUIRED_INDICATORS,
    ROI_COLUMNS,
    VIEWS,
    clinical_schema,
    failure_messages,
    roi_schema,
)

logger = logging.getLogger(__name__)

EXCLUSION_COLUMNS = ("patient_id", "center", "clnm", "view", "file", "reason")
MANIFEST_COLUMNS = (
    "patient_id", "center", "clnm", "view", "file", "path", "height", "width", *BOX_COLUMNS,
)  # fmt: skip
_SHOWN_PROBLEMS = 25
# A box coordinate beyond this (int32) lies outside any image a reader accepts.
MAX_COORDINATE = 2**31 - 1


class CohortFiles(Protocol):
    """What validation needs from a cohort folder (``RawCohort`` provides it)."""

    root: Path

    def image_candidates(self, patient_id: str, view: str) -> list[Path]:
        """Files that could hold ``view`` of ``patient_id``."""

    def relative(self, path: Path) -> str:
        """``path`` relative to the cohort folder."""


def empty_exclusions() -> pd.DataFrame:
    """An exclusion table with no rows and the right columns."""
    return pd.DataFrame({name: pd.Series(dtype="object") for name in EXCLUSION_COLUMNS})


def exclusion_table(records: list[dict[str, object]]) -> pd.DataFrame:
    """Exclusion records as a table with columns ``EXCLUSION_COLUMNS``."""
    if not records:
        return empty_exclusions()
    table = pd.DataFrame.from_records(records, columns=list(EXCLUSION_COLUMNS))
    table["clnm"] = table["clnm"].astype("Int64")
    return table


def _raise(problems: list[str], source: str, headline: str) -> None:
    if not problems:
        return
    shown = problems[:_SHOWN_PROBLEMS]
    more = len(problems) - len(shown)
    lines = "\n  - ".join(shown)
    tail = f"\n  ... and {more} more" if more > 0 else ""
    raise CohortError(f"{source}: {headline} ({len(problems)} problem(s)):\n  - {lines}{tail}")


def _clean_text(raw: pd.DataFrame) -> pd.DataFrame:
    """Cells as stripped text, empty cells as missing (``None``); column names stripped."""
    table = pd.DataFrame(index=raw.index)
    for column in raw.columns:
        values = raw[column]
        present = values.notna()
        text = pd.Series(None, index=raw.index, dtype=object)
        text[present] = values[present].astype(str).str.strip()
        text[text == ""] = None
        table[str(column).strip()] = text
    return table


def _check_separator(table: pd.DataFrame, source: str) -> None:
    """A one-column header holding ';' or tabs: the file was saved with another separator."""
    if len(table.columns) != 1:
        return
    header = str(table.columns[0])
    for separator, name in ((";", "semicolons"), ("\t", "tabs")):
        if separator in header:
            raise CohortError(
                f"{source} is separated by {name} (its header is {header!r}); the input "
                "contract needs commas between columns (in Excel: save as 'CSV UTF-8 (comma "
                "delimited)')"
            )


def _row_labels(table: pd.DataFrame) -> dict[int, str]:
    """Row index → "patient P007 (line 9)" (line numbers as in a text editor, header = 1)."""
    labels = {}
    for row, patient in zip(table.index, table["patient_id"], strict=True):
        who = f"patient {patient}" if isinstance(patient, str) else "a row with no patient_id"
        labels[int(row)] = f"{who} (line {int(row) + 2})"
    return labels


def _parse_numbers(
    table: pd.DataFrame,
    column: str,
    labels: dict[int, str],
    problems: list[str],
    bad_cells: set[tuple[int, str]],
) -> pd.Series:
    text = table[column]
    numbers = pd.to_numeric(text, errors="coerce").astype(float)
    for row in table.index[text.notna() & numbers.isna()]:
        problems.append(f"{labels[int(row)]}: {column} = {text[row]!r} is not a number")
        bad_cells.add((int(row), column))
    _check_finite(table, column, numbers, labels=labels, problems=problems, bad_cells=bad_cells)
    return numbers


def _check_finite(
    table: pd.DataFrame,
    column: str,
    numbers: pd.Series,
    *,
    labels: dict[int, str],
    problems: list[str],
    bad_cells: set[tuple[int, str]],
) -> None:
    """``inf``, ``-inf`` or ``1e999`` parse as numbers but no model can use them."""
    for row in table.index[np.isinf(numbers.to_numpy(dtype=float))]:
        problems.append(f"{labels[int(row)]}: {column} = {table.at[row, column]!r} is not finite")
        bad_cells.add((int(row), column))


def _indicator_list(clinical_columns: Sequence[str] | None) -> list[str]:
    if clinical_columns is None:
        return list(DEFAULT_INDICATORS)
    if isinstance(clinical_columns, str) or not all(
        isinstance(name, str) for name in clinical_columns
    ):
        raise CohortError(
            f"preprocessing.clinical_columns must be a list of column names, got "
            f"{clinical_columns!r}"
        )
    return [name for name in dict.fromkeys(clinical_columns) if name not in IDENTITY_COLUMNS]


def validate_clinical(
    raw: pd.DataFrame,
    clinical_columns: Sequence[str] | None = None,
    require_labels: bool = True,
    source: str = "clinical.csv",
) -> pd.DataFrame:
    """Validate ``clinical.csv`` (read as text) and return the typed table carried downstream.

    Parameters
    ----------
    raw
        The table as read, every cell text or missing.
    clinical_columns
        The indicators to carry besides ``patient_id, center, clnm`` (``None``: the contract's
        required and optional ones). A named column that is absent is skipped with a log line,
        unless it is required (then the run stops). Columns not named are dropped.
    require_labels
        Whether every patient must have ``clnm`` (false only for a cohort sent to inference).
    source
        How the file is named in messages.

    Returns
    -------
    pandas.DataFrame
        ``patient_id`` (str), ``center`` (str), ``clnm`` (Int64) and the named indicators that
        exist: age, tumor_size_mm and numeric extras as float; sex "F"/"M"; binary indicators as
        Int64 (missing allowed); location and text extras as str (missing allowed).

    Raises
    ------
    CohortError
        On any problem that makes the cohort unusable, listing every offending row.
    """
    table = _clean_text(raw)
    missing = [name for name in REQUIRED_CLINICAL_COLUMNS if name not in table.columns]
    if missing:
        _check_separator(table, source)
        raise CohortError(
            f"{source} lacks the required column(s) {missing}; the input contract needs "
            f"{list(REQUIRED_CLINICAL_COLUMNS)} (it has {list(table.columns)})"
        )
    if table.empty:
        raise CohortError(f"{source} has no patients: it has a header row but no data rows")
    wanted = _indicator_list(clinical_columns)
    indicators = [name for name in wanted if name in table.columns]
    for name in wanted:
        if name not in table.columns:
            logger.info("Clinical column '%s' is not in %s: skipped.", name, source)
    table = table.reset_index(drop=True)
    labels = _row_labels(table)

    # Identity: every row needs an id; one id is one patient in one centre.
    problems = [
        f"{labels[int(row)]}: patient_id is empty"
        for row in table.index[table["patient_id"].isna()]
    ]
    _raise(problems, source, "every row needs a patient_id")
    repeated = table[table["patient_id"].duplicated(keep=False)]
    for patient, rows in repeated.groupby("patient_id", sort=True):
        lines = ", ".join(str(int(row) + 2) for row in rows.index)
        centers = sorted(rows["center"].fillna("(empty)").unique())
        if len(centers) > 1:
            problems.append(
                f"patient {patient} is in two centres ({', '.join(centers)}; lines {lines})"
            )
        else:
            problems.append(f"duplicate patient_id {patient} (lines {lines})")
    _raise(problems, source, "each patient_id must appear once, in one centre")

    # Parse numbers (per-row messages for text that is not a number).
    parsed = pd.DataFrame(index=table.index)
    parsed["patient_id"] = table["patient_id"].astype(object)
    parsed["center"] = table["center"].astype(object)
    bad_cells: set[tuple[int, str]] = set()
    parsed["clnm"] = _parse_numbers(table, "clnm", labels, problems, bad_cells)
    numeric_extras = []
    for name in indicators:
        if name in ("age", "tumor_size_mm", *BINARY_INDICATORS):
            parsed[name] = _parse_numbers(table, name, labels, problems, bad_cells)
        elif name == "sex":
            parsed[name] = table[name].str.upper().astype(object)
        elif name == "location":
            parsed[name] = table[name].str.lower().astype(object)
        elif name not in REQUIRED_INDICATORS:  # a user-named extra indicator
            numbers = pd.to_numeric(table[name], errors="coerce")
            if table[name].notna().any() and numbers[table[name].notna()].notna().all():
                _check_finite(
                    table,
                    name,
                    numbers.astype(float),
                    labels=labels,
                    problems=problems,
                    bad_cells=bad_cells,
                )
                parsed[name] = numbers.astype(float)
                numeric_extras.append(name)
                logger.info("Extra clinical column '%s' is carried as a number.", name)
            else:
                parsed[name] = table[name].astype(object)
                logger.info("Extra clinical column '%s' is carried as a category.", name)

    schema = clinical_schema(indicators, require_labels, numeric_extras)
    try:
        schema.validate(parsed, lazy=True)
    except pa.errors.SchemaErrors as error:
        problems.extend(failure_messages(error, table, labels, bad_cells))
    _raise(problems, source, "invalid values")

    for name in ("clnm", *[n for n in indicators if n in BINARY_INDICATORS]):
        parsed[name] = parsed[name].astype("Int64")
    for name in parsed.columns:
        if parsed[name].dtype == object:
            parsed[name] = parsed[name].where(parsed[name].notna(), None)
    return parsed


def validate_rois(
    raw: pd.DataFrame, clinical: pd.DataFrame, source: str = "rois.csv"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate ``rois.csv`` (read as text) against the validated clinical table.

    Returns
    -------
    boxes
        One row per usable (patient, view): ``patient_id, view, x_min, y_min, x_max, y_max``
        (ints; fractional coordinates are rounded outwards).
    exclusions
        One record per patient and view with a missing, duplicated, non-numeric, empty or
        inverted box.

    Raises
    ------
    CohortError
        A required column is missing, a row has no patient_id, an unknown view name, or a
        patient who is not in clinical.csv.
    """
    table = _clean_text(raw)
    missing = [name for name in ROI_COLUMNS if name not in table.columns]
    if missing:
        _check_separator(table, source)
        raise CohortError(
            f"{source} lacks the required column(s) {missing}; the input contract needs "
            f"{list(ROI_COLUMNS)} (it has {list(table.columns)})"
        )
    table = table.reset_index(drop=True)
    table["view"] = table["view"].str.lower()
    labels = _row_labels(table)
    parsed = table[list(ROI_COLUMNS)].copy()
    for name in BOX_COLUMNS:
        parsed[name] = pd.to_numeric(table[name], errors="coerce").astype(float)
    try:
        roi_schema(clinical["patient_id"]).validate(parsed, lazy=True)
    except pa.errors.SchemaErrors as error:
        _raise(failure_messages(error, table, labels), source, "invalid rows")

    patients = clinical.set_index("patient_id")
    records: list[dict[str, object]] = []
    boxes: list[dict[str, object]] = []

    def exclude(patient: str, view: str, reason: str) -> None:
        records.append(
            {
                "patient_id": patient,
                "center": patients.at[patient, "center"],
                "clnm": patients.at[patient, "clnm"],
                "view": view,
                "file": Path(source).name,
                "reason": reason,
            }
        )

    grouped = {key: rows for key, rows in table.groupby(["patient_id", "view"], sort=False)}
    for patient in clinical["patient_id"]:
        for view in VIEWS:
            rows = grouped.get((patient, view))
            if rows is None:
                exclude(patient, view, f"no ROI row for the {view} view in {Path(source).name}")
                continue
            if len(rows) > 1:
                lines = ", ".join(str(int(row) + 2) for row in rows.index)
                exclude(patient, view, f"{len(rows)} ROI rows for the {view} view (lines {lines})")
                continue
            row = rows.index[0]
            values = parsed.loc[row, list(BOX_COLUMNS)]
            bad = [
                f"{name}={table.at[row, name]!r}" for name in BOX_COLUMNS if pd.isna(values[name])
            ]
            if bad:
                exclude(patient, view, f"box coordinate(s) not numbers: {', '.join(bad)}")
                continue
            if not np.isfinite(values.to_numpy(dtype=float)).all():
                exclude(patient, view, "box coordinates must be finite numbers")
                continue
            huge = [
                f"{name}={table.at[row, name]}"
                for name in BOX_COLUMNS
                if abs(values[name]) > MAX_COORDINATE
            ]
            if huge:
                exclude(
                    patient,
                    view,
                    f"box coordinate(s) out of range: {', '.join(huge)} (no image is that large)",
                )
                continue
            box = (
                math.floor(values["x_min"]),
                math.floor(values["y_min"]),
                math.ceil(values["x_max"]),
                math.ceil(values["y_max"]),
            )
            problem = box_problem(box)
            if problem:
                exclude(patient, view, problem)
                continue
            boxes.append(
                {"patient_id": patient, "view": view, **dict(zip(BOX_COLUMNS, box, strict=True))}
            )
    box_table = pd.DataFrame.from_records(boxes, columns=["patient_id", "view", *BOX_COLUMNS])
    return box_table.astype({name: int for name in BOX_COLUMNS}), exclusion_table(records)


def _similar_folder(folder: Path) -> str:
    """A hint when a folder of the same name in another letter case or Unicode form exists."""
    parent = folder.parent
    if not parent.is_dir():
        return ""

    def key(name: str) -> str:
        return unicodedata.normalize("NFC", name)

    for other in sorted(p.name for p in parent.iterdir() if p.is_dir()):
        if other != folder.name and key(other) == key(folder.name):
            return (
                f" (there is images/{other}/, the same letters in another Unicode "
                "normalisation (NFC/NFD, e.g. a folder name written by macOS): rename the "
                "folder or the patient_id so that both use the same form, NFC)"
            )
    others = sorted(
        p.name
        for p in parent.iterdir()
        if p.is_dir() and key(p.name).casefold() == key(folder.name).casefold()
    )
    if not others:
        return ""
    return f" (there is images/{others[0]}/: folder names must match patient_id exactly)"


def _outside(path: Path, root: Path) -> str:
    """A reason when ``path`` (or a folder on its way) is a link to outside the cohort."""
    target = path.resolve()
    if target.is_relative_to(root.resolve()):
        return ""
    return (
        "the file is a symbolic link to outside the cohort folder; links out of the cohort "
        "are not followed: copy the image into the cohort folder"
    )


def check_image_files(
    files: CohortFiles,
    clinical: pd.DataFrame,
    boxes: pd.DataFrame,
    excluded_patients: Sequence[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Find each patient's two image files and check them from their headers (no decoding).

    Every patient and view is checked, also for patients already excluded for a bad box, so
    that the data-quality report lists all problems at once.

    Parameters
    ----------
    files
        The cohort folder.
    clinical
        The validated clinical table (patients in this order).
    boxes
        Usable boxes from :func:`validate_rois`.
    excluded_patients
        Patients already excluded; they are checked but left out of the manifest.

    Returns
    -------
    manifest
        Two rows per patient whose files and boxes are all usable (``MANIFEST_COLUMNS``;
        ``file`` is relative to the cohort folder, ``path`` absolute), in clinical order.
    exclusions
        One record per patient and view with a missing, repeated, empty or unreadable file, or
        a box that does not lie inside its image.
    """
    box_of = {
        (row.patient_id, row.view): tuple(int(getattr(row, name)) for name in BOX_COLUMNS)
        for row in boxes.itertuples(index=False)
    }
    excluded = set(excluded_patients)
    records: list[dict[str, object]] = []
    manifest: list[dict[str, object]] = []
    for patient in clinical.itertuples(index=False):
        pid = patient.patient_id
        found = []
        for view in VIEWS:
            expected = f"images/{pid}/{view}.png|.jpg|.jpeg|.dcm"
            reason, file = "", expected
            try:
                candidates = files.image_candidates(pid, view)
                folder = files.root / "images" / pid
                if not candidates:
                    reason = (
                        f"no image folder images/{pid}/{_similar_folder(folder)}"
                        if not folder.is_dir()
                        else f"no image file for the {view} view"
                    )
            except OSError as error:  # e.g. an ID too long for a file name
                candidates = []
                reason = f"cannot look for its image folder: {error.strerror or error}"
            if len(candidates) > 1:
                names = ", ".join(files.relative(path) for path in candidates)
                reason = f"{len(candidates)} files for the {view} view ({names}); keep one"
            elif candidates:
                path = candidates[0]
                file = files.relative(path)
                try:
                    reason = _outside(path, files.root)
                    if reason:
                        raise ImageReadError(pid, path, reason)
                    height, width = image_size(path, pid)
                except ImageReadError as error:
                    reason = error.reason
                else:
                    box = box_of.get((pid, view))
                    if box is not None:
                        reason = box_problem(box, height, width)
                    if not reason:
                        found.append((view, file, path, height, width, box))
            if reason:
                records.append(
                    {
                        "patient_id": pid,
                        "center": patient.center,
                        "clnm": patient.clnm,
                        "view": view,
                        "file": file,
                        "reason": reason,
                    }
                )
        usable = len(found) == len(VIEWS) and all(item[-1] is not None for item in found)
        if usable and pid not in excluded:
            for view, file, path, height, width, box in found:
                manifest.append(
                    {
                        "patient_id": pid,
                        "center": patient.center,
                        "clnm": patient.clnm,
                        "view": view,
                        "file": file,
                        "path": str(path),
                        "height": height,
                        "width": width,
                        **dict(zip(BOX_COLUMNS, box, strict=True)),
                    }
                )
    manifest_table = pd.DataFrame.from_records(manifest, columns=list(MANIFEST_COLUMNS))
    return manifest_table, exclusion_table(records)
