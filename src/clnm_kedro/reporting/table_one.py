"""Table 1: baseline characteristics of the cohort by group (centre, or CLNM status).

Per variable: the number of patients missing it, and per group either the median (IQR) of a
continuous variable or the count (percentage of the group's non-missing patients) of each
level of a categorical one, with the test of no difference between groups and its p-value:

- continuous (a number with more than two distinct values): Mann-Whitney U test for two
  groups, Kruskal-Wallis test for more (scipy, two-sided, tie-corrected);
- categorical (text, booleans, or numbers with at most two distinct values, e.g. 0/1): Pearson's
  chi-square test of the contingency table (no continuity correction), or Fisher's exact test
  for a 2x2 table with an expected count below 5.

Missing values are left out of each variable's test and percentages, and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["TABLE_ONE_COLUMNS", "baseline_table", "is_continuous", "variable_test"]

# Long format, one row per variable (continuous) or per level (categorical); one column per
# group holds the formatted summary.
TABLE_ONE_COLUMNS: tuple[str, ...] = ("variable", "level", "missing", "test", "p")


def is_continuous(values: pd.Series) -> bool:
    """A number with more than two distinct values (a 0/1 indicator is categorical)."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return False
    return values.dropna().nunique() > 2


def _category_table(values: pd.Series, groups: pd.Series) -> pd.DataFrame:
    return pd.crosstab(values.astype(str), groups)


def variable_test(values: pd.Series, groups: pd.Series) -> tuple[str, float]:
    """The test of no difference between groups and its p-value (NaN when not computable).

    ``values`` and ``groups`` are aligned; missing values are left out.
    """
    keep = values.notna() & groups.notna()
    values, groups = values[keep], groups[keep]
    labels = list(pd.unique(groups))
    if len(labels) < 2:
        return "—", math.nan
    if is_continuous(values):
        samples = [values[groups == label].to_numpy(dtype=np.float64) for label in labels]
        if any(sample.size == 0 for sample in samples):
            return "—", math.nan
        if len(samples) == 2:
            result = stats.mannwhitneyu(*samples, alternative="two-sided")
            return "Mann-Whitney U", float(result.pvalue)
        if np.ptp(np.concatenate(samples)) == 0:
            return "Kruskal-Wallis", math.nan
        return "Kruskal-Wallis", float(stats.kruskal(*samples).pvalue)
    table = _category_table(values, groups)
    if table.shape[0] < 2 or table.shape[1] < 2:
        return "—", math.nan
    observed = table.to_numpy()
    expected = stats.contingency.expected_freq(observed)
    if observed.shape == (2, 2) and expected.min() < 5:
        return "Fisher's exact", float(stats.fisher_exact(observed).pvalue)
    result = stats.chi2_contingency(observed, correction=False)
    return "Chi-square", float(result.pvalue)


def _median_iqr(values: pd.Series) -> str:
    values = values.dropna().to_numpy(dtype=np.float64)
    if values.size == 0:
        return "—"
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return f"{median:.1f} ({q1:.1f}–{q3:.1f})"


def baseline_table(
    cohort: pd.DataFrame,
    group_column: str,
    variables: Sequence[str],
    *,
    group_labels: dict[Any, str] | None = None,
) -> pd.DataFrame:
    """Table 1 of ``cohort`` by ``group_column``.

    Parameters
    ----------
    cohort
        One row per patient with ``group_column`` and the ``variables``.
    group_column
        The grouping (e.g. ``center`` or ``clnm``); patients missing it are left out.
    variables
        Variables described, in order.
    group_labels
        Readable group names (e.g. ``{0: "No CLNM", 1: "CLNM"}``); default the values.

    Returns
    -------
    pandas.DataFrame
        Columns ``variable, level, missing, test, p`` then ``All`` and one per group, each
        ``"<name> (n=<count>)"``. The first row gives the number of patients; a continuous
        variable has one row (``level`` = ``median (IQR)``), a categorical one a row per level
        (``n (%)``), with the missing count, test and p on its first row.
    """
    missing_columns = [c for c in (group_column, *variables) if c not in cohort.columns]
    if missing_columns:
        raise ValueError(f"Table 1: the cohort table has no column(s) {missing_columns}.")
    cohort = cohort[cohort[group_column].notna()]
    groups = cohort[group_column]
    names = group_labels or {}
    order = sorted(pd.unique(groups), key=str)
    masks = {"All": pd.Series(True, index=cohort.index)}
    for value in order:
        masks[str(names.get(value, value))] = groups == value
    headers = {name: f"{name} (n={int(mask.sum())})" for name, mask in masks.items()}
    rows: list[dict[str, Any]] = [
        {
            "variable": "Patients",
            "level": "n",
            "missing": 0,
            "test": "",
            "p": math.nan,
            **{headers[name]: str(int(mask.sum())) for name, mask in masks.items()},
        }
    ]
    for variable in variables:
        values = cohort[variable]
        test, p_value = variable_test(values, groups)
        missing = int(values.isna().sum())
        first = {"variable": variable, "missing": missing, "test": test, "p": p_value}
        if is_continuous(values):
            rows.append(
                {
                    **first,
                    "level": "median (IQR)",
                    **{headers[n]: _median_iqr(values[m]) for n, m in masks.items()},
                }
            )
            continue
        levels = sorted(values.dropna().astype(str).unique())
        text = values.astype("string")
        for position, level in enumerate(levels):
            row: dict[str, Any] = (
                first
                if position == 0
                else {"variable": "", "missing": "", "test": "", "p": math.nan}
            )
            row = {**row, "level": f"{level}, n (%)"}
            for name, mask in masks.items():
                known = text[mask].dropna()
                count = int((known == level).sum())
                share = 100.0 * count / len(known) if len(known) else math.nan
                row[headers[name]] = f"{count} ({share:.1f})" if len(known) else "—"
            rows.append(row)
    columns = [*TABLE_ONE_COLUMNS, *headers.values()]
    return pd.DataFrame(rows, columns=columns)
