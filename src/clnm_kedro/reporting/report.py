"""The self-contained HTML report of an evaluation run, rendered from a Jinja2 template.

The packaged template (``templates/report.html.j2``) makes one file, opened offline in any
browser: figures are embedded as base64 PNG data URIs, the style sheet is inline, and nothing
refers to a network resource (no external CSS, scripts or fonts). A user template (parameter
``evaluation.report_template``) gets the same context; it may ``{% extends
"clnm/report.html.j2" %}`` to change only some blocks. Autoescape is always on: every text
taken from the data is HTML-escaped.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from matplotlib.figure import Figure

from clnm_kedro.registry import NETWORK_MODELS
from clnm_kedro.reporting import tables
from clnm_kedro.reporting.figures import plot_oracle_comparison
from clnm_kedro.reporting.predictions import SPLIT_ORDER, model_label, split_label
from clnm_kedro.reporting.tripod import tripod_rows

__all__ = [
    "DEFAULT_TEMPLATE",
    "ReportTemplateError",
    "as_table",
    "captioned",
    "embed_figure",
    "embed_png",
    "figure_caption",
    "figure_to_data_uri",
    "flatten_parameters",
    "load_template",
    "render_report",
    "report_figure",
]

REPORT_TITLE = "Occult central lymph node metastasis in PTMC: evaluation report"
_MAX_EXCLUSIONS_SHOWN = 200
DEFAULT_TEMPLATE = "report.html.j2"
# Figures the template places in their sections; any other is shown under "Figures".
PLACED_FIGURES = (
    "roc_curves",
    "calibration_curves",
    "decision_curves",
    "net_benefit_difference",
)


class ReportTemplateError(ValueError):
    """The report template cannot be found or rendered."""


def figure_to_data_uri(figure: Figure, dpi: int = 110) -> str:
    """The figure as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/png;base64,{encoded}"


def embed_figure(figure: Figure, title: str, caption: str = "") -> dict[str, str]:
    """A figure ready for :func:`render_report`: ``{"title", "caption", "data_uri"}``."""
    return {"title": title, "caption": caption, "data_uri": figure_to_data_uri(figure)}


def captioned(figure: Figure, title: str, caption: str = "") -> Figure:
    """``figure`` carrying its title and caption in the report (:func:`figure_caption`)."""
    figure.report_caption = (title, caption)  # type: ignore[attr-defined]
    return figure


def figure_caption(figure: Figure) -> tuple[str, str]:
    """The report title and caption :func:`captioned` gave ``figure`` (empty: none)."""
    return getattr(figure, "report_caption", ("", ""))


def embed_png(png: bytes, title: str, caption: str = "") -> dict[str, str]:
    """A PNG file's bytes ready for :func:`render_report` (see :func:`embed_figure`)."""
    encoded = base64.b64encode(png).decode("ascii")
    return {"title": title, "caption": caption, "data_uri": f"data:image/png;base64,{encoded}"}


def report_figure(item: Figure | Mapping[str, str]) -> Mapping[str, str]:
    """A figure node's output as the report embeds it: a figure read back from its PNG file
    (``ReportFigureDataset``) as it is; a figure still in memory embedded with its caption."""
    if isinstance(item, Figure):
        return embed_figure(item, *figure_caption(item))
    return item


def _cell(value: Any) -> str:
    if value is None:
        return tables.MISSING
    if isinstance(value, float):
        return tables.MISSING if math.isnan(value) else f"{value:g}"
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)


def as_table(frame: pd.DataFrame | None) -> dict[str, list] | None:
    """A DataFrame as the template's table: ``{"columns": [...], "rows": [[str, ...]]}``."""
    if frame is None or frame.empty:
        return None
    return {
        "columns": [str(column) for column in frame.columns],
        "rows": [[_cell(value) for value in row] for row in frame.itertuples(index=False)],
    }


