"""``simulate``: write a synthetic two-centre ultrasound cohort, its oracle risk beside it."""

from clnm_kedro.pipelines.simulate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
