"""The evaluation report (one self-contained HTML file), with a preview for kedro-viz."""

from __future__ import annotations

import re

from kedro_datasets._typing import HTMLPreview
from kedro_datasets.text import TextDataset

_TITLE = re.compile(r"<h1\b.*?</h1>", re.DOTALL)
_IMAGE = re.compile(r"<img\b[^>]*>", re.DOTALL)
_ALT = re.compile(r"\balt=\"([^\"]*)\"")


def _section(html: str, section_id: str) -> str | None:
    match = re.search(
        rf"<section\b[^>]*\bid=\"{re.escape(section_id)}\"[^>]*>.*?</section>", html, re.DOTALL
    )
    return match.group(0) if match else None


def report_preview(html: str, sections: list[str]) -> str:
    """The report's title and the ``sections`` named (their ``id``), figures left out.

    A figure is an inline PNG of hundreds of kilobytes; the preview names it instead. A
    section the report does not have is skipped (the report leaves out what a run lacks).
    """
    parts = [match.group(0)] if (match := _TITLE.search(html)) else []
    parts += [found for name in sections if (found := _section(html, name)) is not None]
    preview = "\n".join(parts)

    def name(image: re.Match[str]) -> str:
        alt = _ALT.search(image.group(0))
        return f"<p><em>[figure: {alt.group(1) if alt else 'in the report'}]</em></p>"

    return _IMAGE.sub(name, preview)


class ReportHTMLDataset(TextDataset):
    """``text.TextDataset`` for ``report.html`` whose kedro-viz preview is the report's
    summary: its title and the sections named in the catalog's ``preview_args``."""

    def preview(self, sections: list[str] | None = None) -> HTMLPreview:
        """The title and ``sections`` (default: the plain-language summary)."""
        html = super().load()  # the file itself (also inside kedro-mlflow's artifact wrapper)
        return HTMLPreview(report_preview(html, sections or ["plain-summary"]))
