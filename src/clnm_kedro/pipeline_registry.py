"""Project pipelines.

Every folder under ``pipelines/`` is registered under its own name, ``demo`` included
(``simulate`` followed by a whole training run: the quick start). ``__default__`` (plain
``kedro run``) is the training run, ``preprocessing`` to ``evaluation``, on the cohort that
``cohort_dir`` points to (the synthetic one unless told otherwise). It never simulates, so it
is safe to run on a real cohort. Both ``__default__`` and ``demo`` also write the scoring
contract and risk thresholds, so a run of either fits everything the ``inference`` scoring
pipeline reads; ``clnm_kedro.model_packaging`` then logs it with those artifacts as one MLflow
model, registered as ``clnm_kedro``.

A name that is not registered (``kedro run --pipelines evalution``) stops the command with one
line naming the registered pipelines, instead of Kedro's ``ImportError`` traceback.
"""

from __future__ import annotations

import re
from difflib import get_close_matches
from importlib.resources import files

import click
from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from clnm_kedro.pipelines import TRAINING_PIPELINES
from clnm_kedro.pipelines.inference.pipeline import with_scoring_artifacts


class UnknownPipelineError(click.ClickException):
    """A pipeline name that is not registered; the Kedro CLI prints it as one line."""

    def __init__(self, name: str, registered: list[str]) -> None:
        close = get_close_matches(name, registered, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        super().__init__(f"no pipeline '{name}'{hint}; registered: {', '.join(registered)}")
        self.name = name
        self.registered = registered


def registered_names() -> list[str]:
    """Every pipeline name ``kedro run --pipelines`` accepts: one per folder, ``__default__``."""
    folders = files("clnm_kedro.pipelines").iterdir()
    names = sorted(p.name for p in folders if p.is_dir() and (p / "pipeline.py").is_file())
    return ["__default__", *names]


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.

    Raises:
        UnknownPipelineError: ``kedro run --pipelines`` named a pipeline that does not exist.
    """
    try:
        pipelines = find_pipelines(raise_errors=True)
    except ImportError as error:
        # Kedro loads only the requested folders and reports a name without one as a failed
        # import (no underlying cause); a folder whose import really failed is re-raised.
        missing = re.search(r"'clnm_kedro\.pipelines\.([^']+)'", str(error))
        registered = registered_names()
        if error.__cause__ is None and missing and missing.group(1) not in registered:
            raise UnknownPipelineError(missing.group(1), registered) from None
        raise
    training = [pipelines[name] for name in TRAINING_PIPELINES if name in pipelines]
    pipelines["__default__"] = sum(training, Pipeline([]))
    # Only the folders named in `kedro run --pipelines ...` are loaded: package what is there.
    if len(training) == len(TRAINING_PIPELINES):
        pipelines["__default__"] = with_scoring_artifacts(pipelines["__default__"])
    if "demo" in pipelines:
        pipelines["demo"] = with_scoring_artifacts(pipelines["demo"])
    return pipelines
