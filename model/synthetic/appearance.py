"""Rendering of a grayscale micrograph from a label image: substrate, contrast, blur and noise.

The image is rendered *from the final label image*, so image and labels always agree. SEM: bright
particles with bright rims (edge effect) and a little directional shading on a darker textured
substrate, sometimes with a dark halo. TEM bright field: a bright amorphous film attenuated by each
particle's projected thickness, with a bright Fresnel fringe outside the edge. Both then get a
Gaussian point-spread blur, shot (Poisson) noise and scan-line offsets.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

MODALITIES = ("sem", "tem")
"""Imaging modalities: ``"sem"`` (bright particles on a darker substrate) or ``"tem"`` (dark on bright)."""


def _smooth_noise(rng: np.random.Generator, height: int, width: int, scale_px: float) -> np.ndarray:
    """Zero-mean, unit-variance random field with features about ``scale_px`` across."""
    step = max(1, int(scale_px // 3))
    small = rng.standard_normal((height // step + 3, width // step + 3)).astype(np.float32)
    small = ndimage.gaussian_filter(small, max(0.5, scale_px / step / 2.0), mode="wrap")
    if step > 1:
        small = ndimage.zoom(small, step, order=1)[1 : height + 1, 1 : width + 1]
    noise = small[:height, :width]
    noise = noise - noise.mean()
    return noise / (noise.std() + 1e-6)


def _gradient(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A linear ramp of unit peak-to-peak amplitude in a random direction, centred on zero."""
    angle = rng.uniform(0, 2 * math.pi)
    y = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    return math.sin(angle) * y + math.cos(angle) * x


def _substrate(rng: np.random.Generator, height: int, width: int, level: float, modality: str) -> np.ndarray:
    """Graded, textured background around ``level``: coarse and fine texture (SEM) or film speckle (TEM)."""
    image = level + rng.uniform(0.0, 0.15) * _gradient(rng, height, width)
    if modality == "sem":
        image = image + rng.uniform(0.01, 0.05) * _smooth_noise(rng, height, width, rng.uniform(20, 120))
        image = image + rng.uniform(0.005, 0.04) * _smooth_noise(rng, height, width, rng.uniform(2, 6))
    else:  # amorphous support film: fine speckle and a gentle thickness variation
        image = image + rng.uniform(0.005, 0.03) * _smooth_noise(rng, height, width, rng.uniform(60, 200))
        image = image + rng.uniform(0.01, 0.04) * _smooth_noise(rng, height, width, rng.uniform(1.5, 3))
    return image.astype(np.float32)


def render_gray(
    rng: np.random.Generator,
    modality: str,
    labels: np.ndarray,
    source: np.ndarray,
    rho_map: np.ndarray,
    normal_map: np.ndarray,
    absorbance: np.ndarray | None,
    faceted: np.ndarray,
    blur_sigma_px: float | None = None,
) -> np.ndarray:
    """Grayscale float image in [0, 1] rendered from the final label image.

    Parameters
    ----------
    rng : np.random.Generator
        Draws the lighting, levels, blur, dose and noise.
    modality : {"sem", "tem"}
        Contrast model.
    labels : np.ndarray
        Final (H, W) label image, ids ``1..n``.
    source : np.ndarray
        ``source[id]`` = the particle index in the maps below (index 0 maps to 0).
    rho_map, normal_map : np.ndarray
        Radial coordinate and surface-normal angle per pixel, from :func:`~model.synthetic.shapes.rasterise`.
    absorbance : np.ndarray or None
        Projected absorbance per pixel (TEM only).
    faceted : np.ndarray
        Boolean per particle index: the particle is a polygon.
    blur_sigma_px : float, optional
        Standard deviation of the Gaussian point-spread function in pixels; None draws it from 0.4-1.6.
        The draw is made either way, so the other draws do not depend on this argument.

    Returns
    -------
    np.ndarray
        float32 (H, W) image in [0, 1], blurred, with shot and scan-line noise.
    """
    height, width = labels.shape
    inside = labels > 0
    pid = source[labels[inside]]
    n_total = int(source.max()) + 1 if source.size else 1
    light = rng.uniform(0, 2 * math.pi)
    if modality == "sem":
        bg_level = rng.uniform(0.12, 0.35)
        image = _substrate(rng, height, width, bg_level, modality)
        particle_level = bg_level + rng.uniform(0.12, 0.35) + rng.normal(0, 0.03, n_total)
        rim = rng.uniform(0.15, 0.45)
        sharpness = rng.uniform(3.0, 9.0)
        shade = rng.uniform(0.0, 0.12)
        rho = rho_map[inside]
        facing = np.cos(normal_map[inside] - light)
        value = particle_level[pid] + rim * rho**sharpness + shade * rho * facing
        is_facet = faceted[pid]
        band = is_facet & (rho > 0.72)  # side facets of a faceted crystal catch more or less signal
        value[band] += rng.uniform(0.03, 0.1) * facing[band]
        image[inside] = value + 0.02 * _smooth_noise(rng, height, width, 3.0)[inside]
        if rng.random() < 0.5:  # dark shadow halo on the substrate around particles
            halo = ndimage.gaussian_filter(inside.astype(np.float32), rng.uniform(1.5, 4.0))
            image[~inside] -= rng.uniform(0.03, 0.1) * halo[~inside]
    else:
        bg_level = rng.uniform(0.6, 0.9)
        image = _substrate(rng, height, width, bg_level, modality)
        absorbance = np.where(inside, absorbance, 0.0).astype(np.float32)
        image = image * np.exp(-absorbance)
        fringe = ndimage.gaussian_filter(inside.astype(np.float32), rng.uniform(0.8, 1.8)) - inside
        image = image + rng.uniform(0.0, 0.25) * fringe * bg_level  # bright Fresnel fringe outside the edge
    blur = rng.uniform(0.4, 1.6)
    if blur_sigma_px is not None:
        blur = blur_sigma_px
    image = ndimage.gaussian_filter(np.clip(image, 0.0, 1.0), blur)
    electrons = float(np.exp(rng.uniform(math.log(15), math.log(400))))
    image = rng.poisson(image * electrons).astype(np.float32) / electrons
    image += rng.normal(0.0, rng.uniform(0.0, 0.03), (height, 1)).astype(np.float32)  # scan-line offsets
    return np.clip(image, 0.0, 1.0)


def to_uint8(rng: np.random.Generator, gray: np.ndarray) -> np.ndarray:
    """Convert to 8 bits, in half of the draws after stretching the 0.2-99.8 percentile range.

    Parameters
    ----------
    rng : np.random.Generator
        Decides whether the contrast is stretched.
    gray : np.ndarray
        Float image in [0, 1].

    Returns
    -------
    np.ndarray
        ``uint8`` image of the same shape.
    """
    low, high = np.percentile(gray, [0.2, 99.8]) if rng.random() < 0.5 else (0.0, 1.0)
    gray = np.clip((gray - low) / max(high - low, 1e-3), 0.0, 1.0)
    return np.rint(gray * 255).astype(np.uint8)
