"""Read ultrasound frames (PNG, JPEG, DICOM) as 2-D float32 greyscale arrays.

Only pixel values leave this module: no DICOM attribute (names, dates, identifiers, device) is
returned or kept. Files are opened for reading only.

Conventions
-----------
- 8-bit and 16-bit greyscale keep their stored values (as float32); intensity windowing is done
  later, per crop, so the bit depth and the scanner's gain do not matter downstream.
- Colour (RGB, RGBA, palette, YCbCr DICOM) is turned into luminance with the ITU-R BT.601
  weights (0.299 R + 0.587 G + 0.114 B), the same as Pillow's ``convert("L")`` but without
  rounding to 8 bits.
- DICOM: the modality rescale (slope, intercept) is applied and MONOCHROME1 (white = low
  values) is inverted so that bright is always high.
- A multi-frame DICOM (a cine clip) or an animated PNG is *refused* (the patient is excluded
  and the reason recorded): the ROI box in ``rois.csv`` refers to one stored image, and nothing
  in the contract says which frame that is. Export the annotated frame as a single-frame file.
- An image of more than :data:`MAX_PIXELS` pixels is refused from its header, before any
  decoding, in every format (Pillow's decompression-bomb limit, applied to DICOM as well).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pydicom.pixels
from PIL import Image

from clnm_kedro.cohort.errors import ImageReadError

DICOM_SUFFIXES = (".dcm",)
PIL_FORMATS = ("PNG", "JPEG")
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Pillow refuses to open a PNG or JPEG above twice its MAX_IMAGE_PIXELS (a decompression bomb);
# the same limit holds for DICOM, checked from the header (Rows x Columns x frames).
MAX_PIXELS = 2 * int(Image.MAX_IMAGE_PIXELS or 89_478_485)

_PIL_GREY_MODES = ("L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
_PIL_COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "P", "PA")


def is_dicom_path(path: Path) -> bool:
    """Whether the file is read as DICOM (by its suffix, as the input contract says)."""
    return Path(path).suffix.lower() in DICOM_SUFFIXES


def image_size(path: Path | str, patient_id: str = "") -> tuple[int, int]:
    """Height and width of an image from its header, without decoding the pixels.

    Parameters
    ----------
    path
        A PNG, JPEG or DICOM file.
    patient_id
        Named in the error message if the file cannot be read.

    Returns
    -------
    tuple[int, int]
        ``(height, width)`` in pixels.

    Raises
    ------
    ImageReadError
        The file is missing, empty, not an image, or a multi-frame DICOM.
    """
    path = Path(path)
    _check_file(path, patient_id)
    if is_dicom_path(path):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:
            raise ImageReadError(patient_id, path, f"not a readable DICOM file ({exc})") from exc
        _check_single_frame(header, path, patient_id)
        _check_decoder(header, path, patient_id)
        rows, columns = header.get("Rows"), header.get("Columns")
        if not rows or not columns:
            raise ImageReadError(patient_id, path, "the DICOM header has no image size")
        _check_pixel_count(int(rows), int(columns), path, patient_id)
        return int(rows), int(columns)
    try:
        with Image.open(path, formats=PIL_FORMATS) as img:
            width, height = img.size
            frames = int(getattr(img, "n_frames", 1) or 1)
    except Image.DecompressionBombError:
        raise ImageReadError(patient_id, path, _too_large_reason()) from None
    except Exception as exc:
        raise ImageReadError(patient_id, path, f"not a readable PNG or JPEG image ({exc})") from exc
    if frames > 1:
        raise ImageReadError(
            patient_id,
            path,
            f"animated image ({frames} frames): the ROI box cannot be tied to one frame; "
            "export the annotated frame as a single still image",
        )
    _check_pixel_count(int(height), int(width), path, patient_id)
    return int(height), int(width)


def _too_large_reason(height: int | None = None, width: int | None = None) -> str:
    size = f" ({width}×{height} = {height * width:,} pixels)" if height and width else ""
    return (
        f"the image is too large{size}: more than {MAX_PIXELS:,} pixels, the limit for every "
        "format (a decompression bomb, or not an ultrasound frame)"
    )


def _check_pixel_count(height: int, width: int, path: Path, patient_id: str) -> None:
    if height * width > MAX_PIXELS:
        raise ImageReadError(patient_id, path, _too_large_reason(height, width))


def read_greyscale(path: Path | str, patient_id: str = "") -> np.ndarray:
    """Decode an image file into a 2-D float32 greyscale array.

    Parameters
    ----------
    path
        A PNG, JPEG (8-bit, 16-bit, greyscale, RGB/RGBA or palette) or DICOM file.
    patient_id
        Named in the error message if the file cannot be read.

    Returns
    -------
    numpy.ndarray
        float32 array of shape (height, width), stored intensities (not rescaled to 0..1).

    Raises
    ------
    ImageReadError
        The file is missing, empty, corrupt, in an unsupported pixel format, or multi-frame.
    """
    path = Path(path)
    _check_file(path, patient_id)
    pixels = _read_dicom(path, patient_id) if is_dicom_path(path) else _read_pil(path, patient_id)
    if pixels.ndim != 2 or pixels.size == 0:
        raise ImageReadError(patient_id, path, f"decoded to an array of shape {pixels.shape}")
    if not np.isfinite(pixels).all():
        raise ImageReadError(patient_id, path, "the pixel values contain NaN or infinity")
    return np.ascontiguousarray(pixels, dtype=np.float32)


def _check_file(path: Path, patient_id: str) -> None:
    if not path.is_file():
        raise ImageReadError(patient_id, path, "the file does not exist")
    if path.stat().st_size == 0:
        raise ImageReadError(patient_id, path, "the file is empty (0 bytes)")


def _check_single_frame(dataset: pydicom.Dataset, path: Path, patient_id: str) -> None:
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageReadError(
            patient_id,
            path,
            f"multi-frame DICOM ({frames} frames): the ROI box cannot be tied to one frame; "
            "export the annotated frame as a single-frame file",
        )


def _check_decoder(dataset: pydicom.Dataset, path: Path, patient_id: str) -> None:
    """Refuse compressed pixel data that no installed decoder can read, saying so plainly."""
    meta = getattr(dataset, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if syntax is None or not syntax.is_compressed:
        return
    try:
        available = pydicom.pixels.get_decoder(syntax).is_available
    except NotImplementedError:  # a transfer syntax pydicom has no decoder for at all
        available = False
    if not available:
        raise ImageReadError(
            patient_id,
            path,
            f"the DICOM pixel data is compressed ({syntax.name}); no decoder for it is "
            "installed (pydicom needs pylibjpeg with its plugins, or gdcm): export the "
            "images uncompressed, or install a decoder",
        )


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float32) @ LUMA_WEIGHTS


def _read_pil(path: Path, patient_id: str) -> np.ndarray:
    try:
        with Image.open(path, formats=PIL_FORMATS) as img:
            if int(getattr(img, "n_frames", 1) or 1) > 1:
                raise ImageReadError(patient_id, path, "animated image: one still frame needed")
            img.load()
            mode = img.mode
            if mode in _PIL_GREY_MODES:
                return np.asarray(img).astype(np.float32)
            if mode == "1":
                return np.asarray(img.convert("L")).astype(np.float32)
            if mode in ("LA", "La"):
                return np.asarray(img.getchannel("L")).astype(np.float32)
            if mode in _PIL_COLOUR_MODES:
                return _luminance(np.asarray(img.convert("RGB")))
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(patient_id, path, _too_large_reason()) from None
    except Exception as exc:
        raise ImageReadError(patient_id, path, f"corrupt or unreadable image ({exc})") from exc
    raise ImageReadError(patient_id, path, f"unsupported pixel format '{mode}'")


def _read_dicom(path: Path, patient_id: str) -> np.ndarray:
    try:
        dataset = pydicom.dcmread(path)
    except Exception as exc:
        raise ImageReadError(patient_id, path, f"not a readable DICOM file ({exc})") from exc
    _check_single_frame(dataset, path, patient_id)
    if "PixelData" not in dataset:
        raise ImageReadError(patient_id, path, "the DICOM file has no pixel data")
    _check_decoder(dataset, path, patient_id)
    _check_pixel_count(
        int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0)), path, patient_id
    )
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        pixels = dataset.pixel_array  # YBR colour is converted to RGB here
        if photometric == "PALETTE COLOR":
            return _luminance(pydicom.pixels.apply_color_lut(pixels, dataset))
        if pixels.ndim == 3:  # (rows, columns, samples): colour
            return _luminance(pixels)
        grey = np.asarray(pydicom.pixels.apply_modality_lut(pixels, dataset), dtype=np.float32)
    except Exception as exc:
        raise ImageReadError(
            patient_id, path, f"cannot decode the DICOM pixel data ({exc})"
        ) from exc
    if photometric == "MONOCHROME1":
        # Low values are white: flip so that bright is high (an affine map, which the
        # per-crop intensity windowing makes irrelevant to the scale).
        grey = grey.max() + grey.min() - grey
    return grey
