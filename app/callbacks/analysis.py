"""Callbacks that run the analysis and derive the current results (labels, table, calibration)."""

from __future__ import annotations

import dash
from dash import Input, Output, State, ctx, html, no_update

from app.layout import ids
from app.session import results as session_results
from app.session import start
from app.session.edits import edit_info
from app.session.guard import guarded
from app.session.stores import AnalysisState, EditsState, GrayState, Source

SOURCE_TRIGGERS = {ids.UPLOAD: "upload", ids.DEMO_BUTTON: "demo"}
ANALYSE_OUTPUTS = ("source", "analysis", "gray", "edits", "file_info", "notes", "alert")


def analyse(upload, demo_clicks, settings, filenames, source, previous, trigger=None):
    """Segment and measure the uploaded or demo image, or rerun it when a segmentation setting changes.

    ``settings`` holds the page's segmentation controls (:class:`app.session.start.PageSettings`);
    ``trigger`` is the id of the control that fired (default: Dash's). The upload may hold the image
    and its JEOL/Hitachi ``.txt`` sidecar. A line calibration drawn on the same image is kept across a rerun.
    """
    trigger = ctx.triggered_id if trigger is None else trigger
    unchanged = dict.fromkeys(ANALYSE_OUTPUTS, no_update)

    def run():
        chosen = start.choose_source(SOURCE_TRIGGERS.get(trigger), filenames, Source.from_store(source))
        if chosen is None:
            return None
        page = start.PageSettings(**{**settings, "split_touching": bool(settings["split_touching"]),
                                      "look_twice": bool(settings["look_twice"])})
        started = start.run_analysis(chosen, upload, page, filenames)
        return chosen, start.keep_measured_line(started.analysis, AnalysisState.from_store(previous)), started

    outcome = guarded(run)
    if outcome.message:
        return {**unchanged, "alert": outcome.message}
    if outcome.value is None:
        return unchanged
    chosen, analysis, started = outcome.value
    return image_outputs(chosen, analysis, started.gray, started.edits)


def image_outputs(source, analysis, gray, edits) -> dict:
    """The outputs that show a newly analysed (or opened) image: its stores, file line and notes."""
    return {"source": source.to_store(), "analysis": analysis.to_store(), "gray": gray.to_store(),
            "edits": edits.to_store(), "file_info": start.file_info(analysis),
            "notes": [html.Li(note) for note in analysis.notes], "alert": ""}


def results(analysis, edits, nm_per_px, gray):
    """Replay the canvas edits and apply the pixel-size override (re-measuring only when needed)."""
    if not analysis:
        return dict.fromkeys(("results", "calibration", "edit_info", "alert"), no_update)

    def run():
        state = AnalysisState.from_store(analysis)
        history = EditsState.from_store(edits)
        current = session_results.compute_results(state, GrayState.from_store(gray), history, nm_per_px)
        return current, history

    outcome = guarded(run)
    if outcome.message:
        return {"results": no_update, "calibration": no_update, "edit_info": no_update, "alert": outcome.message}
    current, history = outcome.value
    return {"results": current.to_store(),
            "calibration": [html.Div(line) for line in session_results.calibration_text(current)],
            "edit_info": edit_info(history), "alert": no_update}


def register(app: dash.Dash) -> None:
    """Attach this module's callbacks to ``app``."""
    app.callback(
        output={
            "source": Output(ids.STORE_SOURCE, "data"),
            "analysis": Output(ids.STORE_ANALYSIS, "data"),
            "gray": Output(ids.STORE_GRAY, "data"),
            "edits": Output(ids.STORE_EDITS, "data"),
            "file_info": Output(ids.FILE_INFO, "children"),
            "notes": Output(ids.NOTES, "children"),
            "alert": Output(ids.ALERT, "children"),
        },
        inputs={
            "upload": Input(ids.UPLOAD, "contents"),
            "demo_clicks": Input(ids.DEMO_BUTTON, "n_clicks"),
            "settings": {
                "segmenter": Input(ids.SEGMENTER, "value"),
                "diameter_px": Input(ids.DIAMETER_PX, "value"),
                "split_touching": Input(ids.SPLIT_TOUCHING, "value"),
                "min_area_px": Input(ids.MIN_AREA, "value"),
                "data_bar_mode": Input(ids.DATA_BAR_MODE, "value"),
                "data_bar_rows": Input(ids.DATA_BAR_ROWS, "value"),
                "scale_bar_label": Input(ids.SCALE_BAR_LABEL, "value"),
                "look_twice": Input(ids.VIEWS, "value"),
            },
            "filenames": State(ids.UPLOAD, "filename"),
            "source": State(ids.STORE_SOURCE, "data"),
            "previous": State(ids.STORE_ANALYSIS, "data"),
        },
        running=[
            (Output(ids.BUSY, "style"), {"display": "flex"}, {"display": "none"}),
            (Output(ids.DEMO_BUTTON, "disabled"), True, False),
        ],
    )(analyse)
    app.callback(
        output={
            "results": Output(ids.STORE_RESULTS, "data"),
            "calibration": Output(ids.CALIBRATION_INFO, "children"),
            "edit_info": Output(ids.EDIT_INFO, "children"),
            "alert": Output(ids.ALERT, "children", allow_duplicate=True),
        },
        inputs={
            "analysis": Input(ids.STORE_ANALYSIS, "data"),
            "edits": Input(ids.STORE_EDITS, "data"),
            "nm_per_px": Input(ids.NM_PER_PX, "value"),
            "gray": State(ids.STORE_GRAY, "data"),
        },
        prevent_initial_call=True,
    )(results)
