"""Octave passes fused by particle size: the scale method under evaluation for issue #19.

Today's segmenter chooses one scale per image (a pyramid rated by a learned scorer), which loses the
small particles of a polydisperse powder and is slow. This module runs the network at fixed octaves of
the image (1, 1/2, 1/4, ... down to a short side of :data:`MIN_SIDE_PX`) and keeps each particle from the
pass where it appears at a size the network sees well (:data:`BAND_PX`, in the pass's pixels). The passes
cost about 4/3 of the full-resolution one together.

With a network that has a size map (a third output: each pixel's particle diameter), fusion runs from
the finest pass to the coarsest: a particle is kept from a pass when the network's size for it is inside
the band and the instance measures that size (a merge of small particles measures larger, a fragment of
a large one smaller); the finest pass also keeps particles too small for the band, and the coarsest what
is left. Without a size map, from the coarsest pass to the finest:

- a particle is kept from a pass when its measured diameter is inside the band; the coarsest pass also
  keeps larger ones, the finest also smaller ones;
- a weak particle (centre-map peak under :data:`FRAGMENT_PEAK`) touching a kept one is a piece of that
  one's rim or halo, and dropped;
- a coarse particle that the next finer pass shows as two or more separate particles (split by
  background), each inside the band there, is a merge, and left to the finer pass.

Either way, a particle mostly covered by one already kept is dropped.

It is selected with ``UNetSegmenter(scale_method="octaves")``; the default is still the learned scale
choice, until the benchmark (``bench/bench_real_sizes.py``) says otherwise with a network trained over
the whole band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from app.analysis.labels import sequential_labels
from model.postprocess import upsample_instances
from model.preprocess import decode_size, resize_labels, scaled_shape

#: Apparent diameters (px of the pass) a particle is kept at.
BAND_PX = (7.0, 20.0)
#: A pass whose shorter side would be under this is not run.
MIN_SIDE_PX = 24
#: Centre-map peak below which a particle touching a kept coarser one counts as a piece of it.
FRAGMENT_PEAK = 0.8
#: With a size map: an instance is kept only if its measured diameter is within this factor of the
#: network's size for it (a merge measures larger, a fragment smaller).
SIZE_AGREEMENT = 1.35
#: Finer-pass foreground share of a coarse particle above which a split there is believed.
MERGE_COVER = 0.6


def octave_scales(shape: tuple[int, int], max_scale: float = 1.0, min_side_px: int = MIN_SIDE_PX) -> list[float]:
    """Scales ``max_scale``, ``max_scale / 2``, ... while the image's shorter side stays at least ``min_side_px``.

    >>> octave_scales((768, 1024))
    [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125]
    >>> octave_scales((20, 20))
    [1.0]
    """
    scales = [max_scale]
    while min(scaled_shape(shape, scales[-1] / 2)) >= min_side_px:
        scales.append(scales[-1] / 2)
    return scales


@dataclass(frozen=True)
class OctavePass:
    """One pass: its scale and the network's maps and instances at the pass's resolution."""

    scale: float
    foreground: np.ndarray
    centre: np.ndarray
    labels: np.ndarray
    size: np.ndarray | None = None  # the network's size map (encode_size), when it has one


def _nearest_ids(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``labels`` resized to ``shape`` by nearest neighbour."""
    labels = np.asarray(labels, np.int32)
    return labels if labels.shape == tuple(shape) else resize_labels(labels, shape)


