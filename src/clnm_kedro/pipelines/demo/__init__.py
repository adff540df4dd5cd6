"""``demo``: simulate the synthetic cohort, then run a whole training run on it."""

from clnm_kedro.pipelines.demo.pipeline import create_pipeline

__all__ = ["create_pipeline"]
