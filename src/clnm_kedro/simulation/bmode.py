"""B-mode rendering of one section through the neck, exported as a whole scanner frame.

The image is formed as on a scanner, in simplified physics:

1. a map of tissue echogenicity (backscatter strength, thyroid gland = 1) and of specular
   reflectors (skin line, fasciae, gland capsule, vessel walls, air of the trachea, echogenic
   foci), and a map of relative attenuation (fluid ~0, air and calcium high);
2. a complex Gaussian scatterer field with that strength, attenuated with depth (cumulated along
   each scan line) and partly compensated by an imperfect time-gain compensation;
3. convolution with the point-spread function (Gaussian; the axial width smaller than the
   lateral), envelope detection (a Rayleigh-like speckle), log compression into the scanner's
   dynamic range with its gain, optional speckle-reduction smoothing;
4. the image placed in a black frame with burned-in text, calipers at the nodule's extent, a depth
   scale, a focus marker and a grey bar, as exported by a scanner.

Everything random comes from the patient's own generator, so a frame does not depend on the
order in which patients are rendered.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from clnm_kedro.simulation.nodule import Nodule, View, elevation_weight

F32 = np.float32


@dataclass(frozen=True)
class Scanner:
    """One centre's ultrasound system and export layout (``simulate.centers[].scanner``)."""

    center: str
    institution: str
    probe: str
    frequency_mhz: float
    frame_size: tuple[int, int]
    image_origin: tuple[int, int]
    pixel_spacing_mm: float
    depth_mm: float
    width_mm: float
    gain_db: float
    gain_jitter_db: float
    dynamic_range_db: float
    psf_axial_mm: float
    psf_lateral_mm: float
    slice_thickness_mm: float
    attenuation_db_cm_mhz: float
    tgc_compensation: float
    tgc_ripple_db: float
    smoothing_px: float
    text_panel: str
    caliper: str

    @classmethod
    def from_params(cls, center: str, scanner: dict[str, Any]) -> Scanner:
        """Build from a checked ``scanner`` parameter block."""
        values: dict[str, Any] = {"center": center}
        for f in fields(cls):
            if f.name == "center":
                continue
            value = scanner[f.name]
            if f.name in ("frame_size", "image_origin"):
                value = (int(value[0]), int(value[1]))
            elif f.type == "float":
                value = float(value)
            values[f.name] = value
        return cls(**values)

    @property
    def rows(self) -> int:
        """Height of the B-mode image, px."""
        return round(self.depth_mm / self.pixel_spacing_mm)

    @property
    def cols(self) -> int:
        """Width of the B-mode image, px."""
        return round(self.width_mm / self.pixel_spacing_mm)


@dataclass(frozen=True)
class Anatomy:
    """One patient's neck around the nodule (mm), shared by both views; drawn per patient."""

    side: str  # "right", "left" or "isthmus"
    hashimoto: bool
    skin_mm: float
    fat_mm: float
    gland_anterior_mm: float  # depth of the gland capsule above the nodule
    gland_thickness_mm: float
    nodule_depth_mm: float  # depth of the nodule's centre
    transverse_offset_mm: float  # nodule centre, horizontal position in each image
    longitudinal_offset_mm: float
    lobe_half_width_mm: float
    lobe_length_mm: float
    nodule_in_lobe_lateral: float  # -0.3..0.3 of the lobe half-width (positive = medial)
    nodule_in_lobe_cranial: float  # -0.55..0.55 of the lobe half-length (positive = cranial)
    tracheal_gap_mm: float  # nodule to the medial capsule facing the trachea (NaN: isthmus)
    polar_gap_mm: float  # nodule to the capsule at the pole (NaN: not an upper/lower nodule)
    polar_side: str  # "cranial", "caudal" or "none"
    carotid_radius_mm: float
    jugular_flattening: float
    trachea_radius_mm: float
    isthmus_thickness_mm: float
    nodule_echo: float
    nodule_attenuation: float
    gain_offset_db: float
    focus_depth_mm: float
    acquired: dt.datetime


