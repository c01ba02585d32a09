"""The canvas edit history: applying a canvas save, undo and redo, and replaying the edits on the labels."""

from __future__ import annotations

import numpy as np

from app.analysis import strokes
from app.analysis.errors import SaemiInputError
from app.session.stores import AnalysisState, EditsState


def apply_canvas(edits: EditsState, analysis: AnalysisState, json_data: str | None,
                 canvas_width_px: float) -> EditsState:
    """Add the strokes of one canvas save to the edit history (dropping any undone edits).

    Raises
    ------
    SaemiInputError
        For malformed canvas data, when nothing was drawn, or when a limit of
        :mod:`app.analysis.limits` (brush width, points, strokes, saves, replay work) would be passed.
    """
    if not json_data:
        raise SaemiInputError("The canvas sent no drawing; paint a stroke, then press Save.")
    parsed = strokes.parse_canvas_json(json_data, analysis.shape, canvas_width_px)
    if not parsed:
        raise SaemiInputError("No strokes to apply: paint on the mask with a tool, then press Save.")
    batches = edits.applied + (tuple(stroke.to_dict() for stroke in parsed),)
    history = [[strokes.Stroke.from_dict(item) for item in batch] for batch in batches]
    strokes.check_edit_budget(history, analysis.shape)  # before the save is kept and replayed
    return EditsState(batches, edits.cursor + 1, edits.version + 1)


def undo(edits: EditsState) -> EditsState:
    """Step the edit cursor back by one applied save (no change at the start)."""
    return EditsState(edits.batches, max(edits.cursor - 1, 0), edits.version + 1)


def redo(edits: EditsState) -> EditsState:
    """Step the edit cursor forward by one undone save (no change at the end)."""
    return EditsState(edits.batches, min(edits.cursor + 1, len(edits.batches)), edits.version + 1)


def edit_info(edits: EditsState) -> str:
    """A short line on the edit history for the page."""
    cursor, total = edits.cursor, len(edits.batches)
    return f"{cursor} edit(s) applied" + (f", {total - cursor} can be redone." if total > cursor else ".")


def current_labels(analysis: AnalysisState, edits: EditsState) -> np.ndarray:
    """The base labels with the applied canvas edits replayed."""
    base = analysis.labels()
    if not edits.cursor:
        return base
    return strokes.apply_edits(base, [list(batch) for batch in edits.applied])
