"""A cohort folder in the input contract (docs/input_contract.md), as one read-only Kedro dataset.

Loading returns a :class:`RawCohort`: the two tables read as text (so that validation can say
exactly which patient has a bad value) and a way to find each patient's image files. Images are
not read here; preprocessing streams them one at a time.

Saving is only for the simulator: the object saved must know how to write itself
(``data.write(path)``), and it is that object's job never to overwrite an existing cohort.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import TablePreview

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")


class WritableCohort(Protocol):
    """Anything that can write a cohort folder (the simulator's cohort)."""

    def write(self, cohort_dir: Path) -> None:
        """Write the cohort folder, refusing to overwrite an existing one."""


def read_table(path: Path) -> pd.DataFrame:
    """Read a contract CSV with every cell as text; empty cells become missing values.

    Raises
    ------
    DatasetError
        The file is empty, not UTF-8 text, not a CSV table, or names a column twice (pandas
        would silently rename the second one).
    """
    raw = path.read_bytes()
    if not raw:
        raise DatasetError(f"'{path}' is empty (0 bytes); it needs a header row and data rows.")
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Excel's "CSV UTF-8") is fine
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DatasetError(
            f"'{path}' is not UTF-8 text (byte 0x{raw[error.start]:02x} on line {line}); "
            "save it as UTF-8 (in Excel: 'CSV UTF-8 (comma delimited)')."
        ) from error
    if "\x00" in text:
        raise DatasetError(_nul_message(path, text))
    header = next(csv.reader(io.StringIO(text)), [])
    names = [name.strip() for name in header]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DatasetError(
            f"'{path}' has the column(s) {repeated} more than once; each column must appear once."
        )
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DatasetError(f"Cannot read '{path}' as a CSV table: {error}") from error


def _nul_message(path: Path, text: str) -> str:
    """Where the first NUL byte is: pandas would silently cut the cell there (``4\\0 5`` → 4)."""
    offset = text.index("\x00")
    line = text.count("\n", 0, offset) + 1
    lines = text.splitlines()
    header = [name.strip() for name in next(csv.reader(lines[:1]), [])]
    cells = next(csv.reader([lines[line - 1]]), []) if line > 1 else []
    column = header.index("patient_id") if "patient_id" in header else -1
    patient = cells[column].replace("\x00", "\\0") if 0 <= column < len(cells) else ""
    who = f" (patient {patient})" if patient else ""
    return (
        f"'{path}' holds a NUL byte (\\0) on line {line}{who}; a CSV cell cannot contain one "
        "(it is often the sign of a file saved as UTF-16 or a damaged export): remove it."
    )


@dataclass(frozen=True)
class RawCohort:
    """A cohort folder as found on disk: its tables as text, its images as paths."""

    root: Path
    clinical: pd.DataFrame
    rois: pd.DataFrame

    def image_candidates(self, patient_id: str, view: str) -> list[Path]:
        """All files that could hold ``view`` of ``patient_id`` (contract names, in any case)."""
        folder = self.root / "images" / patient_id
        if not folder.is_dir():  # OSError for a name the file system cannot hold
            return []
        return sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.stem.lower() == view and p.suffix.lower() in IMAGE_SUFFIXES
        )

    def relative(self, path: Path) -> str:
        """A path relative to the cohort folder, as written in reports."""
        try:
            return str(PurePosixPath(path.relative_to(self.root)))
        except ValueError:
            return str(path)


class CohortDataset(AbstractDataset[WritableCohort, RawCohort]):
    """The cohort folder named by the ``cohort_dir`` runtime parameter.

    Example (``conf/base/catalog/01_raw.yml``)::

        raw_cohort:
          type: clnm_kedro.datasets.CohortDataset
          path: ${runtime_params:cohort_dir,${globals:cohort_dir}}
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path).expanduser()
        self.metadata = metadata

    def load(self) -> RawCohort:
        """Read ``clinical.csv`` and ``rois.csv``; images stay on disk."""
        root = self._path
        if not root.is_dir():
            raise DatasetError(
                f"No cohort folder at '{root}'. Write the synthetic cohort with "
                "`kedro run --pipelines simulate`, or point to yours with "
                "`kedro run --params cohort_dir=/path/to/cohort`."
            )
        tables = {}
        for name in ("clinical.csv", "rois.csv"):
            path = root / name
            if not path.is_file():
                raise DatasetError(
                    f"The cohort folder '{root}' has no {name}; the input contract "
                    "(docs/input_contract.md) needs clinical.csv, rois.csv and "
                    "images/<patient_id>/."
                )
            tables[name] = read_table(path)
        return RawCohort(root=root, clinical=tables["clinical.csv"], rois=tables["rois.csv"])

    def save(self, data: WritableCohort) -> None:
        """Write a (synthetic) cohort; the cohort object refuses to overwrite an existing one."""
        if not hasattr(data, "write"):
            raise DatasetError(
                f"CohortDataset can only save an object with a write(path) method, "
                f"got {type(data).__name__}; raw cohorts are read-only."
            )
        data.write(self._path)

    def preview(self, nrows: int = 10) -> TablePreview:
        """kedro-viz: the first ``nrows`` rows of ``clinical.csv``, as stored."""
        clinical = self._path / "clinical.csv"
        if not clinical.is_file():
            raise DatasetError(f"No clinical.csv in '{self._path}'.")
        table = pd.read_csv(clinical, dtype=str, keep_default_na=False, nrows=nrows)
        return TablePreview(table.to_dict(orient="split"))

    def _exists(self) -> bool:
        return (self._path / "clinical.csv").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
