"""Statistics of particle-size distributions: summaries, weighting, edge correction, filters.

Weights
-------
Every function that takes ``weights`` treats them the same way: a particle with weight w counts
as w particles. Weights come from the distribution basis (:func:`distribution_weights`: by number,
area or volume) and from the Miles-Lantuejoul edge correction (:func:`miles_lantuejoul_weights`),
multiplied together. Values that are not finite and values with zero weight are left out.

Quantiles
---------
All quantiles (median, D10, D50, D90, the bootstrap D50) use one definition, the weighted form of
the midpoint rule (Hazen; ``method="hazen"`` of :func:`numpy.quantile`): with the values sorted
and S the total weight, value i sits at the cumulative position p_i = (S_i - w_i / 2) / S,
where S_i is the weight up to and including it; a quantile q is interpolated linearly between the
values whose positions bracket it, and is the smallest (largest) value below the first (above the
last) position. With equal weights this is exactly ``numpy.quantile(values, q, method="hazen")``,
and the median of an even count is the mean of the two middle values.

Spread
------
``std`` is the weighted standard deviation with the correction for reliability weights,
sum(w (x - mean)**2) / (S - sum(w**2) / S), which equals the sample standard deviation
(``ddof=1``) when the weights are equal. ``gsd`` is exp of the same statistic of ln(x).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from app.analysis.errors import SaemiInputError

__all__ = [
    "BASES",
    "EDGE_MODES",
    "Histogram",
    "apply_filters",
    "distribution_weights",
    "edge_selection",
    "histogram",
    "lognormal_fit",
    "lognormal_pdf",
    "miles_lantuejoul_weights",
    "summarize",
    "weighted_quantile",
]

#: Distribution bases and the power of the diameter each weights by.
BASES = {"number": 0, "area": 2, "volume": 3}
#: Ways of treating particles that touch the frame edge.
EDGE_MODES = ("exclude", "include", "miles-lantuejoul")
#: Below this count, bootstrap confidence intervals are flagged as unreliable.
MIN_COUNT_FOR_CI = 30
#: Largest number of histogram bins before the bin width is refused as too small.
MAX_BINS = 10_000
# Bootstrap resamples are processed in chunks of about this many (resample, particle) cells.
_BOOTSTRAP_CHUNK_ELEMENTS = 250_000

_SUMMARY_KEYS = (
    "count", "mean", "median", "std", "cv", "min", "max", "d10", "d50", "d90",
    "geo_mean", "gsd", "mean_ci95", "d50_ci95", "ci_note",
)


class Histogram(NamedTuple):
    """Result of :func:`histogram`.

    Attributes
    ----------
    edges : ndarray
        Bin edges, ``len(heights) + 1`` of them, multiples of the bin width.
    heights : ndarray
        Fraction of the total weight in each bin (sums to 1); divide by the bin width for a
        density.
    cumulative : ndarray
        Fraction of the total weight at or below each bin's right edge (ends at 1).
    counts : ndarray of int
        Number of particles in each bin, whatever the weights.
    """

    edges: np.ndarray
    heights: np.ndarray
    cumulative: np.ndarray
    counts: np.ndarray


def _clean(values, weights):
    """Finite values with positive weight, as float arrays; weights default to ones."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if weights is None:
        weights = np.ones_like(values)
    else:
        weights = np.asarray(weights, dtype=np.float64).ravel()
        if weights.shape != values.shape:
            raise ValueError(f"{weights.size} weights for {values.size} values.")
        if np.any(weights < 0):
            raise ValueError("Weights must not be negative.")
    keep = np.isfinite(values) & np.isfinite(weights) & (weights > 0)
    return values[keep], weights[keep]


