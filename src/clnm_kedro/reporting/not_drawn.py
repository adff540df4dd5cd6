"""A figure that could not be drawn never fails a run.

A plot is an extra: when drawing it fails (a degenerate curve, a library's corner case), the
failure is logged as a warning and the figure is replaced by one that says what was not drawn
and why, so the report shows the gap instead of the run stopping.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from matplotlib.figure import Figure

__all__ = ["figure_never_fails", "not_drawn"]

logger = logging.getLogger(__name__)


def not_drawn(title: str, error: BaseException) -> Figure:
    """A figure saying that ``title`` could not be drawn, and why (logged as a warning)."""
    logger.warning(
        "The figure %r could not be drawn (%s: %s); skipped.", title, type(error).__name__, error
    )
    figure = Figure(figsize=(6.4, 2.4))
    axes = figure.subplots()
    axes.set_axis_off()
    axes.set_title(title, loc="left")
    axes.text(
        0.5,
        0.5,
        f"Not drawn: {type(error).__name__}: {error}",
        ha="center",
        va="center",
        wrap=True,
        parse_math=False,
    )
    return figure


def figure_never_fails(
    title: str, embed: Callable[[Figure, str, str], Any]
) -> Callable[[Callable[..., tuple[Figure, Any]]], Callable[..., tuple[Figure, Any]]]:
    """Wrap a node returning ``(figure, report_figure)``: an exception becomes a figure saying
    that ``title`` was not drawn and why, embedded in the report with ``embed``."""

    def decorate(plot: Callable[..., tuple[Figure, Any]]) -> Callable[..., tuple[Figure, Any]]:
        @functools.wraps(plot)
        def guarded(*args: Any, **kwargs: Any) -> tuple[Figure, Any]:
            try:
                return plot(*args, **kwargs)
            except Exception as error:  # a figure is an extra: it never sinks the run
                figure = not_drawn(title, error)
                return figure, embed(figure, title, f"not drawn: {type(error).__name__}")

        return guarded

    return decorate
