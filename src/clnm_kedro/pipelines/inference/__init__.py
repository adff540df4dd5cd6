"""``inference``: CLNM risk for new patients, and the model packaged in MLflow."""

from clnm_kedro.pipelines.inference.pipeline import create_pipeline

__all__ = ["create_pipeline"]
