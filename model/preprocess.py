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


#: Pixels that :func:`apply_levels` and :func:`resize_float` work on at once (16 MiB of float32):
#: large images are processed a band of rows at a time, so their temporaries stay this small.
BAND_PX = 1 << 22


def percentile_levels(gray: np.ndarray, low: float = NORM_PERCENTILES[0],
                      high: float = NORM_PERCENTILES[1]) -> tuple[float, float] | None:
    """The ``low`` and ``high`` percentiles of ``gray`` (None for a constant image).

    Percentiles of a strided subsample are as good as the full image and much cheaper on 8k
    images (at most about 4 Mpx are read).
    """
    gray = np.asarray(gray)
    step = max(1, int(np.sqrt(gray.size / 4_000_000)))
    lo, hi = np.percentile(np.asarray(gray[::step, ::step], dtype=np.float32), (low, high))
    if hi - lo < 1e-6:
        return None
    return float(lo), float(hi)


def apply_levels(gray: np.ndarray, levels: tuple[float, float] | None) -> np.ndarray:
    """``gray`` with ``levels`` = (lo, hi) mapped to 0 and 1, clipped to [0, 1], as float32.

    The arithmetic is done in float64 a band of rows at a time, so the only full-size array is the
    float32 result. ``levels`` None (a constant image) gives zeros.
    """
    gray = np.asarray(gray)
    out = np.zeros(gray.shape, dtype=np.float32)
    if levels is None or gray.size == 0:
        return out
    lo, hi = levels
    band = max(1, BAND_PX // max(1, gray.shape[-1]))
    for r0 in range(0, gray.shape[0], band):
        piece = np.asarray(gray[r0:r0 + band], dtype=np.float64) - lo
        piece /= hi - lo
        np.clip(piece, 0.0, 1.0, out=piece)
        out[r0:r0 + band] = piece
    return out


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
    return apply_levels(gray, percentile_levels(gray, low, high))


class LevelledImage:
    """A gray image and its normalisation levels, normalised only where and when it is needed.

    The segmenter keeps one of these instead of a normalised copy of the whole image: a network
    pass at another scale resizes the raw image band by band (:func:`resize_float` with
    ``levels``), and a window of a large image is normalised with the whole image's levels, only where it
    is needed. The result equals ``resize_float(normalize_percentile(gray), shape)`` exactly.
    """

    def __init__(self, gray: np.ndarray, levels: tuple[float, float] | None) -> None:
        self.gray = gray
        self.levels = levels

    @classmethod
    def of(cls, gray: np.ndarray, low: float = NORM_PERCENTILES[0],
           high: float = NORM_PERCENTILES[1]) -> LevelledImage:
        """``gray`` with the levels of :func:`normalize_percentile`."""
        return cls(gray, percentile_levels(gray, low, high))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.gray.shape[:2])

    def __getitem__(self, window) -> LevelledImage:
        """A crop with the same levels (a view of the raw image, no copy)."""
        return LevelledImage(self.gray[window], self.levels)

    def normalised(self) -> np.ndarray:
        """The normalised image (float32)."""
        return apply_levels(self.gray, self.levels)

    def resized(self, shape: tuple[int, int]) -> np.ndarray:
        """The normalised image resized bilinearly to ``shape`` (float32)."""
        return resize_float(self.gray, shape, levels=self.levels)


def _bilinear_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """First input index and weights of each output index for a bilinear resize of ``n_in`` to ``n_out``.

    The same sampling as Pillow's ``Image.resize(..., BILINEAR)`` along one axis: output pixel
    ``i`` is centred on input coordinate ``(i + 0.5) * n_in / n_out``, and when shrinking, the
    triangle filter is widened by the shrink factor (so every input pixel contributes). Weights
    are normalised to sum to 1; those past the input's edge are 0.
    """
    scale = n_in / n_out
    filter_scale = max(scale, 1.0)
    support = filter_scale
    ksize = int(np.ceil(support)) * 2 + 1
    centre = (np.arange(n_out) + 0.5) * scale
    first = np.maximum((centre - support + 0.5).astype(np.int64), 0)
    count = np.minimum((centre + support + 0.5).astype(np.int64), n_in) - first
    weights = np.zeros((n_out, ksize), dtype=np.float64)
    total = np.zeros(n_out, dtype=np.float64)
    for k in range(ksize):
        w = np.maximum(1.0 - np.abs(((first + k) - centre + 0.5) * (1.0 / filter_scale)), 0.0)
        w[k >= count] = 0.0
        weights[:, k] = w
        total += w
    nonzero = total != 0.0
    weights[nonzero] /= total[nonzero, None]
    return first, weights


def resize_float(image: np.ndarray, shape: tuple[int, int], *,
                 levels: tuple[float, float] | None | bool = False) -> np.ndarray:
    """Resize a 2-D float image bilinearly to ``shape`` = (rows, cols), as float32.

    Pillow's bilinear resize, done a band of output rows at a time (:func:`resized_bands`), so
    no full-size temporary is made. The result equals ``Image.resize`` of the whole image to
    float32 rounding (Pillow 13 sometimes runs its vertical pass first). With ``levels``
    (lo, hi) or None, the image is first normalised by :func:`apply_levels`, band by band, so a
    large raw image is never normalised whole.
    """
    image = np.asarray(image)
    if image.shape == tuple(shape):
        return image.astype(np.float32) if levels is False else apply_levels(image, levels)
    out = np.empty((int(shape[0]), int(shape[1])), dtype=np.float32)
    for r0, r1, band in resized_bands(image, shape, levels=levels):
        out[r0:r1] = band
    return out


