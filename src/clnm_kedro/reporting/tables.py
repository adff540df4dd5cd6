"""Tables formatted as in a paper: the study table, DeLong tests, subgroups, oracle, thresholds.

Every function takes the machine-readable results (``metrics.json`` content, the DeLong,
subgroup and oracle tables) and returns a DataFrame of display strings. A value that could not
be estimated is shown as an em dash.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from clnm_kedro.reporting.model_comparisons import POWER_COUNTS, POWER_LABELS
from clnm_kedro.reporting.model_metrics import DELONG_COLUMNS
from clnm_kedro.reporting.predictions import MODEL_ORDER, model_label, split_label

__all__ = [
    "MISSING",
    "calibration_table",
    "classifier_comparison_table",
    "delong_table",
    "format_auc",
    "format_ci",
    "format_number",
    "format_p",
    "interaction_table",
    "net_benefit_table",
    "odds_ratio_display",
    "oracle_table",
    "sample_size_table",
    "study_table",
    "subgroup_table",
    "table_one_display",
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
    if not math.isfinite(number):
        return MISSING
    text = f"{number:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text  # no "-0.000"


def format_auc(auc: Any, lower: Any, upper: Any, digits: int = 3) -> str:
    """``0.765 (0.712–0.818)``; the interval is left out when not estimable."""
    point = format_number(auc, digits)
    if point == MISSING:
        return MISSING
    low, high = format_number(lower, digits), format_number(upper, digits)
    if MISSING in (low, high):
        return point
    if _value(lower) < 0 or _value(upper) < 0:  # "-0.66 (-1.27 to -0.05)", not "-1.27–-0.05"
        return f"{point} ({low} to {high})"
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


def _training_split(entry: Mapping[str, Any], split: str) -> str | None:
    """The split shown for ``split``: out-of-fold training rows, else apparent ones."""
    splits = entry.get("splits", {})
    if split in splits:
        return split
    if split == "train_cv" and "train" in splits:
        return "train"
    return None


def _shown_splits(
    metrics: Mapping[str, Any], splits: Sequence[str]
) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """``(model, split, values)`` of every model and wanted split the tables show, in order
    (out-of-fold training rows where a model has them, else its apparent ones)."""
    for model in _models(metrics):
        entry = metrics["models"][model]
        for wanted in splits:
            split = _training_split(entry, wanted)
            if split is not None:
                yield model, split, entry["splits"][split]


def format_ci(value: Any, lower: Any, upper: Any, digits: int = 3) -> str:
    """``0.742 (0.690–0.790)``; the point alone without bounds, an em dash without it."""
    return format_auc(value, lower, upper, digits)


def study_table(
    metrics: Mapping[str, Any],
    delong_tests: pd.DataFrame,
    splits: Sequence[str] = ("train_cv", "external"),
) -> pd.DataFrame:
    """The study's table: every model x data set, AUC (CI) and the rates (CI) at the cut-off.

    Parameters
    ----------
    metrics
        Content of ``metrics.json``.
    delong_tests
        The DeLong tests; each model's row lists its comparisons' p-values on that set. Tests
        on apparent (``train``) predictions are never shown: both fits have seen the patients.
    splits
        Data sets shown, in order. ``train_cv`` (the training centres, out-of-fold) falls back
        to the apparent ``train`` rows for a model without out-of-fold predictions, labelled
        "apparent".

    Returns
    -------
    pandas.DataFrame
        ``Model, Data set, Patients (CLNM), AUC (95% CI), Sensitivity, Specificity, Accuracy,
        PPV, NPV, Cut-off, DeLong p``; the rates carry their bootstrap intervals when the
        bootstrap was on.
    """
    auc_column = f"AUC ({_percent(metrics.get('confidence_level'))} CI)"
    rows: list[dict[str, str]] = []
    for model, split, values in _shown_splits(metrics, splits):
        comparisons = MISSING
        if split != "train" and not delong_tests.empty:
            tests = delong_tests[
                (delong_tests["split"] == split) & (delong_tests["model_a"] == model)
            ]
            comparisons = (
                "; ".join(
                    f"vs {model_label(other)}: {format_p(p)}"
                    for other, p in zip(tests["model_b"], tests["p"], strict=True)
                )
                or MISSING
            )
        row = {
            "Model": model_label(model),
            "Data set": split_label(split),
            "Patients (CLNM)": _count(values.get("n"), values.get("events")),
            auc_column: format_auc(
                values.get("auc"), values.get("auc_lower"), values.get("auc_upper")
            ),
        }
        for name in ("sensitivity", "specificity", "accuracy", "ppv", "npv"):
            label = name.upper() if name in ("ppv", "npv") else name.capitalize()
            row[label] = format_ci(
                values.get(name),
                values.get(f"{name}_boot_lower"),
                values.get(f"{name}_boot_upper"),
            )
        row["Cut-off"] = format_number(values.get("threshold"))
        row["DeLong p"] = comparisons
        rows.append(row)
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


def calibration_table(
    metrics: Mapping[str, Any], splits: Sequence[str] = ("train_cv", "external")
) -> pd.DataFrame:
    """Calibration per model and data set, each value with its interval; Hosmer-Lemeshow last.

    Hosmer-Lemeshow is secondary (its grouping is arbitrary and its power depends on the
    sample size); its degrees of freedom are G - 2 on training data and G on the external set.
    """
    rows: list[dict[str, str]] = []
    for model, split, v in _shown_splits(metrics, splits):
        dof = _value(v.get("hosmer_lemeshow_dof"))
        rows.append(
            {
                "Model": model_label(model),
                "Data set": split_label(split),
                "Patients (CLNM)": _count(v.get("n"), v.get("events")),
                "Brier": format_ci(v.get("brier"), v.get("brier_lower"), v.get("brier_upper")),
                "Scaled Brier": format_ci(
                    v.get("scaled_brier"),
                    v.get("scaled_brier_lower"),
                    v.get("scaled_brier_upper"),
                ),
                "Calibration-in-the-large (ideal 0)": format_ci(
                    v.get("calibration_intercept"),
                    v.get("calibration_intercept_lower"),
                    v.get("calibration_intercept_upper"),
                ),
                "Slope (ideal 1)": format_ci(
                    v.get("calibration_slope"),
                    v.get("calibration_slope_lower"),
                    v.get("calibration_slope_upper"),
                ),
                "O/E (ideal 1)": format_ci(
                    v.get("observed_expected"),
                    v.get("observed_expected_lower"),
                    v.get("observed_expected_upper"),
                ),
                "Hosmer-Lemeshow (secondary)": (
                    f"χ² {format_number(v.get('hosmer_lemeshow_statistic'), 2)}, "
                    f"{int(dof)} df, p {format_p(v.get('hosmer_lemeshow_p'))}"
                    if math.isfinite(dof)
                    else MISSING
                ),
            }
        )
    return pd.DataFrame(rows)


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


def _extra_cell(value: Any) -> str:
    number = _value(value)
    if isinstance(value, bool | str) or not math.isfinite(number):
        return MISSING if value is None or (isinstance(value, float) and math.isnan(value)) else (
            str(value)
        )
    return str(int(number)) if float(number).is_integer() else f"{number:.3g}"


def _extra_header(column: str) -> str:
    """A further column's header: the power analysis's own words, else its name."""
    return POWER_LABELS.get(column, column.replace("_", " "))


def delong_table(delong_tests: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Paired DeLong tests, readable: both AUCs, the difference with its CI, z and p.

    Any further column of the tests table is shown after these: the power analysis's under
    headers a clinician reads (patient counts rounded, with thousands separators), any other
    under its own name.
    """
    extra = [c for c in delong_tests.columns if c not in DELONG_COLUMNS]
    rows = []
    for record in delong_tests.to_dict("records"):
        row = {
            "Data set": split_label(record["split"]),
            "Comparison": f"{model_label(record['model_a'])} vs {model_label(record['model_b'])}",
            "AUC (first)": format_number(record.get("auc_a")),
            "AUC (second)": format_number(record.get("auc_b")),
            f"Difference ({_percent(level)} CI)": format_ci(
                record.get("difference"),
                record.get("difference_lower"),
                record.get("difference_upper"),
            ),
            "z": format_number(record.get("z"), 2),
            "p": format_p(record.get("p")),
            "Patients": (
                str(int(record["n"])) if math.isfinite(_value(record.get("n"))) else MISSING
            ),
        }
        for column in extra:
            value = record[column]
            if column not in POWER_COUNTS:
                row[_extra_header(column)] = _extra_cell(value)
            else:  # no finite count (a difference of 0 needs every patient there is): a dash
                number = _value(value)
                row[_extra_header(column)] = (
                    f"{round(number):,}" if math.isfinite(number) else MISSING
                )
        rows.append(row)
    columns = [
        "Data set",
        "Comparison",
        "AUC (first)",
        "AUC (second)",
        f"Difference ({_percent(level)} CI)",
        "z",
        "p",
        "Patients",
        *(_extra_header(c) for c in extra),
    ]
    return pd.DataFrame(rows, columns=columns)


