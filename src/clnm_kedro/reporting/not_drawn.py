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
    title: str, caption: Callable[[Figure, str, str], Figure]
) -> Callable[[Callable[..., tuple[Figure, str]]], Callable[..., Figure]]:
    """Wrap a node returning ``(figure, caption)`` into one returning the figure captioned with
    ``title`` (``caption``: how a figure carries its title and caption to the report); an
    exception becomes a figure saying that ``title`` was not drawn and why."""

    def decorate(plot: Callable[..., tuple[Figure, str]]) -> Callable[..., Figure]:
        @functools.wraps(plot)
        def guarded(*args: Any, **kwargs: Any) -> Figure:
            try:
                figure, text = plot(*args, **kwargs)
            except Exception as error:  # a figure is an extra: it never sinks the run
                figure, text = not_drawn(title, error), f"not drawn: {type(error).__name__}"
            return caption(figure, title, text)

        return guarded

    return decorate
