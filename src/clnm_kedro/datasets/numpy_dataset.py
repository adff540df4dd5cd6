"""A numpy array cached as one ``.npy`` file (the view-paired ROI crops)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, Literal

import numpy as np
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import ImagePreview
from PIL import Image

PREVIEW_GAP_PX = 4


def crop_montage(crops: np.ndarray, n_patients: int = 6) -> np.ndarray:
    """The first ``n_patients`` crops as one greyscale picture: a row per patient, a column
    per view (``(N, views, H, W)``) or one image per patient in a row (``(N, H, W)``)."""
    array = np.asarray(crops[:n_patients])
    if array.ndim == 3:
        array = array[np.newaxis]  # one row of single images
    if array.ndim != 4 or array.size == 0:
        raise ValueError(
            f"Only images (N, H, W) or view-paired images (N, views, H, W) can be shown; "
            f"got an array of shape {np.shape(crops)}"
        )
    rows, columns, height, width = array.shape
    if array.dtype != np.uint8:
        low, high = float(np.min(array)), float(np.max(array))
        array = ((array - low) / ((high - low) or 1.0) * 255).astype(np.uint8)
    picture = np.full(
        (
            rows * (height + PREVIEW_GAP_PX) - PREVIEW_GAP_PX,
            columns * (width + PREVIEW_GAP_PX) - PREVIEW_GAP_PX,
        ),
        255,
        dtype=np.uint8,
    )
    for row in range(rows):
        for column in range(columns):
            top, left = row * (height + PREVIEW_GAP_PX), column * (width + PREVIEW_GAP_PX)
            picture[top : top + height, left : left + width] = array[row, column]
    return picture


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

    def preview(self, n_patients: int = 6) -> ImagePreview:
        """kedro-viz: the crops of the first ``n_patients`` patients, both views side by side."""
        if not self._filepath.is_file():
            raise DatasetError(f"No array at '{self._filepath}' yet: run the pipeline first.")
        picture = crop_montage(np.load(self._filepath, mmap_mode="r"), n_patients)
        buffer = io.BytesIO()
        Image.fromarray(picture, mode="L").save(buffer, format="PNG")
        return ImagePreview(base64.b64encode(buffer.getvalue()).decode("ascii"))

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "mmap_mode": self._mmap_mode}
