"""The quick start: ``simulate`` followed by every training pipeline.

A folder of its own (not only a name in the registry) because Kedro imports just the pipeline
folders named in ``kedro run --pipelines ...``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from kedro.pipeline import Pipeline

from clnm_kedro.pipelines import TRAINING_PIPELINES


def create_pipeline(**kwargs: Any) -> Pipeline:
    """``simulate`` + ``preprocessing`` … ``evaluation``."""
    parts = [
        import_module(f"clnm_kedro.pipelines.{name}").create_pipeline()
        for name in ("simulate", *TRAINING_PIPELINES)
    ]
    return sum(parts, Pipeline([]))