def sample_anatomy(
    rng: np.random.Generator, record: dict[str, Any], nodule: Nodule, scanner: Scanner
) -> Anatomy:
    """Draw the patient's anatomy, consistent with the nodule's place in the gland."""
    isthmus = record["location"] == "isthmus"
    side = "isthmus" if isthmus else ("right" if rng.uniform() < 0.5 else "left")
    skin = float(rng.uniform(1.0, 1.6))
    fat = float(rng.uniform(0.8, 2.5) if isthmus else rng.uniform(1.0, 3.5))
    muscle = float(rng.uniform(1.5, 3.0) if isthmus else rng.uniform(2.5, 4.5))
    anterior = skin + fat + muscle + 0.4
    thickness = float(record["gland_thickness_mm"])
    _, low, high = nodule.measure()
    gap = float(record["capsule_gap_mm"])
    if record["capsule_side"] == "anterior":
        depth = anterior + gap - float(low[1])
    else:
        depth = anterior + thickness - gap - float(high[1])
    cranial = {
        "upper": rng.uniform(0.30, 0.50),
        "middle": rng.uniform(-0.15, 0.15),
        "lower": rng.uniform(-0.50, -0.30),
        "isthmus": rng.uniform(-0.15, 0.15),
    }[record["location"]]
    days = int(rng.integers(0, 6 * 365))
    seconds = int(rng.integers(8 * 3600, 17 * 3600))
    acquired = dt.datetime(2018, 1, 1) + dt.timedelta(days=days, seconds=seconds)
    return Anatomy(
        side=side,
        hashimoto=bool(record["hashimoto"]),
        skin_mm=skin,
        fat_mm=fat,
        gland_anterior_mm=anterior,
        gland_thickness_mm=thickness,
        nodule_depth_mm=float(depth),
        transverse_offset_mm=float(rng.uniform(-3.0, 3.0)),
        longitudinal_offset_mm=float(rng.uniform(-3.0, 3.0)),
        lobe_half_width_mm=float(rng.uniform(7.5, 10.0)),
        lobe_length_mm=float(rng.uniform(40.0, 52.0)),
        nodule_in_lobe_lateral=float(rng.uniform(-0.3, 0.3)),
        nodule_in_lobe_cranial=float(cranial),
        tracheal_gap_mm=float(record.get("tracheal_gap_mm", math.nan)),
        polar_gap_mm=float(record.get("polar_gap_mm", math.nan)),
        polar_side=str(record.get("polar_side", "none")),
        carotid_radius_mm=float(rng.uniform(2.8, 3.8)),
        jugular_flattening=float(rng.uniform(0.3, 0.8)),
        trachea_radius_mm=float(rng.uniform(8.0, 10.5)),
        isthmus_thickness_mm=float(rng.uniform(2.0, 4.0)),
        nodule_echo=float(np.exp(rng.normal(np.log(0.04), 0.25))),
        nodule_attenuation=float(rng.uniform(1.0, 1.8)),
        gain_offset_db=float(rng.normal(0.0, scanner.gain_jitter_db)),
        focus_depth_mm=float(round(depth / 5.0) * 5.0 or 5.0),
        acquired=acquired,
    )


# ---------------------------------------------------------------------------------------------
# the echogenicity, reflector and attenuation maps

#: backscatter (relative to thyroid parenchyma = 1) of the tissues around the gland
ECHO = {
    "connective": 0.10,
    "skin": 0.8,
    "fat": 0.09,
    "fat_septum": 0.5,
    "muscle": 0.045,
    "muscle_fibre": 0.20,
    "cartilage": 0.06,
    "lumen": 0.002,
}