def resized_bands(image: np.ndarray, shape: tuple[int, int], *,
                  levels: tuple[float, float] | None | bool = False):
    """Yield ``(r0, r1, rows r0:r1 of resize_float(image, shape, levels=levels))``, top to bottom.

    Pillow resizes each band's source rows horizontally, and the vertical pass uses Pillow's
    weights (:func:`_bilinear_weights`) in float64. A band holds about :data:`BAND_PX` pixels.
    """
    image = np.asarray(image)
    rows, cols = int(shape[0]), int(shape[1])
    n_rows, n_cols = image.shape

    def prepared(piece: np.ndarray) -> np.ndarray:
        if levels is not False:
            return apply_levels(piece, levels)
        return np.ascontiguousarray(piece, dtype=np.float32)

    band = max(1, BAND_PX // max(n_cols, cols, 1))
    if rows != n_rows:
        first, weights = _bilinear_weights(n_rows, rows)
        reach = first + weights.shape[1]
    for r0 in range(0, rows, band):
        r1 = min(rows, r0 + band)
        a, b = (r0, r1) if rows == n_rows else (int(first[r0]), int(min(n_rows, reach[r0:r1].max())))
        piece = prepared(image[a:b])
        if cols != n_cols:
            piece = np.asarray(Image.fromarray(piece, mode="F").resize((cols, b - a), Image.Resampling.BILINEAR))
        if rows == n_rows:
            yield r0, r1, piece
            continue
        total = np.zeros((r1 - r0, cols), dtype=np.float64)
        for k in range(weights.shape[1]):
            source = np.minimum(first[r0:r1] + k - a, b - a - 1)  # past the edge the weight is 0
            total += weights[r0:r1, k, None] * piece[source]
        yield r0, r1, total.astype(np.float32)


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each of ``n_out`` pixels in a nearest-neighbour resize of ``n_in`` pixels.

    Taken from Pillow itself (a one-pixel-wide image of the indices, resized), so that
    ``labels[rows][:, cols]`` equals Pillow's ``resize(..., NEAREST)`` of the whole image.
    """
    ramp = Image.fromarray(np.arange(n_in, dtype=np.int32)[:, None], mode="I")
    return np.asarray(ramp.resize((1, n_out), Image.Resampling.NEAREST), dtype=np.intp)[:, 0]


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


#: The size channel (a third network output, when the network has one) codes a particle's equivalent
#: circular diameter ``d`` as ``(log2(d) - SIZE_LOG2_RANGE[0]) / (SIZE_LOG2_RANGE[1] - SIZE_LOG2_RANGE[0])``:
#: 0 for 2 px, 1 for 256 px, clipped. Every pixel of a particle carries its particle's size, so one pass
#: says, pixel by pixel, how large the particle there looks: a size map rather than one size per image.
SIZE_LOG2_RANGE = (1.0, 8.0)


def encode_size(diameter_px: np.ndarray | float) -> np.ndarray:
    """Size-channel values in [0, 1] of diameters in px (see :data:`SIZE_LOG2_RANGE`).

    >>> encode_size(np.array([2.0, 16.0, 256.0, 1000.0])).astype(float).round(3).tolist()
    [0.0, 0.429, 1.0, 1.0]
    """
    low, high = SIZE_LOG2_RANGE
    log2 = np.log2(np.maximum(np.asarray(diameter_px, dtype=np.float64), 1e-6))
    return np.clip((log2 - low) / (high - low), 0.0, 1.0).astype(np.float32)


def decode_size(value: np.ndarray | float) -> np.ndarray:
    """Diameters in px of size-channel values (the inverse of :func:`encode_size` inside its range).

    >>> decode_size(np.array([0.0, 0.5, 1.0])).round(1).tolist()
    [2.0, 22.6, 256.0]
    """
    low, high = SIZE_LOG2_RANGE
    return np.exp2(low + np.asarray(value, dtype=np.float64) * (high - low))


def log2_size_map(labels: np.ndarray) -> np.ndarray:
    """log2 of each particle's equivalent circular diameter on its pixels; background pixels take the
    value of the nearest particle (so that resizing the map does not mix sizes with background).
    All zeros when there is no particle.

    >>> labels = np.zeros((3, 6), int); labels[:, :2] = 1; labels[1, 4] = 2
    >>> log2_size_map(labels)[1].astype(float).round(2).tolist()
    [1.47, 1.47, 1.47, 0.17, 0.17, 0.17]
    """
    labels = np.asarray(labels)
    if not labels.any():
        return np.zeros(labels.shape, np.float32)
    area_px = np.bincount(labels.ravel()).astype(np.float64)
    log2_ecd = np.log2(np.maximum(ecd_from_area(area_px), 1e-6)).astype(np.float32)
    nearest = ndimage.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
    return log2_ecd[labels[nearest[0], nearest[1]]]