def _checked_figure(item: Mapping[str, str] | None) -> dict[str, str] | None:
    if not item:
        return None
    uri = str(item.get("data_uri", ""))
    if not uri.startswith("data:image/"):
        raise ValueError(
            f"Report figure {item.get('title')!r} is not an embedded image (data URI)."
        )
    return {
        "title": str(item.get("title", "")),
        "caption": str(item.get("caption", "")),
        "data_uri": uri,
    }


def flatten_parameters(parameters: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parameters as ``{"group.sub.key": value}`` (lists kept whole)."""
    flat: dict[str, Any] = {}
    for key, value in parameters.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_parameters(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _data_quality(report: Mapping[str, Any]) -> dict[str, Any]:
    counts = {
        "Patients read": report.get("patients_read"),
        "Patients included": report.get("patients_included"),
        "Patients excluded": report.get("patients_excluded"),
    }
    shown = {key: value for key, value in counts.items() if value is not None}
    rows = []
    for stage, centers in (report.get("counts_per_center_and_label") or {}).items():
        for center, values in (centers or {}).items():
            rows.append(
                {
                    "Stage": str(stage).replace("_", " "),
                    "Centre": center,
                    **{str(k).replace("_", " "): v for k, v in (values or {}).items()},
                }
            )
    columns = report.get("clinical_columns") or {}
    exclusions = pd.DataFrame(report.get("exclusions") or [])
    return {
        "counts": as_table(pd.DataFrame([shown])) if shown else None,
        "per_centre": as_table(pd.DataFrame(rows).fillna(0)) if rows else None,
        "clinical_used": ", ".join(map(str, columns.get("used", []))) if columns else "",
        "clinical_skipped": ", ".join(map(str, columns.get("skipped", []))) or "none",
        "exclusions": as_table(exclusions.head(_MAX_EXCLUSIONS_SHOWN)),
        "more": max(len(exclusions) - _MAX_EXCLUSIONS_SHOWN, 0),
    }


def _run_facts(metrics: Mapping[str, Any], calibration_bins: int) -> dict[str, Any]:
    models = list(metrics.get("models", {}))
    sizes: dict[str, str] = {}
    for split in SPLIT_ORDER:
        for entry in metrics.get("models", {}).values():
            values = entry.get("splits", {}).get(split)
            if values is not None:
                sizes.setdefault(split, f"{values.get('n')} patients, {values.get('events')} CLNM")
    level = float(metrics.get("confidence_level", 0.95))
    boot = metrics.get("bootstrap") or {}
    return {
        "models": [{"id": m, "label": model_label(m)} for m in models],
        "sizes": [{"label": split_label(s), "text": t} for s, t in sizes.items()],
        "level": f"{100 * level:g}%",
        "alpha": f"{1 - level:.2g}",
        "bootstrap": (
            f"{boot.get('n_resamples')} resamples" if boot.get("enabled") else "switched off"
        ),
        "threshold_rule": str(metrics.get("threshold_rule", "")),
        "calibration_bins": calibration_bins,
    }


def _first(frame: pd.DataFrame | None, column: str) -> str:
    if frame is None or frame.empty or column not in frame.columns:
        return tables.MISSING
    return _cell(frame[column].iloc[0])


def load_template(path: str | Path | None = None) -> jinja2.Template:
    """The packaged template, or the user's template at ``path`` (autoescape on).

    A user template may extend or include the packaged one as ``clnm/report.html.j2``.

    Raises
    ------
    ReportTemplateError
        If the file does not exist or is not a valid Jinja2 template.
    """
    packaged = jinja2.PackageLoader("clnm_kedro.reporting", "templates")
    loaders: list[jinja2.BaseLoader] = [jinja2.PrefixLoader({"clnm": packaged})]
    name = f"clnm/{DEFAULT_TEMPLATE}"
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ReportTemplateError(
                f"evaluation.report_template: no template file at {str(file)!r} (relative "
                "paths start at the project folder); set it to null for the packaged template."
            )
        loaders.insert(0, jinja2.FileSystemLoader(str(file.resolve().parent)))
        name = file.name
    environment = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    try:
        return environment.get_template(name)
    except jinja2.TemplateError as error:
        raise ReportTemplateError(f"The report template {name!r} is not valid: {error}") from error


def _head_estimates(comparisons: Sequence[pd.DataFrame]) -> list[str]:
    """Which ``train_cv`` estimate the heads' out-of-fold rows are (``nested``,
    ``selection``), from their classifier comparisons."""
    found: set[str] = set()
    for frame in comparisons:
        if frame is not None and "train_cv_estimate" in getattr(frame, "columns", ()):
            found |= set(frame["train_cv_estimate"].dropna().astype(str))
    return sorted(found)


def render_report(
    *,
    metrics: Mapping[str, Any],
    delong_tests: pd.DataFrame,
    subgroup_auc: pd.DataFrame,
    oracle_comparison: pd.DataFrame,
    data_quality: Mapping[str, Any] | None,
    parameters: Mapping[str, Any] | None,
    figures: Mapping[str, Mapping[str, str]] | Sequence[Mapping[str, str]] = (),
    table_one: Mapping[str, pd.DataFrame] | None = None,
    odds_ratios: pd.DataFrame | None = None,
    net_benefit: pd.DataFrame | None = None,
    sample_size: Mapping[str, Any] | None = None,
    classifier_comparison: Sequence[pd.DataFrame] = (),
    summary_sentences: Sequence[str] = (),
    table_splits: Sequence[str] = ("train_cv", "external"),
    net_benefit_thresholds: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5),
    subgroup_min_events: int = 20,
    calibration_bins: int = 10,
    template: str | Path | None = None,
    title: str = REPORT_TITLE,
) -> str:
    """The whole report as one HTML document.

    Parameters
    ----------
    metrics
        Content of ``metrics.json``.
    delong_tests, subgroup_auc, oracle_comparison
        The evaluation tables (the oracle table may be empty: no oracle section).
    data_quality
        The preprocessing data-quality report (counts, exclusions).
    parameters
        The run's parameters, shown flattened.
    figures
        Embedded figures from :func:`embed_figure`, by name (those of
        :data:`PLACED_FIGURES` go into their sections, the others under "Figures"); a plain
        sequence is shown under "Figures" in order.
    table_one
        ``{"by_centre": frame, "by_outcome": frame}`` from
        :func:`clnm_kedro.reporting.table_one.baseline_table`.
    odds_ratios
        From :func:`clnm_kedro.reporting.odds_ratios.odds_ratio_table`.
    net_benefit
        From :func:`clnm_kedro.reporting.clinical_utility.net_benefit_by_model`; the table
        shows ``net_benefit_thresholds``.
    sample_size
        From :func:`clnm_kedro.reporting.sample_size.assess_sample_size`.
    classifier_comparison
        The heads' ``*_head_comparison`` tables.
    summary_sentences
        The plain-language summary (:func:`clnm_kedro.reporting.summary.plain_summary`).
    table_splits
        Data sets of the study and calibration tables.
    template
        A user's Jinja2 template (path); ``None``: the packaged one.
    title
        Page title.
    """
    level = float(metrics.get("confidence_level", 0.95))
    if isinstance(figures, Mapping):
        named = {key: _checked_figure(item) for key, item in figures.items()}
    else:
        named = {f"figure_{i}": _checked_figure(item) for i, item in enumerate(figures)}
    placed = {key: named.get(key) for key in PLACED_FIGURES}
    others = [item for key, item in named.items() if key not in PLACED_FIGURES and item]

    sections: list[tuple[str, str]] = [
        ("plain-summary", "Summary"),
        ("cohort", "Cohort and data quality"),
    ]
    if table_one:
        sections.append(("table-one", "Table 1: baseline characteristics"))
    if odds_ratios is not None:
        sections.append(("odds-ratios", "Clinical indicators: odds ratios"))
    if sample_size:
        sections.append(("sample-size", "Sample size"))
    sections += [
        ("study-table", "Study table"),
        ("delong", "Paired DeLong tests"),
        ("calibration", "Calibration"),
    ]
    if net_benefit is not None or placed["decision_curves"]:
        sections.append(("utility", "Clinical utility"))
    if not subgroup_auc.empty:
        sections.append(("subgroups", "AUC by subgroup"))
    sections.append(("classifiers", "Classifier comparison"))
    oracle: dict[str, Any] = {}
    if not oracle_comparison.empty:
        sections.append(("oracle", "Models against the oracle (synthetic cohort)"))
        oracle = {
            "table": as_table(tables.oracle_table(oracle_comparison)),
            "figure": _checked_figure(
                embed_figure(
                    plot_oracle_comparison(oracle_comparison),
                    "External test set: each model against the oracle",
                )
            ),
        }
    if others:
        sections.append(("figures", "Figures"))
    sections += [
        ("methods", "Methods"),
        ("tripod", "TRIPOD+AI checklist"),
        ("parameters", "Parameters of this run"),
    ]
    headings = dict(sections)
    filled, to_write = tripod_rows(headings | {"cut-offs": "Cut-offs"})

    shown_net = None
    if net_benefit is not None and not net_benefit.empty:
        wanted = {round(float(t), 6) for t in net_benefit_thresholds}
        shown_net = net_benefit[net_benefit["threshold"].round(6).isin(wanted)]
    flat = flatten_parameters(parameters or {})
    sample = dict(sample_size or {})
    context = {
        "title": title,
        "sections": [{"anchor": a, "heading": h} for a, h in sections],
        "summary_sentences": list(summary_sentences),
        "run": _run_facts(metrics, calibration_bins),
        "data_quality": _data_quality(data_quality or {}),
        "table_one": {
            "by_centre": as_table(tables.table_one_display((table_one or {}).get("by_centre"))),
            "by_outcome": as_table(tables.table_one_display((table_one or {}).get("by_outcome"))),
        },
        "odds": {
            "table": as_table(
                tables.odds_ratio_display(odds_ratios) if odds_ratios is not None else None
            ),
            "n": _first(odds_ratios, "multi_n"),
            "events": _first(odds_ratios, "multi_events"),
        },
        "sample_size": {
            "table": as_table(tables.sample_size_table(sample)),
            "external_events": sample.get("external_events", 0),
            "external_n": sample.get("external_n", 0),
            "min_external_events": sample.get("min_external_events", 100),
        },
        "study_table": as_table(tables.study_table(metrics, delong_tests, table_splits)),
        "thresholds": as_table(tables.thresholds_table(metrics)),
        "delong": as_table(tables.delong_table(delong_tests, level)),
        "calibration": as_table(tables.calibration_table(metrics, table_splits)),
        "net_benefit": as_table(
            tables.net_benefit_table(shown_net, level) if shown_net is not None else None
        ),
        "subgroups": {
            "table": as_table(tables.subgroup_table(subgroup_auc, level, subgroup_min_events)),
            "interactions": as_table(tables.interaction_table(subgroup_auc)),
            "min_events": subgroup_min_events,
        },
        "classifiers": as_table(tables.classifier_comparison_table(classifier_comparison)),
        "head_estimates": _head_estimates(classifier_comparison),
        "networks_out_of_fold": any(
            "train_cv" in (metrics.get("models", {}).get(model, {}).get("splits") or {})
            for model in NETWORK_MODELS
        ),
        "oracle": oracle,
        "figures": placed,
        "other_figures": others,
        "tripod": {"filled": filled, "to_write": to_write},
        "parameters": as_table(
            pd.DataFrame({"Parameter": list(flat), "Value": list(flat.values())})
        ),
    }
    try:
        document = load_template(template).render(**context)
    except jinja2.TemplateError as error:
        raise ReportTemplateError(f"The report template failed to render: {error}") from error
    # Plain ASCII (other characters as HTML references): reads the same whatever the encoding.
    return document.encode("ascii", "xmlcharrefreplace").decode("ascii")
