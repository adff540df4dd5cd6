"""Ultrasound-appropriate augmentation of image batches, on the training device.

The external centre is another scanner: other gain and dynamic range, speckle size, pixel
spacing and resolution. The augmentation imitates that variation and small differences in how
the probe was placed; it never flips depth (the vertical axis: skin at the top), because
acoustic shadowing and enhancement run downwards.

Per image (each view on its own): small affine (shift, rotation, scale) and an optional
left-right flip. Per patient (both views, as one scanner acquired them): multiplicative speckle
noise of random strength, Gaussian blur of random width, down-and-up resampling, gain and
gamma (contrast). All randomness comes from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from clnm_kedro.networks.data import config_section

AUGMENT_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "shift": 0.08,  # largest shift, fraction of the image side
    "rotation_deg": 10.0,  # largest rotation, degrees
    "scale": [0.9, 1.1],  # zoom range
    "horizontal_flip": True,  # left-right flip with probability 0.5 (never a depth flip)
    "gain": 0.2,  # multiplicative gain drawn in [1 - gain, 1 + gain]
    "gamma": [0.7, 1.4],  # contrast: intensity ** gamma, log-uniform in this range
    "speckle": 0.2,  # largest standard deviation of multiplicative speckle noise
    "blur_probability": 0.3,
    "blur_sigma": [0.002, 0.008],  # Gaussian blur sigma range, fraction of the image side
    "resample_probability": 0.25,
    "resample_factor": [1.0, 2.0],  # down-and-up resampling factor range (lower resolution)
}


RESAMPLE_LEVELS = 3  # resampling factors used: evenly spaced over augment.resample_factor


def _pair(settings: Mapping[str, Any], key: str) -> tuple[float, float]:
    value = settings[key]
    if not isinstance(value, list | tuple) or len(value) != 2 or float(value[0]) > float(value[1]):
        raise ValueError(f"augment.{key} must be a range [low, high] with low <= high, got {value}")
    return float(value[0]), float(value[1])


def augment_settings(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``augment`` section merged over :data:`AUGMENT_DEFAULTS`; ``augment: false`` disables."""
    if config is not None and config.get("augment") is False:
        config = {**config, "augment": {"enabled": False}}
    settings = config_section(config, "augment", AUGMENT_DEFAULTS)
    for key in ("scale", "gamma", "blur_sigma", "resample_factor"):
        _pair(settings, key)
    if _pair(settings, "scale")[0] <= 0 or _pair(settings, "gamma")[0] <= 0:
        raise ValueError("augment.scale and augment.gamma must be positive")
    if _pair(settings, "resample_factor")[0] < 1:
        raise ValueError("augment.resample_factor must be >= 1 (1 = no resampling)")
    for key in ("shift", "rotation_deg", "gain", "speckle"):
        if float(settings[key]) < 0:
            raise ValueError(f"augment.{key} must be >= 0, got {settings[key]}")
    for key in ("blur_probability", "resample_probability"):
        if not 0.0 <= float(settings[key]) <= 1.0:
            raise ValueError(f"augment.{key} must be a probability, got {settings[key]}")
    if float(settings["gain"]) >= 1:
        raise ValueError(f"augment.gain must be < 1, got {settings['gain']}")
    return settings


def _uniform(
    shape: tuple[int, ...],
    low: float,
    high: float,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def _affine(
    images: torch.Tensor, settings: Mapping[str, Any], generator: torch.Generator
) -> torch.Tensor:
    batch, n_views, height, width = images.shape
    n = batch * n_views
    device = images.device
    angle = _uniform((n,), -1.0, 1.0, generator, device) * math.radians(
        float(settings["rotation_deg"])
    )
    low, high = _pair(settings, "scale")
    scale = _uniform((n,), low, high, generator, device)
    shift = _uniform((n, 2), -1.0, 1.0, generator, device) * (2.0 * float(settings["shift"]))
    flip = torch.ones(n, device=device)
    if settings["horizontal_flip"]:
        flip = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -flip, flip)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # output -> input sampling coordinates: rotation * zoom * (x flip); y is never negated
    # (|rotation| < 90 degrees keeps cos > 0), so depth keeps its direction.
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift[:, 0]], dim=1),
            torch.stack([sin * flip, cos, shift[:, 1]], dim=1),
        ],
        dim=1,
    )
    flat = images.reshape(n, 1, height, width)
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    warped = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return warped.reshape(batch, n_views, height, width)


