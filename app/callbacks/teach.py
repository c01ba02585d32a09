"""Callbacks of "Teach the model on my corrections" in the samples view: start, cancel, keep or discard a
fine-tune, follow its progress, mark images fully checked, and download or upload a model."""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, ctx, no_update

from app.callbacks.downloads import download_outputs
from app.callbacks.samples import _batch_id, _index_of, _revision_outputs
from app.layout import ids
from app.layout.samples import before_after_table
from app.session import teach
from app.session.batchstore import BatchStore
from app.session.guard import guarded

ACTIONS = {ids.TEACH_BUTTON: "teach", ids.TEACH_CANCEL: "cancel", ids.TEACH_KEEP: "keep",
           ids.TEACH_DISCARD: "discard"}
_SHOWN, _HIDDEN = {}, {"display": "none"}


def act(teach_clicks, cancel_clicks, keep_clicks, discard_clicks, sample, batch, trigger=None):
    """Teach (on the sample chosen in the pooled sample's menu), Cancel, Keep or Discard."""
    action = ACTIONS.get(ctx.triggered_id if trigger is None else trigger)
    if not batch or action is None:
        return {"poll": no_update, "alert": "Upload images or try the samples demo first." if action else no_update,
                "revision": no_update}

    def run():
        store = BatchStore()
        batch_id = _batch_id(store, batch)
        if action == "teach":
            teach.start_teaching(store, batch_id, sample)
        elif action == "cancel":
            teach.cancel_teaching(store, batch_id)
        elif action == "keep":
            teach.keep_tuned(store, batch_id)
        else:
            teach.discard_tuned(store, batch_id)
        return store.progress(batch_id).revision

    outcome = guarded(run)
    if outcome.message:
        return {"poll": no_update, "alert": outcome.message, "revision": no_update}
    return {"poll": False, "alert": "", "revision": outcome.value}


def follow(n_intervals, batch, revision, edge_mode):
    """The fine-tune's progress, its before/after view and the model in use (any web worker can answer)."""
    keys = ("value", "max", "text", "poll", "cancel", "keep", "discard", "table", "before", "after",
            "before_style", "after_style", "model", "revision", "alert")
    if not batch:
        return {**dict.fromkeys(keys, no_update), "poll": True}

    def run():
        store = BatchStore()
        return teach.teach_page(store, _batch_id(store, batch), edge_mode or "exclude")

    outcome = guarded(run)
    if outcome.message:
        return {**dict.fromkeys(keys, no_update), "poll": True, "alert": outcome.message}
    view = outcome.value
    before, after = view.overlays or (no_update, no_update)
    shown = _SHOWN if view.overlays else _HIDDEN
    return {"value": f"{view.value:.1f}", "max": f"{max(view.total, 1):.1f}", "text": view.text,
            "poll": not view.polling, "cancel": _SHOWN if view.running else _HIDDEN,
            "keep": _SHOWN if view.review else _HIDDEN, "discard": _SHOWN if view.review else _HIDDEN,
            "table": before_after_table(view.rows), "before": before, "after": after, "before_style": shown,
            "after_style": shown, "model": view.model,
            "revision": no_update if view.revision == revision else view.revision, "alert": no_update}


def toggle_checked(check_clicks, check_ids, batch, trigger=None):
    """Mark an image fully checked (the whole image is learnt from), or take the mark back."""
    trigger = ctx.triggered_id if trigger is None else trigger
    index = _index_of(trigger)
    clicks = dict(zip((i["index"] for i in check_ids or []), check_clicks or []))
    if not batch or index is None or not clicks.get(index):  # a button drawn anew, not pressed
        return {"revision": no_update, "alert": no_update}

    def run():
        store = BatchStore()
        batch_id = _batch_id(store, batch)
        teach.toggle_checked(store, batch_id, index)
        return store.progress(batch_id).revision

    return _revision_outputs(guarded(run))


def download_model(clicks, batch):
    """The batch's tuned or uploaded model as a ``.zip`` (weights, ``config.json``, scale scorer)."""
    if not batch:
        return {"file": no_update, "alert": "There is no batch, so no tuned model, yet."}

    def run():
        store = BatchStore()
        return teach.model_download(store, _batch_id(store, batch))

    return download_outputs(guarded(run))


