"""``feature_extraction``: DL features and probabilities of every patient from each network."""

from clnm_kedro.pipelines.feature_extraction.pipeline import create_pipeline

__all__ = ["create_pipeline"]
