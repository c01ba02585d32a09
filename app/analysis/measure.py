"""Per-particle measurements from a label image.

Every measurement is computed for all particles at once with numpy and scipy (bincounts over the
label image, one pass of shifted comparisons for the perimeter, and a vectorised convex hull), so
an image with thousands of particles is measured in a fraction of a second. The definitions follow
``skimage.measure.regionprops`` where it has the property; where it has none (minimum Feret
diameter) or is slow (maximum Feret diameter, solidity), the definitions are stated below.

Conventions
-----------
- Coordinates: x = column, y = row, in pixels, pixel centres at integer positions.
- ``area_px``: number of pixels. ``ecd_px``: diameter of the disc of the same area,
  sqrt(4 area / pi).
- ``perimeter_px``: ``skimage.measure.perimeter`` with 4-connectivity, per particle.
- ``feret_max_px`` and ``feret_min_px``: largest and smallest caliper width of the particle seen as
  the union of its pixel squares (the convention of ImageJ). A w x h rectangle of pixels has
  ``feret_max_px`` = sqrt(w**2 + h**2) and ``feret_min_px`` = min(w, h); a single pixel has 1.41
  and 1. skimage's ``feret_diameter_max`` follows a contour through the pixel edges' midpoints
  and is up to about one pixel smaller.
- ``major_axis_px``, ``minor_axis_px``, ``orientation_deg``: from the second central moments, as
  ``axis_major_length``, ``axis_minor_length`` and ``orientation`` (in degrees) of regionprops.
- ``aspect_ratio``: major / minor axis (>= 1; NaN when the minor axis is 0, a one-pixel-wide line).
- ``circularity``: 4 pi area / perimeter**2, clipped to at most 1. The digital perimeter of small
  round particles underestimates the true one, which would give values above 1; they are reported
  as 1.
- ``solidity``: area / number of pixels whose centres lie in the convex hull of the particle's
  pixel centres. Digitally convex particles (a digitised disc or rectangle) have exactly 1.
- ``touches_edge``: the particle has a pixel in column 0, column W-1, or the first or last row of
  the analysed frame.
- ``bbox_w_px``, ``bbox_h_px``: bounding-box extent in pixels (used by the Miles-Lantuejoul
  edge correction in :mod:`app.analysis.stats`).
"""

from __future__ import annotations

from math import sqrt
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from app.analysis.errors import SaemiInputError
from app.analysis.limits import MAX_FERET_CELLS, MAX_LABEL_ID

__all__ = ["measure_particles", "ecd_from_area", "PX_COLUMNS", "NM_COLUMNS"]

#: Columns always present, in order, with their dtypes.
PX_COLUMNS = {
    "particle_id": "int64",
    "area_px": "float64",
    "ecd_px": "float64",
    "feret_max_px": "float64",
    "feret_min_px": "float64",
    "perimeter_px": "float64",
    "major_axis_px": "float64",
    "minor_axis_px": "float64",
    "aspect_ratio": "float64",
    "circularity": "float64",
    "solidity": "float64",
    "orientation_deg": "float64",
    "centroid_x_px": "float64",
    "centroid_y_px": "float64",
    "mean_intensity": "float64",
    "touches_edge": "bool",
    "bbox_w_px": "int64",
    "bbox_h_px": "int64",
}

#: Physical columns added when a pixel size is given: name -> (pixel column, power of nm_per_px).
NM_COLUMNS = {
    "area_nm2": ("area_px", 2),
    "ecd_nm": ("ecd_px", 1),
    "feret_max_nm": ("feret_max_px", 1),
    "feret_min_nm": ("feret_min_px", 1),
    "perimeter_nm": ("perimeter_px", 1),
    "major_axis_nm": ("major_axis_px", 1),
    "minor_axis_nm": ("minor_axis_px", 1),
    "centroid_x_nm": ("centroid_x_px", 1),
    "centroid_y_nm": ("centroid_y_px", 1),
}

# Weights of skimage.measure.perimeter for each code of the [[10, 2, 10], [2, 1, 2], [10, 2, 10]]
# neighbourhood sum of border pixels.
_PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + sqrt(2.0)) / 2.0