@lru_cache(maxsize=64)
def _interpolation_weights(n_out: int, n_coarse: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Left neighbour and weight for linear interpolation from a coarse grid (spacing ``step``)."""
    t = np.arange(n_out, dtype=np.float64) / step + 1.0
    left = np.clip(np.floor(t).astype(np.intp), 0, n_coarse - 2)
    return left, (t - left).astype(np.float32)


def _upsample(coarse: np.ndarray, n_out: int, step: int, axis: int) -> np.ndarray:
    """Linear interpolation of ``coarse`` along ``axis`` to ``n_out`` points (no BLAS)."""
    left, weight = _interpolation_weights(n_out, coarse.shape[axis], step)
    shape = [1, 1]
    shape[axis] = n_out
    weight = weight.reshape(shape)
    return (
        np.take(coarse, left, axis=axis) * (F32(1.0) - weight)
        + np.take(coarse, left + 1, axis=axis) * weight
    )


class _Canvas:
    """Tissue maps on the B-mode grid; coordinates in mm (x = 0 at the image centre)."""

    def __init__(self, scanner: Scanner, rng: np.random.Generator) -> None:
        self.rng = rng
        self.dx = scanner.pixel_spacing_mm
        self.rows, self.cols = scanner.rows, scanner.cols
        self.x = ((np.arange(self.cols) - (self.cols - 1) / 2.0) * self.dx).astype(F32)
        self.y = ((np.arange(self.rows) + 0.5) * self.dx).astype(F32)
        shape = (self.rows, self.cols)
        self.echo = np.full(shape, ECHO["connective"], F32)
        self.reflector = np.zeros(shape, F32)
        self.attenuation = np.ones(shape, F32)
        self.artefact = np.zeros(shape, F32)

    def window(
        self, x0: float, x1: float, y0: float, y1: float
    ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
        """Pixel slices and the mm coordinates (row vector x, column vector y) of a rectangle."""
        c0 = max(int(np.searchsorted(self.x, x0)), 0)
        c1 = min(int(np.searchsorted(self.x, x1)) + 1, self.cols)
        r0 = max(int(np.searchsorted(self.y, y0)), 0)
        r1 = min(int(np.searchsorted(self.y, y1)) + 1, self.rows)
        if c0 >= c1 or r0 >= r1:
            return None
        return (slice(r0, r1), slice(c0, c1)), self.x[None, c0:c1], self.y[r0:r1, None]

    def noise(
        self, scale_mm: tuple[float, float], region: tuple[slice, slice] | None = None
    ) -> np.ndarray:
        """Smooth unit-variance noise with correlation lengths (depth, lateral) in mm."""
        rows = self.rows if region is None else region[0].stop - region[0].start
        cols = self.cols if region is None else region[1].stop - region[1].start
        sy, sx = (max(v / self.dx, 0.5) for v in scale_mm)
        step_y, step_x = max(int(sy / 1.5), 1), max(int(sx / 1.5), 1)
        n_y, n_x = rows // step_y + 4, cols // step_x + 4
        coarse = self.rng.standard_normal((n_y, n_x), dtype=F32)
        coarse = ndimage.gaussian_filter(coarse, (sy / step_y, sx / step_x), mode="wrap")
        # linear interpolation to the pixel grid
        out = coarse[1 : rows + 1] if step_y == 1 else _upsample(coarse, rows, step_y, axis=0)
        out = out[:, 1 : cols + 1] if step_x == 1 else _upsample(out, cols, step_x, axis=1)
        return ((out - out.mean()) / (out.std() + F32(1e-6))).astype(F32)

    def noise_1d(self, scale_mm: float) -> np.ndarray:
        """Smooth unit-variance noise along x (one value per column)."""
        out = ndimage.gaussian_filter1d(
            self.rng.standard_normal(self.cols, dtype=F32), scale_mm / self.dx, mode="wrap"
        )
        return ((out - out.mean()) / (out.std() + F32(1e-6))).astype(F32)

    def smooth_curve(self, amplitude_mm: float, wavelength_mm: float) -> np.ndarray:
        """A smooth random function of x (per column), e.g. to make boundaries less regular."""
        out = np.zeros(self.cols, F32)
        for k in (1.0, 1.7, 2.9):
            phase = float(self.rng.uniform(0.0, 2.0 * np.pi))
            weight = float(self.rng.normal()) / k
            out += F32(weight) * np.sin(self.x * F32(2 * np.pi * k / wavelength_mm) + F32(phase))
        return out * F32(amplitude_mm / 1.2)

    def add_line(self, depth: np.ndarray, amplitude: float | np.ndarray, width_mm: float) -> None:
        """A specular reflector along ``depth`` (mm, one per column)."""
        depth = np.broadcast_to(np.asarray(depth, F32), (self.cols,))
        win = self.window(
            float(self.x[0]),
            float(self.x[-1]),
            float(depth.min()) - 4 * width_mm,
            float(depth.max()) + 4 * width_mm,
        )
        if win is None:
            return
        sl, _, Y = win
        profile = np.exp(F32(-0.5) * ((Y - depth[None, sl[1]]) / F32(width_mm)) ** 2)
        self.reflector[sl] += np.asarray(amplitude, F32) * profile


def _superellipse(X, Y, center, semi_axes, power):
    """Normalised radius of a superellipse (1 on its boundary) and the signed mm distance to it.

    The distance is the first-order estimate ``(r - 1) / |grad r|`` (negative inside).
    """
    (cx, cy), (ax, ay) = center, semi_axes
    u = np.abs(X - F32(cx)) * F32(1.0 / ax)
    v = np.abs(Y - F32(cy)) * F32(1.0 / ay)
    if power == 2.0:
        up, vp = u, v
        r = np.sqrt(u * u + v * v)
        grad_scale = F32(1.0) / np.maximum(r, F32(1e-6))
    else:
        up, vp = u ** F32(power - 1.0), v ** F32(power - 1.0)
        r = (up * u + vp * v) ** F32(1.0 / power)
        grad_scale = np.maximum(r, F32(1e-6)) ** F32(1.0 - power)
    grad = grad_scale * np.sqrt((up * F32(1.0 / ax)) ** 2 + (vp * F32(1.0 / ay)) ** 2)
    dist = (r - F32(1.0)) / np.maximum(grad, F32(1e-6))
    return r, dist


def _line(dist: np.ndarray, width_mm: float) -> np.ndarray:
    """A thin bright line profile (0..1) at distance 0."""
    return np.exp(F32(-0.5) * (dist * F32(1.0 / width_mm)) ** 2)


def _layers(canvas: _Canvas, anatomy: Anatomy, view: View) -> np.ndarray:
    """Skin, subcutaneous fat and strap muscles; returns the depth where muscle ends (per x)."""
    skin_end = F32(anatomy.skin_mm) + canvas.smooth_curve(0.12, 25.0)
    fat_end = skin_end + F32(anatomy.fat_mm) + canvas.smooth_curve(0.4, 30.0)
    muscle_end = F32(anatomy.gland_anterior_mm - 0.4) + canvas.smooth_curve(0.35, 35.0)
    muscle_end = np.maximum(muscle_end, fat_end + F32(1.0))
    win = canvas.window(float(canvas.x[0]), float(canvas.x[-1]), 0.0, float(muscle_end.max()))
    assert win is not None
    sl, _, Y = win
    skin = Y < skin_end
    fat = ~skin & (Y < fat_end)
    muscle = ~skin & ~fat & (Y < muscle_end)
    echo = canvas.echo[sl]
    echo[skin] = ECHO["skin"]
    septa = canvas.noise((0.12, 2.0), sl) > 1.5
    echo[fat] = ECHO["fat"]
    echo[fat & septa] = ECHO["fat_septum"]
    fibres = canvas.noise((0.10, 3.5) if view == "longitudinal" else (0.12, 0.2), sl)
    echo[muscle] = ECHO["muscle"]
    echo[muscle & (fibres > 1.4)] = ECHO["muscle_fibre"]
    texture = F32(1.0) + F32(0.4) * canvas.noise_1d(2.0)
    canvas.add_line(np.full(canvas.cols, 0.12, F32), 1.6, 0.07)  # probe-skin interface
    canvas.add_line(skin_end, 0.5 * texture, 0.06)
    canvas.add_line(fat_end, 0.45 * texture[::-1], 0.06)  # superficial fascia of the straps
    canvas.add_line(muscle_end, 0.35 * texture, 0.06)
    return muscle_end


def _gland_echo(canvas: _Canvas, region: tuple[slice, slice], hashimoto: bool) -> np.ndarray:
    """Thyroid parenchyma: homogeneous, or in Hashimoto's thyroiditis darker and patchy."""
    base = F32(1.0) + F32(0.08) * canvas.noise((1.5, 1.5), region)
    if not hashimoto:
        return base
    # micronodular pattern: small hypoechoic patches, echogenic fibrous septa
    patches = canvas.noise((0.9, 0.9), region)
    septa = canvas.noise((0.1, 1.6), region) > 1.6
    echo = F32(0.6) * base * np.where(patches > 0.3, F32(0.22), F32(1.0))
    return np.where(septa, F32(1.1), echo).astype(F32)


def _paint_gland(canvas: _Canvas, shapes, anatomy: Anatomy) -> np.ndarray:
    """Gland = union of superellipses ``(cx, cy, ax, ay, power)``: parenchyma and capsule line.

    The boundary is made a little irregular; returns the gland mask.
    """
    dist = np.full((canvas.rows, canvas.cols), 1e3, F32)
    warp = canvas.smooth_curve(0.35, 12.0)
    bounds = [np.inf, -np.inf, np.inf, -np.inf]
    for cx, cy, ax, ay, power in shapes:
        win = canvas.window(cx - ax - 1.0, cx + ax + 1.0, cy - ay - 1.0, cy + ay + 1.0)
        if win is None:
            continue
        sl, X, Y = win
        d = _superellipse(X, Y - warp[None, sl[1]], (cx, cy), (ax, ay), power)[1]
        dist[sl] = np.minimum(dist[sl], d)
        bounds = [
            min(bounds[0], sl[0].start),
            max(bounds[1], sl[0].stop),
            min(bounds[2], sl[1].start),
            max(bounds[3], sl[1].stop),
        ]
    if not np.isfinite(bounds[0]):
        return np.zeros_like(dist, bool)
    region = (slice(int(bounds[0]), int(bounds[1])), slice(int(bounds[2]), int(bounds[3])))
    local = dist[region]
    inside = local < 0
    canvas.echo[region][inside] = _gland_echo(canvas, region, anatomy.hashimoto)[inside]
    texture = F32(1.0) + F32(0.35) * canvas.noise((0.3, 1.5), region)
    canvas.reflector[region] += F32(0.6) * _line(local, 0.07) * np.maximum(texture, F32(0.0))
    return dist < 0


def _disc(canvas: _Canvas, center, semi_axes, *, echo, attenuation, wall=0.0, wall_mm=0.35):
    """An anechoic/hypoechoic structure (vessel, muscle belly) with an optional bright wall."""
    (cx, cy), (rx, ry) = center, semi_axes
    win = canvas.window(cx - rx - 1, cx + rx + 1, cy - ry - 1, cy + ry + 1)
    if win is None:
        return
    sl, X, Y = win
    r, dist = _superellipse(X, Y, center, semi_axes, 2.0)
    inside = r < 1.0
    canvas.echo[sl][inside] = echo
    canvas.attenuation[sl][inside] = attenuation
    if wall:
        canvas.reflector[sl] += F32(wall) * _line(dist - F32(wall_mm / 2), wall_mm / 2.5)


def _trachea(canvas: _Canvas, cx: float, cy: float, radius: float) -> None:
    """Cartilage ring (hypoechoic), bright air line, faint reverberations, acoustic shadow."""
    win = canvas.window(cx - radius - 1, cx + radius + 1, cy - radius - 1, float(canvas.y[-1]))
    if win is None:
        return
    sl, X, Y = win
    d = np.sqrt((X - F32(cx)) ** 2 + (Y - F32(cy)) ** 2)
    inner = radius - 1.4
    anterior = Y < F32(cy - 0.2 * radius)
    cartilage = (d < radius) & (d > inner) & anterior
    canvas.echo[sl][cartilage] = ECHO["cartilage"]
    canvas.reflector[sl] += F32(3.0) * _line(d - F32(inner), 0.08) * anterior
    air = (d < inner) & (Y < F32(cy + radius))
    canvas.echo[sl][air] = 0.0
    canvas.attenuation[sl][air] = 60.0
    arc = F32(cy) - np.sqrt(np.maximum(F32(inner**2) - (X - F32(cx)) ** 2, F32(0.0)))
    over_air = np.abs(X - F32(cx)) < F32(inner - 0.5)
    for k in (1, 2):
        canvas.artefact[sl] += F32(0.25 * 0.4**k) * _line(Y - arc * F32(1 + k), 0.15) * over_air


def _vertebra(canvas: _Canvas, cx: float, depth: float) -> None:
    """Bright anterior surface of the vertebral body with a shadow below it."""
    win = canvas.window(cx - 11.0, cx + 11.0, depth - 1.0, float(canvas.y[-1]))
    if win is None:
        return
    sl, X, Y = win
    surface = F32(depth) + F32(0.03) * (X - F32(cx)) ** 2
    edge = np.clip((F32(11.0) - np.abs(X - F32(cx))) / F32(4.0), 0.0, 1.0)
    canvas.reflector[sl] += F32(0.9) * _line(Y - surface, 0.1) * edge
    canvas.attenuation[sl] += F32(12.0) * edge * (Y > surface + F32(0.2))


def _place_against_capsule(
    gap_mm: float,
    *,
    reach_mm: float,
    half_mm: float,
    depth_off_mm: float,
    thickness_mm: float,
    power: float,
) -> tuple[float, float]:
    """Where a nodule sits in a lobe section so that its edge is ``gap_mm`` from the capsule.

    The lobe is a superellipse of half-extent ``half_mm`` along the image and a half-depth chosen
    so that its depth at the nodule is ``thickness_mm``. Returns the nodule's offset from the
    lobe's centre towards that capsule, as a share ``u`` of ``half_mm``, and the half-depth.
    """
    u = float(np.clip((half_mm - reach_mm - gap_mm) / half_mm, -0.85, 0.85))
    b_half = thickness_mm / 2.0
    for _ in range(8):
        b_half = thickness_mm / 2.0 / (1.0 - abs(u) ** power) ** (1.0 / power)
        across = min(abs(depth_off_mm) / b_half, 0.99) ** power
        extent = half_mm * (1.0 - across) ** (1.0 / power)
        u = float(np.clip((extent - reach_mm - gap_mm) / half_mm, -0.85, 0.85))
    return u, b_half


def _transverse_scene(canvas: _Canvas, anatomy: Anatomy, nodule: Nodule) -> tuple[float, float]:
    """Transverse section: lobe, isthmus, trachea (medial), carotid and jugular (lateral)."""
    muscle_end = _layers(canvas, anatomy, "transverse")
    h_n, y_n = anatomy.transverse_offset_mm, anatomy.nodule_depth_mm
    y_ant = anatomy.gland_anterior_mm
    thickness = anatomy.gland_thickness_mm
    y_mid = y_ant + thickness / 2.0
    low, high = nodule.measure()[1:]
    radius = anatomy.trachea_radius_mm
    if anatomy.side == "isthmus":
        # the isthmus crosses in front of the trachea, bulging around the nodule; lobes beside
        h_trachea = 0.5 * h_n
        y_trachea = y_ant + thickness + radius + 0.4
        band = anatomy.isthmus_thickness_mm
        shapes = [
            (h_trachea, y_ant + band / 2.0, 30.0, band / 2.0, 6.0),
            (h_n, y_mid, float(max(-low[0], high[0])) + 2.5, thickness / 2.0 + 0.01, 2.0),
        ]
        for s in (-1.0, 1.0):
            shapes.append((h_trachea + s * (radius + 6.0), y_trachea - 2.0, 7.0, 8.5, 2.3))
        _paint_gland(canvas, shapes, anatomy)
        _trachea(canvas, h_trachea, y_trachea, radius)
        return h_n, y_n
    s = 1.0 if anatomy.side == "right" else -1.0  # image direction of medial
    # nodule x is positive medially; in the image medial is direction s
    medial_reach, lateral_reach = float(high[0]), float(-low[0])
    power = 2.3
    # the lobe is placed so that the medial capsule lies tracheal_gap_mm from the nodule's edge
    gap = anatomy.tracheal_gap_mm
    a_half = max(anatomy.lobe_half_width_mm, (medial_reach + lateral_reach + gap + 2.5) / 1.8)
    u, b_half = _place_against_capsule(
        gap,
        reach_mm=medial_reach,
        half_mm=a_half,
        depth_off_mm=y_n - y_mid,
        thickness_mm=thickness,
        power=power,
    )
    dm = u * a_half
    h_lobe = h_n - s * dm
    m_trachea = max(a_half + 0.2 * radius, dm + medial_reach + 0.9 * radius + 1.0)
    h_trachea = h_lobe + s * m_trachea
    y_trachea = y_mid - 0.55 * b_half + radius
    isthmus_bottom = y_trachea - radius - 0.3
    band = anatomy.isthmus_thickness_mm
    shapes = [
        (h_lobe, y_mid, a_half, b_half, power),
        (h_lobe + s * (0.3 * a_half + 30.0), isthmus_bottom - band / 2.0, 30.0, band / 2.0, 6.0),
    ]
    r_c = anatomy.carotid_radius_mm
    h_carotid = h_lobe - s * (a_half + r_c + 1.0)
    y_carotid = y_mid + 0.1 * b_half
    # sternocleidomastoid over the carotid, longus colli behind the lobe
    scm_depth = float(np.mean(muscle_end)) - 0.5
    muscle = {"echo": ECHO["muscle"], "attenuation": 1.0}
    _disc(canvas, (h_carotid - s * 3.0, scm_depth), (10.0, 2.6), **muscle, wall=0.15)
    _disc(canvas, (h_lobe + s * 0.3 * a_half, y_mid + b_half + 3.2), (6.0, 2.6), **muscle)
    _paint_gland(canvas, shapes, anatomy)
    vessel = {"echo": ECHO["lumen"], "attenuation": 0.05}
    _disc(canvas, (h_carotid, y_carotid), (r_c, r_c), **vessel, wall=0.9)
    r_j = 1.3 * r_c
    _disc(
        canvas,
        (h_carotid - s * (r_c + 0.8 * r_j), y_carotid - 0.4 * r_c),
        (r_j, r_j * anatomy.jugular_flattening),
        **vessel,
        wall=0.3,
    )
    _trachea(canvas, h_trachea, y_trachea, radius)
    vertebra_depth = y_mid + b_half + 8.0
    if vertebra_depth < float(canvas.y[-1]) - 1.0:
        _vertebra(canvas, h_trachea - s * 4.0, vertebra_depth)
    return h_n, y_n


def _longitudinal_scene(canvas: _Canvas, anatomy: Anatomy, nodule: Nodule) -> tuple[float, float]:
    """Longitudinal section: the lobe along its length (cranial to the left), longus colli below."""
    _layers(canvas, anatomy, "longitudinal")
    h_n, y_n = anatomy.longitudinal_offset_mm, anatomy.nodule_depth_mm
    y_ant = anatomy.gland_anterior_mm
    thickness = anatomy.gland_thickness_mm
    y_mid = y_ant + thickness / 2.0
    u = anatomy.nodule_in_lobe_cranial
    low, high = nodule.measure()[1:]
    if anatomy.side == "isthmus":
        length = max(18.0, 2.0 * (float(max(-low[2], high[2])) + 3.0))
    else:
        length = anatomy.lobe_length_mm
    power = 2.0
    b_half = thickness / 2.0 / (1.0 - abs(u) ** power) ** (1.0 / power)
    if anatomy.polar_side in ("cranial", "caudal") and math.isfinite(anatomy.polar_gap_mm):
        # an upper- or lower-third nodule: the pole's capsule polar_gap_mm from its edge (a
        # blunter pole, power 3, keeps the lobe's depth there)
        power = 3.0
        cranial = anatomy.polar_side == "cranial"
        reach = float(high[2]) if cranial else float(-low[2])
        u, b_half = _place_against_capsule(
            anatomy.polar_gap_mm,
            reach_mm=reach,
            half_mm=length / 2.0,
            depth_off_mm=y_n - y_mid,
            thickness_mm=thickness,
            power=power,
        )
        u = u if cranial else -u
    h_lobe = h_n + u * length / 2.0  # the lobe's centre lies caudal (right) of a cranial nodule
    rng = canvas.rng
    gland = _paint_gland(canvas, [(h_lobe, y_mid, length / 2.0, b_half, power)], anatomy)
    if anatomy.side == "isthmus":
        # sagittal midline: tracheal rings under the isthmus, air line, shadow
        y_rings = y_ant + thickness + 1.6
        start = h_n - 20.0 + float(rng.uniform(0, 4.0))
        for k in range(11):
            _disc(
                canvas,
                (start + 4.0 * k, y_rings),
                (1.5, 1.0),
                echo=ECHO["cartilage"],
                attenuation=1.0,
                wall=0.35,
                wall_mm=0.2,
            )
        air = y_rings + 1.2
        canvas.add_line(np.full(canvas.cols, air, F32), 2.5, 0.08)
        canvas.attenuation[canvas.y > air + 0.2, :] = 60.0
        for k in (1, 2):
            win = canvas.window(float(canvas.x[0]), float(canvas.x[-1]), 0.0, float(canvas.y[-1]))
            assert win is not None
            canvas.artefact += F32(0.25 * 0.4**k) * _line(win[2] - F32(air * (1 + k)), 0.15)
        return h_n, y_n
    # longus colli: a band of muscle behind the gland, then prevertebral tissue
    has_gland = gland.any(axis=0)
    posterior = canvas.rows - 1 - np.argmax(gland[::-1], axis=0)
    y_post = np.where(has_gland, canvas.y[posterior], F32(y_mid + b_half)).astype(F32)
    y_post = ndimage.maximum_filter1d(y_post, size=int(4.0 / canvas.dx) + 1)
    win = canvas.window(
        float(canvas.x[0]), float(canvas.x[-1]), float(y_post.min()), float(y_post.max()) + 6.0
    )
    if win is not None:
        sl, _, Y = win
        top = y_post[None, :] + F32(0.8)
        band = (Y > top) & (Y < top + F32(4.2)) & ~gland[sl]
        fibres = canvas.noise((0.10, 3.5), sl) > 1.2
        canvas.echo[sl][band] = ECHO["muscle"]
        canvas.echo[sl][band & fibres] = ECHO["muscle_fibre"]
    canvas.add_line(y_post + F32(0.8), 0.3 * (~has_gland + 0.5), 0.07)
    # prevertebral fascia: a faint line under the longus colli
    canvas.add_line(y_post + F32(5.2) + canvas.smooth_curve(0.3, 20.0), 0.25, 0.08)
    return h_n, y_n


def _paint_nodule(
    canvas: _Canvas,
    nodule: Nodule,
    view: View,
    center: tuple[float, float],
    *,
    anatomy: Anatomy,
    slice_thickness_mm: float,
) -> np.ndarray:
    """Hypoechoic nodule with its echogenic foci; returns the nodule mask on the grid."""
    h_n, y_n = center
    low, high = nodule.measure()[1:]
    reach = float(max(np.max(np.abs(low)), np.max(np.abs(high)))) + 0.5
    win = canvas.window(h_n - reach, h_n + reach, y_n - reach, y_n + reach)
    mask = np.zeros((canvas.rows, canvas.cols), bool)
    if win is None:
        return mask
    sl, X, Y = win
    inside = nodule.section(view, X - F32(h_n), Y - F32(y_n)).astype(F32)
    outside = F32(1.0) - inside
    texture = F32(anatomy.nodule_echo) * np.exp(F32(0.35) * canvas.noise((0.5, 0.5), sl))
    canvas.echo[sl] = canvas.echo[sl] * outside + texture * inside
    canvas.attenuation[sl] = (
        canvas.attenuation[sl] * outside + F32(anatomy.nodule_attenuation) * inside
    )
    canvas.reflector[sl] *= outside
    mask[sl] = inside >= 0.5
    positions, elevation = nodule.foci_in_plane(view)
    weights = elevation_weight(elevation, slice_thickness_mm)
    for (fh, fy), weight in zip(positions, weights, strict=True):
        if weight < 0.05:
            continue
        r2 = (X - F32(h_n + fh)) ** 2 + (Y - F32(y_n + fy)) ** 2
        spot = np.exp(r2 * F32(-0.5 / 0.08**2))
        canvas.reflector[sl] += F32(3.0 * weight) * spot
        canvas.attenuation[sl] += F32(15.0 * weight) * spot
    return mask


# ---------------------------------------------------------------------------------------------
# imaging


def form_image(canvas: _Canvas, scanner: Scanner, anatomy: Anatomy) -> np.ndarray:
    """Speckle, attenuation, TGC, PSF, envelope and log compression -> uint8 B-mode image."""
    rng = canvas.rng
    dx = canvas.dx
    db_per_px = 2.0 * scanner.attenuation_db_cm_mhz * scanner.frequency_mhz / 10.0 * dx
    loss = np.cumsum(canvas.attenuation * F32(db_per_px), axis=0, dtype=F32)
    loss -= (
        F32(scanner.tgc_compensation * db_per_px)
        * np.arange(1, canvas.rows + 1, dtype=F32)[:, None]
    )
    gain = np.power(F32(10.0), loss * F32(-1.0 / 20.0))
    amplitude = np.sqrt(canvas.echo) * gain
    field = rng.standard_normal((2, canvas.rows, canvas.cols), dtype=F32)
    real = field[0] * amplitude + canvas.reflector * gain + canvas.artefact
    imag = field[1] * amplitude
    sigma = (scanner.psf_axial_mm / dx, scanner.psf_lateral_mm / dx)
    real = ndimage.gaussian_filter(real, sigma, truncate=3.0)
    imag = ndimage.gaussian_filter(imag, sigma, truncate=3.0)
    norm = F32(math.sqrt(2.0 * math.pi * sigma[0] * sigma[1]))
    level = F32(10.0) * np.log10(real * real + imag * imag + F32(1e-8))
    level += F32(20.0 * math.log10(norm))
    ripple = np.zeros(canvas.rows, F32)
    for _ in range(3):
        amp, period, phase = rng.uniform(-1, 1), rng.uniform(12, 40), rng.uniform(0, 2 * np.pi)
        ripple += F32(amp) * np.sin(canvas.y * F32(2 * np.pi / period) + F32(phase))
    offset = scanner.gain_db + anatomy.gain_offset_db
    level += (F32(offset) + F32(scanner.tgc_ripple_db / 2.0) * ripple)[:, None]
    if scanner.smoothing_px > 0:
        level = ndimage.gaussian_filter(level, scanner.smoothing_px, truncate=2.5)
    grey = (level * F32(1.0 / scanner.dynamic_range_db) + F32(0.56)) * F32(255.0)
    return np.clip(grey, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# the exported frame


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _extremes(mask: np.ndarray) -> dict[str, tuple[int, int]]:
    """(col, row) of the left-, right-, top- and bottom-most points of a mask."""
    rows, cols = np.nonzero(mask)
    out = {}
    for name, idx in (
        ("left", np.argmin(cols)),
        ("right", np.argmax(cols)),
        ("top", np.argmin(rows)),
        ("bottom", np.argmax(rows)),
    ):
        out[name] = (int(cols[idx]), int(rows[idx]))
    return out


def compose_frame(
    bmode: np.ndarray,
    mask: np.ndarray,
    scanner: Scanner,
    anatomy: Anatomy,
    *,
    view: View,
    patient_number: int,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Place the image in the scanner's frame with text and calipers; return frame and ROI box."""
    height, width = scanner.frame_size
    x0, y0 = scanner.image_origin
    rows, cols = bmode.shape
    frame = np.zeros((height, width), np.uint8)
    frame[y0 : y0 + rows, x0 : x0 + cols] = bmode
    image = Image.fromarray(frame, mode="L")
    draw = ImageDraw.Draw(image)
    small, medium = _font(12), _font(14)
    white, grey = 235, 180
    dx = scanner.pixel_spacing_mm

    # calipers at the nodule's extremes, and the measured diameters
    ext = _extremes(mask)
    size = 5 if scanner.caliper == "plus" else 4
    for cx, cy in ext.values() if scanner.caliper != "none" else ():
        px, py = x0 + cx, y0 + cy
        if scanner.caliper == "plus":
            draw.line([(px - size, py), (px + size, py)], fill=white)
            draw.line([(px, py - size), (px, py + size)], fill=white)
        else:
            draw.line([(px - size, py - size), (px + size, py + size)], fill=white)
            draw.line([(px - size, py + size), (px + size, py - size)], fill=white)
    if scanner.caliper == "cross":
        for a, b in (("left", "right"), ("top", "bottom")):
            (ax, ay), (bx, by) = ext[a], ext[b]
            n = max(int(math.hypot(bx - ax, by - ay) / 7), 1)
            for k in range(1, n):
                t = k / n
                px, py = x0 + ax + t * (bx - ax), y0 + ay + t * (by - ay)
                draw.point([(round(px), round(py))], fill=grey)
    d1 = (ext["right"][0] - ext["left"][0] + 1) * dx / 10.0
    d2 = (ext["bottom"][1] - ext["top"][1] + 1) * dx / 10.0

    # depth scale with ticks every 5 mm and a focus marker
    scale_x = x0 + cols + 4 if scanner.text_panel == "left" else x0 - 5
    direction = 1 if scanner.text_panel == "left" else -1
    for mm in range(0, int(scanner.depth_mm) + 1, 5):
        py = y0 + round(mm / dx)
        if py >= y0 + rows:
            break
        length = 7 if mm % 10 == 0 else 4
        draw.line([(scale_x, py), (scale_x + direction * length, py)], fill=grey)
        if mm % 10 == 0 and mm > 0:
            label = str(mm // 10)
            tx = scale_x + direction * 10 if direction > 0 else scale_x - 18
            draw.text((tx, py - 7), label, fill=grey, font=small)
    fy = y0 + round(anatomy.focus_depth_mm / dx)
    fx = scale_x + direction * 2
    draw.polygon([(fx, fy), (fx + direction * 6, fy - 4), (fx + direction * 6, fy + 4)], fill=white)

    # header, settings panel, grey bar, view label
    side = {"right": "RT", "left": "LT", "isthmus": "ISTHMUS"}[anatomy.side]
    label = f"{'TRANS' if view == 'transverse' else 'LONG'} {side}"
    stamp = anatomy.acquired.strftime("%Y-%m-%d %H:%M:%S")
    gain = 50 + round(scanner.gain_db + anatomy.gain_offset_db)
    settings = [
        "B",
        f"Gn {gain}",
        f"DR {round(scanner.dynamic_range_db)}",
        f"D {scanner.depth_mm / 10:.1f}cm",
        f"{scanner.frequency_mhz:.1f}MHz",
        "FR 32Hz",
        "MI 0.7  TIs 0.2",
        "",
        f"1 D {d1:.2f}cm",
        f"2 D {d2:.2f}cm",
    ]
    if scanner.text_panel == "left":
        draw.text((10, 8), scanner.institution, fill=white, font=medium)
        draw.text((width - 175, 8), stamp, fill=white, font=medium)
        draw.text((10, 28), f"{scanner.probe}  Thyroid", fill=grey, font=small)
        panel_x, panel_y = 12, y0 + 10
        bar_x, bar_y = 20, height - 150
        draw.text((x0 + 6, y0 + rows - 20), label, fill=white, font=medium)
    else:
        draw.text((x0, 8), f"{scanner.institution}   {scanner.probe}", fill=white, font=medium)
        draw.text((x0, 26), stamp, fill=grey, font=small)
        panel_x, panel_y = x0 + cols + 30, y0 + 30
        bar_x, bar_y = width - 30, y0 + 20
        draw.text((panel_x, height - 60), label, fill=white, font=medium)
        draw.text((panel_x, height - 40), f"No. {patient_number:05d}", fill=grey, font=small)
    for i, line in enumerate(settings):
        draw.text((panel_x, panel_y + 17 * i), line, fill=grey, font=small)
    bar = np.linspace(255, 0, 120).astype(np.uint8)[:, None].repeat(8, axis=1)
    image.paste(Image.fromarray(bar, mode="L"), (bar_x, bar_y))
    mark_x = x0 + 3 if scanner.text_panel == "left" else x0 + cols - 9
    draw.ellipse([mark_x, y0 - 12, mark_x + 6, y0 - 6], fill=white)  # probe orientation mark

    rows_idx, cols_idx = np.nonzero(mask)
    box = (
        x0 + int(cols_idx.min()),
        y0 + int(rows_idx.min()),
        x0 + int(cols_idx.max()) + 1,
        y0 + int(rows_idx.max()) + 1,
    )
    return np.asarray(image), box


def render_view(
    view: View,
    record: dict[str, Any],
    nodule: Nodule,
    *,
    anatomy: Anatomy,
    scanner: Scanner,
    rng: np.random.Generator,
    patient_number: int,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Render one exported frame and the nodule's box in it (pixels, max exclusive)."""
    canvas = _Canvas(scanner, rng)
    scene = _transverse_scene if view == "transverse" else _longitudinal_scene
    center = scene(canvas, anatomy, nodule)
    mask = _paint_nodule(
        canvas, nodule, view, center, anatomy=anatomy, slice_thickness_mm=scanner.slice_thickness_mm
    )
    rows, cols = np.nonzero(mask)
    if (
        rows.size == 0
        or rows.min() == 0
        or cols.min() == 0
        or rows.max() == canvas.rows - 1
        or (cols.max() == canvas.cols - 1)
    ):
        raise ValueError(
            f"patient {record['patient_id']}: the nodule does not lie wholly inside the "
            f"{view} image ({scanner.depth_mm} x {scanner.width_mm} mm at centre "
            f"{scanner.center}); increase depth_mm or width_mm"
        )
    bmode = form_image(canvas, scanner, anatomy)
    return compose_frame(bmode, mask, scanner, anatomy, view=view, patient_number=patient_number)


def encode_png(frame: np.ndarray, compress_level: int) -> bytes:
    """8-bit greyscale PNG bytes without metadata (no timestamps: byte-identical on rerun)."""
    buffer = io.BytesIO()
    Image.fromarray(frame, mode="L").save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def child_seed(seed: np.random.SeedSequence, index: int) -> np.random.SeedSequence:
    """The ``index``-th child of ``seed``, the same however often it is asked for.

    (``SeedSequence.spawn`` counts the children already spawned, so calling it twice on one
    object gives different children.)
    """
    return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, index))


def render_patient(
    record: dict[str, Any],
    nodule: Nodule,
    scanner: Scanner,
    seed: np.random.SeedSequence,
    patient_number: int,
) -> dict[View, tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Both views of one patient (anatomy drawn once, each view with its own stream)."""
    anatomy_seed, transverse_seed, longitudinal_seed = (child_seed(seed, i) for i in range(3))
    anatomy = sample_anatomy(np.random.default_rng(anatomy_seed), record, nodule, scanner)
    common = {"anatomy": anatomy, "scanner": scanner, "patient_number": patient_number}
    return {
        "longitudinal": render_view(
            "longitudinal",
            record,
            nodule,
            rng=np.random.default_rng(longitudinal_seed),
            **common,
        ),
        "transverse": render_view(
            "transverse",
            record,
            nodule,
            rng=np.random.default_rng(transverse_seed),
            **common,
        ),
    }
