"""Callbacks of the particle classes: typed names and clicks on the overlay update the ``classes`` store."""

from __future__ import annotations

import dash
from dash import Input, Output, State, ctx, no_update

from app.layout import ids
from app.session import classes as session_classes
from app.session.batchstore import BatchStore
from app.session.guard import guarded
from app.session.stores import AnalysisState, GrayState, ResultsState, Source

CLASSES_OUTPUTS = ("classes", "info", "options", "active", "names")


def classes(click, names_text, active, stored, results, analysis, gray, source=None, trigger=None):
    """Rename the classes, or record the particle under a click on the overlay as an example of the active class.

    For an image of a batch, the classes are stored with its sample, and opening an image of a sample that has
    classes brings them back. ``trigger`` is the id of the control that fired (default: Dash's).
    """
    trigger = ctx.triggered_id if trigger is None else trigger

    def run():
        state = session_classes.ClassesState.from_store(stored)
        shown_source = Source.from_store(source)
        if trigger == ids.STORE_SOURCE:
            return session_classes.load_from_batch(BatchStore(), shown_source)
        if trigger == ids.CLASS_NAMES:
            state = session_classes.rename(state, names_text)
        elif not state.names:  # clicks on the overlay mean nothing until classes are named
            return None
        else:
            shown = AnalysisState.from_store(analysis)
            current = ResultsState.from_store(results, shown.shape)
            state = session_classes.record_click(state, click, active, shown, current, GrayState.from_store(gray))
        session_classes.save_to_batch(BatchStore(), shown_source, state)
        return state

    outcome = guarded(run)
    if outcome.message:
        return {**dict.fromkeys(CLASSES_OUTPUTS, no_update), "info": outcome.message}
    if outcome.value is None:
        return dict.fromkeys(CLASSES_OUTPUTS, no_update)
    state = outcome.value
    in_range = isinstance(active, int) and not isinstance(active, bool) and 0 <= active < len(state.names)
    return {"classes": state.to_store(), "info": session_classes.status_text(state),
            "options": session_classes.class_options(state), "active": active if in_range else 0,
            "names": ", ".join(state.names) if trigger == ids.STORE_SOURCE else no_update}


def register(app: dash.Dash) -> None:
    """Attach this module's callbacks to ``app``."""
    app.callback(
        output={
            "classes": Output(ids.STORE_CLASSES, "data"),
            "info": Output(ids.CLASS_INFO, "children"),
            "options": Output(ids.CLASS_ACTIVE, "options"),
            "active": Output(ids.CLASS_ACTIVE, "value"),
            "names": Output(ids.CLASS_NAMES, "value"),
        },
        inputs={
            "click": Input(ids.OVERLAY, "clickData"),
            "names_text": Input(ids.CLASS_NAMES, "value"),
            "active": State(ids.CLASS_ACTIVE, "value"),
            "stored": State(ids.STORE_CLASSES, "data"),
            "results": State(ids.STORE_RESULTS, "data"),
            "analysis": State(ids.STORE_ANALYSIS, "data"),
            "gray": State(ids.STORE_GRAY, "data"),
            "source": Input(ids.STORE_SOURCE, "data"),
        },
        prevent_initial_call=True,
    )(classes)