def subgroup_table(
    subgroups: pd.DataFrame, level: float = 0.95, min_events: int = 20
) -> pd.DataFrame:
    """Subgroup AUCs, one row per subgroup and one column per model, with a caution column."""
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
        events = _value(first["events"])
        row["Caution"] = (
            f"< {min_events} events"
            if math.isfinite(events) and events < min_events
            else ""
        )
        rows.append(row)
    return pd.DataFrame(rows)


def interaction_table(subgroups: pd.DataFrame) -> pd.DataFrame:
    """p of the score x subgroup likelihood-ratio test, one row per variable, one column per
    model."""
    if subgroups.empty or "interaction_p" not in subgroups.columns:
        return pd.DataFrame(columns=["Variable"])
    tested = subgroups[subgroups["variable"] != "all"]
    models = sorted(
        tested["model"].unique(),
        key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER else len(MODEL_ORDER), m),
    )
    rows = []
    for variable, group in tested.groupby("variable", sort=False):
        row = {"Variable": str(variable).replace("_", " ")}
        for model in models:
            match = group[group["model"] == model]
            row[model_label(model)] = (
                format_p(match["interaction_p"].iloc[0]) if len(match) else MISSING
            )
        rows.append(row)
    return pd.DataFrame(rows)


def net_benefit_table(net_benefit: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Difference in net benefit from treat-all (with its interval): one row per model and
    data set, one column per threshold; a first row per data set gives treat-all's own net
    benefit."""
    if net_benefit.empty:
        return pd.DataFrame()
    thresholds = sorted(net_benefit["threshold"].unique())
    rows: list[dict[str, str]] = []
    for panel, part in net_benefit.groupby("panel", sort=False):
        first = part.drop_duplicates("threshold").set_index("threshold")
        rows.append(
            {
                "Data set": split_label(str(panel)),
                "Model": "treat all: net benefit",
                **{
                    f"{t:.2f}": format_number(first.loc[t, "net_benefit_treat_all"])
                    for t in thresholds
                },
            }
        )
        for model, rows_of_model in part.groupby("model", sort=False):
            curve = rows_of_model.set_index("threshold")
            apparent = (curve["split"] != panel).any()
            label = model_label(str(model)) + (" (apparent)" if apparent else "")
            rows.append(
                {
                    "Data set": split_label(str(panel)),
                    "Model": f"{label}: Δ vs treat all",
                    **{
                        f"{t:.2f}": format_ci(
                            curve.loc[t, "delta_treat_all"],
                            curve.loc[t, "delta_lower"],
                            curve.loc[t, "delta_upper"],
                        )
                        for t in thresholds
                    },
                }
            )
    return pd.DataFrame(rows)


def table_one_display(table: pd.DataFrame) -> pd.DataFrame:
    """Table 1 ready to read: p formatted, empty cells blank."""
    if table is None or table.empty:
        return pd.DataFrame()
    shown = table.copy()
    shown["p"] = [format_p(p) if math.isfinite(_value(p)) else "" for p in shown["p"]]
    shown = shown.astype(object).where(shown.notna(), "")
    if len(shown):
        shown.loc[shown.index[0], "missing"] = ""
    return shown.rename(columns={"variable": "Variable", "level": "", "missing": "Missing",
                                 "test": "Test"})  # fmt: skip


def odds_ratio_display(odds: pd.DataFrame) -> pd.DataFrame:
    """Odds ratios (95% CI) and p, univariable and multivariable, one row per term."""
    rows = []
    for r in odds.to_dict("records"):
        term = str(r["term"])
        reference = r.get("reference")
        # A CSV read back gives NaN for an empty reference (a number: no reference level).
        if isinstance(reference, str) and reference:
            term = f"{term} (vs {reference})"
        rows.append(
            {
                "Indicator": term,
                "Univariable OR (95% CI)": format_ci(
                    r["uni_or"], r["uni_lower"], r["uni_upper"], 2
                ),
                "p (uni)": format_p(r["uni_p"]),
                "Patients (CLNM)": _count(r["uni_n"], r["uni_events"]),
                "Multivariable OR (95% CI)": format_ci(
                    r["multi_or"], r["multi_lower"], r["multi_upper"], 2
                ),
                "p (multi)": format_p(r["multi_p"]),
            }
        )
    return pd.DataFrame(rows)


def classifier_comparison_table(comparisons: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Every classifier family's cross-validated log loss and AUC and external AUC, per head
    model."""
    frames = [frame for frame in comparisons if frame is not None and not frame.empty]
    if not frames:
        return pd.DataFrame()
    rows = []
    for r in pd.concat(frames, ignore_index=True).to_dict("records"):
        rows.append(
            {
                "Model": model_label(str(r.get("model"))),
                "Family": str(r.get("family")),
                "Selected": "yes" if bool(r.get("selected")) else "",
                "CV log loss (training centres)": format_number(r.get("cv_log_loss")),
                "CV AUC (training centres)": format_number(r.get("cv_auc")),
                "Apparent AUC": format_number(r.get("train_auc")),
                "External AUC": format_number(r.get("external_auc")),
                "Trials": MISSING if r.get("n_trials") is None else str(r.get("n_trials")),
            }
        )
    return pd.DataFrame(rows)


def sample_size_table(sample_size: Mapping[str, Any]) -> pd.DataFrame:
    """Riley's criteria per model beside the development cohort."""
    rows = []
    for model, v in (sample_size.get("models") or {}).items():
        rows.append(
            {
                "Model": model_label(model),
                "Candidate parameters": str(v.get("parameters")),
                "Anticipated R²cs": (
                    f"{format_number(v.get('r2_cs'))} ({v.get('r2_cs_source', '')})"
                ),
                "Criterion 1 (shrinkage ≥ 0.9)": str(v.get("criterion_1", MISSING)),
                "Criterion 2 (optimism ≤ 0.05)": str(v.get("criterion_2", MISSING)),
                "Criterion 3 (intercept ± 0.05)": str(v.get("criterion_3", MISSING)),
                "Minimum (events)": f"{v.get('minimum', MISSING)} ({v.get('events', MISSING)})",
                "Development cohort (events)": _count(
                    sample_size.get("development_n"), sample_size.get("development_events")
                ),
                "Met": "yes" if v.get("met") else "no",
            }
        )
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
