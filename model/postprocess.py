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
            keep = np.cumsum(~small) - 1  # new id for kept markers
            keep[small] = 0
            keep[0] = 0
            markers = keep[markers]
            n_markers = int(keep.max())
    labels = watershed(-centre, markers, mask=mask) if n_markers else np.zeros(mask.shape, np.int32)
    labels = add_orphan_regions(labels, mask, connectivity=1)
    return sequential_labels(labels, min_area_px=min_area_px)


def upsample_instances(labels: np.ndarray, foreground: np.ndarray, *,
                       foreground_threshold: float = FOREGROUND_THRESHOLD, min_area_px: int = 4) -> np.ndarray:
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
        2-D particle probability at full resolution.
    foreground_threshold : float
        Threshold on ``foreground``.
    min_area_px : int
        Smallest particle kept, in full-resolution pixels.

    Returns
    -------
    numpy.ndarray
        int32 labels of ``foreground``'s shape, ids 1..n.

    Examples
    --------
    >>> small = np.array([[0, 1], [0, 2]])
    >>> upsample_instances(small, np.ones((4, 4)), min_area_px=1)
    array([[1, 1, 1, 1],
           [1, 1, 1, 1],
           [2, 2, 2, 2],
           [2, 2, 2, 2]], dtype=int32)
    """
    from PIL import Image
    from skimage.segmentation import expand_labels

    grown = np.ascontiguousarray(expand_labels(np.asarray(labels, np.int32), distance=1), dtype=np.int32)
    rows, cols = foreground.shape
    big = np.array(Image.fromarray(grown, mode="I").resize((cols, rows), Image.Resampling.NEAREST),
                     dtype=np.int32)
    big[np.asarray(foreground) <= foreground_threshold] = 0
    return sequential_labels(big, min_area_px=min_area_px)
