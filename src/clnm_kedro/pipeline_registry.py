"""Project pipelines.

Every folder under ``pipelines/`` is registered under its own name. Two more names:

- ``__default__`` (plain ``kedro run``): everything from preprocessing to the report, on the
  cohort that ``cohort_dir`` points to (the synthetic one unless told otherwise). It never
  simulates, so it is safe to run on a real cohort.
- ``demo``: ``simulate`` followed by ``__default__`` — the quick start on the synthetic cohort.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Pipelines that are not part of a training run.
_NOT_IN_TRAINING_RUN = ("simulate", "inference")


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    pipelines = find_pipelines(raise_errors=True)
    training = [p for name, p in pipelines.items() if name not in _NOT_IN_TRAINING_RUN]
    pipelines["__default__"] = sum(training, Pipeline([]))
    pipelines["demo"] = pipelines.get("simulate", Pipeline([])) + pipelines["__default__"]
    return pipelines