def _sorted_quantile(sorted_values, weight_rows, q):
    """Weighted midpoint quantile of ``sorted_values`` for each row of weights.

    Parameters
    ----------
    sorted_values : (n,) ndarray, ascending
    weight_rows : (m, n) ndarray, non-negative, each row with a positive sum
    q : float in [0, 1]

    Returns
    -------
    (m,) ndarray
    """
    n_rows, n = weight_rows.shape
    # Keep the entries with positive weight; shifting row r by r makes all positions one
    # increasing sequence, so one searchsorted finds the bracketing entries of every row.
    flat = np.flatnonzero(weight_rows > 0)
    weight = weight_rows.ravel()[flat]
    row = flat // n
    row_start = np.searchsorted(row, np.arange(n_rows))
    row_end = np.r_[row_start[1:], flat.size] - 1
    running = np.cumsum(weight)
    before_row = np.r_[0.0, running][row_start]
    total = running[row_end] - before_row
    shifted = (running - before_row[row] - weight / 2.0) / total[row] + row
    values = sorted_values[flat - row * n]
    target = q + np.arange(n_rows)
    above = np.clip(np.searchsorted(shifted, target, side="left"), row_start, row_end)
    below = np.clip(np.searchsorted(shifted, target, side="right") - 1, row_start, row_end)
    span = shifted[above] - shifted[below]
    fraction = np.where(span > 0, (target - shifted[below]) / np.where(span > 0, span, 1.0), 0.0)
    fraction = np.clip(fraction, 0.0, 1.0)
    return values[below] + fraction * (values[above] - values[below])


def weighted_quantile(values, q, weights=None):
    """Weighted quantile(s) by the midpoint rule described in the module docstring.

    Parameters
    ----------
    values : array_like
    q : float or array_like of float in [0, 1]
    weights : array_like, optional
        Non-negative weights, one per value. Default: equal weights.

    Returns
    -------
    float or ndarray
        NaN when no value has a positive weight.

    Examples
    --------
    >>> float(weighted_quantile([1.0, 2.0, 3.0, 4.0], 0.5))
    2.5
    >>> round(float(weighted_quantile([1.0, 2.0, 3.0], 0.5, weights=[1.0, 1.0, 100.0])), 3)
    2.98
    """
    values, weights = _clean(values, weights)
    q_array = np.asarray(q, dtype=np.float64)
    if np.any((q_array < 0) | (q_array > 1)):
        raise ValueError("Quantiles must lie between 0 and 1.")
    if values.size == 0:
        result = np.full(q_array.shape, np.nan)
    else:
        order = np.argsort(values, kind="stable")
        sorted_values, row = values[order], weights[order][None, :]
        result = np.array(
            [_sorted_quantile(sorted_values, row, float(x))[0] for x in q_array.ravel()]
        )
        result = result.reshape(q_array.shape)
    return float(result) if result.ndim == 0 else result


def _weighted_mean_std(values, weights):
    total = weights.sum()
    mean = float(np.dot(weights, values) / total)
    if values.size < 2:
        return mean, np.nan
    denominator = total - np.dot(weights, weights) / total
    variance = np.dot(weights, (values - mean) ** 2) / denominator if denominator > 0 else np.nan
    return mean, float(np.sqrt(variance))


