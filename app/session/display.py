"""The inputs of what the page draws: histogram and statistics, the overlay, and the canvas mask."""

from __future__ import annotations

import math
from typing import NamedTuple

from app.analysis.view import HistogramView, ViewOptions, filter_text, stats_rows, view_results
from app.figures import canvas_mask_url, histogram_figure, overlay_figure
from app.session.stores import AnalysisState, GrayState, ResultsState


class HistogramOutputs(NamedTuple):
    """The histogram figure, the statistics rows, the bin-width hint and the filter summary."""

    figure: object
    rows: list[tuple[str, str]]
    hint: str
    filters: str


def histogram_outputs(results: ResultsState, analysis: AnalysisState, view: ViewOptions) -> HistogramOutputs:
    """Histogram figure, statistics rows, bin-width hint and filter summary of the current results."""
    shown = view_results(results.particles(), calibrated=results.calibrated, image_shape=analysis.shape,
                         frame=analysis.frame, view=view)
    return view_outputs(shown, view)


def view_outputs(shown: HistogramView, view: ViewOptions) -> HistogramOutputs:
    """Histogram figure, statistics rows, bin-width hint and filter summary of one view (one image or a pool)."""
    figure = histogram_figure(shown.values, bin_width=shown.bin_width, weights=shown.weights,
                              quantity_label=shown.label, unit=shown.unit or "", basis=shown.basis)
    unit = f" {shown.unit}" if shown.unit else ""
    hint = f"Bins of {shown.bin_width:g}{unit}" + ("" if view.bin_width else " (automatic; type a width to change)")
    return HistogramOutputs(figure, stats_rows(shown), hint, filter_text(shown))


def overlay_opacity(value: object) -> float:
    """The particles' opacity on the overlay: a number in [0, 1], 0.5 when unset or not a number.

    Examples
    --------
    >>> overlay_opacity(0.7), overlay_opacity(None), overlay_opacity("1e9"), overlay_opacity(3)
    (0.7, 0.5, 0.5, 1.0)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.5
    return min(max(float(value), 0.0), 1.0)


def overlay(results: ResultsState, gray: GrayState, opacity: float | None, mode: str | None,
            analysis: AnalysisState | None = None, dragmode: str | None = None, label_colours=None,
            uirevision: str | None = None):
    """Overlay figure of the current labels over the image, with the data bar, the scale bar found and the
    measured line (if any); ``label_colours`` and ``uirevision`` as in :func:`app.figures.overlay_figure`."""
    bar = None if analysis is None or analysis.data_bar is None else (analysis.data_bar.y0, analysis.data_bar.y1)
    line = None if analysis is None or analysis.measured_line is None else analysis.measured_line.line_px
    found = None if analysis is None else analysis.calibration.scale_bar
    scale_bar = None if found is None else (found.x0, found.x1, found.y, found.label_text)
    return overlay_figure("data:image/png;base64," + gray.png, results.labels(),
                          opacity=overlay_opacity(opacity), mode=mode or "outline",
                          data_bar_rows=bar, line_px=line, dragmode=dragmode, scale_bar=scale_bar,
                          label_colours=label_colours, uirevision=uirevision)


def canvas_image(results: ResultsState, colour_mode: str) -> str:
    """PNG data URL of the mask for the paint canvas (refreshed after every applied edit)."""
    return canvas_mask_url(results.labels(), colour_mode, results.version)
