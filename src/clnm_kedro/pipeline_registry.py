"""Project pipelines.

Every folder under ``pipelines/`` is registered under its own name, ``demo`` included
(``simulate`` followed by a whole training run: the quick start). ``__default__`` (plain
``kedro run``) is the training run, ``preprocessing`` to ``evaluation``, on the cohort that
``cohort_dir`` points to (the synthetic one unless told otherwise). It never simulates, so it
is safe to run on a real cohort.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from clnm_kedro.pipelines import TRAINING_PIPELINES


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    pipelines = find_pipelines(raise_errors=True)
    training = [pipelines[name] for name in TRAINING_PIPELINES if name in pipelines]
    pipelines["__default__"] = sum(training, Pipeline([]))
    return pipelines
