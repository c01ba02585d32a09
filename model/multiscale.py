"""Octave passes fused by particle size: the scale method under evaluation for issue #19.

Today's segmenter chooses one scale per image (a pyramid rated by a learned scorer), which loses the
small particles of a polydisperse powder and is slow. This module runs the network at fixed octaves of
the image (1, 1/2, 1/4, ... down to a short side of :data:`MIN_SIDE_PX`) and keeps each particle from the
pass where it appears at a size the network sees well (:data:`BAND_PX`, in the pass's pixels). The passes
cost about 4/3 of the full-resolution one together.

With a network that has a size map (a third output: each pixel's particle diameter), every instance
of every pass is a candidate, as a multi-scale detector treats its levels, and the candidates are kept
greedily, best first, each where no more than :data:`MAX_TAKEN` of it is already taken
(:func:`fuse_by_confidence`). A candidate's score rises with the network's centre peak and falls with
its distance outside the pass's band (:data:`SIZED_BAND_PX`; none below it in the finest pass, none
above it in the coarsest) and with the disagreement between its measured diameter and the network's
size for it (a merge of small particles measures larger, a fragment of a large one smaller). Instances
the network is unsure of (mean particle probability under :data:`MIN_MEAN_FOREGROUND`) or that are far
from convex (:data:`MIN_SOLIDITY`: substrate texture, film edges) are not candidates, nor are those
no neighbouring pass shows (:data:`SUPPORT_IOU`: a real particle shows at two scales, a hallucination
of one pass does not; small ones of the finest pass are spared). A particle kept
early that lies wholly inside a larger one kept later is a piece of it, and goes
(:data:`EVICT_INSIDE`; a satellite on the rim stays). A pass that gives only a few particles, small in
area beside the others (:data:`STRAY_COUNT`), gives none: on the EMPS training images these were mostly
panel letters, dust and texture.

Without a size map, from the coarsest pass to the finest:

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
#: With a size map: apparent diameters (px of the pass) a candidate is scored without a band penalty.
SIZED_BAND_PX = (6.0, 32.0)
#: With a size map: smallest mean particle probability over a candidate.
MIN_MEAN_FOREGROUND = 0.85
#: With a size map: smallest solidity (area over convex-hull area) of a candidate of at least
#: :data:`SOLIDITY_MIN_AREA_PX` pixels, less :data:`SOLIDITY_SLACK_PX` over its diameter in px (a
#: digitised disc 8 px across has a solidity of 0.86, one 24 px across 0.95).
MIN_SOLIDITY = 0.88
SOLIDITY_MIN_AREA_PX = 30
SOLIDITY_SLACK_PX = 0.5
#: With a size map: weight of the centre peak and of the size disagreement (|log2| of measured over
#: predicted diameter) in a candidate's score; the band distance (log2) has weight 1.
PEAK_WEIGHT = 2.0
AGREEMENT_WEIGHT = 0.5
#: With a size map: a candidate is dropped when more than this share of it is already taken.
MAX_TAKEN = 0.2
#: With a size map: a pass that contributes fewer particles than this, and less than
#: :data:`STRAY_AREA_SHARE` of the kept particles' area, contributes none (stray text, dust, texture).
STRAY_COUNT = 10
STRAY_AREA_SHARE = 0.05
#: With a size map: a candidate must overlap an instance of a neighbouring pass (the next finer or
#: coarser) with at least this IoU, unless it is in the finest pass and would measure under
#: :data:`SUPPORT_MIN_PX` in the next coarser one (a real particle shows at two scales; a hallucination
#: of one pass does not).
SUPPORT_IOU = 0.3
SUPPORT_MIN_PX = 6.0
#: With a size map: a kept particle with at least this share of its pixels inside a larger one kept
#: later is a piece of it (texture, a facet) and goes (1: never).
EVICT_INSIDE = 0.9
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

    With a size map in every pass the candidates of all passes compete (:func:`fuse_by_confidence`;
    ``band_px`` and the two rules after it are not used); without, the measured sizes decide, coarsest
    pass first (:func:`_keep_by_measured_size`), every decision taken at the pass's own resolution
    (what is already kept is shrunk to it). Either way only the kept instances are carried to full
    resolution, with outlines from the pass's particle probability.

    Returns
    -------
    numpy.ndarray
        int32 labels, ids 1..n.
    """
    if passes and all(one.size is not None for one in passes):
        return fuse_by_confidence(passes, shape)
    ordered = sorted(passes, key=lambda one: one.scale)
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


