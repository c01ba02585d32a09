"""Octave passes fused by a candidate scorer: how the segmenter covers every particle size in one image.

The network runs at fixed octaves of the image (1, 1/2, 1/4, ... down to a short side of
:data:`MIN_SIDE_PX`); together the passes cost about 4/3 of the full-resolution one. Each particle is
kept from the pass where it appears at a size the network sees well, as a multi-scale detector treats
its levels: every instance of every pass is a candidate (:func:`fuse_passes`). A scorer fitted on
images with known particles (gradient-boosted trees, :mod:`model.candidate_fit`, stored beside the
weights) rates each candidate from its own measures (centre peak, mean particle probability, solidity,
measured diameter against the network's size map for it), from how the neighbouring passes show it
(IoU with their instances: a real particle shows at two scales, a hallucination of one pass does not)
and from how it compares with the image's confident particles (a speck beside large particles is dust
or texture; a small particle among many of its kind is not). Candidates likely enough to be particles
(:data:`KEEP_PROBABILITY`) are kept greedily, most likely first, each where no more than
:data:`MAX_TAKEN` of it is already taken. A pass that gives only a few particles, small in area beside
the others (:data:`STRAY_COUNT`), gives none: on the EMPS training images these were mostly panel
letters, dust and texture. A particle kept from a coarse pass is drawn with the outline of its match in
the next finer pass while they agree (:data:`OUTLINE_IOU`, :func:`finest_outlines`): the finer pass has
more pixels for its edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.config import CANDIDATE_SCORER_KIND
from model.postprocess import upsample_instances
from model.preprocess import decode_size, resize_labels, scaled_shape
from model.trees import boosted_tree_logits

#: A pass whose shorter side would be under this is not run.
MIN_SIDE_PX = 24
#: Instances of at least this many pixels get a solidity (area over convex-hull area); smaller ones 1.
SOLIDITY_MIN_AREA_PX = 30
#: A candidate is kept when the fitted candidate scorer gives it at least this
#: probability of matching a particle (IoU >= 0.5).
KEEP_PROBABILITY = 0.4
#: "Strong" candidates, the context every candidate is compared with, have at least
#: this centre peak and mean particle probability.
STRONG_PEAK = 0.7
STRONG_FOREGROUND = 0.85
#: Names of the columns of :func:`candidate_features` (stored with the scorer and checked on load).
CANDIDATE_FEATURES = (
    "peak", "mean_foreground", "solidity", "log2_measured_px", "log2_predicted_px", "log2_measured_over_predicted",
    "log2_diameter_image_px", "passes_finer", "passes_coarser", "iou_with_finer", "iou_with_coarser",
    "log1p_strong_in_pass", "log2_diameter_over_strong_median", "log2_scale", "touches_frame",
    "pass_share_of_strong_area", "log2_diameter_over_strong_max", "n_passes",
)
#: A particle kept from a coarse pass is drawn with the outline of its match in the next finer pass (and so on)
#: while their IoU is at least this (:func:`finest_outlines`); None: each keeps its own pass's outline.
OUTLINE_IOU = 0.7
#: ... and while it measures under this many px across in the coarser pass: the size the network was trained
#: at (``input_scale.target_diameter_px``). Above it the coarse pass's outline is not limited by its pixels,
#: and the finer pass sees the particle larger than the network knows best.
OUTLINE_BELOW_PX = 16.0
#: A candidate is dropped when more than this share of it is already taken.
MAX_TAKEN = 0.2
#: A pass that contributes fewer particles than this, and less than
#: :data:`STRAY_AREA_SHARE` of the kept particles' area, contributes none (stray text, dust, texture).
STRAY_COUNT = 10
STRAY_AREA_SHARE = 0.05


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
    size: np.ndarray  # the network's size map (encode_size)


def nearest_ids(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``labels`` resized to ``shape`` by nearest neighbour."""
    labels = np.asarray(labels, np.int32)
    return labels if labels.shape == tuple(shape) else resize_labels(labels, shape)


