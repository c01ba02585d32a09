"""Network outputs to instance labels: marker-controlled watershed on the centre map."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

#: Default thresholds; the shipped values live in ``model/config.json``.
FOREGROUND_THRESHOLD = 0.5
CENTRE_THRESHOLD = 0.5


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
            keep = np.cumsum(~small) - 1  # new id for kept markers
            keep[small] = 0
            keep[0] = 0
            markers = keep[markers]
            n_markers = int(keep.max())
    labels = watershed(-centre, markers, mask=mask) if n_markers else np.zeros(mask.shape, np.int32)
    orphans, n_orphans = ndimage.label(mask & (labels == 0))
    if n_orphans:
        labels = np.where(orphans > 0, orphans + labels.max(), labels)
    return _drop_and_relabel(labels, min_area_px)


def _drop_and_relabel(labels: np.ndarray, min_area_px: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    areas_px = np.bincount(labels.ravel())
    keep = areas_px >= min_area_px
    keep[0] = False
    new_ids = np.zeros(areas_px.size, dtype=np.int32)
    new_ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new_ids[labels]
