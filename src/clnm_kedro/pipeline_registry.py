"""Project pipelines.

Every folder under ``pipelines/`` is registered under its own name, ``demo`` included
(``simulate`` followed by a whole training run: the quick start). ``__default__`` (plain
``kedro run``) is the training run, ``preprocessing`` to ``evaluation``, on the cohort that
``cohort_dir`` points to (the synthetic one unless told otherwise). It never simulates, so it
is safe to run on a real cohort. Both ``__default__`` and ``demo`` are kedro-mlflow
``PipelineML`` objects: they end by logging the ``inference`` scoring pipeline with its fitted
artifacts as one MLflow model, registered as ``clnm_kedro``.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from clnm_kedro.pipelines import TRAINING_PIPELINES
from clnm_kedro.pipelines.inference.pipeline import with_packaged_model


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    pipelines = find_pipelines(raise_errors=True)
    training = [pipelines[name] for name in TRAINING_PIPELINES if name in pipelines]
    pipelines["__default__"] = sum(training, Pipeline([]))
    # Only the folders named in `kedro run --pipelines ...` are loaded: package what is there.
    if len(training) == len(TRAINING_PIPELINES):
        pipelines["__default__"] = with_packaged_model(pipelines["__default__"])
    if "demo" in pipelines:
        pipelines["demo"] = with_packaged_model(pipelines["demo"])
    return pipelines
