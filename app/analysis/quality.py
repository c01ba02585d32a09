"""Quality flags for the images of a sample, so that the odd image in fifty is found.

Each image gets measurements of its own (:func:`image_measures`: sharpness, saturation, particle count,
shape) and is then flagged against fixed limits and against the rest of its sample (:func:`sample_flags`).
A flag is a short sentence; an image may carry several.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

#: Fewer particles than this in the statistics make an image's own distribution meaningless.
MIN_PARTICLES = 20
#: Share of pixels at the darkest or brightest value above which an image counts as saturated.
SATURATED_FRACTION = 0.02
#: An image whose sharpness is under this share of its sample's median is flagged as out of focus.
BLUR_RATIO = 0.5
#: A pixel size further than this (relative) from the sample's median is flagged.
CALIBRATION_TOLERANCE = 0.02
#: Median aspect ratio above which the objects look like wires or fibres rather than particles.
FIBRE_ASPECT_RATIO = 3.0
#: Share of the analysed frame covered by objects above which the image looks like a continuous film.
FILM_COVERAGE = 0.8


@dataclass(frozen=True)
class ImageMeasures:
    """What the flags are decided from, for one image."""

    sharpness: float
    saturated_fraction: float
    n_particles: int
    median_aspect_ratio: float
    coverage: float
    nm_per_px: float | None


def sharpness(gray: np.ndarray) -> float:
    """Mean squared gradient (Sobel) of the image stretched to its 1st-99th percentiles.

    Stretching first makes the measure independent of brightness and contrast, so images of one
    sample can be compared; a blurred image has weaker gradients.

    Examples
    --------
    >>> rows, cols = np.mgrid[:64, :64]
    >>> edge = (cols > 32).astype(float)
    >>> sharpness(edge) > sharpness(ndimage.gaussian_filter(edge, 3))
    True
    """
    image = np.asarray(gray, dtype=np.float64)
    low, high = np.percentile(image, [1, 99])
    if high <= low:
        return 0.0
    image = np.clip((image - low) / (high - low), 0, 1)
    return float(np.mean(ndimage.sobel(image, axis=0) ** 2 + ndimage.sobel(image, axis=1) ** 2))


def image_measures(gray: np.ndarray, particles: pd.DataFrame, frame: tuple[int, int],
                   nm_per_px: float | None) -> ImageMeasures:
    """The measures of one analysed image (``gray`` in [0, 1]; ``frame`` the rows analysed)."""
    region = np.asarray(gray)[frame[0]:frame[1]]
    saturated = float(max(np.mean(region <= 0.0), np.mean(region >= 1.0))) if region.size else 0.0
    area = float(particles["area_px"].sum()) if len(particles) else 0.0
    aspect = float(particles["aspect_ratio"].median()) if len(particles) else float("nan")
    return ImageMeasures(sharpness(region) if region.size else 0.0, saturated, int(len(particles)), aspect,
                         area / region.size if region.size else 0.0, nm_per_px)


def sample_flags(measures: Sequence[ImageMeasures]) -> list[list[str]]:
    """The flags of each image of one sample (same order), as sentences."""
    sharp = np.array([m.sharpness for m in measures], dtype=float)
    sizes = np.array([m.nm_per_px for m in measures if m.nm_per_px is not None], dtype=float)
    usual_sharpness = float(np.median(sharp)) if len(measures) >= 3 else None
    usual_nm = float(np.median(sizes)) if sizes.size >= 2 else None
    flags = []
    for m in measures:
        own = []
        if m.nm_per_px is None:
            own.append("No calibration: sizes are in pixels.")
        elif usual_nm is not None and abs(m.nm_per_px / usual_nm - 1.0) > CALIBRATION_TOLERANCE:
            own.append(f"Pixel size {m.nm_per_px:.4g} nm/px differs from the sample's usual {usual_nm:.4g} nm/px; "
                       "check the magnification.")
        if m.n_particles < MIN_PARTICLES:
            own.append(f"Very few particles ({m.n_particles}).")
        if usual_sharpness and m.sharpness < BLUR_RATIO * usual_sharpness:
            own.append("Out of focus: much less sharp than the other images of the sample.")
        if m.saturated_fraction > SATURATED_FRACTION:
            own.append(f"Saturated: {100 * m.saturated_fraction:.0f}% of the pixels are at the darkest or "
                       "brightest value.")
        if np.isfinite(m.median_aspect_ratio) and m.median_aspect_ratio > FIBRE_ASPECT_RATIO:
            own.append("Does not look like particles: most objects are elongated (wires or fibres?).")
        elif m.coverage > FILM_COVERAGE:
            own.append("Does not look like particles: the objects cover most of the image (a continuous film?).")
        flags.append(own)
    return flags
