"""Crop the nodule's region of interest from an ultrasound frame.

A box is ``(x_min, y_min, x_max, y_max)`` in pixels of the stored image: x to the right, y down,
max exclusive (the input contract's ``rois.csv``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from clnm_kedro.cohort.errors import ImageReadError
from clnm_kedro.cohort.images import read_greyscale

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]


def box_problem(box: Sequence[float], height: int | None = None, width: int | None = None) -> str:
    """Why a box cannot be used, or ``""`` if it can.

    Parameters
    ----------
    box
        ``(x_min, y_min, x_max, y_max)``, max exclusive.
    height, width
        The image size; when given, the box must lie wholly inside the image.
    """
    x_min, y_min, x_max, y_max = box
    if x_max <= x_min or y_max <= y_min:
        kind = "empty" if (x_max == x_min or y_max == y_min) else "inverted"
        return (
            f"the box is {kind} (x {x_min}..{x_max}, y {y_min}..{y_max}); "
            "x_max must exceed x_min and y_max must exceed y_min"
        )
    if height is not None and width is not None:
        if x_min < 0 or y_min < 0 or x_max > width or y_max > height:
            return (
                f"the box (x {x_min}..{x_max}, y {y_min}..{y_max}) lies (partly) outside "
                f"the image ({width} wide, {height} high)"
            )
    return ""


def square_window(box: Sequence[float], margin: float) -> Box:
    """The square region cropped around a box.

    The box is widened by ``margin`` times its width on the left and on the right (and by
    ``margin`` times its height above and below), then made square around the box centre with
    side = the larger widened side (rounded up to whole pixels).

    Returns
    -------
    tuple[int, int, int, int]
        ``(x0, y0, x1, y1)`` of the square, max exclusive; it may extend beyond the image.
    """
    if margin < 0:
        raise ValueError(f"roi_margin must be >= 0, got {margin}")
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    side = max((x_max - x_min) * (1 + 2 * margin), (y_max - y_min) * (1 + 2 * margin))
    side_px = max(1, math.ceil(side - 1e-9))
    x0 = math.floor((x_min + x_max) / 2 - side_px / 2 + 0.5)
    y0 = math.floor((y_min + y_max) / 2 - side_px / 2 + 0.5)
    return x0, y0, x0 + side_px, y0 + side_px


def window_intensity(pixels: np.ndarray, percentiles: tuple[float, float] | None) -> np.ndarray:
    """Map the ``[p_low, p_high]`` percentiles of ``pixels`` to 0..255 (clipped), as float32.

    With ``percentiles=None`` the values are only clipped to 0..255 (for 8-bit images whose
    intensities should be kept as stored). A flat region maps to 0.
    """
    values = pixels.astype(np.float32, copy=False)
    if percentiles is None:
        return np.clip(values, 0.0, 255.0)
    p_low, p_high = percentiles
    if not 0.0 <= p_low < p_high <= 100.0:
        raise ValueError(
            f"intensity percentiles must satisfy 0 <= low < high <= 100, got {percentiles}"
        )
    low, high = np.percentile(values, [p_low, p_high])
    span = max(float(high - low), 1e-6)
    return np.clip((values - np.float32(low)) * np.float32(255.0 / span), 0.0, 255.0)


def crop_roi(
    image: np.ndarray,
    box: Sequence[float],
    margin: float,
    size: int,
    percentiles: tuple[float, float] | None = (0.5, 99.5),
) -> np.ndarray:
    """Crop a square around the box, window its intensity and resize it to ``size`` × ``size``.

    Parameters
    ----------
    image
        2-D greyscale frame (any dtype, any range).
    box
        ``(x_min, y_min, x_max, y_max)`` in pixels, max exclusive.
    margin
        Context added on each side, as a fraction of the box side (0.25 → a box 40 px wide
        gets 10 px on the left and 10 px on the right).
    size
        Side of the output crop in pixels.
    percentiles
        ``(p_low, p_high)``: the crop's intensity percentiles mapped to 0 and 255, computed on
        the image pixels inside the square (not on the padding), so that frames of different
        bit depth and gain give comparable crops. ``None`` keeps stored values (clipped to
        0..255).

    Returns
    -------
    numpy.ndarray
        uint8 array of shape (size, size). Parts of the square outside the frame are 0.
    """
    if image.ndim != 2:
        raise ValueError(f"crop_roi needs a 2-D greyscale image, got shape {image.shape}")
    if size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {size}")
    problem = box_problem(box, *image.shape)
    if problem:
        raise ValueError(problem)
    x0, y0, x1, y1 = square_window(box, margin)
    height, width = image.shape
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    windowed = window_intensity(image[iy0:iy1, ix0:ix1], percentiles)
    square = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    square[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = windowed
    if square.shape != (size, size):
        # Pillow's resampling filters widen with the scale factor, so downsizing is anti-aliased.
        frame = Image.fromarray(square)  # float32 → Pillow mode "F", no rounding
        resized = frame.resize((size, size), resample=Image.Resampling.BILINEAR)
        square = np.asarray(resized, dtype=np.float32)
    return np.clip(np.rint(square), 0, 255).astype(np.uint8)


def _check_not_blank(
    image: np.ndarray, box: Sequence[float], margin: float, patient_id: str, path: str
) -> None:
    """Refuse a crop whose whole window (box and margin) is one grey value: nothing to see."""
    x0, y0, x1, y1 = square_window(box, margin)
    height, width = image.shape
    window = image[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
    if window.size and window.min() == window.max():
        raise ImageReadError(
            patient_id,
            path,
            f"the box and its margin hold one grey value only ({float(window.min()):g}): a "
            "blank or saturated region; check the image and the box",
        )


def crop_manifest(
    manifest: pd.DataFrame,
    *,
    views: Sequence[str],
    size: int,
    margin: float,
    percentiles: tuple[float, float] | None,
    progress: bool = True,
) -> tuple[np.ndarray, list[str], list[dict[str, object]]]:
    """Decode every listed image once, crop its ROI and pair the views per patient.

    Images are streamed one patient at a time into one pre-allocated uint8 array, so memory
    does not grow with the number of images beyond that array.

    Parameters
    ----------
    manifest
        One row per patient and view (``patient_id, center, clnm, view, file, path,
        x_min, y_min, x_max, y_max``), every patient with all ``views``, rows of a patient
        together (as :func:`clnm_kedro.cohort.validation.check_image_files` returns it).
    views
        View names; their order is axis 1 of the result.
    size, margin, percentiles
        As in :func:`crop_roi`.
    progress
        Show a progress bar.

    Returns
    -------
    crops
        uint8 array (n_kept, len(views), size, size); row i is the i-th kept patient.
    kept
        patient_id of each row of ``crops``.
    failures
        One record (``patient_id, center, clnm, view, file, reason``) per image that could not
        be decoded or cropped; its patient is left out.
    """
    patients = list(dict.fromkeys(manifest["patient_id"]))
    crops = np.zeros((len(patients), len(views), size, size), dtype=np.uint8)
    view_index = {view: i for i, view in enumerate(views)}
    kept: list[str] = []
    failures: list[dict[str, object]] = []
    groups = manifest.groupby("patient_id", sort=False)
    bar = tqdm(  # disable=None: shown on a terminal only
        groups,
        total=len(patients),
        desc="Cropping ROIs",
        unit="patient",
        disable=None if progress else True,
    )
    for patient_id, rows in bar:
        slot = crops[len(kept)]
        ok = len(rows) == len(views) and set(rows["view"]) == set(views)
        for row in rows.itertuples(index=False):
            box = (row.x_min, row.y_min, row.x_max, row.y_max)
            try:
                image = read_greyscale(row.path, str(patient_id))
                problem = box_problem(box, *image.shape)
                if problem:
                    raise ImageReadError(str(patient_id), row.path, problem)
                _check_not_blank(image, box, margin, str(patient_id), row.path)
                slot[view_index[row.view]] = crop_roi(image, box, margin, size, percentiles)
            except ImageReadError as error:
                ok = False
                failures.append(
                    {
                        "patient_id": row.patient_id,
                        "center": row.center,
                        "clnm": row.clnm,
                        "view": row.view,
                        "file": row.file,
                        "reason": error.reason,
                    }
                )
        if ok:
            kept.append(str(patient_id))
        else:
            slot[...] = 0
    bar.close()
    # A leading-axis slice is a view: trimming copies nothing.
    return crops[: len(kept)], kept, failures
