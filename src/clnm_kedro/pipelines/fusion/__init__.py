"""``fusion``: Optuna-tuned heads on DL features (``dl_features``) and on DL features plus
clinical indicators (``combined``)."""

from clnm_kedro.pipelines.fusion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
