"""``recalibrate``: refit the calibration of every model on labelled patients of a new centre."""

from clnm_kedro.pipelines.recalibrate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
