"""The project's own CSV tables (splits, predictions, inference results), read back as written.

Two things plain ``pandas.CSVDataset`` gets wrong with patient data:

- pandas reads the words ``NA``, ``null``, ``None``, ``nan``, ``N/A``... as missing values, so
  a patient called ``NA`` or a centre called ``NA`` would come back as NaN. Here only an empty
  cell is missing, and ``patient_id`` and ``center`` are always text.
- A spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
  return as a formula (CSV injection). Text cells that start so are written with a leading
  apostrophe (``'=cmd``), which spreadsheets show as plain text; so is a text cell that
  starts with an apostrophe, so that loading can strip exactly one and give back the value
  written (:func:`escape_cell` and :func:`unescape_cell` are inverse).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from kedro_datasets.pandas import CSVDataset

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_QUOTE = "'"
TEXT_COLUMNS = ("patient_id", "center")


def escape_cell(value: Any) -> Any:
    """``value`` made safe to open in a spreadsheet (only text is changed)."""
    if isinstance(value, str) and value.startswith((*FORMULA_STARTS, _QUOTE)):
        return _QUOTE + value
    return value


def unescape_cell(value: Any) -> Any:
    """The value :func:`escape_cell` was given."""
    if (
        isinstance(value, str)
        and len(value) > 1
        and value[0] == _QUOTE
        and value[1:].startswith((*FORMULA_STARTS, _QUOTE))
    ):
        return value[1:]
    return value


def _text_columns(table: pd.DataFrame) -> list[Any]:
    return [
        name
        for name in table.columns
        if table[name].dtype == object or isinstance(table[name].dtype, pd.StringDtype)
    ]


def escape_table(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` with every text cell passed through :func:`escape_cell`."""
    columns = _text_columns(table)
    if not columns:
        return table
    safe = table.copy()
    for name in columns:
        safe[name] = safe[name].map(escape_cell, na_action="ignore")
    return safe


def unescape_table(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every text cell passed through :func:`unescape_cell`."""
    for name in _text_columns(table):
        table[name] = table[name].map(unescape_cell, na_action="ignore")
    return table


class TableCSVDataset(CSVDataset):
    """``pandas.CSVDataset`` that reads a table back exactly as it was written.

    Loading: only an empty cell is missing (``keep_default_na: false, na_values: [""]``) and
    ``patient_id`` / ``center`` are text, unless ``load_args`` say otherwise. Saving: no index,
    and text cells are CSV-injection safe (see the module docstring).

    Example (``conf/base/catalog/03_primary.yml``)::

        patient_splits:
          type: clnm_kedro.datasets.TableCSVDataset
          filepath: data/03_primary/patient_splits.csv
    """

    def __init__(
        self,
        *,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        load_args = dict(load_args or {})
        load_args.setdefault("keep_default_na", False)
        load_args.setdefault("na_values", [""])
        load_args["dtype"] = {**dict.fromkeys(TEXT_COLUMNS, str), **load_args.get("dtype", {})}
        save_args = {"index": False, **(save_args or {})}
        super().__init__(filepath=filepath, load_args=load_args, save_args=save_args, **kwargs)

    def load(self) -> pd.DataFrame:
        """Read the table; text cells as written."""
        return unescape_table(super().load())

    def save(self, data: pd.DataFrame) -> None:
        """Write the table with formula-like text cells escaped."""
        super().save(escape_table(data))
