"""``clinical_modeling``: Optuna-tuned classifier heads on the clinical indicators."""

from clnm_kedro.pipelines.clinical_modeling.pipeline import create_pipeline

__all__ = ["create_pipeline"]