def ecd_from_area(area_px):
    """Equivalent circular diameter: the diameter of the disc with the given area.

    Computed as ``sqrt(4 area / pi)`` in float64. This is the ``ecd_px`` column of
    :func:`measure_particles` and the particle size of the model's scale estimate and metrics.

    Parameters
    ----------
    area_px : float or array_like of float
        Areas in pixels (or any squared length unit; the result is in the matching length unit).

    Returns
    -------
    numpy.float64 or ndarray of float64
        The diameters, with the shape of ``area_px``.

    Examples
    --------
    >>> float(ecd_from_area(np.pi))
    2.0
    >>> ecd_from_area([4.0, 100.0]).round(4)
    array([ 2.2568, 11.2838])
    """
    return np.sqrt(4.0 * np.asarray(area_px, dtype=np.float64) / np.pi)


def measure_particles(
    label_image,
    *,
    intensity_image=None,
    nm_per_px=None,
    frame=None,
    include_feret=True,
):
    """Measure every labelled particle.

    Parameters
    ----------
    label_image : (H, W) ndarray of int
        Particle ids, 0 = background. Ids need not be consecutive.
    intensity_image : (H, W) ndarray, optional
        Image whose mean over each particle is reported as ``mean_intensity``.
    nm_per_px : float, optional
        Pixel size. When given, the ``*_nm`` and ``area_nm2`` columns are added.
    frame : tuple of int, optional
        ``(row0, row1)``: the analysed rows (rows outside are a data bar). A particle touching row
        ``row0`` or ``row1 - 1`` touches the edge. Default: all rows.
    include_feret : bool, optional
        When False, the Feret columns are NaN and their computation is skipped.

    Returns
    -------
    pandas.DataFrame
        One row per particle id > 0, sorted by id, with the columns of :data:`PX_COLUMNS`
        (see the module docstring for definitions) and, when ``nm_per_px`` is given, those of
        :data:`NM_COLUMNS`. An image without particles gives an empty frame with the same columns.
        ``attrs["image_shape"]`` and ``attrs["frame"]`` record the image size and analysed rows.

    Examples
    --------
    >>> labels = np.zeros((10, 10), dtype=np.int32)
    >>> labels[2:5, 3:7] = 1
    >>> df = measure_particles(labels, nm_per_px=2.0)
    >>> float(df.loc[0, "area_px"]), float(df.loc[0, "area_nm2"]), float(df.loc[0, "feret_min_px"])
    (12.0, 48.0, 3.0)
    """
    labels = _check_labels(label_image)
    height, width = labels.shape
    row0, row1 = _check_frame(frame, height)
    if nm_per_px is not None and not (np.isfinite(nm_per_px) and nm_per_px > 0):
        raise SaemiInputError(
            f"The pixel size must be a positive number of nanometres, not {nm_per_px}."
        )
    if intensity_image is not None and np.shape(intensity_image) != labels.shape:
        raise ValueError(
            f"intensity_image has shape {np.shape(intensity_image)}, label_image {labels.shape}."
        )

    max_id = int(labels.max()) if labels.size else 0
    if max_id > max(labels.size, MAX_LABEL_ID):  # tables below are indexed by id
        raise SaemiInputError(
            f"The label image holds particle id {max_id}, above {max(labels.size, MAX_LABEL_ID)}, the most an image "
            "of its size can hold; please number its particles 1 to n."
        )
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=max_id + 1)
    ids = np.flatnonzero(counts[1:]) + 1
    if ids.size == 0:
        return _with_attrs(_empty_frame(nm_per_px), labels.shape, (row0, row1))

    columns = {"particle_id": ids.astype(np.int64)}
    area = counts[ids].astype(np.float64)
    columns["area_px"] = area
    columns["ecd_px"] = ecd_from_area(area)

    hull = _convex_hulls(labels, ids)
    if include_feret:
        feret_max, feret_min = _feret_diameters(hull)
    else:
        feret_max = feret_min = np.full(ids.size, np.nan)
    columns["feret_max_px"] = feret_max
    columns["feret_min_px"] = feret_min

    perimeter = _perimeters(labels, max_id)[ids]
    columns["perimeter_px"] = perimeter

    moments = _moments(labels, counts, max_id)
    major, minor, orientation, cx, cy = (m[ids] for m in moments)
    columns["major_axis_px"] = major
    columns["minor_axis_px"] = minor
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.where(minor > 0, major / np.where(minor > 0, minor, 1.0), np.nan)
        circularity = np.where(
            perimeter > 0, 4.0 * np.pi * area / np.where(perimeter > 0, perimeter, 1.0) ** 2, 1.0
        )
    columns["aspect_ratio"] = aspect
    columns["circularity"] = np.minimum(circularity, 1.0)
    columns["solidity"] = area / _convex_pixel_counts(hull)
    columns["orientation_deg"] = np.degrees(orientation)
    columns["centroid_x_px"] = cx
    columns["centroid_y_px"] = cy

    if intensity_image is None:
        columns["mean_intensity"] = np.full(ids.size, np.nan)
    else:
        intensity = np.asarray(intensity_image, dtype=np.float64).ravel()
        sums = np.bincount(flat, weights=intensity, minlength=max_id + 1)
        columns["mean_intensity"] = sums[ids] / area

    objects = ndi.find_objects(labels, max_label=max_id)
    boxes = np.array(
        [(s[0].start, s[0].stop, s[1].start, s[1].stop) for s in (objects[i - 1] for i in ids)],
        dtype=np.int64,
    )
    ymin, ymax, xmin, xmax = boxes[:, 0], boxes[:, 1] - 1, boxes[:, 2], boxes[:, 3] - 1
    on_side = (xmin <= 0) | (xmax >= width - 1)
    columns["touches_edge"] = on_side | (ymin <= row0) | (ymax >= row1 - 1)
    columns["bbox_w_px"] = xmax - xmin + 1
    columns["bbox_h_px"] = ymax - ymin + 1

    df = pd.DataFrame({name: columns[name] for name in PX_COLUMNS}).astype(PX_COLUMNS)
    if nm_per_px is not None:
        for name, (source, power) in NM_COLUMNS.items():
            df[name] = df[source] * float(nm_per_px) ** power
    return _with_attrs(df, labels.shape, (row0, row1))


