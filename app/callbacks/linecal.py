"""Callbacks of the drawn-line calibration: the overlay's drag mode, and the line with its real length."""

from __future__ import annotations

import dash
from dash import Input, Output, Patch, State, no_update

from app import session
from app.layout import ids


def drag_mode(mode):
    """Switch a drag on the overlay between zooming and drawing the calibration line."""
    patch = Patch()
    patch["layout"]["dragmode"] = mode if mode in session.DRAG_MODES else "zoom"
    return patch


def measure(relayout, length_text, analysis):
    """Store the line calibration in the analysis payload (the results callback then applies it)."""
    if not analysis:
        return no_update
    updated = session.measure_line(analysis, relayout, length_text)
    return no_update if updated is None else updated


def register(app: dash.Dash) -> None:
    """Attach this module's callbacks to ``app``."""
    app.callback(
        Output(ids.OVERLAY, "figure", allow_duplicate=True),
        Input(ids.LINE_MODE, "value"),
        prevent_initial_call=True,
    )(drag_mode)
    app.callback(
        Output(ids.STORE_ANALYSIS, "data", allow_duplicate=True),
        Input(ids.OVERLAY, "relayoutData"),
        Input(ids.LINE_LENGTH, "value"),
        State(ids.STORE_ANALYSIS, "data"),
        prevent_initial_call=True,
    )(measure)