def summarize(values, weights=None, *, n_boot=1000, seed=0):
    """Summary statistics of a (weighted) sample of particle sizes or shapes.

    Parameters
    ----------
    values : array_like
        One value per particle (ECD in nm, area, aspect ratio, ...). Non-finite values are ignored.
    weights : array_like, optional
        Non-negative weight per particle (see the module docstring); zero-weight values are ignored.
    n_boot : int, optional
        Number of bootstrap resamples for the 95% confidence intervals.
    seed : int, optional
        Seed of the bootstrap resampling, so that results are reproducible.

    Returns
    -------
    dict
        ``count`` (number of values used), ``mean``, ``median``, ``std``, ``cv`` (std / mean),
        ``min``, ``max``, ``d10``, ``d50``, ``d90`` (``median`` equals ``d50``), ``geo_mean``
        (exp of the mean of ln x) and ``gsd`` (exp of the std of ln x; both NaN if a value is
        not positive), ``mean_ci95`` and ``d50_ci95`` (2.5th and 97.5th percentiles of the
        bootstrap distribution, as tuples), ``ci_note`` (a sentence when the count is below 30,
        else ""). An empty sample gives count 0 and NaN everywhere else.

    Examples
    --------
    >>> s = summarize([10.0, 12.0, 14.0])
    >>> s["count"], s["mean"], s["d50"]
    (3, 12.0, 12.0)
    """
    values, weights = _clean(values, weights)
    n = int(values.size)
    result = dict.fromkeys(_SUMMARY_KEYS, np.nan)
    result.update(count=n, mean_ci95=(np.nan, np.nan), d50_ci95=(np.nan, np.nan))
    result["ci_note"] = _ci_note(n)
    if n == 0:
        return result

    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    mean, std = _weighted_mean_std(values, weights)
    d10, d50, d90 = (
        float(_sorted_quantile(values, weights[None, :], q)[0]) for q in (0.1, 0.5, 0.9)
    )
    result.update(
        mean=mean, std=std, cv=std / mean if mean != 0 else np.nan,
        min=float(values[0]), max=float(values[-1]), median=d50, d10=d10, d50=d50, d90=d90,
    )
    if values[0] > 0:
        log_mean, log_std = _weighted_mean_std(np.log(values), weights)
        result.update(geo_mean=float(np.exp(log_mean)), gsd=float(np.exp(log_std)))
    if n >= 2 and n_boot > 0:
        result["mean_ci95"], result["d50_ci95"] = _bootstrap_ci(values, weights, n_boot, seed)
    return result


def _ci_note(n):
    if n >= MIN_COUNT_FOR_CI:
        return ""
    return (
        f"Only {n} particles were measured; with fewer than {MIN_COUNT_FOR_CI} the 95% confidence "
        "intervals are unreliable."
    )


def _bootstrap_ci(sorted_values, weights, n_boot, seed):
    """Percentile bootstrap 95% intervals of the weighted mean and D50.

    Each resample draws n particles with replacement; it is represented by how often each
    particle was drawn, so that the sorted order is kept and no resample needs sorting.
    Resamples are made in chunks to bound memory.
    """
    n = sorted_values.size
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
    means, medians = [], []
    for done in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - done)
        draws = rng.integers(0, n, size=(rows, n))
        draws += (np.arange(rows) * n)[:, None]
        times_drawn = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n)
        weight_rows = times_drawn * weights[None, :]
        means.append(weight_rows @ sorted_values / weight_rows.sum(axis=1))
        medians.append(_sorted_quantile(sorted_values, weight_rows, 0.5))
    mean_ci = tuple(float(v) for v in np.percentile(np.concatenate(means), [2.5, 97.5]))
    d50_ci = tuple(float(v) for v in np.percentile(np.concatenate(medians), [2.5, 97.5]))
    return mean_ci, d50_ci


def distribution_weights(ecd, basis):
    """Weights that turn a number distribution into one by number, area or volume.

    Parameters
    ----------
    ecd : array_like
        Equivalent circular diameter of each particle (any length unit).
    basis : {"number", "area", "volume"}
        Weights proportional to 1, ECD**2 or ECD**3 (the projected area or the volume of the
        equivalent sphere), so results compare with light scattering or laser diffraction.

    Returns
    -------
    ndarray
    """
    if basis not in BASES:
        raise SaemiInputError(f"The weighting must be one of {', '.join(BASES)}, not {basis!r}.")
    ecd = np.asarray(ecd, dtype=np.float64)
    return ecd ** BASES[basis] if BASES[basis] else np.ones_like(ecd)


