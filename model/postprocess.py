"""Network outputs to instance labels: marker-controlled watershed on the centre map."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from app.analysis.labels import add_orphan_regions, sequential_labels
from app.analysis.measure import ecd_from_area
from model.config import ThresholdConfig

#: Default thresholds (those of :class:`model.config.ThresholdConfig`).
FOREGROUND_THRESHOLD = ThresholdConfig.foreground
CENTRE_THRESHOLD = ThresholdConfig.centre


def maps_to_instances(foreground: np.ndarray, centre: np.ndarray, *,
                      foreground_threshold: float = FOREGROUND_THRESHOLD,
                      centre_threshold: float = CENTRE_THRESHOLD,
                      min_marker_area_px: int = 4, min_area_px: int = 4) -> np.ndarray:
    """Turn particle probability and centre maps into instance labels.

    Markers are the connected regions where the centre map exceeds ``centre_threshold`` inside the
    foreground; a watershed on the inverted centre map, restricted to the foreground, grows them to
    the particle borders, so touching particles stay apart. Foreground regions that hold no marker
    become particles of their own.

    Parameters
    ----------
    foreground : numpy.ndarray
        2-D particle probability in [0, 1].
    centre : numpy.ndarray
        2-D normalised distance map in [0, 1] (1 at particle centres).
    foreground_threshold, centre_threshold : float
        Thresholds on the two maps.
    min_marker_area_px : int
        Markers smaller than this are discarded (noise in the centre map).
    min_area_px : int
        Particles smaller than this are dropped from the result.

    Returns
    -------
    numpy.ndarray
        int32 labels, 0 = background, ids 1..n.
    """
    mask = foreground > foreground_threshold
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32)
    markers, n_markers = ndimage.label(mask & (centre > centre_threshold))
    if n_markers:
        marker_area_px = np.bincount(markers.ravel())
        small = marker_area_px < min_marker_area_px
        small[0] = False
        if small.any():
            keep = (np.cumsum(~small) - 1).astype(np.int32)  # new id for kept markers
            keep[small] = 0
            keep[0] = 0
            markers = keep[markers]
            n_markers = int(keep.max())
    labels = banded_watershed(centre, markers, mask) if n_markers else np.zeros(mask.shape, np.int32)
    del markers
    labels = add_orphan_regions(labels, mask, connectivity=1)
    return sequential_labels(labels, min_area_px=min_area_px, in_place=True)


#: Pixels a band of :func:`banded_watershed` covers (scikit-image's watershed needs about 25
#: bytes per pixel besides its inputs).
WATERSHED_BAND_PX = 1 << 22


def banded_watershed(centre: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``skimage.segmentation.watershed(-centre, markers, mask=mask)``, a band of rows at a time.

    Flooding never crosses from one connected piece of ``mask`` (4-connectivity, the watershed's
    own) to another, so each piece can be flooded on its own. Masks of up to
    :data:`WATERSHED_BAND_PX` pixels are flooded in one call. Larger ones have their pieces
    grouped, in order of their top row, into bands of about that many pixels, each flooded with
    the other bands' pieces masked out, so the watershed's temporaries are the size of a band,
    not of the image. Where ``centre`` has no ties the result is identical to one call on the
    whole mask (tested); on a plateau of equal values scikit-image breaks ties by the order of
    its queue, which then differs, and a plateau pixel between two particles may go to the other
    one.
    """
    markers = np.asarray(markers, dtype=np.int32)
    rows, cols = mask.shape
    if mask.size <= WATERSHED_BAND_PX:
        return watershed(-centre, markers, mask=mask).astype(np.int32, copy=False)
    pieces, n_pieces = ndimage.label(mask)
    spans = ndimage.find_objects(pieces)
    top = np.array([s[0].start for s in spans])
    bottom = np.array([s[0].stop for s in spans])
    order = np.argsort(top, kind="stable")
    band_rows = max(1, WATERSHED_BAND_PX // cols)
    band_of_piece = np.zeros(n_pieces + 1, dtype=np.int32)  # 0: background
    bands = []  # (first row, last row + 1) of each band
    start = 0
    while start < n_pieces:
        r0 = int(top[order[start]])
        stop, r1 = start + 1, int(bottom[order[start]])
        while stop < n_pieces and max(r1, int(bottom[order[stop]])) - r0 <= band_rows:
            r1 = max(r1, int(bottom[order[stop]]))
            stop += 1
        band_of_piece[order[start:stop] + 1] = len(bands) + 1
        bands.append((r0, r1))
        start = stop
    labels = np.zeros(mask.shape, dtype=np.int32)
    for number, (r0, r1) in enumerate(bands, start=1):
        own = band_of_piece[pieces[r0:r1]] == number
        flooded = watershed(-centre[r0:r1], markers[r0:r1] * own, mask=own)
        labels[r0:r1][own] = flooded[own]
    return labels


def upsample_instances(labels: np.ndarray, foreground: np.ndarray, *,
                       foreground_threshold: float = FOREGROUND_THRESHOLD, min_area_px: int = 4,
                       shape: tuple[int, int] | None = None, renumber: bool = True) -> np.ndarray:
    """Carry instances found on a shrunken image back to the full-resolution ``foreground`` map.

    The particle outlines come from ``foreground`` (the particle probability already resized to
    full resolution, so its threshold crossing is smooth), and each foreground pixel takes the id
    of the instance it falls in at low resolution. Instances are first grown by one low-resolution
    pixel, so the full-resolution outline, which can reach a little past the blocky low-resolution
    one, is covered; only the lines between touching particles keep the coarser resolution.
    Foreground pixels that no grown instance reaches are dropped (they belong to no particle the
    network separated), as are particles under ``min_area_px`` full-resolution pixels.

    Parameters
    ----------
    labels : numpy.ndarray
        int labels at low resolution (0 = background).
    foreground : numpy.ndarray
        2-D particle probability at full resolution, or at any resolution when ``shape`` is given:
        it is then resized bilinearly (:func:`model.preprocess.resized_bands`) to ``shape``, a band
        of rows at a time, so a very large image never holds it whole.
    foreground_threshold : float
        Threshold on ``foreground``.
    min_area_px : int
        Smallest particle kept, in full-resolution pixels.
    shape : tuple of int, optional
        Full resolution (rows, cols); default: ``foreground``'s shape.
    renumber : bool
        Number the particles 1..n (default); with False each keeps its id in ``labels``.

    Returns
    -------
    numpy.ndarray
        int32 labels of the full resolution, ids 1..n (or those of ``labels``).

    Examples
    --------
    >>> small = np.array([[0, 1], [0, 2]])
    >>> upsample_instances(small, np.ones((4, 4)), min_area_px=1)
    array([[1, 1, 1, 1],
           [1, 1, 1, 1],
           [2, 2, 2, 2],
           [2, 2, 2, 2]], dtype=int32)
    """
    from skimage.segmentation import expand_labels

    from model.preprocess import nearest_indices, resized_bands

    grown = np.ascontiguousarray(expand_labels(np.asarray(labels, np.int32), distance=1), dtype=np.int32)
    rows, cols = shape if shape is not None else np.shape(foreground)
    row_source = nearest_indices(grown.shape[0], rows)
    col_source = nearest_indices(grown.shape[1], cols)
    big = np.empty((rows, cols), dtype=np.int32)
    # A band of rows at a time: the full-resolution probability is never held whole.
    for r0, r1, probability in resized_bands(foreground, (rows, cols)):
        band = grown[row_source[r0:r1]][:, col_source]
        band[probability <= foreground_threshold] = 0
        big[r0:r1] = band
    if not renumber:
        small = np.bincount(big.ravel()) < min_area_px
        small[0] = False
        big[small[big]] = 0
        return big
    return sequential_labels(big, min_area_px=min_area_px, in_place=True)


def refine_outlines(image: np.ndarray, labels: np.ndarray, *, ring_px: tuple[float, float] = (3.0, 6.0),
                    reach_px: float = 3.0, smooth_px: float = 1.0, band_px: float = 3.0,
                    level_percentile: float = 90.0, iterations: int = 2) -> np.ndarray:
    """Redraw each particle's outline at the half-maximum between the particle and its local background.

    This applies the boundary convention of the model card: a particle's edge is where the
    intensity is halfway between the particle's level just inside the edge and the local
    background just outside the blur zone. Every background pixel near the particles belongs to
    the particle whose outline is nearest (a Voronoi split of the gaps), and for every particle:

    - the background level is the median of its ring of background pixels ``ring_px`` (inner,
      outer) away from its outline;
    - the polarity (bright or dark particle) is the sign of the particle's median minus that level;
    - the particle's level is the 90th percentile, in the particle's polarity, of its pixels within
      ``band_px`` of the outline (all its pixels when there are few): the rim of an SEM particle,
      the edge of a TEM particle;
    - the new outline is the region beyond the midpoint of the two levels, with holes filled,
      within ``reach_px`` of the current outline among its own background pixels, never taking
      pixels of another particle, and kept only where it is connected to the particle's pixels;
      pixels deeper than ``reach_px`` inside the outline stay in the particle (an SEM particle's
      interior can be darker than the midpoint between its rim and the background).

    The whole is repeated ``iterations`` times, so that the ring follows the outline when the first
    one was too large or too small. All particles are processed at once, with no per-particle
    loop: distances are chessboard distances (``max(|dx|, |dy|)``, so the ring and the bands are
    slightly wider along diagonals than Euclidean ones) from one distance transform per pass that
    also gives each pixel its nearest outline, and the levels are per-particle order statistics
    taken from one sort.

    Parameters
    ----------
    image : numpy.ndarray
        2-D gray image (any range; float or integer).
    labels : numpy.ndarray
        int labels of the same shape (0 = background), for example the network's.
    ring_px : tuple of float
        Inner and outer distance (px) of the background ring from the outline.
    reach_px : float
        How far (px) the outline may move outwards in one iteration.
    smooth_px : float
        Gaussian smoothing (px) of the image before the levels and the threshold are taken; 0: none.
    band_px : float
        Width (px) of the band inside the outline where the particle's level is taken.
    level_percentile : float
        Percentile (in the particle's polarity) of the band that gives the particle's level.
    iterations : int
        Number of passes.

    Returns
    -------
    numpy.ndarray
        int32 labels with the same ids; a particle whose neighbourhood holds no background ring,
        or whose contrast has the wrong sign nowhere, keeps its outline.
    """
    gray = np.asarray(image, dtype=np.float32)
    if smooth_px > 0:
        gray = ndimage.gaussian_filter(gray, smooth_px)
    labels = np.asarray(labels, dtype=np.int32).copy()
    for _ in range(iterations):
        labels = _refine_pass(gray, labels, ring_px, reach_px, band_px, level_percentile)
    return labels


def refine_small_outlines(image: np.ndarray, labels: np.ndarray, below_px: float) -> np.ndarray:
    """:func:`refine_outlines` for the particles whose ECD is under ``below_px``; the others keep theirs.

    A small particle's blurred edge is as wide as the particle, so the network's outline, drawn near the
    outer end of the blur, adds a large share to its diameter; redrawn at the half-maximum it follows the
    boundary convention. A redrawn outline only takes background pixels, never another particle's.

    >>> labels = np.zeros((40, 40), np.int32)
    >>> labels[4:12, 4:12] = 1      # 8 px: redrawn
    >>> labels[15:35, 15:35] = 2    # 20 px: kept
    >>> image = np.zeros((40, 40)); image[6:10, 6:10] = 1.0; image[15:35, 15:35] = 1.0
    >>> out = refine_small_outlines(image, labels, 12.0)
    >>> int((out == 1).sum()) < 64, int((out == 2).sum())
    (True, 400)
    """
    labels = np.asarray(labels, dtype=np.int32)
    small = ecd_from_area(np.bincount(labels.ravel())) < below_px
    small[0] = False
    if not small.any():
        return labels
    refined = refine_outlines(image, labels)
    kept = np.where(small[labels], 0, labels)
    return np.where(small[refined] & (kept == 0), refined, kept).astype(np.int32)


def _percentile_by_label(ids: np.ndarray, values: np.ndarray, n_labels: int, percentile: float,
                         low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Per id ``0..n_labels``: the ``percentile`` of ``values`` (linear interpolation) and the count.

    ``values`` in ``[low, high]`` are quantised to 2**24 steps and packed with their id in one
    64-bit key, so a single sort orders every id's values; ids with no value get NaN.
    """
    scale = (2**24 - 1) / max(high - low, 1e-12)
    steps = np.rint((values.astype(np.float64) - low) * scale).astype(np.uint64)
    keys = np.sort((ids.astype(np.uint64) << np.uint64(24)) | steps)
    counts = np.bincount(ids, minlength=n_labels + 1)
    starts = np.cumsum(counts) - counts
    position = starts + percentile / 100.0 * np.maximum(counts - 1, 0)
    below = np.minimum(np.floor(position).astype(np.int64), keys.size - 1)
    above = np.minimum(below + 1, np.maximum(starts + counts - 1, 0))
    sorted_values = (keys & np.uint64(2**24 - 1)).astype(np.float64) / scale + low
    result = np.full(n_labels + 1, np.nan)
    has = counts > 0
    if keys.size:
        fraction = position - below
        result[has] = (sorted_values[below] * (1 - fraction) + sorted_values[above] * fraction)[has]
    return result, counts


def _refine_pass(gray: np.ndarray, labels: np.ndarray, ring_px: tuple[float, float], reach_px: float,
                 band_px: float, level_percentile: float) -> np.ndarray:
    """One pass of :func:`refine_outlines` over all particles; distances are chessboard distances."""
    from skimage.measure import label as label_runs

    n_labels = int(labels.max())
    if n_labels == 0:
        return labels
    outline = np.zeros(labels.shape, dtype=bool)  # particle pixels with a neighbour (of 8) of another value
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
                 ((slice(1, None), slice(1, None)), (slice(None, -1), slice(None, -1))),
                 ((slice(1, None), slice(None, -1)), (slice(None, -1), slice(1, None)))):
        change = labels[a] != labels[b]
        outline[a] |= change
        outline[b] |= change
    outline &= labels > 0
    if not outline.any():
        return labels
    # Outside a particle, the distance to its nearest pixel is the distance to its nearest outline
    # pixel; inside, the distance to the nearest pixel not its own is one more than that. Only
    # pixels within the ring outside and within the band or reach inside take part.
    chessboard, (near_row, near_col) = ndimage.distance_transform_cdt(~outline, metric="chessboard",
                                                                      return_indices=True)
    flat_labels, flat_gray, flat_chessboard = labels.ravel(), gray.ravel(), chessboard.ravel()
    near = np.flatnonzero(flat_chessboard <= max(ring_px[1], reach_px))
    own_label = flat_labels[near]
    distance_px = flat_chessboard[near]
    near = near[(own_label == 0) | (distance_px <= max(band_px, reach_px))]
    own_label, distance_px = flat_labels[near], flat_chessboard[near]
    owner = flat_labels[near_row.ravel()[near] * labels.shape[1] + near_col.ravel()[near]]  # nearest outline's
    values = flat_gray[near]
    outside = own_label == 0
    depth_px = distance_px + (owner == own_label)

    # levels: background ring, polarity, particle level in a band inside the outline
    low, high = float(gray.min()), float(gray.max())
    extreme = max(abs(low), abs(high))
    ring = outside & (distance_px >= ring_px[0]) & (distance_px <= ring_px[1])
    background, ring_count = _percentile_by_label(owner[ring], values[ring], n_labels, 50.0, low, high)
    inside = np.flatnonzero(flat_labels)
    inside_labels, inside_values = flat_labels[inside], flat_gray[inside]
    particle_median, _ = _percentile_by_label(inside_labels, inside_values, n_labels, 50.0, low, high)
    sign = np.where(particle_median >= background, 1.0, -1.0)
    band = ~outside & (depth_px <= band_px)
    band_labels = own_label[band]
    level, band_count = _percentile_by_label(band_labels, sign[band_labels] * values[band], n_labels,
                                             level_percentile, -extreme, extreme)
    few = band_count < 4
    if few[1:].any():  # too thin for a band: all the particle's pixels
        all_level, _ = _percentile_by_label(inside_labels, sign[inside_labels] * inside_values, n_labels,
                                            level_percentile, -extreme, extreme)
        level[few] = all_level[few]
    level *= sign
    refine = (ring_count >= 4) & (sign * (level - background) > 0)
    refine[0] = False
    midpoint = 0.5 * (level + background)

    # each particle's own pixels and its background pixels within reach: beyond the midpoint, or deep inside
    candidate = np.where(outside, owner, own_label)
    moving = refine[candidate] & (~outside | (distance_px <= reach_px))
    beyond = sign[candidate] * (values - midpoint[candidate]) > 0
    keep_pixel = np.where(moving, beyond | (~outside & (depth_px > reach_px)), ~outside)
    region = labels.copy()
    region.ravel()[near] = np.where(keep_pixel, candidate, 0)
    _fill_enclosed_gaps(region)

    # keep the pieces connected to the particle's own pixels; a particle left with none keeps its outline
    pieces = label_runs(region, background=0, connectivity=1)
    kept = np.zeros(int(pieces.max()) + 1, dtype=bool)
    flat_region, flat_pieces = region.ravel(), pieces.ravel()
    kept[flat_pieces[inside[flat_region[inside] == inside_labels]]] = True
    kept[0] = False
    refined = np.where(kept[pieces], region, 0).astype(np.int32, copy=False)
    present = np.zeros(n_labels + 1, dtype=bool)
    present[refined.ravel()] = True
    lost = inside[~present[inside_labels]]
    refined.ravel()[lost] = flat_labels[lost]
    return refined


def _fill_enclosed_gaps(region: np.ndarray) -> None:
    """Give each 4-connected gap (0) enclosed by one particle's pixels alone to that particle, in place."""
    gaps, n_gaps = ndimage.label(region == 0)
    enclosed = np.ones(n_gaps + 1, dtype=bool)
    enclosed[np.concatenate([gaps[0], gaps[-1], gaps[:, 0], gaps[:, -1]])] = False
    enclosed[0] = False
    if not enclosed.any():
        return
    hole = np.flatnonzero(enclosed[gaps])
    flat_region, hole_gap = region.ravel(), gaps.ravel()[hole]
    width = region.shape[1]
    lowest = np.full(n_gaps + 1, np.iinfo(np.int64).max)
    highest = np.zeros(n_gaps + 1, dtype=np.int64)
    for step in (-width, -1, 1, width):  # enclosed gaps do not touch the frame: no wrap-around
        neighbour = flat_region[hole + step]
        np.minimum.at(lowest, hole_gap[neighbour > 0], neighbour[neighbour > 0])
        np.maximum.at(highest, hole_gap[neighbour > 0], neighbour[neighbour > 0])
    fill = np.where(lowest == highest, highest, 0)
    flat_region[hole] = fill[hole_gap]
