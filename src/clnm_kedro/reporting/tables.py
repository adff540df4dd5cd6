"""Tables formatted as in a paper: the study table, DeLong tests, subgroups, oracle, thresholds.

Every function takes the machine-readable results (``metrics.json`` content, the DeLong,
subgroup and oracle tables) and returns a DataFrame of display strings. A value that could not
be estimated is shown as an em dash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from clnm_kedro.reporting.predictions import MODEL_ORDER, model_label, split_label

__all__ = [
    "MISSING",
    "delong_table",
    "format_auc",
    "format_number",
    "format_p",
    "oracle_table",
    "study_table",
    "subgroup_table",
    "thresholds_table",
]

MISSING = "—"


def _value(value: Any) -> float:
    """A float, NaN for ``None`` (JSON null), NaN or anything not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def format_number(value: Any, digits: int = 3) -> str:
    """``0.742``; an em dash when not estimable."""
    number = _value(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else MISSING


def format_auc(auc: Any, lower: Any, upper: Any, digits: int = 3) -> str:
    """``0.765 (0.712–0.818)``; the interval is left out when not estimable."""
    point = format_number(auc, digits)
    if point == MISSING:
        return MISSING
    low, high = format_number(lower, digits), format_number(upper, digits)
    if MISSING in (low, high):
        return point
    return f"{point} ({low}–{high})"


def format_p(value: Any) -> str:
    """``<0.001``, ``0.012``; an em dash when not estimable."""
    number = _value(value)
    if not math.isfinite(number):
        return MISSING
    return "<0.001" if number < 0.001 else f"{number:.3f}"


def _count(n: Any, events: Any) -> str:
    n_value, e_value = _value(n), _value(events)
    if not (math.isfinite(n_value) and math.isfinite(e_value)):
        return MISSING
    return f"{int(n_value)} ({int(e_value)})"


def _percent(level: Any) -> str:
    value = _value(level)
    return f"{100 * value:g}%" if math.isfinite(value) else "95%"


def _models(metrics: Mapping[str, Any]) -> list[str]:
    names = list(metrics.get("models", {}))
    return sorted(
        names,
        key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER else len(MODEL_ORDER), m),
    )


def study_table(
    metrics: Mapping[str, Any],
    delong_tests: pd.DataFrame,
    splits: Sequence[str] = ("train", "external"),
) -> pd.DataFrame:
    """The study's table: every model × data set, AUC (CI) and the rates at the cut-off.

    Parameters
    ----------
    metrics
        Content of ``metrics.json``.
    delong_tests
        The DeLong tests; each model's row lists its comparisons' p-values on that set.
    splits
        Data sets shown, in order.

    Returns
    -------
    pandas.DataFrame
        ``Model, Data set, Patients (CLNM), AUC (95% CI), Sensitivity, Specificity, Accuracy,
        PPV, NPV, Cut-off, DeLong p``.
    """
    auc_column = f"AUC ({_percent(metrics.get('confidence_level'))} CI)"
    rows: list[dict[str, str]] = []
    for model in _models(metrics):
        entry = metrics["models"][model]
        for split in splits:
            values = entry.get("splits", {}).get(split)
            if values is None:
                continue
            tests = delong_tests[
                (delong_tests["split"] == split) & (delong_tests["model_a"] == model)
            ]
            comparisons = "; ".join(
                f"vs {model_label(other)}: {format_p(p)}"
                for other, p in zip(tests["model_b"], tests["p"], strict=True)
            )
            rows.append(
                {
                    "Model": model_label(model),
                    "Data set": split_label(split),
                    "Patients (CLNM)": _count(values.get("n"), values.get("events")),
                    auc_column: format_auc(
                        values.get("auc"), values.get("auc_lower"), values.get("auc_upper")
                    ),
                    "Sensitivity": format_number(values.get("sensitivity")),
                    "Specificity": format_number(values.get("specificity")),
                    "Accuracy": format_number(values.get("accuracy")),
                    "PPV": format_number(values.get("ppv")),
                    "NPV": format_number(values.get("npv")),
                    "Cut-off": format_number(values.get("threshold")),
                    "DeLong p": comparisons or MISSING,
                }
            )
    columns = [
        "Model",
        "Data set",
        "Patients (CLNM)",
        auc_column,
        "Sensitivity",
        "Specificity",
        "Accuracy",
        "PPV",
        "NPV",
        "Cut-off",
        "DeLong p",
    ]
    return pd.DataFrame(rows, columns=columns)


def thresholds_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Each model's Youden cut-off and the training predictions it was chosen on."""
    rows = []
    for model in _models(metrics):
        entry = metrics["models"][model]
        chosen_on = entry.get("threshold_split")
        rows.append(
            {
                "Model": model_label(model),
                "Model id": model,
                "Cut-off": format_number(entry.get("threshold")),
                "Chosen on": split_label(chosen_on) if chosen_on else MISSING,
            }
        )
    return pd.DataFrame(rows, columns=["Model", "Model id", "Cut-off", "Chosen on"])


def delong_table(delong_tests: pd.DataFrame) -> pd.DataFrame:
    """Paired DeLong tests, readable."""
    rows = [
        {
            "Data set": split_label(row.split),
            "Comparison": f"{model_label(row.model_a)} vs {model_label(row.model_b)}",
            "AUC (first)": format_number(row.auc_a),
            "AUC (second)": format_number(row.auc_b),
            "z": format_number(row.z, 2),
            "p": format_p(row.p),
            "Patients": str(int(row.n)) if math.isfinite(_value(row.n)) else MISSING,
        }
        for row in delong_tests.itertuples(index=False)
    ]
    return pd.DataFrame(
        rows,
        columns=["Data set", "Comparison", "AUC (first)", "AUC (second)", "z", "p", "Patients"],
    )


def subgroup_table(subgroups: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Subgroup AUCs, one row per subgroup and one column per model."""
    if subgroups.empty:
        return pd.DataFrame(columns=["Subgroup", "Patients (CLNM)"])
    models = sorted(
        subgroups["model"].unique(),
        key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER else len(MODEL_ORDER), m),
    )
    rows: list[dict[str, str]] = []
    for name, group in subgroups.groupby("subgroup", sort=False):
        first = group.iloc[0]
        row = {"Subgroup": str(name), "Patients (CLNM)": _count(first["n"], first["events"])}
        for model in models:
            match = group[group["model"] == model]
            row[f"{model_label(model)} AUC ({_percent(level)} CI)"] = (
                format_auc(*match.iloc[0][["auc", "auc_lower", "auc_upper"]])
                if len(match)
                else MISSING
            )
        rows.append(row)
    return pd.DataFrame(rows)


def oracle_table(oracle: pd.DataFrame) -> pd.DataFrame:
    """Each model's AUC beside the oracle (true-risk) AUC on the same patients."""
    rows = [
        {
            "Data set": split_label(row.split),
            "Model": model_label(row.model),
            "Patients (CLNM)": _count(row.n, row.events),
            "Model AUC (CI)": format_auc(row.auc, row.auc_lower, row.auc_upper),
            "Oracle AUC (CI)": format_auc(
                row.oracle_auc, row.oracle_auc_lower, row.oracle_auc_upper
            ),
            "DeLong p (model vs oracle)": format_p(row.delong_p),
        }
        for row in oracle.itertuples(index=False)
    ]
    return pd.DataFrame(
        rows,
        columns=[
            "Data set",
            "Model",
            "Patients (CLNM)",
            "Model AUC (CI)",
            "Oracle AUC (CI)",
            "DeLong p (model vs oracle)",
        ],
    )