def upload_model(contents, filename, batch):
    """Check an uploaded model ``.zip`` and make it the batch's model; any other file gets a sentence."""
    if not batch:
        return {"model": no_update, "alert": "Upload images (or try the samples demo) before a model."}

    def run():
        store = BatchStore()
        return teach.upload_model(store, _batch_id(store, batch), contents, filename)

    outcome = guarded(run)
    if outcome.message:
        return {"model": no_update, "alert": outcome.message}
    return {"model": outcome.value, "alert": ""}


def register(app: dash.Dash) -> None:
    """Attach this module's callbacks to ``app``."""
    app.callback(
        output={"poll": Output(ids.TEACH_POLL, "disabled"), "alert": Output(ids.TEACH_ALERT, "children"),
                "revision": Output(ids.STORE_BATCH_REVISION, "data", allow_duplicate=True)},
        inputs={"teach_clicks": Input(ids.TEACH_BUTTON, "n_clicks"),
                "cancel_clicks": Input(ids.TEACH_CANCEL, "n_clicks"),
                "keep_clicks": Input(ids.TEACH_KEEP, "n_clicks"),
                "discard_clicks": Input(ids.TEACH_DISCARD, "n_clicks"),
                "sample": State(ids.POOLED_SAMPLE, "value"), "batch": State(ids.STORE_BATCH, "data")},
        prevent_initial_call=True,
    )(act)
    app.callback(
        output={"value": Output(ids.TEACH_PROGRESS, "value"), "max": Output(ids.TEACH_PROGRESS, "max"),
                "text": Output(ids.TEACH_TEXT, "children"),
                "poll": Output(ids.TEACH_POLL, "disabled", allow_duplicate=True),
                "cancel": Output(ids.TEACH_CANCEL, "style"), "keep": Output(ids.TEACH_KEEP, "style"),
                "discard": Output(ids.TEACH_DISCARD, "style"), "table": Output(ids.TEACH_TABLE, "children"),
                "before": Output(ids.TEACH_OVERLAY_BEFORE, "figure"),
                "after": Output(ids.TEACH_OVERLAY_AFTER, "figure"),
                "before_style": Output(ids.TEACH_OVERLAY_BEFORE, "style"),
                "after_style": Output(ids.TEACH_OVERLAY_AFTER, "style"),
                "model": Output(ids.MODEL_IN_USE, "children"),
                "revision": Output(ids.STORE_BATCH_REVISION, "data", allow_duplicate=True),
                "alert": Output(ids.TEACH_ALERT, "children", allow_duplicate=True)},
        inputs={"n_intervals": Input(ids.TEACH_POLL, "n_intervals"), "batch": Input(ids.STORE_BATCH, "data"),
                "revision": State(ids.STORE_BATCH_REVISION, "data"), "edge_mode": State(ids.EDGE_MODE, "value")},
        prevent_initial_call="initial_duplicate",
    )(follow)
    app.callback(
        output={"revision": Output(ids.STORE_BATCH_REVISION, "data", allow_duplicate=True),
                "alert": Output(ids.BATCH_ALERT, "children", allow_duplicate=True)},
        inputs={"check_clicks": Input({"type": ids.CHECK_IMAGE, "index": ALL}, "n_clicks"),
                "check_ids": State({"type": ids.CHECK_IMAGE, "index": ALL}, "id"),
                "batch": State(ids.STORE_BATCH, "data")},
        prevent_initial_call=True,
    )(toggle_checked)
    app.callback(
        output={"file": Output(ids.MODEL_DOWNLOAD, "data"),
                "alert": Output(ids.TEACH_ALERT, "children", allow_duplicate=True)},
        inputs={"clicks": Input(ids.MODEL_DOWNLOAD_BUTTON, "n_clicks"), "batch": State(ids.STORE_BATCH, "data")},
        prevent_initial_call=True,
    )(download_model)
    app.callback(
        output={"model": Output(ids.MODEL_IN_USE, "children", allow_duplicate=True),
                "alert": Output(ids.TEACH_ALERT, "children", allow_duplicate=True)},
        inputs={"contents": Input(ids.MODEL_UPLOAD, "contents"), "filename": State(ids.MODEL_UPLOAD, "filename"),
                "batch": State(ids.STORE_BATCH, "data")},
        prevent_initial_call=True,
    )(upload_model)
