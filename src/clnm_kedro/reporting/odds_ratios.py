"""Univariable and multivariable logistic odds ratios of the clinical indicators.

Fitted on the training centres only, by maximum likelihood (statsmodels ``Logit``), with Wald
95% intervals ``exp(beta +/- z * se)`` and Wald p-values. A number enters as it is (the odds
ratio is per unit: per year, per millimetre, per 0/1 step); a text column enters as indicator
columns against its first level in sorted order (the reference, shown with odds ratio 1).
Each model uses the patients with every one of its variables present (complete cases); the
numbers of patients and events of each fit are reported.

A fit that does not converge or separates the outcome perfectly gives NaN odds ratios for
that model (logged), never an error: the table still shows the other variables.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

__all__ = ["ODDS_RATIO_COLUMNS", "design_matrix", "odds_ratio_table"]

logger = logging.getLogger(__name__)

ODDS_RATIO_COLUMNS: tuple[str, ...] = (
    "variable",
    "term",
    "reference",
    "uni_or",
    "uni_lower",
    "uni_upper",
    "uni_p",
    "uni_n",
    "uni_events",
    "multi_or",
    "multi_lower",
    "multi_upper",
    "multi_p",
    "multi_n",
    "multi_events",
)


def design_matrix(frame: pd.DataFrame, variables: Sequence[str]) -> tuple[pd.DataFrame, dict]:
    """Model columns of ``variables`` and, per variable, its terms and reference level.

    Returns
    -------
    tuple
        ``(X, terms)`` with ``X`` float columns (NaN where the variable is missing) and
        ``terms = {variable: (list of term names, reference level or "")}``.
    """
    columns: dict[str, pd.Series] = {}
    terms: dict[str, tuple[list[str], str]] = {}
    for variable in variables:
        values = frame[variable]
        if pd.api.types.is_bool_dtype(values):
            values = values.astype("float")
        if pd.api.types.is_numeric_dtype(values):
            columns[variable] = values.astype(np.float64)
            terms[variable] = ([variable], "")
            continue
        text = values.astype("string")
        levels = sorted(text.dropna().unique())
        if len(levels) < 2:
            terms[variable] = ([], levels[0] if levels else "")
            continue
        names = []
        for level in levels[1:]:
            name = f"{variable}={level}"
            columns[name] = (text == level).astype("float").where(text.notna())
            names.append(name)
        terms[variable] = (names, levels[0])
    return pd.DataFrame(columns, index=frame.index), terms


def _fit(y: np.ndarray, X: pd.DataFrame, level: float) -> pd.DataFrame | None:
    """Odds ratio, CI and p per column of ``X``; None when the fit fails."""
    design = sm.add_constant(X.to_numpy(dtype=np.float64), has_constant="add")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PerfectSeparationWarning)
            warnings.simplefilter("error", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            result = sm.Logit(y, design).fit(disp=0, maxiter=200)
    except (np.linalg.LinAlgError, PerfectSeparationWarning, ConvergenceWarning, ValueError) as e:
        logger.warning("Logistic fit on %s not estimable (%s).", list(X.columns), e)
        return None
    params = np.asarray(result.params)[1:]
    se = np.asarray(result.bse)[1:]
    if not np.all(np.isfinite(se)):
        return None
    z = stats.norm.ppf(0.5 + level / 2.0)
    return pd.DataFrame(
        {
            "or": np.exp(params),
            "lower": np.exp(params - z * se),
            "upper": np.exp(params + z * se),
            "p": np.asarray(result.pvalues)[1:],
        },
        index=list(X.columns),
    )


def odds_ratio_table(
    frame: pd.DataFrame,
    variables: Sequence[str],
    outcome: str = "clnm",
    level: float = 0.95,
) -> pd.DataFrame:
    """Univariable and multivariable odds ratios of ``variables`` for ``outcome``.

    Parameters
    ----------
    frame
        Training patients: ``outcome`` (0/1) and the variables.
    variables
        Candidate indicators, in the order shown.
    outcome
        The outcome column.
    level
        Confidence level of the Wald intervals.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ODDS_RATIO_COLUMNS`, one row per term (a number's own row, or one per
        non-reference level of a text column). ``multi_*`` come from one model with every
        variable (``multi_n``, ``multi_events``: its complete cases); NaN where not
        estimable.
    """
    missing = [c for c in (outcome, *variables) if c not in frame.columns]
    if missing:
        raise ValueError(f"Odds ratios: the table has no column(s) {missing}.")
    y_all = pd.to_numeric(frame[outcome], errors="coerce")
    X_all, terms = design_matrix(frame, variables)
    used = [name for names, _ in terms.values() for name in names]
    complete = X_all[used].notna().all(axis=1) & y_all.notna()
    multi = (
        _fit(y_all[complete].to_numpy(np.float64), X_all.loc[complete, used], level)
        if used
        else None
    )
    rows: list[dict[str, Any]] = []
    for variable in variables:
        names, reference = terms[variable]
        keep = X_all[names].notna().all(axis=1) & y_all.notna() if names else y_all.notna()
        uni = (
            _fit(y_all[keep].to_numpy(np.float64), X_all.loc[keep, names], level)
            if names
            else None
        )
        for name in names or [variable]:
            row: dict[str, Any] = {
                "variable": variable,
                "term": name,
                "reference": reference,
                "uni_n": int(keep.sum()),
                "uni_events": int(y_all[keep].sum()),
            }
            for prefix, fit in (("uni", uni), ("multi", multi)):
                found = fit is not None and name in fit.index
                for key in ("or", "lower", "upper", "p"):
                    row[f"{prefix}_{key}"] = float(fit.loc[name, key]) if found else math.nan
            rows.append(row)
    table = pd.DataFrame(rows, columns=list(ODDS_RATIO_COLUMNS))
    table["multi_n"] = int(complete.sum())
    table["multi_events"] = int(y_all[complete].sum())
    return table
