"""Callbacks that only redraw: histogram, statistics and overlay. None of them segments or measures."""

from __future__ import annotations

import dash
from dash import Input, Output, Patch, State, ctx, html, no_update

from app import session
from app.layout import ids


def histogram(results, quantity, basis, bin_width, edge_mode, min_ecd, max_ecd, min_circ, analysis):
    """Histogram and statistics of the selected quantity, weighting, edge treatment and filters."""
    if not results or not analysis:
        return (no_update,) * 4
    view = session.ViewOptions(quantity=quantity, basis=basis, bin_width=bin_width, edge_mode=edge_mode,
                               min_ecd=min_ecd, max_ecd=max_ecd, min_circularity=min_circ)
    outcome = session.guarded(session.histogram_outputs, results, analysis, view)
    if outcome.message:
        return no_update, no_update, outcome.message, no_update
    figure, rows, hint, filters = outcome.value
    table = html.Table([html.Tbody([html.Tr([html.Th(name), html.Td(value)]) for name, value in rows])])
    return figure, table, hint, filters


def reset_bin_width(_quantity, _nm_per_px, _analysis):
    """A new quantity, unit or image starts again from the automatic bin width."""
    return None


def overlay(results, opacity, mode, gray, analysis, drag_mode=None):
    """The current labels over the image, and the sentence for the alert when it could not be drawn."""
    if not results or not gray:
        return no_update, no_update
    if ctx.triggered_id == ids.OVERLAY_OPACITY:
        patch = Patch()
        patch["data"][1]["opacity"] = opacity  # the particles trace; the image is not sent again
        return patch, no_update
    analysis = analysis or {}
    outcome = session.guarded(session.overlay, results, gray, opacity, mode, analysis.get("data_bar"),
                              analysis.get("measured_line"), drag_mode)
    return (no_update, outcome.message) if outcome.message else (outcome.value, no_update)


def register(app: dash.Dash) -> None:
    """Attach this module's callbacks to ``app``."""
    app.callback(
        Output(ids.HISTOGRAM, "figure"),
        Output(ids.STATS_TABLE, "children"),
        Output(ids.BIN_WIDTH_HINT, "children"),
        Output(ids.FILTER_INFO, "children"),
        Input(ids.STORE_RESULTS, "data"),
        Input(ids.QUANTITY, "value"),
        Input(ids.BASIS, "value"),
        Input(ids.BIN_WIDTH, "value"),
        Input(ids.EDGE_MODE, "value"),
        Input(ids.MIN_ECD, "value"),
        Input(ids.MAX_ECD, "value"),
        Input(ids.MIN_CIRCULARITY, "value"),
        State(ids.STORE_ANALYSIS, "data"),
        prevent_initial_call=True,
    )(histogram)
    app.callback(
        Output(ids.BIN_WIDTH, "value"),
        Input(ids.QUANTITY, "value"),
        Input(ids.NM_PER_PX, "value"),
        Input(ids.STORE_ANALYSIS, "data"),
        prevent_initial_call=True,
    )(reset_bin_width)
    app.callback(
        Output(ids.OVERLAY, "figure"),
        Output(ids.ALERT, "children", allow_duplicate=True),
        Input(ids.STORE_RESULTS, "data"),
        Input(ids.OVERLAY_OPACITY, "value"),
        Input(ids.OVERLAY_MODE, "value"),
        State(ids.STORE_GRAY, "data"),
        State(ids.STORE_ANALYSIS, "data"),
        State(ids.LINE_MODE, "value"),
        prevent_initial_call=True,
    )(overlay)
