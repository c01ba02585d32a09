"""What a histogram shows: the quantity, its unit, the particles selected, their weights and bins.

:func:`view_results` turns a particle table into the values, weights and statistics of one view,
following :class:`ViewOptions` (quantity, weighting, bin width, edge treatment, filters). None of it
changes the segmentation. :func:`stats_rows` and :func:`filter_text` put the result into words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from app.analysis import stats
from app.analysis.errors import SaemiInputError


@dataclass(frozen=True)
class Quantity:
    """A per-particle quantity the histogram can show."""

    label: str
    column_px: str
    column_nm: str | None
    kind: str  # "length", "area" or "none" (a pure number)
    abbreviation: str = ""


#: The quantities of the histogram, by key, in the order the page offers them.
QUANTITIES: dict[str, Quantity] = {
    "ecd": Quantity("Equivalent circular diameter", "ecd_px", "ecd_nm", "length", "ECD"),
    "area": Quantity("Area", "area_px", "area_nm2", "area"),
    "feret_max": Quantity("Maximum Feret diameter", "feret_max_px", "feret_max_nm", "length"),
    "feret_min": Quantity("Minimum Feret diameter", "feret_min_px", "feret_min_nm", "length"),
    "aspect_ratio": Quantity("Aspect ratio", "aspect_ratio", None, "none"),
    "circularity": Quantity("Circularity", "circularity", None, "none"),
}
_UNITS = {("length", True): "nm", ("length", False): "px", ("area", True): "nm²", ("area", False): "px²"}


@dataclass(frozen=True)
class ViewOptions:
    """What the histogram and statistics show.

    ``min_ecd`` and ``max_ecd`` are in the unit of the table's ECD: nm when calibrated, else px.
    """

    quantity: str = "ecd"
    basis: str = "number"
    bin_width: float | None = None
    edge_mode: str = "exclude"
    min_ecd: float | None = None
    max_ecd: float | None = None
    min_circularity: float | None = None


@dataclass
class HistogramView:
    """Everything the histogram figure and the statistics table need."""

    values: np.ndarray
    weights: np.ndarray | None
    bin_width: float
    label: str
    unit: str
    basis: str
    summary: dict
    n_detected: int
    n_edge: int
    removed: dict


def quantity_column(quantity: str, calibrated: bool) -> tuple[str, str, str]:
    """(column, label, unit) of a histogram quantity; nm units when calibrated, px otherwise.

    Examples
    --------
    >>> quantity_column("area", calibrated=True)
    ('area_nm2', 'Area', 'nm²')
    """
    if quantity not in QUANTITIES:
        raise SaemiInputError(f"Unknown quantity '{quantity}'; choose one of {', '.join(QUANTITIES)}.")
    spec = QUANTITIES[quantity]
    column = spec.column_nm if calibrated and spec.column_nm else spec.column_px
    return column, spec.label, _UNITS.get((spec.kind, calibrated), "")


def nice_bin_width(values: np.ndarray, target_bins: int = 25) -> float:
    """A round bin width (1, 2 or 5 times a power of ten) giving about ``target_bins`` bins.

    Examples
    --------
    >>> nice_bin_width(np.arange(0.0, 100.0))
    5.0
    """
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 1.0
    # nearly equal values would otherwise get absurdly narrow bins: span at least 20% of the median
    span = max(float(np.percentile(finite, 99) - finite.min()), 0.2 * abs(float(np.median(finite)))) or 1.0
    raw = span / target_bins
    power = 10.0 ** math.floor(math.log10(raw))
    return next(step * power for step in (1.0, 2.0, 5.0, 10.0) if step * power >= raw)


def view_results(particles: pd.DataFrame, *, calibrated: bool, image_shape: tuple[int, int],
                 frame: tuple[int, int], view: ViewOptions) -> HistogramView:
    """Select, filter and weight the particles for the histogram and statistics.

    Parameters
    ----------
    particles : DataFrame
        The per-particle table (:func:`app.analysis.measure.measure_particles`).
    calibrated : bool
        Whether the table's nm columns hold the sizes to show.
    image_shape, frame : tuple of int
        The image's (rows, cols) and the rows [start, stop) analysed, for the edge correction.
    view : ViewOptions
        Edge particles are treated as ``view.edge_mode`` says; the size/shape filters apply to ECD
        (nm when calibrated) and circularity; the basis weights by ECD to the power 0, 2 or 3.
    """
    column, label, unit = quantity_column(view.quantity, calibrated)
    ecd_col = "ecd_nm" if calibrated else "ecd_px"
    selected, edge_weights = stats.edge_selection(particles, view.edge_mode, image_shape=image_shape, frame=frame)
    if edge_weights is not None:
        selected = selected.assign(_edge_weight=edge_weights)
    kept, removed = stats.apply_filters(selected, min_ecd=view.min_ecd, max_ecd=view.max_ecd,
                                        min_circularity=view.min_circularity, ecd_col=ecd_col)
    weights = stats.distribution_weights(kept[ecd_col].to_numpy(dtype=float), view.basis)
    if "_edge_weight" in kept.columns:
        weights = weights * kept["_edge_weight"].to_numpy(dtype=float)
    values = kept[column].to_numpy(dtype=float)
    use_weights = None if view.basis == "number" and edge_weights is None else weights
    bin_width = view.bin_width if view.bin_width and view.bin_width > 0 else nice_bin_width(values)
    return HistogramView(
        values=values,
        weights=use_weights,
        bin_width=float(bin_width),
        label=label,
        unit=unit,
        basis=view.basis,
        summary=stats.summarize(values, use_weights),
        n_detected=int(len(particles)),
        n_edge=int(particles["touches_edge"].sum()) if len(particles) else 0,
        removed=removed,
    )


def _fmt(value) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.4g}"


def stats_rows(view: HistogramView) -> list[tuple[str, str]]:
    """(statistic, value with unit) rows for the statistics table."""
    s, unit = view.summary, f" {view.unit}" if view.unit else ""
    rows = [
        ("Particles detected", _fmt(view.n_detected)),
        ("Touching the edge", _fmt(view.n_edge)),
        ("Count (in statistics)", _fmt(s["count"])),
    ]
    rows += [(name, _fmt(s[key]) + unit) for name, key in
             (("Mean", "mean"), ("Median", "median"), ("Standard deviation", "std"))]
    rows.append(("Coefficient of variation", _fmt(s["cv"])))
    rows += [(name, _fmt(s[key]) + unit) for name, key in
             (("Min", "min"), ("Max", "max"), ("D10", "d10"), ("D50", "d50"), ("D90", "d90"),
              ("Geometric mean", "geo_mean"))]
    rows.append(("Geometric std (GSD)", _fmt(s["gsd"])))
    for name, key in (("Mean 95% CI", "mean_ci95"), ("D50 95% CI", "d50_ci95")):
        low, high = s[key]
        rows.append((name, f"{_fmt(low)} – {_fmt(high)}{unit}"))
    rows.append(("Weighting", view.basis))
    if s.get("ci_note"):
        rows.append(("Note", s["ci_note"]))
    return rows


def filter_text(view: HistogramView) -> str:
    """How many particles each filter removed."""
    names = {"min_ecd": "minimum ECD", "max_ecd": "maximum ECD", "min_circularity": "minimum circularity"}
    parts = [f"{names[key]}: {n}" for key, n in view.removed.items() if n]
    return "Removed by the filters: " + ", ".join(parts) + "." if parts else "No particle removed by the filters."


def class_views(particles: pd.DataFrame, *, calibrated: bool, image_shape: tuple[int, int],
                frame: tuple[int, int], view: ViewOptions, names: tuple[str, ...] | None = None,
                class_column: str = "class") -> dict[str, HistogramView]:
    """One :class:`HistogramView` per particle class, all with the bin width of the whole view.

    ``particles`` holds a ``class_column`` (see :func:`app.analysis.classes.with_classes`); the views follow
    ``names`` (default: the classes in the order of their first particle). Edge treatment, filters and
    weighting apply per particle, as in :func:`view_results`, so the classes' particles add up to the whole
    view's.
    """
    whole = view_results(particles, calibrated=calibrated, image_shape=image_shape, frame=frame, view=view)
    fixed = replace(view, bin_width=whole.bin_width)
    if names is None:
        names = tuple(dict.fromkeys(str(name) for name in particles[class_column])) if len(particles) else ()
    return {name: view_results(particles[particles[class_column].astype(str) == name], calibrated=calibrated,
                               image_shape=image_shape, frame=frame, view=fixed) for name in names}


def class_stats_rows(views: dict[str, HistogramView]) -> list[tuple[str, str]]:
    """Per-class rows for the statistics table: count, mean, D50 and D10/D90 of each class."""
    rows = []
    for name, shown in views.items():
        s, unit = shown.summary, f" {shown.unit}" if shown.unit else ""
        rows.append((f"{name}: count", _fmt(s["count"])))
        rows += [(f"{name}: {label}", _fmt(s[key]) + unit) for label, key in
                 (("mean", "mean"), ("D50", "d50"), ("D10", "d10"), ("D90", "d90"))]
    return rows
