"""ROI cropping: the crop holds the known box, squared, padded, windowed and anti-aliased."""

from __future__ import annotations

import numpy as np
import pytest

from clnm_kedro.cohort.roi import box_problem, crop_roi, square_window, window_intensity


@pytest.fixture
def frame() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, size=(100, 120)).astype(np.uint8)


def test_crop_without_margin_is_exactly_the_box(frame: np.ndarray) -> None:
    box = (30, 20, 62, 52)  # 32 × 32
    crop = crop_roi(frame, box, margin=0.0, size=32, percentiles=None)
    assert crop.dtype == np.uint8
    assert crop.shape == (32, 32)
    np.testing.assert_array_equal(crop, frame[20:52, 30:62])


def test_margin_adds_context_on_every_side(frame: np.ndarray) -> None:
    box = (40, 30, 72, 62)  # 32 × 32; margin 0.25 → 8 pixels each side → 48 × 48
    assert square_window(box, 0.25) == (32, 22, 80, 70)
    crop = crop_roi(frame, box, margin=0.25, size=48, percentiles=None)
    np.testing.assert_array_equal(crop, frame[22:70, 32:80])
    np.testing.assert_array_equal(crop[8:40, 8:40], frame[30:62, 40:72])


def test_non_square_box_is_squared_around_its_centre() -> None:
    x0, y0, x1, y1 = square_window((10, 40, 50, 50), margin=0.0)  # 40 wide, 10 high
    assert (x1 - x0, y1 - y0) == (40, 40)
    assert (x0 + x1) / 2 == 30
    assert (y0 + y1) / 2 == 45


def test_outside_the_frame_is_black() -> None:
    image = np.full((40, 40), 200, dtype=np.uint8)
    crop = crop_roi(image, (0, 0, 20, 20), margin=0.5, size=40, percentiles=None)
    # The square is (-10, -10) .. (30, 30): its first 10 rows and columns lie outside.
    assert (crop[:10, :] == 0).all()
    assert (crop[:, :10] == 0).all()
    assert (crop[10:, 10:] == 200).all()


def test_windowing_makes_bit_depth_and_gain_irrelevant() -> None:
    pattern = np.random.default_rng(3).integers(0, 200, size=(64, 64)).astype(np.float32)
    eight_bit = pattern.astype(np.uint8)
    sixteen_bit = (pattern * 300.0 + 1000.0).astype(np.uint16)  # other gain and offset
    box = (8, 8, 56, 56)
    crop_8 = crop_roi(eight_bit, box, margin=0.0, size=48, percentiles=(1.0, 99.0))
    crop_16 = crop_roi(sixteen_bit, box, margin=0.0, size=48, percentiles=(1.0, 99.0))
    assert np.abs(crop_8.astype(int) - crop_16.astype(int)).max() <= 1
    assert crop_16.min() == 0
    assert crop_16.max() == 255
    resized_8 = crop_roi(eight_bit, box, margin=0.1, size=40, percentiles=(1.0, 99.0))
    resized_16 = crop_roi(sixteen_bit, box, margin=0.1, size=40, percentiles=(1.0, 99.0))
    assert np.abs(resized_8.astype(int) - resized_16.astype(int)).max() <= 1


def test_window_maps_percentiles_to_full_range() -> None:
    values = np.linspace(1000.0, 2000.0, 10_001, dtype=np.float32).reshape(1, -1)
    windowed = window_intensity(values, (10.0, 90.0))
    assert windowed.min() == 0.0
    assert windowed.max() == 255.0
    assert windowed[0, 5000] == pytest.approx(127.5, abs=0.1)  # the median lands mid-grey


def test_downsizing_is_anti_aliased() -> None:
    stripes = np.zeros((128, 128), dtype=np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: aliasing would keep only 0s or 255s
    crop = crop_roi(stripes, (0, 0, 128, 128), margin=0.0, size=32, percentiles=None)
    assert abs(float(crop.mean()) - 127.5) < 3
    assert crop.std() < 10


def test_upsizing_keeps_the_box_content() -> None:
    image = np.zeros((50, 50), dtype=np.uint8)
    image[10:20, 10:20] = 255
    crop = crop_roi(image, (10, 10, 20, 20), margin=0.0, size=40, percentiles=None)
    assert crop.shape == (40, 40)
    assert crop[4:36, 4:36].min() == 255


@pytest.mark.parametrize(
    ("box", "words"),
    [
        ((10, 10, 10, 20), "empty"),
        ((20, 10, 10, 20), "inverted"),
        ((10, 30, 20, 20), "inverted"),
        ((-1, 0, 10, 10), "outside"),
        ((0, 0, 41, 10), "outside"),
        ((0, 0, 10, 31), "outside"),
    ],
)
def test_bad_boxes_are_named(box: tuple[int, int, int, int], words: str) -> None:
    assert words in box_problem(box, height=30, width=40)
    with pytest.raises(ValueError, match=words):
        crop_roi(np.zeros((30, 40), dtype=np.uint8), box, margin=0.0, size=8)


def test_a_box_touching_the_frame_edges_is_inside() -> None:
    assert box_problem((0, 0, 40, 30), height=30, width=40) == ""
