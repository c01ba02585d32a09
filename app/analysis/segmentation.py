"""The segmenter interface and the classical (threshold + watershed) segmenter.

A segmenter turns a grayscale image into an instance label image. The U-Net segmenter in
``model/segmenter.py`` implements the same interface; :mod:`app.segmenters` chooses between them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, measure, morphology, segmentation

from app.analysis.labels import add_orphan_regions

ProgressCallback = Callable[[float, str], None]


@runtime_checkable
class Segmenter(Protocol):
    """Anything that turns a grayscale image into particle instances.

    Attributes
    ----------
    name : str
        Short identifier (``"classical"``, ``"unet"``).
    version : str
        Version recorded in provenance.
    """

    name: str
    version: str

    def segment(self, gray: np.ndarray, *, progress: ProgressCallback | None = None,
                notes: list[str] | None = None) -> np.ndarray:
        """Return an int32 label image (0 = background) of the same shape as ``gray`` (float32, [0, 1]).

        Sentences for the user about this result are appended to ``notes`` when a list is given (no
        segmenter of SAEMI writes one today; the engine's own notes go the same way).
        """
        ...


def particles_are_bright(gray: np.ndarray, threshold: float) -> bool:
    """Guess the polarity: particles are the minority phase.

    Parameters
    ----------
    gray : ndarray
        Smoothed image.
    threshold : float
        Global threshold separating the two phases.

    Returns
    -------
    bool
        True for bright particles on a dark substrate (SEM secondary electrons), False for dark particles
        on a bright background (TEM bright field).

    Examples
    --------
    >>> img = np.zeros((20, 20)); img[5:9, 5:9] = 1.0
    >>> particles_are_bright(img, 0.5)
    True
    """
    return float(np.mean(gray > threshold)) <= 0.5


class ClassicalSegmenter:
    """Smoothing, Otsu threshold with polarity detection, hole filling and a distance-transform watershed.

    Parameters
    ----------
    smoothing_px : float
        Standard deviation of the Gaussian pre-filter, in pixels.
    split_h_px : float
        Height, in pixels of distance, that a distance-map maximum must rise above its surroundings to
        seed its own particle. Larger values split less.
    """

    name = "classical"
    version = "1.0"

    def __init__(self, smoothing_px: float = 1.5, split_h_px: float = 1.5, min_contrast_noise: float = 1.0) -> None:
        self.smoothing_px = smoothing_px
        self.split_h_px = split_h_px
        self.min_contrast_noise = min_contrast_noise

    def foreground(self, gray: np.ndarray) -> np.ndarray:
        """Binary particle mask after thresholding and hole filling.

        An image whose two threshold classes differ by less than ``min_contrast_noise`` times the pixel
        noise holds no particles (a bare substrate): the mask is empty rather than a speckle of noise.
        """
        gray = gray.astype(np.float32)
        smooth = filters.gaussian(gray, sigma=self.smoothing_px, preserve_range=True)
        if float(smooth.max() - smooth.min()) < 1e-6:
            return np.zeros(gray.shape, dtype=bool)
        threshold = filters.threshold_otsu(smooth)
        contrast = float(smooth[smooth > threshold].mean() - smooth[smooth <= threshold].mean())
        if contrast < self.min_contrast_noise * noise_sigma(gray):
            return np.zeros(gray.shape, dtype=bool)
        mask = smooth > threshold if particles_are_bright(smooth, threshold) else smooth < threshold
        mask = morphology.remove_small_objects(mask, max_size=3)
        return ndi.binary_fill_holes(mask)

    def segment(self, gray: np.ndarray, *, progress: ProgressCallback | None = None,
                notes: list[str] | None = None) -> np.ndarray:
        """Segment ``gray`` into particle instances; see :class:`Segmenter` (it adds no notes)."""
        if progress:
            progress(0.1, "Thresholding")
        mask = self.foreground(gray)
        if not mask.any():
            return np.zeros(gray.shape, dtype=np.int32)
        if progress:
            progress(0.5, "Splitting touching particles")
        labels = split_touching(mask, h_px=self.split_h_px)
        if progress:
            progress(1.0, "Done")
        return labels


def noise_sigma(gray: np.ndarray) -> float:
    """Robust estimate of the pixel noise: the median absolute difference of horizontal neighbours.

    For white noise of standard deviation sigma, neighbour differences have standard deviation
    sigma * sqrt(2), and their median absolute value is 0.6745 of that. Row-wise scan-line offsets cancel.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> round(noise_sigma(rng.normal(0.5, 0.05, (200, 200))), 2)
    0.05
    """
    differences = np.abs(np.diff(np.asarray(gray, dtype=np.float64), axis=1))
    return float(np.median(differences) / (0.6745 * np.sqrt(2.0))) if differences.size else 0.0


def split_touching(mask: np.ndarray, *, h_px: float = 1.5) -> np.ndarray:
    """Split touching particles in a binary mask with a marker-controlled distance-transform watershed.

    Parameters
    ----------
    mask : ndarray of bool
        Particle pixels.
    h_px : float
        Minimum prominence, in pixels, of a distance maximum to become a marker.

    Returns
    -------
    ndarray of int32
        Label image; pixels outside ``mask`` are 0.

    Examples
    --------
    >>> yy, xx = np.mgrid[:40, :60]
    >>> two = ((yy - 20) ** 2 + (xx - 18) ** 2 < 100) | ((yy - 20) ** 2 + (xx - 38) ** 2 < 100)
    >>> int(split_touching(two).max())
    2
    """
    distance = ndi.distance_transform_edt(mask)
    smooth = ndi.gaussian_filter(distance, sigma=1.0)
    # Quantise to 0.25 px so the morphological reconstruction works on integers (much faster).
    quantised = np.round(smooth * 4).astype(np.int32)
    peaks = morphology.h_maxima(quantised, max(1, int(round(h_px * 4))))
    markers = measure.label(peaks & mask)
    labels = segmentation.watershed(-smooth, markers, mask=mask)
    # Regions without a marker (tiny specks) keep their own label.
    return add_orphan_regions(labels, mask, connectivity=2)
