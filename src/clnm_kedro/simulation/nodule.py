"""A 3-D nodule with an irregular margin and its two orthogonal ultrasound sections.

Coordinates are in millimetres relative to the nodule's centre: ``x`` lateral (positive =
medial), ``y`` depth (positive = deeper, away from the probe), ``z`` cranio-caudal (positive =
cranial). The transverse image is the plane ``z = 0`` (horizontal axis ``x``), the longitudinal
image the plane ``x = 0`` (horizontal axis ``z``).

The surface is an ellipsoid whose radius is perturbed by two angular profiles: one varies with
the angle in the transverse plane, the other with the angle in the longitudinal plane, blended so
that each plane sees only its own profile (both share the two points straight above and below
the centre). Each profile is a sum of random-phase low-order sinusoids (lobulation) and narrow
outward bumps (spicules), scaled by the latent margin irregularity of that plane. So the
transverse image shows the transverse irregularity and the taller-than-wide ratio, the
longitudinal image the cranio-caudal irregularity and extent, and an echogenic focus shows in a
plane only when it lies within the beam's slice thickness of it.

Section planes are placed by hand: the transverse image is the plane ``z = plane_offsets_mm[0]``
and the longitudinal image the plane ``x = plane_offsets_mm[1]`` (both 0 for a section through
the centre). An off-centre plane cuts a smaller section and sees other foci.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

View = Literal["transverse", "longitudinal"]

#: weight that lets the two angular profiles blend smoothly near the depth axis
_BLEND = 0.02
#: the radius never shrinks below this fraction of the ellipsoid's
_MIN_RADIUS = 0.55


def fibonacci_sphere(n_points: int) -> np.ndarray:
    """Unit vectors spread evenly over the sphere, shape ``(n_points, 3)``."""
    i = np.arange(n_points, dtype=np.float64) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / n_points)
    azimuth = np.pi * (1.0 + 5.0**0.5) * i
    return np.stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1
    )


_SPHERE = fibonacci_sphere(300)
_BOTH_WAYS = np.concatenate([_SPHERE, -_SPHERE])


@dataclass(frozen=True)
class MarginProfile:
    """Relative radial perturbation as a function of one in-plane angle.

    ``profile(theta) = sum_k a_k cos(k theta + phi_k) + sum_j h_j exp(-d_j^2 / 2 w_j^2)`` with
    ``d_j`` the wrapped angular distance to spicule ``j``.
    """

    orders: np.ndarray
    amplitudes: np.ndarray
    phases: np.ndarray
    spicule_angles: np.ndarray
    spicule_heights: np.ndarray
    spicule_widths: np.ndarray

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        """Relative radial perturbation at angles ``theta`` (radians)."""
        theta = np.asarray(theta, dtype=np.float64)
        flat = theta.reshape(-1, 1)
        out = np.cos(flat * self.orders + self.phases) @ self.amplitudes
        if self.spicule_angles.size:
            d = np.mod(flat - self.spicule_angles + np.pi, 2.0 * np.pi) - np.pi
            out += np.exp(-0.5 * (d / self.spicule_widths) ** 2) @ self.spicule_heights
        return out.reshape(theta.shape)


def sample_margin_profile(
    rng: np.random.Generator,
    irregularity: float,
    lobulation: float,
    spicule_rate: float,
    spicule_height: tuple[float, float],
) -> MarginProfile:
    """Draw a margin profile whose roughness grows with ``irregularity`` (0 = smooth, 1 = spiky).

    Parameters
    ----------
    rng
        The patient's generator.
    irregularity
        Latent margin irregularity in [0, 1].
    lobulation
        Amplitude (relative radius) of the low-order lobulation at irregularity 1.
    spicule_rate
        Expected number of spicules around the section at irregularity 1.
    spicule_height
        Range of a spicule's height (relative radius) at irregularity 1.
    """
    orders = np.arange(2, 8)
    weights = rng.normal(size=orders.size) / orders
    weights /= np.sqrt(np.sum(weights**2))
    amplitudes = lobulation * irregularity * weights
    phases = rng.uniform(0.0, 2.0 * np.pi, size=orders.size)
    n_spicules = int(rng.poisson(spicule_rate * irregularity))
    angles = rng.uniform(-np.pi, np.pi, size=n_spicules)
    heights = irregularity * rng.uniform(spicule_height[0], spicule_height[1], size=n_spicules)
    widths = rng.uniform(0.12, 0.25, size=n_spicules)
    return MarginProfile(orders, amplitudes, phases, angles, heights, widths)


@dataclass(frozen=True)
class Nodule:
    """One nodule: ellipsoid semi-axes (x, y, z in mm), two margin profiles, echogenic foci."""

    semi_axes_mm: tuple[float, float, float]
    transverse_margin: MarginProfile
    longitudinal_margin: MarginProfile
    foci_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    #: where the hand put each section: z of the transverse plane, x of the longitudinal one (mm)
    plane_offsets_mm: tuple[float, float] = (0.0, 0.0)

    def radius_factor(self, u: np.ndarray) -> np.ndarray:
        """Relative radius ``1 + P(u)`` for unit directions ``u`` (shape ``(..., 3)``)."""
        ux, uy, uz = u[..., 0], u[..., 1], u[..., 2]
        weight_t = (ux**2 + _BLEND) / (ux**2 + uz**2 + 2.0 * _BLEND)
        alpha = np.arctan2(uy, ux)
        beta = np.arctan2(uy, uz)
        pert = weight_t * self.transverse_margin(alpha) + (1.0 - weight_t) * (
            self.longitudinal_margin(beta)
        )
        return np.maximum(1.0 + pert, _MIN_RADIUS)

    def surface_mm(self, directions: np.ndarray = _SPHERE) -> np.ndarray:
        """Surface points (mm) along unit ``directions`` of the unit sphere."""
        return self.radius_factor(directions)[:, None] * directions * np.asarray(self.semi_axes_mm)

    def measure(self) -> tuple[float, np.ndarray, np.ndarray]:
        """Maximum diameter through the centre, and the smallest and largest x, y, z (mm).

        The diameter is the largest caliper distance between opposite surface points over 300
        directions; the extents are relative to the centre.
        """
        points = self.surface_mm(_BOTH_WAYS)
        front, back = points[: len(_SPHERE)], points[len(_SPHERE) :]
        diameter = float(np.max(np.linalg.norm(front - back, axis=1)))
        return diameter, points.min(axis=0), points.max(axis=0)

    def scaled(self, factor: float) -> Nodule:
        """The same shape, ``factor`` times larger."""
        return Nodule(
            tuple(float(s * factor) for s in self.semi_axes_mm),  # type: ignore[arg-type]
            self.transverse_margin,
            self.longitudinal_margin,
            self.foci_mm * factor,
            (self.plane_offsets_mm[0] * factor, self.plane_offsets_mm[1] * factor),
        )

    def with_plane_offsets(self, transverse_z_mm: float, longitudinal_x_mm: float) -> Nodule:
        """The same nodule, its transverse section at ``z`` and its longitudinal one at ``x``."""
        return Nodule(
            self.semi_axes_mm,
            self.transverse_margin,
            self.longitudinal_margin,
            self.foci_mm,
            (float(transverse_z_mm), float(longitudinal_x_mm)),
        )

    def section(
        self, view: View, horizontal_mm: np.ndarray, depth_mm: np.ndarray, edge_mm: float = 0.12
    ) -> np.ndarray:
        """Soft inside-fraction (0..1) of the nodule on an in-plane grid.

        Parameters
        ----------
        view
            ``"transverse"`` (plane z = 0, horizontal axis x) or ``"longitudinal"`` (plane x = 0,
            horizontal axis z).
        horizontal_mm, depth_mm
            Broadcastable in-plane coordinates relative to the nodule's centre.
        edge_mm
            Width of the soft transition at the margin.
        """
        a, b, c = self.semi_axes_mm
        horizontal_mm, depth_mm = np.broadcast_arrays(horizontal_mm, depth_mm)
        if view == "transverse":  # plane z = offset, horizontal axis x
            offset = self.plane_offsets_mm[0]
            points = (horizontal_mm, depth_mm, np.full_like(horizontal_mm, offset))
        else:  # plane x = offset, horizontal axis z
            offset = self.plane_offsets_mm[1]
            points = (np.full_like(horizontal_mm, offset), depth_mm, horizontal_mm)
        q = np.stack([points[0] / a, points[1] / b, points[2] / c], axis=-1)
        rho = np.sqrt(np.sum(q**2, axis=-1))
        safe = np.maximum(rho, 1e-9)
        radius = self.radius_factor(q / safe[..., None])
        length_mm = np.sqrt(horizontal_mm**2 + depth_mm**2 + offset**2)
        local_mm = length_mm / safe
        distance = (radius - rho) * np.maximum(local_mm, 1e-6)
        return np.clip(0.5 + distance / edge_mm, 0.0, 1.0)

    def foci_in_plane(self, view: View) -> tuple[np.ndarray, np.ndarray]:
        """In-plane positions ``(n, 2)`` as (horizontal, depth) mm and elevation distances (mm)
        from the (possibly off-centre) section plane."""
        f = self.foci_mm
        if view == "transverse":
            return f[:, [0, 1]], np.abs(f[:, 2] - self.plane_offsets_mm[0])
        return f[:, [2, 1]], np.abs(f[:, 0] - self.plane_offsets_mm[1])


def elevation_weight(elevation_mm: np.ndarray, slice_thickness_mm: float) -> np.ndarray:
    """Relative echo of a point reflector ``elevation_mm`` off the image plane (Gaussian beam).

    ``slice_thickness_mm`` is the full width at half maximum of the beam in elevation.
    """
    sigma = slice_thickness_mm / 2.3548
    return np.exp(-0.5 * (np.asarray(elevation_mm) / sigma) ** 2)


def sample_inside_ellipsoid(
    rng: np.random.Generator, n_points: int, semi_axes_mm: tuple[float, float, float], fill: float
) -> np.ndarray:
    """``n_points`` uniform points inside the ellipsoid shrunk by ``fill`` (mm)."""
    direction = rng.normal(size=(n_points, 3))
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    radius = rng.uniform(size=(n_points, 1)) ** (1.0 / 3.0)
    return direction * radius * fill * np.asarray(semi_axes_mm)
