"""``dl_training``: the dual-channel network and the single-view baselines, one recipe."""

from clnm_kedro.pipelines.dl_training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