@dataclass(frozen=True)
class Candidates:
    """The instances of one pass as candidates: per id (index 0 unused) their measures and score."""

    measured_px: np.ndarray  # diameter of a disc of the same area, px of the pass
    predicted_px: np.ndarray  # the network's size (mean code over the instance), px of the pass
    peak: np.ndarray  # highest centre-map value
    mean_foreground: np.ndarray  # mean particle probability
    solidity: np.ndarray  # area over convex-hull area (1 under SOLIDITY_MIN_AREA_PX)
    score: np.ndarray
    eligible: np.ndarray  # bool: a candidate at all
    pixels: tuple[np.ndarray, np.ndarray, np.ndarray]  # :func:`_pixel_lists` of the pass's labels


def score_candidates(one: OctavePass, *, finest: bool, coarsest: bool,
                     band_px: tuple[float, float] = SIZED_BAND_PX) -> Candidates:
    """Measures and score of every instance of a pass with a size map (see the module's rules)."""
    labels = np.asarray(one.labels, np.int32)
    n = int(labels.max())
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n + 1).astype(np.float64)
    measured = np.sqrt(4.0 * area / np.pi)
    per_pixel = np.maximum(area, 1)
    predicted = decode_size(np.bincount(flat, weights=np.asarray(one.size, np.float64).ravel(), minlength=n + 1)
                            / per_pixel)
    mean_foreground = np.bincount(flat, weights=np.asarray(one.foreground, np.float64).ravel(),
                                  minlength=n + 1) / per_pixel
    order, starts, ends = _pixel_lists(labels)
    present = np.flatnonzero(ends > starts)
    peak = np.zeros(n + 1)
    if present.size:
        peak[present] = np.maximum.reduceat(np.asarray(one.centre, np.float64).ravel()[order], starts[present])
    solidity = np.where(area >= SOLIDITY_MIN_AREA_PX,
                        area / np.maximum(hull_areas(labels, n, sorted_pixels=(order, starts)), 1), 1.0)
    low, high = band_px
    safe = np.maximum(measured, 1e-6)
    below = np.zeros(n + 1) if finest else np.log2(low / safe).clip(0)
    above = np.zeros(n + 1) if coarsest else np.log2(safe / high).clip(0)
    disagreement = np.abs(np.log2(safe / np.maximum(predicted, 1e-6)))
    score = PEAK_WEIGHT * peak - (below + above) - AGREEMENT_WEIGHT * disagreement
    convex = solidity >= MIN_SOLIDITY - SOLIDITY_SLACK_PX / np.maximum(measured, 1.0)
    eligible = (area > 0) & (mean_foreground >= MIN_MEAN_FOREGROUND) & convex
    eligible[0] = False
    return Candidates(measured, predicted, peak, mean_foreground, solidity, score, eligible, (order, starts, ends))


