"""A trained network kept as one checkpoint file (weights, parameter block, training history).

Saving takes the :class:`~clnm_kedro.networks.TrainingResult` of ``train_network`` (written
with ``save_checkpoint``); loading returns the network itself, rebuilt in eval mode (read
with ``load_checkpoint``, weights only: loading never runs code stored in the file).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from kedro.io import AbstractVersionedDataset, DatasetError, Version
from kedro_datasets._typing import JSONPreview
from torch import nn

from clnm_kedro.networks import TrainingResult, save_checkpoint
from clnm_kedro.networks.cross_fitting import FoldEnsembleResult, load_network_file, save_ensemble


class TorchModelDataset(AbstractVersionedDataset[TrainingResult, nn.Module]):
    """One network checkpoint on the local disk; optional Kedro versioning.

    Parameters
    ----------
    filepath
        The checkpoint file (``.pt``).
    load_args
        ``device``: where the loaded network is placed (``cpu`` by default, ``auto`` picks
        CUDA when available).
    version
        Kedro versioning (``versioned: true`` in the catalog).
    metadata
        Free-form metadata (kedro-viz layer), not used by the dataset.

    Examples
    --------
    In the catalog::

        "{model}_network":
          type: clnm_kedro.datasets.TorchModelDataset
          filepath: data/06_models/{model}_network.pt
    """

    def __init__(
        self,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        load_args = dict(load_args or {})
        unknown = sorted(set(load_args) - {"device"})
        if unknown:
            raise DatasetError(
                f"TorchModelDataset({filepath}): unknown load_args {unknown}; known: ['device']"
            )
        self._load_args = load_args
        self.metadata = metadata
        super().__init__(filepath=PurePosixPath(filepath), version=version)

    def _device(self) -> torch.device:
        requested = str(self._load_args.get("device", "cpu"))
        if requested == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(requested)

    def load(self) -> nn.Module:
        """The trained network (eval mode) on ``load_args.device``."""
        path = Path(self._get_load_path())
        return load_network_file(path, device=self._device())

    def save(self, data: TrainingResult) -> None:
        """Write one training run (or the fold trainings and calibration of a fold ensemble)."""
        if isinstance(data, FoldEnsembleResult):
            save_ensemble(data, Path(self._get_save_path()))
            return
        if not isinstance(data, TrainingResult):
            raise DatasetError(
                f"TorchModelDataset({self._filepath}) saves the TrainingResult returned by "
                f"train_network or a FoldEnsembleResult, got {type(data).__name__}"
            )
        save_checkpoint(data, Path(self._get_save_path()))

    def preview(self) -> JSONPreview:
        """kedro-viz: the kept epoch, its validation AUC, the size and settings of the network."""
        path = Path(self._get_load_path())
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if "folds" in payload:
            folds = payload["folds"]
            return JSONPreview(json.dumps({
                "fold_networks": len(folds),
                "epochs_kept": [fold.get("best_epoch") for fold in folds],
                "calibration": payload.get("calibration"),
                "seed": payload.get("seed"),
                "settings": payload.get("config"),
            }, default=str))
        summary = {
            "best_epoch": payload.get("best_epoch"),
            "best_validation_auc": payload.get("best_val_auc"),
            "epochs_trained": len(payload.get("history", {}).get("epoch", [])),
            "seed": payload.get("seed"),
            "weights": int(sum(t.numel() for t in payload.get("state_dict", {}).values())),
            "settings": payload.get("config"),
        }
        return JSONPreview(json.dumps(summary, default=str))

    def _exists(self) -> bool:
        try:
            path = Path(self._get_load_path())
        except DatasetError:
            return False
        return path.is_file()

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(self._filepath),
            "load_args": self._load_args,
            "version": self._version,
        }