def _with_attrs(df, image_shape, frame):
    """Record the geometry that :func:`app.analysis.stats.edge_selection` needs."""
    df.attrs["image_shape"] = tuple(int(v) for v in image_shape)
    df.attrs["frame"] = tuple(int(v) for v in frame)
    return df


def _check_labels(label_image):
    labels = np.asarray(label_image)
    if labels.ndim != 2:
        raise ValueError(f"label_image must be 2-D, got {labels.ndim} dimensions.")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"label_image must hold integer ids, got dtype {labels.dtype}.")
    if labels.size and labels.min() < 0:
        raise ValueError("label_image holds negative ids.")
    return labels.astype(np.intp, copy=False)


def _check_frame(frame, height):
    if frame is None:
        return 0, height
    row0, row1 = (int(v) for v in frame)
    if not 0 <= row0 < row1 <= height:
        raise SaemiInputError(
            f"The analysed region, rows {row0} to {row1}, does not fit an image of {height} rows."
        )
    return row0, row1


def _empty_frame(nm_per_px):
    df = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in PX_COLUMNS.items()})
    if nm_per_px is not None:
        for name in NM_COLUMNS:
            df[name] = pd.Series(dtype="float64")
    return df


def _moments(labels, counts, max_id):
    """Axis lengths, orientation (radians) and centroid per id, as regionprops defines them."""
    ys, xs = np.nonzero(labels)
    ids = labels[ys, xs]
    n = np.maximum(counts, 1).astype(np.float64)

    def per_id(values):
        return np.bincount(ids, weights=values, minlength=max_id + 1) / n

    xs = xs.astype(np.float64)
    ys = ys.astype(np.float64)
    cx, cy = per_id(xs), per_id(ys)
    # Centre on each particle's centroid before squaring to keep the sums well conditioned.
    dx, dy = xs - cx[ids], ys - cy[ids]
    var_x, var_y, cov = per_id(dx * dx), per_id(dy * dy), per_id(dx * dy)
    # regionprops inertia tensor [[a, b], [b, c]] with a = var of columns, c = var of rows.
    a, b, c = var_x, -cov, var_y
    half_diff = np.sqrt(((a - c) / 2.0) ** 2 + b**2)
    mean = (a + c) / 2.0
    major = 4.0 * np.sqrt(np.maximum(mean + half_diff, 0.0))
    minor = 4.0 * np.sqrt(np.maximum(mean - half_diff, 0.0))
    orientation = np.where(
        a - c == 0, np.where(b < 0, np.pi / 4.0, -np.pi / 4.0), 0.5 * np.arctan2(-2.0 * b, c - a)
    )
    return major, minor, orientation, cx, cy


