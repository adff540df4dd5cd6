"""``evaluation``: the study's statistics, figures, Grad-CAM and the HTML report."""

from clnm_kedro.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
