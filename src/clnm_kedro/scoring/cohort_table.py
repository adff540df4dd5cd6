"""A cohort as one flat table: what the packaged model reads, and what a folder turns into.

The table has one row per patient: the columns of ``clinical.csv`` (``clnm`` may be left out
or empty) and, for each view, its image file and ROI box::

    patient_id, center, age, sex, tumor_size_mm, ...,
    longitudinal_image, longitudinal_x_min, longitudinal_y_min, longitudinal_x_max,
    longitudinal_y_max, transverse_image, transverse_x_min, ..., transverse_y_max

Cells may be text or numbers (they are read as text, as the cohort files are). An image cell
is a file path, or the image itself as a ``data:`` URI (RFC 2397, base64:
``data:image/png;base64,...``; ``image/jpeg`` and ``application/dicom`` too), so a table can
travel without its files (the packaged model's input example, a request to a served model):
:func:`embed_image` writes one, and :func:`cohort_from_table` stores each embedded image once in
a private temporary folder of the process, named by its content, and reads it from there (the
folder is removed when the process ends). A cell holding
several values separated by ``|`` stands for a view with several files or several box rows in
the cohort folder: the patient is then excluded, exactly as from the folder.

:func:`flatten_cohort` turns a cohort folder into this table; :func:`cohort_from_table` turns
the table into a :class:`TableCohort`, which the preprocessing validation reads as it reads a
cohort folder (same checks, same exclusions, same messages).
"""

from __future__ import annotations

import atexit
import base64
import binascii
import hashlib
import math
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from clnm_kedro.cohort.errors import CohortError
from clnm_kedro.cohort.schemas import BOX_COLUMNS, VIEWS
from clnm_kedro.datasets.cohort_dataset import RawCohort

VIEW_FIELDS: tuple[str, ...] = ("image", *BOX_COLUMNS)
SEPARATOR = "|"
_SHOWN = 10
# Media types of an embedded image and the file suffix it is read as (the input contract's).
EMBEDDED_TYPES: dict[str, str] = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "application/dicom": ".dcm",
}
_DATA_URI = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
_EMBEDDED_DIRS: list[Path] = []  # this process's folder of embedded images, made when needed


def embedded_images_dir() -> Path:
    """Where this process writes embedded images to read them: a private temporary folder
    (only this user may read it), removed when the process ends (patients' images are not
    left on disk)."""
    if not _EMBEDDED_DIRS:
        folder = Path(tempfile.mkdtemp(prefix="clnm_kedro_embedded_images_"))  # mode 0700
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _EMBEDDED_DIRS.append(folder)
    return _EMBEDDED_DIRS[0]


def view_columns(view: str) -> list[str]:
    """The table's columns of one view: ``<view>_image, <view>_x_min, ... <view>_y_max``."""
    return [f"{view}_{name}" for name in VIEW_FIELDS]


ALL_VIEW_COLUMNS: tuple[str, ...] = tuple(c for view in VIEWS for c in view_columns(view))


def _text(value: object) -> str | None:
    """A cell as stripped text; missing or empty cells as ``None``; 12.0 stays '12.0'."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


def _as_text(table: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text or ``None`` (as the cohort CSV files are read)."""
    text = pd.DataFrame(index=table.index)
    for column in table.columns:
        text[str(column).strip()] = pd.Series(
            [_text(value) for value in table[column]], index=table.index, dtype=object
        )
    return text.reset_index(drop=True)


