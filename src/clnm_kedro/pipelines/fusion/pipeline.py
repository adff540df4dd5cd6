"""Wiring of the ``fusion`` pipeline (see ``head_inputs.py`` and ``head_template.py``)."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline

from clnm_kedro.pipelines.head_inputs import create_head_pipelines


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Input table and tuned head of each head model on DL features (alone or with clinical
    columns; ``dl_features`` and ``combined`` in :mod:`clnm_kedro.registry`), one namespace
    each."""
    return create_head_pipelines("fusion")
