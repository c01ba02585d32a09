"""Paint-canvas callbacks: tool and brush, the mask image, and applying, undoing and redoing edits."""

from __future__ import annotations

import math

import dash
from dash import Input, Output, State, ctx, no_update

from app.analysis.strokes import TOOL_COLOURS
from app.layout import ids
from app.layout.main import CANVAS_BRUSH_MAX_PX, CANVAS_WIDTH_PX
from app.session import display, edits
from app.session.guard import guarded
from app.session.stores import AnalysisState, EditsState, ResultsState


def tool_colour(tool):
    """Each tool paints in its own colour; the server tells the tools apart by it (anything else: draw)."""
    return TOOL_COLOURS.get(tool if isinstance(tool, str) else "draw", TOOL_COLOURS["draw"])


def brush_width(width):
    """Brush width in canvas display pixels, within the slider's range (1 when unset or not a number)."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width):
        return 1
    return min(max(width, 1), CANVAS_BRUSH_MAX_PX)


def canvas_image(results, colour_mode):
    """Show the current mask on the canvas (this also clears the strokes already applied).

    Returns the image and, when it could not be drawn, the sentence for the alert.
    """
    if not results:
        return {"image": no_update, "alert": no_update}
    outcome = guarded(lambda: display.canvas_image(ResultsState.from_store(results), colour_mode))
    if outcome.message:
        return {"image": no_update, "alert": outcome.message}
    return {"image": outcome.value, "alert": no_update}


def edit(saves, undo_clicks, redo_clicks, json_data, history, analysis, trigger=None):
    """Apply the strokes of a canvas Save, or move through the applied edits with Undo and Redo.

    ``trigger`` is the id of the control that fired (default: Dash's).
    """
    trigger = ctx.triggered_id if trigger is None else trigger
    if not analysis:
        return {"edits": no_update, "alert": "Upload an image (or try the demo) before editing the mask."}

    def run():
        state = EditsState.from_store(history)
        if trigger == ids.UNDO:
            return edits.undo(state)
        if trigger == ids.REDO:
            return edits.redo(state)
        return edits.apply_canvas(state, AnalysisState.from_store(analysis), json_data, CANVAS_WIDTH_PX)

    outcome = guarded(run)
    if outcome.message:
        return {"edits": no_update, "alert": outcome.message}
    return {"edits": outcome.value.to_store(), "alert": ""}


def register(app: dash.Dash) -> None:
    """Attach this module's callbacks to ``app``."""
    app.callback(Output(ids.CANVAS, "lineColor"), Input(ids.CANVAS_TOOL, "value"))(tool_colour)
    app.callback(Output(ids.CANVAS, "lineWidth"), Input(ids.CANVAS_BRUSH, "value"))(brush_width)
    app.callback(
        output={"image": Output(ids.CANVAS, "image_content"),
                "alert": Output(ids.ALERT, "children", allow_duplicate=True)},
        inputs={"results": Input(ids.STORE_RESULTS, "data"), "colour_mode": Input(ids.CANVAS_COLOUR, "value")},
        prevent_initial_call=True,
    )(canvas_image)
    app.callback(
        output={"edits": Output(ids.STORE_EDITS, "data", allow_duplicate=True),
                "alert": Output(ids.ALERT, "children", allow_duplicate=True)},
        inputs={
            "saves": Input(ids.CANVAS, "trigger"),
            "undo_clicks": Input(ids.UNDO, "n_clicks"),
            "redo_clicks": Input(ids.REDO, "n_clicks"),
            "json_data": State(ids.CANVAS, "json_data"),
            "history": State(ids.STORE_EDITS, "data"),
            "analysis": State(ids.STORE_ANALYSIS, "data"),
        },
        prevent_initial_call=True,
    )(edit)
