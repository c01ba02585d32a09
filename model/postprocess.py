"""Network outputs to instance labels: marker-controlled watershed on the centre map."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from app.analysis.labels import add_orphan_regions, sequential_labels
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
                       shape: tuple[int, int] | None = None) -> np.ndarray:
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

    Returns
    -------
    numpy.ndarray
        int32 labels of the full resolution, ids 1..n.

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
    return sequential_labels(big, min_area_px=min_area_px, in_place=True)


def refine_outlines(image: np.ndarray, labels: np.ndarray, *, ring_px: tuple[float, float] = (3.0, 6.0),
                    reach_px: float = 3.0, smooth_px: float = 1.0, band_px: float = 3.0,
                    level_percentile: float = 90.0, iterations: int = 2) -> np.ndarray:
    """Redraw each particle's outline at the half-maximum between the particle and its local background.

    This applies the boundary convention of the model card: a particle's edge is where the
    intensity is halfway between the particle's level just inside the edge and the local
    background just outside the blur zone. For every particle, in a window around it:

    - the background level is the median of a ring of pixels ``ring_px`` (inner, outer) away from
      the current outline, leaving out other particles and the pixels within 2 px of them;
    - the polarity (bright or dark particle) is the sign of the particle's median minus that level;
    - the particle's level is the 90th percentile, in the particle's polarity, of its pixels within
      ``band_px`` of the outline (all its pixels when there are few): the rim of an SEM particle,
      the edge of a TEM particle;
    - the new outline is the region beyond the midpoint of the two levels, with holes filled,
      within ``reach_px`` of the current outline, not taking pixels of other particles or pixels
      closer to another particle, and kept only where it is connected to the particle's pixels;
      pixels deeper than ``reach_px`` inside the outline stay in the particle (an SEM particle's
      interior can be darker than the midpoint between its rim and the background).

    The whole is repeated ``iterations`` times, so that the ring follows the outline when the first
    one was too large or too small.

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
    iterations : int
        Number of passes.

    Returns
    -------
    numpy.ndarray
        int32 labels with the same ids; a particle whose neighbourhood holds no background ring,
        or whose contrast has the wrong sign nowhere, keeps its outline.
    """
    from scipy.ndimage import distance_transform_edt

    gray = np.asarray(image, dtype=np.float32)
    if smooth_px > 0:
        gray = ndimage.gaussian_filter(gray, smooth_px)
    labels = np.asarray(labels, dtype=np.int32).copy()
    margin = int(np.ceil(max(ring_px[1], reach_px))) + 3
    rows, cols = labels.shape
    for _ in range(iterations):
        refined = labels.copy()
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is None:
                continue
            r0, r1 = max(box[0].start - margin, 0), min(box[0].stop + margin, rows)
            c0, c1 = max(box[1].start - margin, 0), min(box[1].stop + margin, cols)
            window = labels[r0:r1, c0:c1]
            own = window == index
            others = (window != 0) & ~own
            outside_px = distance_transform_edt(~own)
            from_others_px = distance_transform_edt(~others) if others.any() else np.full(own.shape, np.inf)
            values = gray[r0:r1, c0:c1]
            ring = (outside_px >= ring_px[0]) & (outside_px <= ring_px[1]) & (from_others_px > 2.0)
            if ring.sum() < 4:
                continue
            background = float(np.median(values[ring]))
            sign = 1.0 if np.median(values[own]) >= background else -1.0
            inside_px = distance_transform_edt(own)
            band = own & (inside_px <= band_px)
            level = sign * float(np.percentile(sign * values[band if band.sum() >= 4 else own], level_percentile))
            if sign * (level - background) <= 0:
                continue
            beyond = sign * (values - 0.5 * (level + background)) > 0
            allowed = (outside_px <= reach_px) & (outside_px < from_others_px) & ~others
            core = own & (inside_px > reach_px)  # the outline moves, the interior stays
            region = ndimage.binary_fill_holes((beyond | core) & allowed)
            pieces, _ = ndimage.label(region)
            keep = np.unique(pieces[own & region])
            keep = keep[keep > 0]
            if keep.size == 0:
                continue
            new = np.isin(pieces, keep)
            target = refined[r0:r1, c0:c1]
            target[own & ~new] = 0
            target[new & (target == 0)] = index
        labels = refined
    return labels
