"""Paint-canvas callbacks: tool and brush, the mask image, and applying, undoing and redoing edits."""

from __future__ import annotations

import dash
from dash import Input, Output, State, ctx, no_update

from app import session
from app.analysis.strokes import TOOL_COLOURS
from app.layout import ids
from app.layout.main import CANVAS_WIDTH_PX


def tool_colour(tool):
    """Each tool paints in its own colour; the server tells the tools apart by it."""
    return TOOL_COLOURS.get(tool, TOOL_COLOURS["draw"])


def brush_width(width):
    """Brush width in canvas display pixels."""
    return width or 1


def canvas_image(results, colour_mode):
    """Show the current mask on the canvas (this also clears the strokes already applied).

    Returns the image and, when it could not be drawn, the sentence for the alert.
    """
    if not results:
        return no_update, no_update
    outcome = session.guarded(session.canvas_image, results, colour_mode)
    return (no_update, outcome.message) if outcome.message else (outcome.value, no_update)


def edit(_saves, _undo, _redo, json_data, edits, analysis):
    """Apply the strokes of a canvas Save, or move through the applied edits with Undo and Redo."""
    if not analysis:
        return no_update, "Upload an image (or try the demo) before editing the mask."
    edits = edits or session.new_edits()
    if ctx.triggered_id == ids.UNDO:
        return session.undo(edits), ""
    if ctx.triggered_id == ids.REDO:
        return session.redo(edits), ""
    outcome = session.guarded(session.apply_canvas, edits, analysis, json_data, CANVAS_WIDTH_PX)
    return (no_update, outcome.message) if outcome.message else (outcome.value, "")


def register(app: dash.Dash) -> None:
    """Attach this module's callbacks to ``app``."""
    app.callback(Output(ids.CANVAS, "lineColor"), Input(ids.CANVAS_TOOL, "value"))(tool_colour)
    app.callback(Output(ids.CANVAS, "lineWidth"), Input(ids.CANVAS_BRUSH, "value"))(brush_width)
    app.callback(
        Output(ids.CANVAS, "image_content"),
        Output(ids.ALERT, "children", allow_duplicate=True),
        Input(ids.STORE_RESULTS, "data"),
        Input(ids.CANVAS_COLOUR, "value"),
        prevent_initial_call=True,
    )(canvas_image)
    app.callback(
        Output(ids.STORE_EDITS, "data", allow_duplicate=True),
        Output(ids.ALERT, "children", allow_duplicate=True),
        Input(ids.CANVAS, "trigger"),
        Input(ids.UNDO, "n_clicks"),
        Input(ids.REDO, "n_clicks"),
        State(ids.CANVAS, "json_data"),
        State(ids.STORE_EDITS, "data"),
        State(ids.STORE_ANALYSIS, "data"),
        prevent_initial_call=True,
    )(edit)
