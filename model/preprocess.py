"""Image normalisation, resizing and size estimation shared by training and inference.

Everything that turns a raw image into what the network sees lives here, so that training
(:mod:`model.data`) and inference (:mod:`model.inference`) cannot drift apart. No TensorFlow.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from app.analysis.measure import ecd_from_area
from model.config import NormalisationConfig, ScaleConfig

#: Percentiles mapped to 0 and 1 by :func:`normalize_percentile` (default of :class:`model.config.NormalisationConfig`).
NORM_PERCENTILES = NormalisationConfig.percentiles
#: Median particle diameter (px) that the network is trained to see; images are rescaled to it.
TARGET_DIAMETER_PX = ScaleConfig.target_diameter_px


def normalize_percentile(gray: np.ndarray, low: float = NORM_PERCENTILES[0],
                         high: float = NORM_PERCENTILES[1]) -> np.ndarray:
    """Scale an image so that its ``low`` and ``high`` percentiles map to 0 and 1, clipped to [0, 1].

    Parameters
    ----------
    gray : numpy.ndarray
        2-D image of any real dtype.
    low, high : float
        Percentiles (0-100).

    Returns
    -------
    numpy.ndarray
        float32 image in [0, 1]; a constant image gives all zeros.
    """
    gray = np.asarray(gray, dtype=np.float32)
    # Percentiles of a strided subsample are as good as the full image and much cheaper on 8k images.
    step = max(1, int(np.sqrt(gray.size / 4_000_000)))
    lo, hi = np.percentile(gray[::step, ::step], (low, high))
    if hi - lo < 1e-6:
        return np.zeros_like(gray)
    out = (gray - lo) / (hi - lo)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def resize_float(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D float image bilinearly to ``shape`` = (rows, cols)."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.shape == tuple(shape):
        return image.copy()
    resized = Image.fromarray(image, mode="F").resize((int(shape[1]), int(shape[0])),
                                                      Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an integer label image to ``shape`` with nearest-neighbour sampling (int32 result)."""
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    if labels.shape == tuple(shape):
        return labels.copy()
    resized = Image.fromarray(labels, mode="I").resize((int(shape[1]), int(shape[0])),
                                                       Image.Resampling.NEAREST)
    return np.asarray(resized, dtype=np.int32)


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """Shape of an image of ``shape`` resized by ``scale`` (at least 1 px per side)."""
    return max(1, int(round(shape[0] * scale))), max(1, int(round(shape[1] * scale)))


def median_diameter_px(labels: np.ndarray, min_area_px: int = 10, area_weighted: bool = False) -> float | None:
    """Median equivalent circular diameter of the labelled particles, in pixels.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer instance labels, 0 = background.
    min_area_px : int
        Particles smaller than this are ignored.
    area_weighted : bool
        Weight each particle by its area (the diameter of the particle that a random particle
        pixel belongs to). Robust against many tiny false detections; for log-normal sizes it is
        ``exp(2 sigma**2)`` times the plain median.

    Returns
    -------
    float or None
        The median ECD in pixels, or None when no particle is large enough.
    """
    areas_px = np.bincount(np.asarray(labels, dtype=np.int64).ravel())[1:]
    areas_px = np.sort(areas_px[areas_px >= min_area_px])
    if areas_px.size == 0:
        return None
    if area_weighted:
        cumulative = np.cumsum(areas_px)
        median_area_px = areas_px[np.searchsorted(cumulative, 0.5 * cumulative[-1])]
        return float(ecd_from_area(median_area_px))
    return float(np.median(ecd_from_area(areas_px)))


def instance_targets(labels: np.ndarray) -> np.ndarray:
    """Training targets from instance labels: foreground and per-particle normalised distance.

    Parameters
    ----------
    labels : numpy.ndarray
        2-D integer instance labels, 0 = background; touching particles carry different ids.

    Returns
    -------
    numpy.ndarray
        float32 array (rows, cols, 2): channel 0 is 1 on particles, channel 1 is the Euclidean
        distance to the particle's own border divided by its maximum inside that particle
        (1 at each particle's centre, falling to 0 at its edge and between touching particles).
    """
    labels = np.asarray(labels)
    targets = np.zeros(labels.shape + (2,), dtype=np.float32)
    targets[..., 0] = labels > 0
    for index, slices in enumerate(ndimage.find_objects(labels), start=1):
        if slices is None:
            continue
        own = np.pad(labels[slices] == index, 1)
        distance = ndimage.distance_transform_edt(own)[1:-1, 1:-1]
        peak = distance.max()
        if peak > 0:
            region = targets[slices + (1,)]
            inside = own[1:-1, 1:-1]
            region[inside] = distance[inside] / peak
    return targets