def hull_areas(labels: np.ndarray, n: int, n_directions: int = 32,
               sorted_pixels: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Per id 0..n, the pixel count of the instance's convex hull, as scikit-image's ``area_convex``
    counts it, to within a few per cent: the polygon with sides in ``n_directions`` directions around
    the pixel centres (area ``A``, perimeter ``P``) holds about ``A + P / 2 + 1`` pixels (Pick's theorem).

    All instances at once: one support value per instance and direction (a sorted ``reduceat``), then
    the polygon's corners where consecutive support lines cross, and the shoelace formula.
    ``sorted_pixels`` is :func:`_pixel_lists`'s ``(order, starts)`` for ``labels``, when already made.

    >>> square = np.zeros((8, 8), np.int32); square[2:6, 2:6] = 1
    >>> round(float(hull_areas(square, 1)[1]), 1)
    16.0
    """
    areas = np.zeros(n + 1)
    order, starts = sorted_pixels if sorted_pixels is not None else _pixel_lists(labels)[:2]
    if order.size == 0:
        return areas
    counts = np.diff(np.append(starts, order.size))
    present = np.flatnonzero(counts)
    starts = starts[present]
    rows, cols = np.divmod(order, labels.shape[1])
    rows, cols = rows.astype(np.float64), cols.astype(np.float64)
    theta = 2.0 * np.pi * np.arange(n_directions) / n_directions
    cos, sin = np.cos(theta), np.sin(theta)
    support = np.empty((present.size, n_directions))
    for k in range(n_directions):
        support[:, k] = np.maximum.reduceat(cols * cos[k] + rows * sin[k], starts)
    following = np.roll(np.arange(n_directions), -1)
    step = np.sin(theta[1] - theta[0])
    x = (support * sin[following] - support[:, following] * sin) / step
    y = (support[:, following] * cos - support * cos[following]) / step
    x_next, y_next = np.roll(x, -1, axis=1), np.roll(y, -1, axis=1)
    polygon = 0.5 * np.abs(np.sum(x * y_next - x_next * y, axis=1))
    perimeter = np.hypot(x_next - x, y_next - y).sum(axis=1)
    areas[present] = polygon + perimeter / 2 + 1
    return areas


def neighbour_support(passes: list[OctavePass]) -> list[np.ndarray]:
    """Per pass (``passes`` finest first), per id: the best IoU of the instance with an instance of the
    next finer or next coarser pass, compared at the finer pass's resolution (the coarser labels
    resized to it by nearest neighbour)."""
    support = [np.zeros(int(np.asarray(one.labels).max()) + 1) for one in passes]
    for k in range(len(passes) - 1):
        fine = np.asarray(passes[k].labels, np.int32)
        coarse = _nearest_ids(passes[k + 1].labels, fine.shape)
        n_fine, n_coarse = support[k].size - 1, support[k + 1].size - 1
        fine_ids, coarse_ids, overlap = _pair_counts(fine, coarse, n_fine)
        if overlap.size == 0:
            continue
        fine_area = np.bincount(fine.ravel(), minlength=n_fine + 1)
        coarse_area = np.bincount(coarse.ravel(), minlength=n_coarse + 1)
        iou = overlap / (fine_area[fine_ids] + coarse_area[coarse_ids] - overlap)
        np.maximum.at(support[k], fine_ids, iou)
        np.maximum.at(support[k + 1], coarse_ids, iou)
    return support


def _pixel_lists(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices of each id's pixels: ``order[starts[i]:ends[i]]`` for id ``i`` (0 excluded)."""
    flat = labels.ravel()
    inside = np.flatnonzero(flat)
    order = inside[np.argsort(flat[inside], kind="stable")]
    counts = np.bincount(flat[inside], minlength=int(flat.max()) + 1)
    ends = np.cumsum(counts)
    return order, ends - counts, ends


def _pixels_of(lists: tuple[np.ndarray, np.ndarray, np.ndarray], i: int) -> np.ndarray:
    """Flat indices of id ``i``'s pixels in :func:`_pixel_lists`'s ``lists`` (none for an id past its end)."""
    order, starts, ends = lists
    return order[starts[i]:ends[i]] if i < starts.size else order[:0]


def fuse_by_confidence(passes: list[OctavePass], shape: tuple[int, int]) -> np.ndarray:
    """Candidates of all passes kept best score first, each where at most :data:`MAX_TAKEN` of it is
    taken (judged on the passes' instances carried to ``shape`` by nearest neighbour); a pass's few
    small ones are dropped (:data:`STRAY_COUNT`, :data:`STRAY_AREA_SHARE`); the kept ones are then
    drawn with outlines from their pass's particle probability, in the same order, each on the pixels
    still free.

    Returns
    -------
    numpy.ndarray
        int32 labels of ``shape``, ids 1..n.
    """
    passes = sorted(passes, key=lambda one: -one.scale)
    finest, coarsest = passes[0].scale, passes[-1].scale
    support = neighbour_support(passes)
    ranked = []
    nearest = []
    for k, one in enumerate(passes):
        candidates = score_candidates(one, finest=one.scale == finest, coarsest=one.scale == coarsest)
        exempt = (candidates.measured_px / 2 < SUPPORT_MIN_PX) if k == 0 else np.zeros(support[k].size, bool)
        ids = np.flatnonzero(candidates.eligible & ((support[k] >= SUPPORT_IOU) | exempt))
        ranked.extend(zip(-candidates.score[ids], [k] * ids.size, ids.tolist()))
        if not ids.size:
            nearest.append(None)
        else:
            same = np.shape(one.labels) == tuple(shape)
            nearest.append(candidates.pixels if same else _pixel_lists(_nearest_ids(one.labels, shape)))
    ranked.sort()
    kept = _keep_greedily([(k, i) for _, k, i in ranked], nearest, int(np.prod(shape)), len(passes))
    return _draw(passes, kept, shape)


def _keep_greedily(ranked: list[tuple[int, int]], nearest: list, n_pixels: int, n_passes: int) -> list[tuple[int, int]]:
    """(pass, id) of the candidates kept, in the order kept: ``ranked`` best first, each where at most
    :data:`MAX_TAKEN` of its pixels (``nearest[pass]``, :func:`_pixel_lists` at full resolution) is
    taken, pieces inside a larger one kept later evicted (:data:`EVICT_INSIDE`), stray passes dropped."""
    owner = np.full(n_pixels, -1, np.int64)  # index into kept
    kept = []
    areas = []
    for k, i in ranked:
        pixels = _pixels_of(nearest[k], i)
        if pixels.size == 0:
            continue
        owners = owner[pixels]
        if (owners >= 0).mean() > MAX_TAKEN:
            continue
        if EVICT_INSIDE < 1.0 and (owners >= 0).any():
            inside = np.bincount(owners[owners >= 0])
            for o in np.flatnonzero(inside):
                if areas[o] and inside[o] >= EVICT_INSIDE * areas[o] and areas[o] < pixels.size:
                    theirs = _pixels_of(nearest[kept[o][0]], kept[o][1])  # a piece inside a larger particle
                    owner[theirs[owner[theirs] == o]] = -1
                    areas[o] = 0
            owners = owner[pixels]
        owner[pixels[owners < 0]] = len(kept)
        kept.append((k, i))
        areas.append(pixels.size)
    kept = [one for one, area in zip(kept, areas) if area]
    areas = [area for area in areas if area]
    if not kept:
        return kept
    by_pass = np.array([k for k, _ in kept])
    count = np.bincount(by_pass, minlength=n_passes)
    share = np.bincount(by_pass, weights=areas, minlength=n_passes) / sum(areas)
    stray = (count < STRAY_COUNT) & (share < STRAY_AREA_SHARE)
    return [(k, i) for k, i in kept if not stray[k]]


def _draw(passes: list[OctavePass], kept: list[tuple[int, int]], shape: tuple[int, int]) -> np.ndarray:
    """Labels of ``shape``, ids 1..n in the order of ``kept`` ((pass, id) pairs), each particle with its
    pass's outline carried to full resolution (:func:`model.postprocess.upsample_instances`), drawn on
    the pixels still free."""
    drawn = []
    for k, one in enumerate(passes):
        labels = np.asarray(one.labels, np.int32)
        ids = [i for kk, i in kept if kk == k]
        if not ids:
            drawn.append(None)
            continue
        keep = np.zeros(int(labels.max()) + 1, bool)
        keep[ids] = True
        chosen = np.where(keep[labels], labels, 0)
        big = chosen if chosen.shape == tuple(shape) else upsample_instances(chosen, one.foreground, shape=shape,
                                                                            renumber=False)
        drawn.append(_pixel_lists(big))
    out = np.zeros(int(np.prod(shape)), np.int32)
    next_id = 1
    for k, i in kept:
        pixels = _pixels_of(drawn[k], i)
        pixels = pixels[out[pixels] == 0]
        if pixels.size:
            out[pixels] = next_id
            next_id += 1
    return out.reshape(shape)


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
