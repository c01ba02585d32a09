"""The calibration in force and the current labels and particle table (the ``results`` store)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.analysis import encoding, linecal, pipeline
from app.analysis.calibration import Calibration
from app.session.edits import current_labels
from app.session.guard import guarded
from app.session.stores import AnalysisState, EditsState, GrayState, MeasuredLine, ResultsState, table_to_json


def effective_calibration(analysis: AnalysisState, nm_per_px: float | None) -> tuple[Calibration, list[str]]:
    """The calibration in force: the user's value when given, else a drawn line, else the one found in the image.

    A message about an incomplete line measurement (see :func:`measure_line`) is added to the warnings.
    """
    measured = analysis.measured_line
    line = measured.calibration if measured is not None else None
    calibration, warnings = linecal.combine_calibrations(analysis.calibration, line, nm_per_px)
    return calibration, [*warnings, *([measured.message] if measured is not None and measured.message else [])]


def compute_results(analysis: AnalysisState, gray: GrayState | None, edits: EditsState,
                    nm_per_px: float | None) -> ResultsState:
    """Current labels and particle table after the canvas edits and the pixel-size override.

    Without edits, override or line calibration the analysis' own table is reused (nothing is re-measured).
    """
    calibration, warnings = effective_calibration(analysis, nm_per_px)
    line_calibrated = analysis.measured_line is not None and analysis.measured_line.calibration is not None
    if edits.cursor == 0 and nm_per_px is None and not line_calibrated:
        labels_png, particles_json = analysis.labels_png, analysis.particles_json
    else:
        intensity = gray.image(analysis.shape) if gray is not None else None
        labels, table = pipeline.remeasure(current_labels(analysis, edits), intensity, analysis.params,
                                           calibration, analysis.data_bar)
        labels_png, particles_json = encoding.labels_to_png_b64(labels), table_to_json(table)
    return ResultsState(labels_png, particles_json, calibration, tuple(warnings), edits.cursor, edits.version,
                        analysis.shape)


def calibration_text(results: ResultsState) -> list[str]:
    """Sentences on where the pixel size came from, its warning (a disagreement, a scale-bar label to confirm)
    and any disagreement with the user's own calibration."""
    calibration = results.calibration
    if calibration.nm_per_px is None:
        head = "Not calibrated: sizes are in pixels. Enter nm/px or a scale-bar label to calibrate."
    else:
        head = f"Pixel size {calibration.nm_per_px:.4g} nm/px, source: {calibration.source}."
    warnings = [warning for warning in results.warnings if warning not in calibration.warning]
    return [head, calibration.detail, *([calibration.warning] if calibration.warning else []), *warnings]


def measure_line(analysis: AnalysisState, relayout: Mapping[str, Any] | None,
                 length_text: str | None) -> AnalysisState | None:
    """The analysis with the line calibration updated from the overlay and the typed length.

    The line comes from ``relayout`` (the overlay's ``relayoutData``) when it carries one, else the line
    measured before is kept. The measured line holds the calibration when both a line and a readable
    length are given, else a sentence saying what is missing. Returns None when nothing changed (a zoom,
    say), so the results are not recomputed.
    """
    previous = analysis.measured_line
    line = linecal.line_from_relayout(relayout) or (previous.line_px if previous is not None else None)
    text = (length_text or "").strip()
    if line is None and not text:
        measured = None
    else:
        outcome = guarded(linecal.line_calibration, line, text)
        measured = MeasuredLine(None if line is None else tuple(float(value) for value in line), text,
                                None if outcome.message else outcome.value, outcome.message)
    if measured == previous:
        return None
    return analysis.with_measured_line(measured)
