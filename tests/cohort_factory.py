"""Write small, valid cohort folders (input contract, docs/input_contract.md) for the tests.

Fast and independent of the project's simulator: each frame is a plain 8-bit greyscale PNG
(noisy background, a dark nodule filling its box), and the boxes are known exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pydicom.pixels
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

from clnm_kedro.registry import VIEWS

BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")
BACKGROUND = (110, 170)  # 8-bit grey range of the background noise
NODULE = 40  # grey value inside the box
# Identifying values written into test DICOM files; they must never reach any output.
DICOM_IDENTIFIERS = {
    "PatientName": "ZARNOWDOE^QUILLJANE",  # long parts: no chance match in base64
    "PatientID": "MRN-4471-XZ",
    "PatientBirthDate": "19610223",
}


@dataclass(frozen=True)
class FactoryCohort:
    """A cohort written by :func:`write_cohort`: where it is and what it holds."""

    root: Path
    clinical: pd.DataFrame
    rois: pd.DataFrame

    def image(self, patient_id: str, view: str) -> Path:
        """The (single) image file of ``patient_id``'s ``view``."""
        (path,) = sorted((self.root / "images" / patient_id).glob(f"{view}.*"))
        return path

    def write_tables(self, clinical: pd.DataFrame | None = None, rois: pd.DataFrame | None = None):
        """Overwrite clinical.csv and/or rois.csv (to make a bad cohort)."""
        if clinical is not None:
            clinical.to_csv(self.root / "clinical.csv", index=False)
        if rois is not None:
            rois.to_csv(self.root / "rois.csv", index=False)


def frame_with_nodule(
    height: int, width: int, box: Sequence[int], rng: np.random.Generator
) -> np.ndarray:
    """An 8-bit frame: uniform noise in ``BACKGROUND`` and value ``NODULE`` inside ``box``."""
    frame = rng.integers(*BACKGROUND, size=(height, width), dtype=np.uint8)
    x_min, y_min, x_max, y_max = box
    frame[y_min:y_max, x_min:x_max] = NODULE
    return frame


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    rescale: tuple[float, float] | None = None,
) -> None:
    """Write ``pixels`` as an uncompressed ultrasound DICOM carrying identifying metadata.

    ``rescale`` is (slope, intercept); ``pixels`` shaped (frames, rows, columns) makes a
    multi-frame file, (rows, columns, 3) an RGB one.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = UltrasoundImageStorage
    dataset.Modality = "US"
    for keyword, value in DICOM_IDENTIFIERS.items():
        setattr(dataset, keyword, value)
    bits = bits_stored or pixels.dtype.itemsize * 8
    pydicom.pixels.set_pixel_data(dataset, pixels, photometric, bits)
    if rescale is not None:
        dataset.RescaleSlope, dataset.RescaleIntercept = rescale
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)


def write_cohort(
    root: Path,
    n_train: int = 30,
    n_external: int = 12,
    *,
    centers: Sequence[str] = ("CENTER_A", "CENTER_B"),
    frame: tuple[int, int] = (60, 80),
    image_format: str = "png",
    extra_columns: Mapping[str, Sequence[object]] | None = None,
    seed: int = 0,
) -> FactoryCohort:
    """Write a valid cohort: ``n_train`` patients of ``centers[0]``, ``n_external`` of ``[1]``.

    Every third patient has clnm = 1. Boxes are squares of 12–24 px inside a ``frame``
    (height, width) image. ``image_format`` is "png", "jpg" or "dcm" (8-bit greyscale).
    ``extra_columns`` adds columns (one value per patient) to clinical.csv.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=False)
    n = n_train + n_external
    ids = [f"P{i:03d}" for i in range(1, n + 1)]
    clinical = pd.DataFrame(
        {
            "patient_id": ids,
            "center": [centers[0]] * n_train + [centers[1]] * n_external,
            "clnm": [int(i % 3 == 0) for i in range(n)],
            "age": rng.integers(20, 75, n),
            "sex": rng.choice(["F", "M"], n, p=[0.75, 0.25]),
            "tumor_size_mm": np.round(rng.uniform(2.0, 10.0, n), 1),
            "capsule_contact": rng.integers(0, 2, n),
            "microcalcification": rng.integers(0, 2, n),
            "hashimoto": rng.integers(0, 2, n),
            "location": rng.choice(["upper", "middle", "lower", "isthmus"], n),
        }
    )
    for name, values in (extra_columns or {}).items():
        clinical[name] = list(values)
    height, width = frame
    rows = []
    for pid in ids:
        for view in VIEWS:
            side = int(rng.integers(12, 25))
            x_min = int(rng.integers(0, width - side + 1))
            y_min = int(rng.integers(0, height - side + 1))
            box = (x_min, y_min, x_min + side, y_min + side)
            rows.append(
                {"patient_id": pid, "view": view, **dict(zip(BOX_COLUMNS, box, strict=True))}
            )
            pixels = frame_with_nodule(height, width, box, rng)
            path = root / "images" / pid / f"{view}.{image_format}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if image_format == "dcm":
                write_dicom(path, pixels)
            elif image_format == "jpg":
                Image.fromarray(pixels).save(path, quality=95)
            else:
                Image.fromarray(pixels).save(path)
    rois = pd.DataFrame(rows)
    cohort = FactoryCohort(root=root, clinical=clinical, rois=rois)
    cohort.write_tables(clinical, rois)
    return cohort