def embed_image(path: Path) -> str:
    """An image file as a ``data:`` URI, for an image cell of the table."""
    path = Path(path)
    media = {suffix: media for media, suffix in EMBEDDED_TYPES.items()} | {".jpeg": "image/jpeg"}
    kind = media.get(path.suffix.lower())
    if kind is None:
        raise CohortError(f"{path}: only {sorted(media)} images can be embedded in a table")
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _embedded_file(cell: str, patient: str, view: str) -> Path:
    """The file an embedded image is read from (written once per content)."""
    match = _DATA_URI.match(cell)
    suffix = EMBEDDED_TYPES.get(match["type"].lower()) if match else None
    try:
        content = base64.b64decode(match["data"], validate=True) if suffix else None
    except (binascii.Error, ValueError):
        content = None
    if content is None:
        raise CohortError(
            f"Patient {patient!r}, {view}_image: an embedded image must be a base64 data URI of "
            f"one of {sorted(EMBEDDED_TYPES)} (data:image/png;base64,...); got {cell[:40]!r}..."
        )
    target = embedded_images_dir() / f"{hashlib.sha256(content).hexdigest()}{suffix}"
    if not target.is_file():
        partial = target.with_name(f"{target.name}.{threading.get_ident()}.part")
        partial.write_bytes(content)
        partial.replace(target)  # whole or absent, whichever thread writes it
    return target


def _image_file(cell: str, patient: str, view: str) -> Path:
    if cell.startswith("data:"):
        return _embedded_file(cell, patient, view)
    return Path(cell).expanduser()


def _parts(cell: str | None) -> list[str | None]:
    if cell is None:
        return []
    return [part.strip() or None for part in cell.split(SEPARATOR)]


@dataclass(frozen=True)
class TableCohort:
    """A cohort given as a flat table, read by the validation like a cohort folder.

    Attributes
    ----------
    root
        Folder that file names in messages are relative to (the cohort folder when the images
        follow its layout ``<root>/images/<patient_id>/<view>.<ext>``).
    clinical
        ``clinical.csv`` as text (``clnm`` added, empty, when the table has none).
    rois
        ``rois.csv`` as text, one row per patient, view and box.
    images
        Image files given for each ``(patient_id, view)``.
    """

    root: Path
    clinical: pd.DataFrame
    rois: pd.DataFrame
    images: dict[tuple[str, str], list[Path]] = field(default_factory=dict)

    def image_candidates(self, patient_id: str, view: str) -> list[Path]:
        """The files given for ``view`` of ``patient_id`` (none, one, or several)."""
        return list(self.images.get((patient_id, view), []))

    def relative(self, path: Path) -> str:
        """A path relative to :attr:`root` when it lies inside it, else as given."""
        try:
            return str(PurePosixPath(path.relative_to(self.root)))
        except ValueError:
            return str(path)


def _common_root(paths: list[Path]) -> Path:
    """The cohort folder when every image is ``<root>/images/<id>/<file>``, else their parent."""
    if not paths:
        return Path.cwd()
    roots = {path.parents[2] for path in paths if len(path.parents) > 2}
    if len(roots) == 1 and all(
        len(path.parents) > 2 and path.parents[1].name == "images" for path in paths
    ):
        return roots.pop()
    return Path(os.path.commonpath([str(path.parent) for path in paths]))


def cohort_from_table(table: pd.DataFrame) -> TableCohort:
    """Read a flat cohort table (module notes) as a cohort for the preprocessing validation.

    Raises
    ------
    CohortError
        If the table is not a table or lacks view columns (named).
    """
    if not isinstance(table, pd.DataFrame):
        raise CohortError(
            f"The cohort to score must be a table (pandas DataFrame); got {type(table).__name__}."
        )
    text = _as_text(table)
    missing = [column for column in ALL_VIEW_COLUMNS if column not in text.columns]
    if missing:
        raise CohortError(
            f"The cohort table lacks the image and box column(s) {missing}; each view needs "
            f"{view_columns(VIEWS[0])} (and the same for {', '.join(VIEWS[1:])})."
        )
    if "patient_id" not in text.columns:
        raise CohortError(
            f"The cohort table has no patient_id column; it has {list(text.columns)[:20]}."
        )
    clinical = text.drop(columns=list(ALL_VIEW_COLUMNS))
    if "clnm" not in clinical.columns:
        clinical["clnm"] = pd.Series(None, index=clinical.index, dtype=object)

    roi_rows: list[dict[str, str | None]] = []
    images: dict[tuple[str, str], list[Path]] = {}
    for record in text.to_dict(orient="records"):
        patient = record["patient_id"]
        if patient is None:
            continue  # the clinical validation names the row
        for view in VIEWS:
            paths = [
                _image_file(part, patient, view) for part in _parts(record[f"{view}_image"]) if part
            ]
            if paths:
                images[(patient, view)] = paths
            boxes = {name: _parts(record[f"{view}_{name}"]) for name in BOX_COLUMNS}
            n_boxes = max(len(parts) for parts in boxes.values())
            for index in range(n_boxes):
                cells = {
                    name: (parts[index] if index < len(parts) else None)
                    for name, parts in boxes.items()
                }
                roi_rows.append({"patient_id": patient, "view": view, **cells})
    rois = pd.DataFrame.from_records(roi_rows, columns=["patient_id", "view", *BOX_COLUMNS]).astype(
        object
    )
    root = _common_root([path for paths in images.values() for path in paths])
    return TableCohort(root=root, clinical=clinical, rois=rois, images=images)


