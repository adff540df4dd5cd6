"""A numpy array cached as one ``.npy`` file (the view-paired ROI crops)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from kedro.io import AbstractDataset


class NumpyDataset(AbstractDataset[np.ndarray, np.ndarray]):
    """One array in numpy's own format; ``mmap_mode: r`` maps it instead of reading it."""

    def __init__(
        self,
        filepath: str,
        mmap_mode: Literal["r", "c"] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = Path(filepath)
        self._mmap_mode = mmap_mode
        self.metadata = metadata

    def load(self) -> np.ndarray:
        """Read (or memory-map) the array."""
        return np.load(self._filepath, mmap_mode=self._mmap_mode, allow_pickle=False)

    def save(self, data: np.ndarray) -> None:
        """Write the array atomically (a crash never leaves a half-written file behind)."""
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._filepath.with_name(self._filepath.name + ".partial")
        with tmp.open("wb") as handle:
            np.save(handle, np.asarray(data), allow_pickle=False)
        tmp.replace(self._filepath)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "mmap_mode": self._mmap_mode}