def pair_counts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique pairs (id in ``a``, id in ``b``) over pixels where both are non-zero, with pixel counts."""
    both = (a > 0) & (b > 0)
    if not both.any():
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    base = int(b.max()) + 1
    keys = a[both].astype(np.int64) * base + b[both].astype(np.int64)
    pairs, counts = np.unique(keys, return_counts=True)
    return pairs // base, pairs % base, counts


def fuse_passes(passes: list[OctavePass], shape: tuple[int, int], scorer: dict | None) -> np.ndarray:
    """One label image of ``shape`` from passes at several scales, their candidates rated by ``scorer``
    (the model's candidate scorer, :mod:`model.candidate_fit`) and kept by :func:`fuse_by_confidence`.

    Returns
    -------
    numpy.ndarray
        int32 labels, ids 1..n.

    Raises
    ------
    ValueError
        Without a scorer.
    """
    if scorer is None:
        raise ValueError("The octave fusion needs the model's candidate scorer (python -m model.candidate_fit).")
    return fuse_by_confidence(passes, shape, scorer)


@dataclass(frozen=True)
class Candidates:
    """The instances of one pass as candidates: per id (index 0 unused) their measures."""

    measured_px: np.ndarray  # diameter of a disc of the same area, px of the pass
    predicted_px: np.ndarray  # the network's size (mean code over the instance), px of the pass
    peak: np.ndarray  # highest centre-map value
    mean_foreground: np.ndarray  # mean particle probability
    solidity: np.ndarray  # area over convex-hull area (1 under SOLIDITY_MIN_AREA_PX)
    touches_frame: np.ndarray  # bool: has a pixel on the pass's border
    pixels: tuple[np.ndarray, np.ndarray, np.ndarray]  # :func:`_pixel_lists` of the pass's labels


def measure_candidates(one: OctavePass) -> Candidates:
    """Measures of every instance of a pass."""
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
    touches = np.zeros(n + 1, bool)
    touches[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    touches[0] = False
    return Candidates(measured, predicted, peak, mean_foreground, np.minimum(solidity, 1.0), touches,
                      (order, starts, ends))


def candidate_features(passes: list[OctavePass], candidates: list[Candidates],
                       support: tuple | None = None) -> tuple[np.ndarray, list]:
    """One row of :data:`CANDIDATE_FEATURES` per instance of every pass (``passes`` finest first, with
    their :func:`measure_candidates`), and the ``(pass, id)`` of each row.

    Besides the instance's own measures, a row holds how it looks from the neighbouring passes (best
    IoU with an instance of the next finer and the next coarser one, :func:`neighbour_support`) and
    how it compares with the image's strong candidates (:data:`STRONG_PEAK`, :data:`STRONG_FOREGROUND`):
    its diameter over theirs (median and largest, in image pixels), how many its pass holds and their
    area share there. That context is what tells a speck beside large particles from a small
    particle among its kind.
    """
    finer, coarser, _ = support if support is not None else neighbour_support(passes)
    strong = []
    for one, c in zip(passes, candidates):
        is_strong = (c.measured_px > 0) & (c.peak >= STRONG_PEAK) & (c.mean_foreground >= STRONG_FOREGROUND)
        is_strong[0] = False
        strong.append(c.measured_px[is_strong] / one.scale)
    every = np.concatenate(strong)
    median_px = float(np.median(every)) if every.size else 16.0
    largest_px = float(every.max()) if every.size else 16.0
    total_area = sum(float(np.sum(d ** 2)) for d in strong) or 1.0
    n_passes = len(passes)
    rows, meta = [], []
    for k, (one, c) in enumerate(zip(passes, candidates)):
        ids = np.flatnonzero(c.measured_px > 0)
        ids = ids[ids > 0]
        if not ids.size:
            continue
        measured = c.measured_px[ids]  # at least 1.13 px: a present id has a pixel
        predicted = np.maximum(c.predicted_px[ids], 0.5)
        image_px = measured / one.scale
        same = np.ones(ids.size)
        rows.append(np.column_stack([
            c.peak[ids], c.mean_foreground[ids], c.solidity[ids], np.log2(measured), np.log2(predicted),
            np.log2(measured / predicted), np.log2(image_px), k * same, (n_passes - 1 - k) * same,
            finer[k][ids], coarser[k][ids], np.log1p(strong[k].size) * same, np.log2(image_px / median_px),
            np.log2(one.scale) * same, c.touches_frame[ids], float(np.sum(strong[k] ** 2)) / total_area * same,
            np.log2(image_px / largest_px), n_passes * same]))
        meta.extend((k, int(i)) for i in ids)
    features = np.vstack(rows) if rows else np.zeros((0, len(CANDIDATE_FEATURES)))
    return features, meta


def candidate_logits(scorer: dict, features: np.ndarray) -> np.ndarray:
    """The candidate scorer's logit per row of :func:`candidate_features` (0: even odds).

    Raises
    ------
    ValueError
        When ``scorer`` is not a candidate scorer fitted on these features.
    """
    if scorer.get("kind") != CANDIDATE_SCORER_KIND or tuple(scorer.get("features", ())) != CANDIDATE_FEATURES:
        raise ValueError("The model's scorer file was not fitted for the octave method's candidates; refit it "
                         "with python -m model.candidate_fit.")
    return boosted_tree_logits(scorer, features)


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


def neighbour_support(passes: list[OctavePass]) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per pass (``passes`` finest first), per id: the best IoU of the instance with an instance of the
    next finer pass, and with one of the next coarser pass (0 where there is none), compared at the
    finer pass's resolution (the coarser labels resized to it by nearest neighbour); and the id of that
    best instance of the next finer pass (0 where there is none)."""
    finer = [np.zeros(int(np.asarray(one.labels).max()) + 1) for one in passes]
    coarser = [np.zeros_like(f) for f in finer]
    finer_match = [np.zeros(f.size, np.int64) for f in finer]
    for k in range(len(passes) - 1):
        fine = np.asarray(passes[k].labels, np.int32)
        coarse = nearest_ids(passes[k + 1].labels, fine.shape)
        n_fine, n_coarse = finer[k].size - 1, finer[k + 1].size - 1
        fine_ids, coarse_ids, overlap = pair_counts(fine, coarse)
        if overlap.size == 0:
            continue
        fine_area = np.bincount(fine.ravel(), minlength=n_fine + 1)
        coarse_area = np.bincount(coarse.ravel(), minlength=n_coarse + 1)
        iou = overlap / (fine_area[fine_ids] + coarse_area[coarse_ids] - overlap)
        np.maximum.at(coarser[k], fine_ids, iou)
        np.maximum.at(finer[k + 1], coarse_ids, iou)
        order = np.lexsort((iou, coarse_ids))  # by coarse id, its best pair last
        best = order[np.append(np.diff(coarse_ids[order]) != 0, True)]
        finer_match[k + 1][coarse_ids[best]] = fine_ids[best]
    return finer, coarser, finer_match


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