def _perimeters(labels, max_id):
    """skimage.measure.perimeter (4-connectivity) of every particle, indexed by id."""
    padded = np.pad(labels, 1)
    width = padded.shape[1]
    core = padded[1:-1, 1:-1]
    interior = core > 0
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        interior &= padded[1 + dy : padded.shape[0] - 1 + dy, 1 + dx : width - 1 + dx] == core
    border = np.zeros(padded.shape, dtype=bool)
    border[1:-1, 1:-1] = (core > 0) & ~interior

    flat_labels, flat_border = padded.ravel(), border.ravel()
    where = np.flatnonzero(flat_border)
    ids = flat_labels[where]
    code = np.ones(where.size, dtype=np.intp)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            neighbour = where + dy * width + dx
            same = (flat_labels[neighbour] == ids) & flat_border[neighbour]
            code += same * (10 if dy and dx else 2)
    return np.bincount(ids, weights=_PERIMETER_WEIGHTS[code], minlength=max_id + 1)


class _Hulls(NamedTuple):
    """Convex hulls of pixel centres: vertices of particle i are ``x, y[start[i]:][:length[i]]``."""

    x: np.ndarray
    y: np.ndarray
    start: np.ndarray
    length: np.ndarray


def _convex_hulls(labels, ids):
    """Convex hull of each particle's pixel centres, vertices in order around the polygon.

    The hull of a pixel set is the hull of the leftmost and rightmost pixel of each of its rows;
    its left side is the lower convex envelope of the leftmost columns as a function of the row,
    its right side the upper concave envelope of the rightmost columns.
    """
    height = labels.shape[0]
    padded = np.pad(labels, ((0, 0), (1, 1)))
    left_nb, core, right_nb = padded[:, :-2], padded[:, 1:-1], padded[:, 2:]
    start_y, start_x = np.nonzero((core > 0) & (core != left_nb))
    end_y, end_x = np.nonzero((core > 0) & (core != right_nb))
    start_key = core[start_y, start_x].astype(np.int64) * height + start_y
    end_key = core[end_y, end_x].astype(np.int64) * height + end_y
    order_s = np.argsort(start_key, kind="stable")
    order_e = np.argsort(end_key, kind="stable")
    start_key, start_x = start_key[order_s], start_x[order_s]
    end_key, end_x = end_key[order_e], end_x[order_e]
    # Runs of one (particle, row) are in column order: first start = leftmost, last end = rightmost.
    first = np.flatnonzero(np.r_[True, start_key[1:] != start_key[:-1]])
    last = np.flatnonzero(np.r_[end_key[1:] != end_key[:-1], True])
    row_key = start_key[first]
    row_label, row_y = row_key // height, row_key % height
    left_x, right_x = start_x[first].astype(np.int64), end_x[last].astype(np.int64)

    keep_left = _lower_envelope(row_label, row_y, left_x)
    keep_right = _lower_envelope(row_label, row_y, -right_x)
    label_all = np.concatenate([row_label[keep_left], row_label[keep_right]])
    y_all = np.concatenate([row_y[keep_left], row_y[keep_right]])
    x_all = np.concatenate([left_x[keep_left], right_x[keep_right]])
    side = np.repeat([0, 1], [keep_left.size, keep_right.size])
    # Left side top to bottom, then right side bottom to top: a closed convex polygon.
    order = np.lexsort((np.where(side == 0, y_all, -y_all), side, label_all))
    label_all, x_all, y_all = label_all[order], x_all[order], y_all[order]
    start = np.searchsorted(label_all, ids)
    length = np.diff(np.r_[start, label_all.size])
    return _Hulls(x_all, y_all, start, length)


