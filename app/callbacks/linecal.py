"""Callbacks of the drawn-line calibration: the overlay's drag mode, and the line with its real length."""

from __future__ import annotations

import dash
from dash import Input, Output, Patch, State, no_update

from app.figures import DRAG_MODES
from app.layout import ids
from app.session.guard import guarded
from app.session.results import measure_line
from app.session.stores import AnalysisState


def drag_mode(mode):
    """Switch a drag on the overlay between zooming and drawing the calibration line."""
    patch = Patch()
    patch["layout"]["dragmode"] = mode if mode in DRAG_MODES else "zoom"
    return patch


def measure(relayout, length_text, analysis):
    """Store the line calibration in the analysis payload (the results callback then applies it)."""
    if not analysis:
        return {"analysis": no_update, "alert": no_update}
    outcome = guarded(lambda: measure_line(AnalysisState.from_store(analysis), relayout, length_text))
    if outcome.message:
        return {"analysis": no_update, "alert": outcome.message}
    return {"analysis": no_update if outcome.value is None else outcome.value.to_store(), "alert": no_update}


def register(app: dash.Dash) -> None:
    """Attach this module's callbacks to ``app``."""
    app.callback(
        Output(ids.OVERLAY, "figure", allow_duplicate=True),
        Input(ids.LINE_MODE, "value"),
        prevent_initial_call=True,
    )(drag_mode)
    app.callback(
        output={"analysis": Output(ids.STORE_ANALYSIS, "data", allow_duplicate=True),
                "alert": Output(ids.ALERT, "children", allow_duplicate=True)},
        inputs={"relayout": Input(ids.OVERLAY, "relayoutData"), "length_text": Input(ids.LINE_LENGTH, "value"),
                "analysis": State(ids.STORE_ANALYSIS, "data")},
        prevent_initial_call=True,
    )(measure)
