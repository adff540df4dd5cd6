"""The self-contained HTML report of an evaluation run.

One file, opened offline in any browser: figures are embedded as base64 PNG data URIs, the
style sheet is inline, and nothing refers to a network resource (no external CSS, scripts or
fonts). Every text taken from the data is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from clnm_kedro.reporting import tables
from clnm_kedro.reporting.figures import plot_oracle_comparison
from clnm_kedro.reporting.predictions import SPLIT_ORDER, model_label, split_label

__all__ = ["embed_figure", "figure_to_data_uri", "flatten_parameters", "render_report"]

REPORT_TITLE = "Occult central lymph node metastasis in PTMC: evaluation report"
_MAX_EXCLUSIONS_SHOWN = 200

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 2em auto; max-width: 1200px; padding: 0 1.5em; color: #1d1d1f;
       line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.88em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.55em; text-align: left;
         vertical-align: top; }
th { background: #f2f2f5; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e5e5; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.3em; }
nav ul { columns: 2; font-size: 0.92em; }
.note { color: #555; font-size: 0.9em; }
code { background: #f2f2f5; padding: 0 0.25em; }
"""


def figure_to_data_uri(figure: Figure, dpi: int = 110) -> str:
    """The figure as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/png;base64,{encoded}"


def embed_figure(figure: Figure, title: str, caption: str = "") -> dict[str, str]:
    """A figure ready for :func:`render_report`: ``{"title", "caption", "data_uri"}``."""
    return {"title": title, "caption": caption, "data_uri": figure_to_data_uri(figure)}


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(frame: pd.DataFrame, empty: str = "Nothing to show.") -> str:
    if frame is None or frame.empty:
        return f'<p class="note">{_text(empty)}</p>'
    head = "".join(f"<th>{_text(column)}</th>" for column in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_text(_cell(value))}</td>" for value in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None:
        return tables.MISSING
    if isinstance(value, float):
        return tables.MISSING if math.isnan(value) else f"{value:g}"
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)


def _figure(item: Mapping[str, str]) -> str:
    uri = str(item.get("data_uri", ""))
    if not uri.startswith("data:image/"):
        raise ValueError(
            f"Report figure {item.get('title')!r} is not an embedded image (data URI)."
        )
    caption = _text(item.get("title", ""))
    if item.get("caption"):
        caption += f". {_text(item['caption'])}"
    return (
        f'<figure><img src="{_text(uri)}" alt="{_text(item.get("title", "figure"))}" />'
        f"<figcaption>{caption}</figcaption></figure>"
    )


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


def _data_quality(report: Mapping[str, Any]) -> str:
    if not report:
        return '<p class="note">No data-quality report was given.</p>'
    parts: list[str] = []
    counts = {
        "Patients read": report.get("patients_read"),
        "Patients included": report.get("patients_included"),
        "Patients excluded": report.get("patients_excluded"),
    }
    shown = {key: value for key, value in counts.items() if value is not None}
    if shown:
        parts.append(_table(pd.DataFrame([shown])))
    per_center = report.get("counts_per_center_and_label") or {}
    rows = []
    for stage, centers in per_center.items():
        for center, values in (centers or {}).items():
            rows.append(
                {
                    "Stage": str(stage).replace("_", " "),
                    "Centre": center,
                    **{str(k).replace("_", " "): v for k, v in (values or {}).items()},
                }
            )
    if rows:
        parts.append("<h3>Patients per centre and outcome</h3>")
        parts.append(_table(pd.DataFrame(rows).fillna(0)))
    columns = report.get("clinical_columns") or {}
    if columns:
        used = ", ".join(map(str, columns.get("used", []))) or tables.MISSING
        skipped = ", ".join(map(str, columns.get("skipped", []))) or "none"
        parts.append(
            f"<p>Clinical indicators used: {_text(used)}. Named but absent: {_text(skipped)}.</p>"
        )
    exclusions = report.get("exclusions") or []
    parts.append("<h3>Exclusions</h3>")
    if exclusions:
        frame = pd.DataFrame(exclusions)
        more = len(frame) - _MAX_EXCLUSIONS_SHOWN
        parts.append(_table(frame.head(_MAX_EXCLUSIONS_SHOWN)))
        if more > 0:
            parts.append(f'<p class="note">… and {more} more (see the data-quality report).</p>')
    else:
        parts.append('<p class="note">No patient was excluded.</p>')
    return "\n".join(parts)


def _summary(metrics: Mapping[str, Any]) -> str:
    models = list(metrics.get("models", {}))
    names = ", ".join(f"{model_label(m)} (<code>{_text(m)}</code>)" for m in models)
    sizes: dict[str, str] = {}
    for split in SPLIT_ORDER:
        for entry in metrics.get("models", {}).values():
            values = entry.get("splits", {}).get(split)
            if values is not None:
                sizes.setdefault(split, f"{values.get('n')} patients, {values.get('events')} CLNM")
    counts = "; ".join(f"{split_label(s)}: {_text(v)}" for s, v in sizes.items())
    level = metrics.get("confidence_level", 0.95)
    rule = metrics.get("threshold_rule", "")
    return (
        f"<p>Models evaluated: {names or 'none'}.</p><p>{counts}.</p>"
        f"<p>Confidence intervals are {100 * float(level):g}% DeLong intervals (as R's pROC). "
        f"Cut-off rule: {_text(rule)}.</p>"
    )


_METHODS = """
<ul>
<li>AUC with DeLong's variance; paired DeLong test for two models scored on the same patients
(two-sided), numbers identical to R's pROC.</li>
<li>Sensitivity, specificity, accuracy, PPV and NPV at each model's Youden cut-off
(score &#8805; cut-off is positive), chosen on training predictions only and applied unchanged to
the external test set.</li>
<li>Calibration: observed CLNM rate in quantile groups of predicted risk; Brier score;
calibration intercept (slope fixed at 1; ideal 0) and slope (ideal 1); Hosmer&#8211;Lemeshow
test over the same groups.</li>
<li>Decision curves: net benefit against treat-all and treat-none (Vickers &amp; Elkin).</li>
<li>Grad-CAM on the last convolution of each view's CNN branch; warm colours mark the image
regions that raised the predicted CLNM risk.</li>
</ul>
"""


def render_report(
    *,
    metrics: Mapping[str, Any],
    delong_tests: pd.DataFrame,
    subgroup_auc: pd.DataFrame,
    oracle_comparison: pd.DataFrame,
    data_quality: Mapping[str, Any] | None,
    parameters: Mapping[str, Any] | None,
    figures: Sequence[Mapping[str, str]] = (),
    table_splits: Sequence[str] = ("train", "external"),
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
        Embedded figures from :func:`embed_figure`, in the order shown.
    table_splits
        Data sets of the study table.
    title
        Page title.
    """
    level = float(metrics.get("confidence_level", 0.95))
    sections: list[tuple[str, str, str]] = [
        ("summary", "Summary", _summary(metrics)),
        ("cohort", "Cohort and data quality", _data_quality(data_quality or {})),
        (
            "study-table",
            "Study table",
            _table(tables.study_table(metrics, delong_tests, table_splits))
            + "<h3>Cut-offs</h3>"
            + _table(tables.thresholds_table(metrics)),
        ),
        (
            "delong",
            "Paired DeLong tests",
            _table(tables.delong_table(delong_tests), "No comparison could be made."),
        ),
    ]
    if not subgroup_auc.empty:
        sections.append(
            ("subgroups", "AUC by subgroup", _table(tables.subgroup_table(subgroup_auc, level)))
        )
    if not oracle_comparison.empty:
        figure = plot_oracle_comparison(oracle_comparison)
        sections.append(
            (
                "oracle",
                "Models against the oracle (synthetic cohort)",
                '<p class="note">The oracle is the simulator\'s true risk of each patient: '
                "the best any model could do. A model whose training AUC exceeds the oracle's "
                "has learnt noise.</p>"
                + _table(tables.oracle_table(oracle_comparison))
                + _figure(embed_figure(figure, "External test set: each model against the oracle")),
            )
        )
    if figures:
        sections.append(("figures", "Figures", "\n".join(_figure(item) for item in figures)))
    flat = flatten_parameters(parameters or {})
    parameter_table = pd.DataFrame({"Parameter": list(flat), "Value": list(flat.values())})
    sections.append(("methods", "Methods", _METHODS))
    sections.append(
        (
            "parameters",
            "Parameters of this run",
            _table(parameter_table, "No parameters were given."),
        )
    )

    contents = "".join(
        f'<li><a href="#{anchor}">{_text(heading)}</a></li>' for anchor, heading, _ in sections
    )
    body = "\n".join(
        f'<section id="{anchor}"><h2>{_text(heading)}</h2>\n{content}</section>'
        for anchor, heading, content in sections
    )
    document = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8" />'
        '<meta name="viewport" content="width=device-width, initial-scale=1" />'
        f"<title>{_text(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{_text(title)}</h1>\n<nav><ul>{contents}</ul></nav>\n{body}\n"
        "</body></html>\n"
    )
    # Plain ASCII (other characters as HTML references): reads the same whatever the encoding.
    return document.encode("ascii", "xmlcharrefreplace").decode("ascii")