def _pair_counts(a: np.ndarray, b: np.ndarray, n_a: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique pairs (id in ``a``, id in ``b``) over pixels where both are non-zero, with pixel counts."""
    both = (a > 0) & (b > 0)
    if not both.any():
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    keys = a[both].astype(np.int64) * (int(b.max()) + 1) + b[both].astype(np.int64)
    pairs, counts = np.unique(keys, return_counts=True)
    return pairs // (int(b.max()) + 1), pairs % (int(b.max()) + 1), counts


def fuse_passes(passes: list[OctavePass], shape: tuple[int, int], band_px: tuple[float, float] = BAND_PX,
                fragment_peak: float = FRAGMENT_PEAK, merge_cover: float = MERGE_COVER) -> np.ndarray:
    """One label image of ``shape`` from passes at several scales (see the module's rules).

    With a size map in every pass the network's sizes decide, finest pass first
    (:func:`_keep_by_size_map`); without, the measured sizes do, coarsest pass first
    (:func:`_keep_by_measured_size`). Every decision is taken at the pass's own resolution (what is
    already kept is shrunk to it); only the kept instances are carried to full resolution, with
    outlines from the pass's particle probability.

    Returns
    -------
    numpy.ndarray
        int32 labels, ids 1..n.
    """
    sized = all(one.size is not None for one in passes)
    ordered = sorted(passes, key=lambda one: -one.scale if sized else one.scale)
    out = np.zeros(shape, np.int32)
    next_id = 1
    for k, one in enumerate(ordered):
        labels = np.asarray(one.labels, np.int32)
        n = int(labels.max())
        if n == 0:
            continue
        area = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
        taken = _nearest_ids(out > 0, labels.shape) > 0
        keep = area > 0
        keep[0] = False
        keep &= np.bincount(labels[taken], minlength=n + 1) / np.maximum(area, 1) <= 0.2  # not kept already
        if sized:
            keep &= _keep_by_size_map(one, labels, area, band_px, first=k == 0, last=k == len(ordered) - 1)
        else:
            keep &= _keep_by_measured_size(one, labels, area, taken, ordered[k + 1] if k < len(ordered) - 1 else None,
                                           band_px, fragment_peak, merge_cover, first=k == 0)
        kept = np.where(keep[labels], labels, 0)
        if not kept.any():
            continue
        big = kept if kept.shape == tuple(shape) else upsample_instances(kept, one.foreground, shape=shape)
        painted = (big > 0) & (out == 0)
        out[painted] = big[painted] + (next_id - 1)
        next_id += int(big.max())
    return sequential_labels(out, min_area_px=1, in_place=True)


def _keep_by_size_map(one: OctavePass, labels: np.ndarray, area: np.ndarray, band_px: tuple[float, float], *,
                      first: bool, last: bool) -> np.ndarray:
    """Per id, finest pass first: the network's size for the particle (mean code over the instance) is inside
    the band, and the instance measures what the network says (a merge measures larger, a fragment
    smaller). The finest pass also keeps particles too small for the band, the coarsest larger ones and
    whatever disagrees there (the last resort)."""
    low, high = band_px
    measured = np.sqrt(4.0 * area / np.pi)
    mean_code = np.bincount(labels.ravel(), weights=np.asarray(one.size, np.float64).ravel(),
                            minlength=area.size) / np.maximum(area, 1)
    predicted = decode_size(mean_code)
    agree = np.abs(np.log2(np.maximum(measured, 1e-6) / np.maximum(predicted, 1e-6))) <= np.log2(SIZE_AGREEMENT)
    keep = np.ones(area.size, bool)
    if not last:
        keep &= predicted <= high
    if not first:
        keep &= predicted >= low
    small = (measured < low) | (predicted < low)
    return keep & (agree | last | (first & small))


def _keep_by_measured_size(one: OctavePass, labels: np.ndarray, area: np.ndarray, taken: np.ndarray,
                           finer: OctavePass | None, band_px: tuple[float, float], fragment_peak: float,
                           merge_cover: float, *, first: bool) -> np.ndarray:
    """Per id, coarsest pass first: the measured diameter is inside the band (the coarsest pass also keeps
    larger particles, the finest smaller ones), the instance is not a weak piece beside a kept particle,
    and the next finer pass does not show it as several particles (:func:`_merges`)."""
    low, high = band_px
    measured = np.sqrt(4.0 * area / np.pi)
    keep = np.ones(area.size, bool)
    if finer is not None:
        keep &= measured >= low
        keep &= ~_merges(labels, area, finer, one.scale, low, high, merge_cover)
    if not first:
        keep &= measured <= high
        if taken.any():
            near = np.bincount(labels[ndimage.binary_dilation(taken, iterations=2)], minlength=area.size) > 0
            peak = np.asarray(ndimage.maximum(np.asarray(one.centre), labels, index=np.arange(area.size)))
            keep &= ~(near & (peak < fragment_peak))
    return keep


def _merges(labels: np.ndarray, area: np.ndarray, finer: OctavePass, scale: float, low: float, high: float,
            merge_cover: float) -> np.ndarray:
    """Per id of ``labels`` (a pass at ``scale``): the next finer pass shows it as 2+ separate particles
    (foreground components) inside the band, covering most of it."""
    n = area.size - 1
    merged = np.zeros(n + 1, bool)
    finer_own = np.asarray(finer.labels, np.int32)
    if finer_own.max() == 0:
        return merged
    finer_diameter = np.sqrt(4.0 * np.bincount(finer_own.ravel()) / np.pi)
    finer_in_band = (finer_diameter >= low) & (finer_diameter <= high)
    finer_labels = _nearest_ids(finer_own, labels.shape)
    cover = np.bincount(labels[finer_labels > 0], minlength=n + 1) / np.maximum(area, 1)
    components, _ = ndimage.label(finer_labels > 0)
    coarse, _, _ = _pair_counts(labels, components, n)
    n_components = np.bincount(coarse, minlength=n + 1)
    coarse_f, fine_ids, _ = _pair_counts(labels, finer_labels, n)
    in_band_share = (np.bincount(coarse_f, weights=finer_in_band[fine_ids].astype(float), minlength=n + 1)
                     / np.maximum(np.bincount(coarse_f, minlength=n + 1), 1))
    merged = (n_components >= 2) & (cover > merge_cover) & (in_band_share > 0.8)
    merged[0] = False
    return merged