def lognormal_fit(values, weights=None):
    """Maximum-likelihood log-normal fit: mean and standard deviation of ln(values).

    Parameters
    ----------
    values : array_like
        Positive values; others (and non-finite ones) are ignored.
    weights : array_like, optional
        Weight per value, as in :func:`summarize`.

    Returns
    -------
    (mu, sigma) : tuple of float
        sigma is the maximum-likelihood (weighted, not bias-corrected) spread. NaN when fewer
        than two positive values remain.
    """
    values, weights = _clean(values, weights)
    positive = values > 0
    values, weights = values[positive], weights[positive]
    if values.size < 2:
        return np.nan, np.nan
    logs = np.log(values)
    mu = float(np.dot(weights, logs) / weights.sum())
    sigma = float(np.sqrt(np.dot(weights, (logs - mu) ** 2) / weights.sum()))
    return mu, sigma


def lognormal_pdf(x, mu, sigma):
    """Probability density of the log-normal distribution with parameters ``mu`` and ``sigma``.

    Zero for x <= 0; NaN everywhere when sigma is not positive.
    """
    x = np.asarray(x, dtype=np.float64)
    if not (np.isfinite(sigma) and sigma > 0):
        return np.full(x.shape, np.nan)
    safe = np.where(x > 0, x, 1.0)
    exponent = -((np.log(safe) - mu) ** 2) / (2.0 * sigma**2)
    density = np.exp(exponent) / (safe * sigma * np.sqrt(2 * np.pi))
    return np.where(x > 0, density, 0.0)


