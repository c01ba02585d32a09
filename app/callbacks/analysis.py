"""Callbacks that run the analysis and derive the current results (labels, table, calibration)."""

from __future__ import annotations

import dash
from dash import Input, Output, State, ctx, html, no_update

from app import session
from app.layout import ids

SOURCE_TRIGGERS = {ids.UPLOAD: "upload", ids.DEMO_BUTTON: "demo"}


def analyse(contents, _demo, segmenter, diameter_px, split, min_area, bar_mode, bar_rows, bar_label, filename,
            source, previous=None, views=None):
    """Segment and measure the uploaded or demo image, or rerun it when a segmentation setting changes.

    The upload may hold the image and its JEOL/Hitachi ``.txt`` sidecar. A line calibration drawn on the
    same image is kept across a rerun.
    """
    source = session.choose_source(SOURCE_TRIGGERS.get(ctx.triggered_id), filename, source)
    if source is None:
        return (no_update,) * 7
    settings = {"segmenter": segmenter, "diameter_px": diameter_px, "split_touching": bool(split),
                "min_area_px": min_area, "data_bar_mode": bar_mode, "data_bar_rows": bar_rows,
                "scale_bar_label": bar_label, "views": 2 if views else None}
    outcome = session.guarded(session.run_analysis, source, contents, settings, filename)
    if outcome.message:
        return (no_update,) * 6 + (outcome.message,)
    stores = outcome.value
    analysis = session.keep_measured_line(stores["analysis"], previous)
    notes = [html.Li(note) for note in analysis["notes"]]
    return (source, analysis, stores["gray"], stores["edits"], session.file_info(analysis), notes, "")


def results(analysis, edits, nm_per_px, gray):
    """Replay the canvas edits and apply the pixel-size override (re-measuring only when needed)."""
    if not analysis:
        return (no_update,) * 4
    outcome = session.guarded(session.compute_results, analysis, gray, edits, nm_per_px)
    if outcome.message:
        return no_update, no_update, no_update, outcome.message
    info = [html.Div(line) for line in session.calibration_text(outcome.value)]
    return outcome.value, info, session.edit_info(edits or session.new_edits()), no_update


def register(app: dash.Dash) -> None:
    """Attach this module's callbacks to ``app``."""
    app.callback(
        Output(ids.STORE_SOURCE, "data"),
        Output(ids.STORE_ANALYSIS, "data"),
        Output(ids.STORE_GRAY, "data"),
        Output(ids.STORE_EDITS, "data"),
        Output(ids.FILE_INFO, "children"),
        Output(ids.NOTES, "children"),
        Output(ids.ALERT, "children"),
        Input(ids.UPLOAD, "contents"),
        Input(ids.DEMO_BUTTON, "n_clicks"),
        Input(ids.SEGMENTER, "value"),
        Input(ids.DIAMETER_PX, "value"),
        Input(ids.SPLIT_TOUCHING, "value"),
        Input(ids.MIN_AREA, "value"),
        Input(ids.DATA_BAR_MODE, "value"),
        Input(ids.DATA_BAR_ROWS, "value"),
        Input(ids.SCALE_BAR_LABEL, "value"),
        State(ids.UPLOAD, "filename"),
        State(ids.STORE_SOURCE, "data"),
        State(ids.STORE_ANALYSIS, "data"),
        Input(ids.VIEWS, "value"),  # after the states: the callback's last, optional argument
        running=[
            (Output(ids.BUSY, "style"), {"display": "flex"}, {"display": "none"}),
            (Output(ids.DEMO_BUTTON, "disabled"), True, False),
        ],
    )(analyse)
    app.callback(
        Output(ids.STORE_RESULTS, "data"),
        Output(ids.CALIBRATION_INFO, "children"),
        Output(ids.EDIT_INFO, "children"),
        Output(ids.ALERT, "children", allow_duplicate=True),
        Input(ids.STORE_ANALYSIS, "data"),
        Input(ids.STORE_EDITS, "data"),
        Input(ids.NM_PER_PX, "value"),
        State(ids.STORE_GRAY, "data"),
        prevent_initial_call=True,
    )(results)