def fuse_by_confidence(passes: list[OctavePass], shape: tuple[int, int], scorer: dict) -> np.ndarray:
    """Candidates of all passes rated by the fitted ``scorer`` (:func:`candidate_logits`); those with a
    probability of at least :data:`KEEP_PROBABILITY` kept best first, each where at most
    :data:`MAX_TAKEN` of it is taken (judged on the passes' instances carried to ``shape`` by nearest
    neighbour), a pass's few small ones dropped
    (:data:`STRAY_COUNT`, :data:`STRAY_AREA_SHARE`); the kept ones are then drawn, in the same order, each
    on the pixels still free, with the outline of the finest pass that shows them whole
    (:func:`finest_outlines`) carried to full resolution from that pass's particle probability.

    Returns
    -------
    numpy.ndarray
        int32 labels of ``shape``, ids 1..n.
    """
    passes = sorted(passes, key=lambda one: -one.scale)
    candidates = [measure_candidates(one) for one in passes]
    support = neighbour_support(passes)
    features, meta = candidate_features(passes, candidates, support)
    if not meta:
        return np.zeros(shape, np.int32)
    logits = candidate_logits(scorer, features)
    wanted = logits >= np.log(KEEP_PROBABILITY / (1.0 - KEEP_PROBABILITY))
    ranked = [meta[j] for j in np.argsort(-logits, kind="stable") if wanted[j]]
    chosen_passes = {k for k, _ in ranked}
    nearest = []
    for k, one in enumerate(passes):
        if k not in chosen_passes:
            nearest.append(None)
        elif np.shape(one.labels) == tuple(shape):
            nearest.append(candidates[k].pixels)
        else:
            nearest.append(_pixel_lists(nearest_ids(one.labels, shape)))
    kept = _keep_greedily(ranked, nearest, int(np.prod(shape)), len(passes))
    if OUTLINE_IOU is not None:
        kept = finest_outlines(kept, support, [c.measured_px for c in candidates])
    return _draw(passes, kept, shape)


def finest_outlines(kept: list[tuple[int, int]], support: tuple,
                    measured_px: list[np.ndarray]) -> list[tuple[int, int]]:
    """``kept`` with each particle drawn from the finest pass that shows it whole: a candidate kept from a
    coarse pass, where it measures under :data:`OUTLINE_BELOW_PX` across (``measured_px``, per pass and
    id, px of the pass), is replaced by its best match in the next finer pass while their IoU is at least
    :data:`OUTLINE_IOU` (``support`` is :func:`neighbour_support`'s) and that match is not kept already.
    The coarse pass decides that there is a particle; the finer one has more pixels for its outline."""
    finer_iou, _, finer_match = support
    used = set(kept)
    out = []
    for k, i in kept:
        while (k > 0 and finer_iou[k][i] >= OUTLINE_IOU and measured_px[k][i] < OUTLINE_BELOW_PX
               and (k - 1, int(finer_match[k][i])) not in used):
            used.discard((k, i))
            k, i = k - 1, int(finer_match[k][i])
            used.add((k, i))
        out.append((k, i))
    return out


def _keep_greedily(ranked: list[tuple[int, int]], nearest: list, n_pixels: int, n_passes: int) -> list[tuple[int, int]]:
    """(pass, id) of the candidates kept, in the order kept: ``ranked`` best first, each where at most
    :data:`MAX_TAKEN` of its pixels (``nearest[pass]``, :func:`_pixel_lists` at full resolution) is
    taken; then stray passes dropped (:data:`STRAY_COUNT`)."""
    taken = np.zeros(n_pixels, bool)
    kept = []
    areas = []
    for k, i in ranked:
        pixels = _pixels_of(nearest[k], i)
        if pixels.size == 0 or taken[pixels].mean() > MAX_TAKEN:
            continue
        taken[pixels] = True
        kept.append((k, i))
        areas.append(pixels.size)
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