def miles_lantuejoul_weights(df, image_shape, frame=None, size_cols=("bbox_w_px", "bbox_h_px")):
    """Miles-Lantuejoul edge-correction weights.

    A particle of bounding box w x h lies wholly inside a W x H frame for only
    (W - w)(H - h) of the W H positions of its box; big particles touch the edge more often and
    are under-counted when edge particles are dropped. Weighting each particle that does not
    touch the edge by W H / ((W - w)(H - h)) removes that bias.

    Parameters
    ----------
    df : pandas.DataFrame
        Measurements with ``touches_edge`` and the two size columns, in pixels.
    image_shape : tuple of int
        (rows, columns) of the image.
    frame : tuple of int, optional
        (row0, row1) of the analysed region; H = row1 - row0. Default: all rows.
    size_cols : tuple of str, optional
        Columns holding each particle's bounding-box width and height in pixels.

    Returns
    -------
    ndarray
        One weight per row of ``df``: 0 for particles touching the edge (or as large as the
        frame), at least 1 for the others.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    row0, row1 = (0, height) if frame is None else (int(frame[0]), int(frame[1]))
    frame_h = row1 - row0
    box_w = df[size_cols[0]].to_numpy(dtype=np.float64)
    box_h = df[size_cols[1]].to_numpy(dtype=np.float64)
    room = (width - box_w) * (frame_h - box_h)
    inside = ~df["touches_edge"].to_numpy(dtype=bool) & (box_w < width) & (box_h < frame_h)
    return np.where(inside, width * frame_h / np.where(inside, room, 1.0), 0.0)


def edge_selection(df, mode, *, image_shape=None, frame=None):
    """Particles and weights for one way of treating particles on the frame edge.

    Parameters
    ----------
    df : pandas.DataFrame
        Measurements from :func:`app.analysis.measure.measure_particles`.
    mode : {"exclude", "include", "miles-lantuejoul"}
        Drop edge particles; keep them; or drop them and weight the others by
        :func:`miles_lantuejoul_weights`.
    image_shape, frame : optional
        Needed for "miles-lantuejoul"; default to ``df.attrs["image_shape"]`` and
        ``df.attrs["frame"]``, which ``measure_particles`` sets.

    Returns
    -------
    (subset, weights) : tuple
        The kept rows and, for "miles-lantuejoul", their weights (else None).
    """
    if mode not in EDGE_MODES:
        raise SaemiInputError(
            f"The edge treatment must be one of {', '.join(EDGE_MODES)}, not {mode!r}."
        )
    if mode == "include":
        return df, None
    inside = ~df["touches_edge"].to_numpy(dtype=bool)
    if mode == "exclude":
        return df[inside], None
    image_shape = image_shape if image_shape is not None else df.attrs.get("image_shape")
    frame = frame if frame is not None else df.attrs.get("frame")
    if image_shape is None:
        raise ValueError("The Miles-Lantuejoul correction needs the image shape.")
    weights = miles_lantuejoul_weights(df, image_shape, frame)
    kept = inside & (weights > 0)
    return df[kept], weights[kept]


def apply_filters(df, *, min_ecd=None, max_ecd=None, min_circularity=None, ecd_col="ecd_px"):
    """Keep particles within size and shape limits, counting what each limit removes.

    Parameters
    ----------
    df : pandas.DataFrame
        Measurements with ``ecd_col`` and ``circularity``.
    min_ecd, max_ecd : float, optional
        Limits on ``ecd_col`` (inclusive), in its unit.
    min_circularity : float, optional
        Lower limit on circularity (inclusive).
    ecd_col : str, optional
        Column the ECD limits apply to (``ecd_px`` or ``ecd_nm``).

    Returns
    -------
    (kept, removed) : tuple
        The rows that pass every limit, and a dict with keys ``min_ecd``, ``max_ecd``,
        ``min_circularity`` giving how many particles fail each limit on its own (0 for a limit
        not set; a particle failing two limits is counted under both).
    """
    if min_ecd is not None and max_ecd is not None and min_ecd > max_ecd:
        raise SaemiInputError(
            f"The minimum ECD ({min_ecd}) is larger than the maximum ECD ({max_ecd})."
        )
    ecd = df[ecd_col].to_numpy(dtype=np.float64)
    fails = {
        "min_ecd": ecd < min_ecd if min_ecd is not None else np.zeros(len(df), dtype=bool),
        "max_ecd": ecd > max_ecd if max_ecd is not None else np.zeros(len(df), dtype=bool),
        "min_circularity": (
            df["circularity"].to_numpy(dtype=np.float64) < min_circularity
            if min_circularity is not None
            else np.zeros(len(df), dtype=bool)
        ),
    }
    failed_any = np.logical_or.reduce(list(fails.values()))
    return df[~failed_any], {name: int(mask.sum()) for name, mask in fails.items()}


def histogram(values, bin_width, weights=None):
    """Histogram with bins of a fixed width, as fractions of the total weight.

    Parameters
    ----------
    values : array_like
        Non-finite values and zero-weight values are ignored.
    bin_width : float
        Positive; bins are ``[k * bin_width, (k + 1) * bin_width)``, the last one closed.
    weights : array_like, optional
        Weight per value (basis and edge correction); default: by number.

    Returns
    -------
    Histogram
        ``edges``, ``heights`` (fractions summing to 1), ``cumulative`` and ``counts``. With no
        values, all arrays are empty except ``edges``, which holds a single 0.
    """
    if not (np.isfinite(bin_width) and bin_width > 0):
        raise SaemiInputError(f"The bin width must be a positive number, not {bin_width}.")
    values, weights = _clean(values, weights)
    if values.size == 0:
        empty = np.zeros(0)
        return Histogram(np.zeros(1), empty, empty, np.zeros(0, dtype=np.int64))
    first = np.floor(values.min() / bin_width)
    last = max(np.floor(values.max() / bin_width) + 1, first + 1)
    if last - first > MAX_BINS:
        raise SaemiInputError(
            f"A bin width of {bin_width:g} makes more than {MAX_BINS} bins; choose a larger one."
        )
    edges = np.arange(first, last + 1) * bin_width
    weighted, _ = np.histogram(values, bins=edges, weights=weights)
    counts, _ = np.histogram(values, bins=edges)
    heights = weighted / weights.sum()
    cumulative = np.cumsum(heights)
    return Histogram(edges, heights, cumulative, counts.astype(np.int64))