def _named(items: list[str]) -> str:
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return f"{items[:_SHOWN]}{more}"


def flatten_cohort(cohort: RawCohort) -> pd.DataFrame:
    """A cohort folder (input contract) as the flat table of the module notes.

    Image paths are absolute. A view with several files or box rows keeps them all,
    separated by ``|``, so that the patient is excluded with the same reason as from the
    folder; a view with none is left empty.

    Raises
    ------
    CohortError
        If ``rois.csv`` lacks a column or has rows naming no patient of ``clinical.csv`` or an
        unknown view (as the folder's validation does).
    """
    clinical = cohort.clinical.copy()
    clinical.columns = [str(column).strip() for column in clinical.columns]
    rois = cohort.rois.copy()
    rois.columns = [str(column).strip() for column in rois.columns]
    source = str(cohort.root / "rois.csv")
    missing = [c for c in ("patient_id", "view", *BOX_COLUMNS) if c not in rois.columns]
    if missing:
        raise CohortError(
            f"{source} lacks the required column(s) {missing}; the input contract needs "
            f"{['patient_id', 'view', *BOX_COLUMNS]} (it has {list(rois.columns)})"
        )
    if "patient_id" not in clinical.columns:
        raise CohortError(
            f"{cohort.root / 'clinical.csv'} lacks the required column 'patient_id' "
            f"(it has {list(clinical.columns)})"
        )
    ids = clinical["patient_id"].map(_text)
    rois = rois.assign(
        patient_id=rois["patient_id"].map(_text),
        view=rois["view"].map(lambda value: (_text(value) or "").lower() or None),
    )
    known = set(ids.dropna())
    stray = [
        f"line {int(index) + 2} (patient {pid!r}, view {view!r})"
        for index, pid, view in zip(rois.index, rois["patient_id"], rois["view"], strict=True)
        if pid not in known or view not in VIEWS
    ]
    if stray:
        raise CohortError(
            f"{source}: {len(stray)} row(s) name no patient of clinical.csv or a view other "
            f"than {list(VIEWS)}: {_named(stray)}"
        )
    grouped = {key: rows for key, rows in rois.groupby(["patient_id", "view"], sort=False)}
    columns: dict[str, list[str | None]] = {column: [] for column in ALL_VIEW_COLUMNS}
    for patient in ids:
        for view in VIEWS:
            files = cohort.image_candidates(patient, view) if patient else []
            columns[f"{view}_image"].append(
                SEPARATOR.join(str(path.absolute()) for path in files) or None
            )
            rows = grouped.get((patient, view))
            for name in BOX_COLUMNS:
                cells = [] if rows is None else [_text(v) or "" for v in rows[name]]
                columns[f"{view}_{name}"].append(SEPARATOR.join(cells) if cells else None)
    table = clinical.reset_index(drop=True)
    for column, values in columns.items():
        table[column] = pd.Series(values, dtype=object)
    return table
