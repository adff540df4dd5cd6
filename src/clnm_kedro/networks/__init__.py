"""Dual-view and single-view ultrasound CNNs: building, training, inference (no Kedro needed).

Typical use (what the ``dl_training`` and ``feature_extraction`` nodes do)::

    result = train_network(roi_crops, patient_splits, config, seed=1)
    save_checkpoint(result, "dual.pt")
    model, config = load_checkpoint("dual.pt")
    table = features_table(extract_features(model, roi_crops), patient_splits["patient_id"])
"""

from __future__ import annotations

from clnm_kedro.networks.architecture import (
    BACKBONES,
    FUSIONS,
    NETWORK_DEFAULTS,
    NETWORK_VIEWS,
    UltrasoundNetwork,
    build_network,
    standardise_images,
)
from clnm_kedro.networks.augment import AUGMENT_DEFAULTS, augment_batch
from clnm_kedro.networks.data import VIEW_NAMES, fit_validation_indices
from clnm_kedro.networks.inference import (
    extract_features,
    features_and_probabilities,
    features_table,
    predict_probabilities,
    predictions_table,
)
from clnm_kedro.networks.training import (
    TRAINING_DEFAULTS,
    TrainingResult,
    config_for_kind,
    default_config,
    load_checkpoint,
    model_from_state,
    plot_training_curves,
    resolve_config,
    save_checkpoint,
    select_device,
    train_network,
)

__all__ = [
    "AUGMENT_DEFAULTS",
    "BACKBONES",
    "FUSIONS",
    "NETWORK_DEFAULTS",
    "NETWORK_VIEWS",
    "TRAINING_DEFAULTS",
    "VIEW_NAMES",
    "TrainingResult",
    "UltrasoundNetwork",
    "augment_batch",
    "build_network",
    "config_for_kind",
    "default_config",
    "extract_features",
    "features_and_probabilities",
    "features_table",
    "fit_validation_indices",
    "load_checkpoint",
    "model_from_state",
    "plot_training_curves",
    "predict_probabilities",
    "predictions_table",
    "resolve_config",
    "save_checkpoint",
    "select_device",
    "standardise_images",
    "train_network",
]
