"""The inputs of what the page draws: histogram and statistics, the overlay, and the canvas mask."""

from __future__ import annotations

from typing import NamedTuple

from app.analysis.view import ViewOptions, filter_text, stats_rows, view_results
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
    figure = histogram_figure(shown.values, bin_width=shown.bin_width, weights=shown.weights,
                              quantity_label=shown.label, unit=shown.unit or "", basis=shown.basis)
    unit = f" {shown.unit}" if shown.unit else ""
    hint = f"Bins of {shown.bin_width:g}{unit}" + ("" if view.bin_width else " (automatic; type a width to change)")
    return HistogramOutputs(figure, stats_rows(shown), hint, filter_text(shown))


def overlay(results: ResultsState, gray: GrayState, opacity: float | None, mode: str | None,
            analysis: AnalysisState | None = None, dragmode: str | None = None):
    """Overlay figure of the current labels over the image, with the data bar and the measured line (if any)."""
    bar = None if analysis is None or analysis.data_bar is None else (analysis.data_bar.y0, analysis.data_bar.y1)
    line = None if analysis is None or analysis.measured_line is None else analysis.measured_line.line_px
    return overlay_figure("data:image/png;base64," + gray.png, results.labels(),
                          opacity=0.5 if opacity is None else float(opacity), mode=mode or "outline",
                          data_bar_rows=bar, line_px=line, dragmode=dragmode)


def canvas_image(results: ResultsState, colour_mode: str) -> str:
    """PNG data URL of the mask for the paint canvas (refreshed after every applied edit)."""
    return canvas_mask_url(results.labels(), colour_mode, results.version)