def _on_patients(
    images: torch.Tensor,
    chosen: torch.Tensor,
    transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Apply ``transform(rows_images, rows)`` to the patients (rows) where ``chosen`` is true.

    On the CPU only the chosen rows are computed; on a GPU the whole batch is, then selected,
    which avoids a host synchronisation.
    """
    if images.device.type != "cpu":
        every_row = torch.arange(images.shape[0], device=images.device)
        return torch.where(chosen.view(-1, 1, 1, 1), transform(images, every_row), images)
    rows = torch.nonzero(chosen).flatten()
    if rows.numel() == 0:
        return images
    images = images.clone()
    images[rows] = transform(images[rows], rows)
    return images


def _gaussian_blur(images: torch.Tensor, sigma_px: torch.Tensor, radius: int) -> torch.Tensor:
    """Blur each patient's views with its own sigma (0 = untouched), separable, edge-replicated."""
    batch, n_views, height, width = images.shape
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    safe_sigma = sigma_px.clamp_min(1e-3).unsqueeze(1)
    kernel = torch.exp(-0.5 * (offsets.unsqueeze(0) / safe_sigma) ** 2)
    delta = (offsets == 0).to(images.dtype).expand_as(kernel)
    kernel = torch.where(sigma_px.unsqueeze(1) > 0, kernel, delta)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.repeat_interleave(n_views, dim=0)  # one kernel per (patient, view)
    channels = batch * n_views
    flat = images.reshape(1, channels, height, width)
    flat = F.pad(flat, (radius, radius, 0, 0), mode="replicate")
    flat = F.conv2d(flat, kernel.view(channels, 1, 1, -1), groups=channels)
    flat = F.pad(flat, (0, 0, radius, radius), mode="replicate")
    flat = F.conv2d(flat, kernel.view(channels, 1, -1, 1), groups=channels)
    return flat.reshape(batch, n_views, height, width)


def _resample(
    images: torch.Tensor, settings: Mapping[str, Any], generator: torch.Generator
) -> torch.Tensor:
    """Down-and-up resample some patients, each at one of a few factors in the range.

    A few fixed factor levels keep the whole step on the device (no host synchronisation).
    """
    batch, _, height, width = images.shape
    device = images.device
    factor_low, factor_high = _pair(settings, "resample_factor")
    levels = [
        factor
        for factor in torch.linspace(factor_low, factor_high, RESAMPLE_LEVELS).tolist()
        if factor > 1
    ]
    choice = torch.randint(len(levels), (batch,), generator=generator, device=device)
    chosen = torch.rand(batch, generator=generator, device=device)
    chosen = chosen < float(settings["resample_probability"])
    for level, factor in enumerate(levels):
        low_side = max(4, round(height / factor)), max(4, round(width / factor))

        def down_up(
            x: torch.Tensor, _rows: torch.Tensor, low_side: tuple[int, int] = low_side
        ) -> torch.Tensor:
            low = F.interpolate(x, size=low_side, mode="area")
            return F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)

        images = _on_patients(images, chosen & (choice == level), down_up)
    return images


def augment_batch(
    images: torch.Tensor, config: Mapping[str, Any] | None, generator: torch.Generator
) -> torch.Tensor:
    """Augment a batch of crops.

    Parameters
    ----------
    images
        Float tensor ``(B, V, S, S)`` with intensities in [0, 1] (see ``to_model_input``).
    config
        The network parameter block; its ``augment`` section is read (``augment: false`` or
        ``enabled: false`` returns ``images`` unchanged).
    generator
        Random generator on the same device as ``images``.

    Returns
    -------
    torch.Tensor
        Augmented batch, same shape, intensities in [0, 1].
    """
    settings = augment_settings(config)
    if not settings["enabled"]:
        return images
    if images.ndim != 4:
        raise ValueError(f"augment_batch expects (batch, views, size, size), got {images.shape}")
    with torch.no_grad():
        x = images.float()
        batch, _, height, _ = x.shape
        device = x.device
        per_patient = (batch, 1, 1, 1)

        affine_on = (
            float(settings["shift"]) > 0
            or float(settings["rotation_deg"]) > 0
            or _pair(settings, "scale") != (1.0, 1.0)
            or settings["horizontal_flip"]
        )
        if affine_on:
            x = _affine(x, settings, generator)

        speckle = float(settings["speckle"])
        if speckle > 0:
            strength = _uniform(per_patient, 0.0, speckle, generator, device)
            noise = torch.randn(x.shape, generator=generator, device=device)
            x = x * (1.0 + strength * noise)

        sigma_low, sigma_high = _pair(settings, "blur_sigma")
        if float(settings["blur_probability"]) > 0 and sigma_high > 0:
            sigma = _uniform((batch,), sigma_low, sigma_high, generator, device) * height
            chosen = torch.rand(batch, generator=generator, device=device)
            chosen = chosen < float(settings["blur_probability"])
            radius = max(1, math.ceil(3.0 * sigma_high * height))
            x = _on_patients(
                x, chosen, lambda part, rows: _gaussian_blur(part, sigma[rows], radius)
            )

        resample = float(settings["resample_probability"]) > 0
        if resample and _pair(settings, "resample_factor")[1] > 1:
            x = _resample(x, settings, generator)

        gain = float(settings["gain"])
        if gain > 0:
            x = x * _uniform(per_patient, 1.0 - gain, 1.0 + gain, generator, device)
        x = x.clamp(0.0, 1.0)

        gamma_low, gamma_high = _pair(settings, "gamma")
        if (gamma_low, gamma_high) != (1.0, 1.0):
            log_gamma = _uniform(
                per_patient, math.log(gamma_low), math.log(gamma_high), generator, device
            )
            x = x.pow(torch.exp(log_gamma))
    return x
