"""Download callbacks: per-particle CSV, label image, summary CSV."""

from __future__ import annotations

import dash
from dash import Input, Output, State, ctx, no_update

from app.layout import ids
from app.session import classes as session_classes
from app.session import downloads
from app.session.guard import Outcome, guarded
from app.session.stores import AnalysisState, GrayState, ResultsState


def download(csv_clicks, labels_clicks, summary_clicks, analysis, results, edge_mode, trigger=None, classes=None,
             gray=None):
    """Send the requested file; the provenance header records the settings in force.

    Once particle ``classes`` are taught, the particles CSV holds each particle's class and the summary has
    one more row per class.

    ``trigger`` is the id of the button pressed (default: Dash's).
    """
    trigger = ctx.triggered_id if trigger is None else trigger
    if not analysis or not results:
        return {"file": no_update, "alert": "Nothing to download yet: upload an image or try the demo first."}

    def run():
        state = AnalysisState.from_store(analysis)
        current = ResultsState.from_store(results, state.shape)
        if trigger == ids.DOWNLOAD_LABELS_BUTTON:
            return downloads.labels_download(state, current)
        if trigger == ids.DOWNLOAD_SUMMARY_BUTTON:
            return session_classes.summary_download(state, current, edge_mode or "exclude",
                                                    session_classes.ClassesState.from_store(classes),
                                                    GrayState.from_store(gray))
        return session_classes.particles_download(state, current, edge_mode or "exclude",
                                                  session_classes.ClassesState.from_store(classes),
                                                  GrayState.from_store(gray))

    return download_outputs(guarded(run))


def download_outputs(outcome: Outcome) -> dict:
    """A download callback's outputs from a guarded run: the file, or the sentence saying why not."""
    if outcome.message:
        return {"file": no_update, "alert": outcome.message}
    return {"file": outcome.value, "alert": ""}


def register(app: dash.Dash) -> None:
    """Attach this module's callbacks to ``app``."""
    app.callback(
        output={"file": Output(ids.DOWNLOAD, "data"), "alert": Output(ids.ALERT, "children", allow_duplicate=True)},
        inputs={
            "csv_clicks": Input(ids.DOWNLOAD_CSV_BUTTON, "n_clicks"),
            "labels_clicks": Input(ids.DOWNLOAD_LABELS_BUTTON, "n_clicks"),
            "summary_clicks": Input(ids.DOWNLOAD_SUMMARY_BUTTON, "n_clicks"),
            "analysis": State(ids.STORE_ANALYSIS, "data"),
            "results": State(ids.STORE_RESULTS, "data"),
            "edge_mode": State(ids.EDGE_MODE, "value"),
            "classes": State(ids.STORE_CLASSES, "data"),
            "gray": State(ids.STORE_GRAY, "data"),
        },
        prevent_initial_call=True,
    )(download)
