"""``preprocessing``: validate the cohort, crop and pair the ROIs, assign splits."""

from clnm_kedro.pipelines.preprocessing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