def _lower_envelope(group, t, v):
    """Indices of the vertices of the lower convex envelope of v(t) within each group.

    ``group`` and ``t`` are sorted (t increasing within a group). A point on or above the chord
    between its neighbours is not a vertex; removing all of them repeatedly leaves the envelope.
    """
    keep = np.arange(group.size)
    while keep.size > 2:
        g, tt, vv = group[keep], t[keep], v[keep]
        inner = (g[:-2] == g[1:-1]) & (g[2:] == g[1:-1])
        lhs = (vv[1:-1] - vv[:-2]) * (tt[2:] - tt[:-2])
        above = lhs >= (vv[2:] - vv[:-2]) * (tt[1:-1] - tt[:-2])
        remove = np.zeros(keep.size, dtype=bool)
        remove[1:-1] = inner & above
        if not remove.any():
            break
        keep = keep[~remove]
    return keep


def _convex_pixel_counts(hull):
    """Number of pixel centres inside or on each hull polygon, by Pick's theorem."""
    x, y, start, length = hull.x, hull.y, hull.start, hull.length
    group = np.repeat(np.arange(start.size), length)
    nxt = np.arange(x.size) + 1
    ends = start + length
    nxt[ends - 1] = start
    dx, dy = x[nxt] - x, y[nxt] - y
    twice_area = np.abs(np.bincount(group, weights=x * y[nxt] - x[nxt] * y, minlength=start.size))
    boundary = np.bincount(group, weights=np.gcd(np.abs(dx), np.abs(dy)), minlength=start.size)
    return twice_area / 2.0 + boundary / 2.0 + 1.0


def _feret_diameters(hull):
    """Max and min caliper width of the union of pixel squares of each particle.

    That union's hull is the hull of the pixel centres dilated by the unit square, so its width
    in a unit direction n is the centres' width plus |n_x| + |n_y|; the minimum is reached at a
    normal of one of its edges (those of the centres' hull and the two axes).
    """
    n = hull.start.size
    feret_max = np.empty(n)
    feret_min = np.empty(n)
    bucket = np.maximum(2, 2 ** np.ceil(np.log2(np.maximum(hull.length, 1))).astype(int))
    for size in np.unique(bucket):
        # Batches of particles whose size x size vertex pairs stay within MAX_FERET_CELLS, so the memory
        # does not grow with the number of particles.
        chunk = max(1, MAX_FERET_CELLS // int(size * size))
        same_size = np.flatnonzero(bucket == size)
        for first in range(0, same_size.size, chunk):
            sel = same_size[first:first + chunk]
            feret_max[sel], feret_min[sel] = _feret_batch(hull, sel, int(size))
    return feret_max, feret_min


def _feret_batch(hull, sel, size):
    """Max and min Feret diameters of the particles ``sel``, whose hulls have at most ``size`` vertices."""
    start, length = hull.start[sel, None], hull.length[sel, None]
    k = np.arange(size)[None, :]
    # Pad each polygon by repeating its last vertex; repeats change no width or distance.
    idx = start + np.minimum(k, length - 1)
    x, y = hull.x[idx].astype(np.float64), hull.y[idx].astype(np.float64)

    dx = np.abs(x[:, :, None] - x[:, None, :]) + 1.0
    dy = np.abs(y[:, :, None] - y[:, None, :]) + 1.0
    feret_max = np.sqrt((dx * dx + dy * dy).max(axis=(1, 2)))

    nxt = start + (k + 1) % length
    ex, ey = hull.x[nxt] - x, hull.y[nxt] - y
    norm = np.hypot(ex, ey)
    valid = (k < length) & (norm > 0)
    safe = np.where(valid, norm, 1.0)
    nx, ny = -ey / safe, ex / safe
    proj = nx[:, :, None] * x[:, None, :] + ny[:, :, None] * y[:, None, :]
    width = proj.max(axis=2) - proj.min(axis=2) + np.abs(nx) + np.abs(ny)
    width = np.where(valid, width, np.inf).min(axis=1)
    width_x = x.max(axis=1) - x.min(axis=1) + 1.0
    width_y = y.max(axis=1) - y.min(axis=1) + 1.0
    feret_min = np.minimum(width, np.minimum(width_x, width_y))
    return feret_max, feret_min
