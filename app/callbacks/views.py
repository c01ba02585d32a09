"""Callbacks that only redraw: histogram, statistics and overlay. None of them segments or measures."""

from __future__ import annotations

import dash
from dash import Input, Output, Patch, State, ctx, html, no_update

from app.analysis.view import ViewOptions
from app.layout import ids
from app.session import classes as session_classes
from app.session import display
from app.session.guard import guarded
from app.session.stores import AnalysisState, GrayState, ResultsState

#: The histogram controls, grouped as Dash passes them (the fields of :class:`ViewOptions`).
VIEW_INPUTS = {
    "quantity": Input(ids.QUANTITY, "value"),
    "basis": Input(ids.BASIS, "value"),
    "bin_width": Input(ids.BIN_WIDTH, "value"),
    "edge_mode": Input(ids.EDGE_MODE, "value"),
    "min_ecd": Input(ids.MIN_ECD, "value"),
    "max_ecd": Input(ids.MAX_ECD, "value"),
    "min_circularity": Input(ids.MIN_CIRCULARITY, "value"),
}


def histogram(results, analysis, view, classes=None, gray=None):
    """Histogram and statistics of the selected quantity, weighting, edge treatment and filters.

    ``view`` holds the page's histogram controls (:class:`app.analysis.view.ViewOptions`); once particle
    ``classes`` are taught, the histogram and statistics are split by class.
    """
    unchanged = {"figure": no_update, "table": no_update, "hint": no_update, "filters": no_update}
    if not results or not analysis:
        return unchanged

    def run():
        state = AnalysisState.from_store(analysis)
        return session_classes.histogram_outputs(ResultsState.from_store(results, state.shape), state,
                                                 ViewOptions(**view), session_classes.ClassesState.from_store(classes),
                                                 GrayState.from_store(gray))

    outcome = guarded(run)
    if outcome.message:
        return {**unchanged, "hint": outcome.message}
    shown = outcome.value
    table = html.Table([html.Tbody([html.Tr([html.Th(name), html.Td(value)]) for name, value in shown.rows])])
    return {"figure": shown.figure, "table": table, "hint": shown.hint, "filters": shown.filters}


def reset_bin_width(quantity, nm_per_px, analysis):
    """A new quantity, unit or image starts again from the automatic bin width."""
    return None


def overlay(results, opacity, mode, gray, analysis, drag_mode=None, trigger=None, classes=None):
    """The current labels over the image, and the sentence for the alert when it could not be drawn.

    ``trigger`` is the id of the control that fired (default: Dash's): the opacity slider only
    patches the particles trace. Shown "by class", the particles take the colours of their ``classes``,
    and a change of the classes redraws them.
    """
    trigger = ctx.triggered_id if trigger is None else trigger
    if not results or not gray or (trigger == ids.STORE_CLASSES and mode != "class"):
        return {"figure": no_update, "alert": no_update}
    if trigger == ids.OVERLAY_OPACITY:
        patch = Patch()
        patch["data"][1]["opacity"] = display.overlay_opacity(opacity)  # the particles trace only
        return {"figure": patch, "alert": no_update}

    def run():
        state = AnalysisState.from_store(analysis)
        current = ResultsState.from_store(results, None if state is None else state.shape)
        if mode == "class" and state is not None:
            return session_classes.class_overlay(current, GrayState.from_store(gray), opacity, state, drag_mode,
                                                 session_classes.ClassesState.from_store(classes))
        return display.overlay(current, GrayState.from_store(gray), opacity, None if mode == "class" else mode,
                               state, drag_mode)

    outcome = guarded(run)
    if outcome.message:
        return {"figure": no_update, "alert": outcome.message}
    return {"figure": outcome.value, "alert": no_update}


def register(app: dash.Dash) -> None:
    """Attach this module's callbacks to ``app``."""
    app.callback(
        output={
            "figure": Output(ids.HISTOGRAM, "figure"),
            "table": Output(ids.STATS_TABLE, "children"),
            "hint": Output(ids.BIN_WIDTH_HINT, "children"),
            "filters": Output(ids.FILTER_INFO, "children"),
        },
        inputs={
            "results": Input(ids.STORE_RESULTS, "data"),
            "view": VIEW_INPUTS,
            "analysis": State(ids.STORE_ANALYSIS, "data"),
            "classes": Input(ids.STORE_CLASSES, "data"),
            "gray": State(ids.STORE_GRAY, "data"),
        },
        prevent_initial_call=True,
    )(histogram)
    app.callback(
        Output(ids.BIN_WIDTH, "value"),
        inputs={"quantity": Input(ids.QUANTITY, "value"), "nm_per_px": Input(ids.NM_PER_PX, "value"),
                "analysis": Input(ids.STORE_ANALYSIS, "data")},
        prevent_initial_call=True,
    )(reset_bin_width)
    app.callback(
        output={"figure": Output(ids.OVERLAY, "figure"), "alert": Output(ids.ALERT, "children", allow_duplicate=True)},
        inputs={
            "results": Input(ids.STORE_RESULTS, "data"),
            "opacity": Input(ids.OVERLAY_OPACITY, "value"),
            "mode": Input(ids.OVERLAY_MODE, "value"),
            "gray": State(ids.STORE_GRAY, "data"),
            "analysis": State(ids.STORE_ANALYSIS, "data"),
            "drag_mode": State(ids.LINE_MODE, "value"),
            "classes": Input(ids.STORE_CLASSES, "data"),
        },
        prevent_initial_call=True,
    )(overlay)
