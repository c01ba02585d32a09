"""Download callbacks: per-particle CSV, label image, summary CSV."""

from __future__ import annotations

import dash
from dash import Input, Output, State, ctx, no_update

from app import session
from app.layout import ids


def download(_csv, _labels, _summary, analysis, results, edge_mode):
    """Send the requested file; the provenance header records the settings in force."""
    if not analysis or not results:
        return no_update, "Nothing to download yet: upload an image or try the demo first."
    view = session.ViewOptions(edge_mode=edge_mode or "exclude")
    if ctx.triggered_id == ids.DOWNLOAD_LABELS_BUTTON:
        outcome = session.guarded(session.labels_download, analysis, results)
    elif ctx.triggered_id == ids.DOWNLOAD_SUMMARY_BUTTON:
        outcome = session.guarded(session.summary_download, analysis, results, view)
    else:
        outcome = session.guarded(session.particles_download, analysis, results, view)
    return (no_update, outcome.message) if outcome.message else (outcome.value, "")


def register(app: dash.Dash) -> None:
    """Attach this module's callbacks to ``app``."""
    app.callback(
        Output(ids.DOWNLOAD, "data"),
        Output(ids.ALERT, "children", allow_duplicate=True),
        Input(ids.DOWNLOAD_CSV_BUTTON, "n_clicks"),
        Input(ids.DOWNLOAD_LABELS_BUTTON, "n_clicks"),
        Input(ids.DOWNLOAD_SUMMARY_BUTTON, "n_clicks"),
        State(ids.STORE_ANALYSIS, "data"),
        State(ids.STORE_RESULTS, "data"),
        State(ids.EDGE_MODE, "value"),
        prevent_initial_call=True,
    )(download)
