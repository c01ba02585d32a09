"""Callbacks of the samples view: start a batch, poll its progress, redraw its samples, change them, open
an image in the single-image view, write its corrections back, and download everything."""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, ctx, html, no_update

from app.analysis.view import ViewOptions
from app.callbacks.analysis import image_outputs
from app.callbacks.downloads import download_outputs
from app.callbacks.views import VIEW_INPUTS
from app.layout import ids
from app.layout.samples import comparison_table, image_table, tests_list
from app.session import samples
from app.session.batchstore import BatchStore
from app.session.guard import guarded
from app.session.start import PageSettings
from app.session.stores import AnalysisState, EditsState, ResultsState, Source

START_TRIGGERS = {ids.BATCH_UPLOAD: "upload", ids.BATCH_DEMO_BUTTON: "demo"}
SETTINGS = {
    "segmenter": State(ids.SEGMENTER, "value"),
    "diameter_px": State(ids.DIAMETER_PX, "value"),
    "split_touching": State(ids.SPLIT_TOUCHING, "value"),
    "min_area_px": State(ids.MIN_AREA, "value"),
    "data_bar_mode": State(ids.DATA_BAR_MODE, "value"),
    "data_bar_rows": State(ids.DATA_BAR_ROWS, "value"),
    "scale_bar_label": State(ids.SCALE_BAR_LABEL, "value"),
    "look_twice": State(ids.VIEWS, "value"),
}
VIEW = VIEW_INPUTS


def _batch_id(store: BatchStore, batch) -> str:
    """The batch id the page keeps, checked (format, and a batch on the server that has not expired)."""
    return store.check_id((batch or {}).get("batch_id") if isinstance(batch, dict) else None)


def start(upload, demo_clicks, filenames, settings, nm_per_px, pattern, trigger=None):
    """Store the uploaded images (or the demo) as a new batch on the server and start analysing it."""
    trigger = ctx.triggered_id if trigger is None else trigger
    kind = START_TRIGGERS.get(trigger)

    def run():
        page = PageSettings(**{**settings, "split_touching": bool(settings["split_touching"]),
                               "look_twice": bool(settings["look_twice"])})
        store = BatchStore()
        if kind == "demo":
            return samples.start_demo_batch(store, page, nm_per_px)
        return samples.start_batch(store, upload, filenames, page, nm_per_px, pattern)

    outcome = guarded(run)
    if outcome.message:
        return {"batch": no_update, "alert": outcome.message, "notes": no_update, "poll": no_update}
    return {"batch": {"batch_id": outcome.value.batch_id}, "alert": "",
            "notes": [html.Li(note) for note in outcome.value.notes], "poll": False}


def poll(n_intervals, batch, revision):
    """Progress of the batch from the server's index (any worker can answer); resubmits orphaned images."""
    if not batch:
        return {"value": no_update, "max": no_update, "text": no_update, "poll": True, "revision": no_update,
                "alert": no_update}

    def run():
        store = BatchStore()
        return samples.batch_progress(store, _batch_id(store, batch))

    outcome = guarded(run)
    if outcome.message:
        return {"value": no_update, "max": no_update, "text": "", "poll": True, "revision": no_update,
                "alert": outcome.message}
    shown = outcome.value
    return {"value": str(shown.value), "max": str(max(shown.total, 1)), "text": shown.text, "poll": shown.finished,
            "revision": no_update if shown.revision == revision else shown.revision, "alert": no_update}


def refresh(revision, view, pooled_sample, batch):
    """The image table, the pooled histogram and statistics of one sample, and the samples compared."""
    keys = ("table", "options", "sample", "figure", "stats", "hint", "compare", "compare_table", "tests", "alert")
    if not batch or revision is None:
        return dict.fromkeys(keys, no_update)

    def run():
        store = BatchStore()
        images = samples.load_images(store, _batch_id(store, batch))
        options = samples.sample_names(images)
        chosen = pooled_sample if pooled_sample in options else (options[0] if options else None)
        view_options = ViewOptions(**view)
        pooled = samples.pooled_outputs(images, chosen, view_options)
        compared = samples.comparison(images, view_options.edge_mode)
        return images, options, chosen, pooled, compared

    outcome = guarded(run)
    if outcome.message:
        return {**dict.fromkeys(keys, no_update), "alert": outcome.message}
    images, options, chosen, pooled, compared = outcome.value
    stats = html.Table([html.Tbody([html.Tr([html.Th(name), html.Td(value)]) for name, value in pooled.rows])])
    return {"table": image_table(samples.image_rows(images, view.get("edge_mode") or "exclude")),
            "options": options, "sample": chosen, "figure": pooled.figure, "stats": stats,
            "hint": f"{pooled.hint}. {pooled.filters}", "compare": compared.figure,
            "compare_table": comparison_table(compared.sample_rows),
            "tests": tests_list(compared.comparison_rows, compared.note), "alert": ""}


def _index_of(trigger) -> int | None:
    return trigger.get("index") if isinstance(trigger, dict) else None


def change(exclude_clicks, sample_names, group_clicks, exclude_ids, sample_ids, pattern, batch, trigger=None):
    """Exclude or include an image, put an image into a sample typed by hand, or group by the file-name pattern."""
    trigger = ctx.triggered_id if trigger is None else trigger
    if not batch:
        return {"revision": no_update, "alert": no_update}

    def run():
        store = BatchStore()
        batch_id = _batch_id(store, batch)
        index = _index_of(trigger)
        if trigger == ids.GROUP_BUTTON:
            samples.group_by_pattern(store, batch_id, pattern)
        elif isinstance(trigger, dict) and trigger.get("type") == ids.EXCLUDE_IMAGE:
            clicks = dict(zip((i["index"] for i in exclude_ids), exclude_clicks))
            if not clicks.get(index):  # a button drawn anew, not pressed
                return None
            samples.toggle_excluded(store, batch_id, index)
        elif isinstance(trigger, dict) and trigger.get("type") == ids.IMAGE_SAMPLE:
            typed = dict(zip((i["index"] for i in sample_ids), sample_names)).get(index)
            if typed is None or typed == store.image(batch_id, index).sample:  # a field drawn anew
                return None
            samples.assign_sample(store, batch_id, index, typed)
        else:
            return None
        return store.progress(batch_id).revision

    return _revision_outputs(guarded(run))


def _revision_outputs(outcome) -> dict:
    """The batch's new revision (a redraw), or nothing when nothing changed, or the sentence for the alert."""
    if outcome.message:
        return {"revision": no_update, "alert": outcome.message}
    return {"revision": no_update if outcome.value is None else outcome.value, "alert": no_update}


def open_image(open_clicks, open_ids, batch, trigger=None):
    """Show an image of the batch in the single-image view (overlay, canvas, calibration)."""
    trigger = ctx.triggered_id if trigger is None else trigger
    keys = ("source", "analysis", "gray", "edits", "file_info", "notes", "alert")
    index = _index_of(trigger)
    clicks = dict(zip((i["index"] for i in open_ids or []), open_clicks or []))
    if not batch or index is None or not clicks.get(index):
        return dict.fromkeys(keys, no_update)

    def run():
        store = BatchStore()
        return samples.open_image(store, _batch_id(store, batch), index)

    outcome = guarded(run)
    if outcome.message:
        return {**dict.fromkeys(keys, no_update), "alert": outcome.message}
    opened = outcome.value
    return image_outputs(opened.source, opened.analysis, opened.gray, opened.edits)


def write_back(results, source, analysis, edits, edge_mode, batch):
    """A correction of a batch image in the single-image view updates the batch (and so the pooled results)."""
    if not results or not source or not batch:
        return {"revision": no_update, "alert": no_update}

    def run():
        state = AnalysisState.from_store(analysis)
        current = ResultsState.from_store(results, None if state is None else state.shape)
        store = BatchStore()
        batch_id = _batch_id(store, batch)
        if not samples.save_correction(store, Source.from_store(source), state, EditsState.from_store(edits), current,
                                       edge_mode or "exclude"):
            return None
        return store.progress(batch_id).revision

    return _revision_outputs(guarded(run))


def download(clicks, batch, edge_mode):
    """The batch's ``.zip``: per-image CSVs and label images, the pooled particles, the summaries and tests."""
    if not batch:
        return {"file": no_update, "alert": "Nothing to download yet: upload images or try the samples demo first."}

    def run():
        store = BatchStore()
        return samples.zip_download(store, _batch_id(store, batch), edge_mode or "exclude")

    return download_outputs(guarded(run))


def register(app: dash.Dash) -> None:
    """Attach this module's callbacks to ``app``."""
    app.callback(
        output={"batch": Output(ids.STORE_BATCH, "data"), "alert": Output(ids.BATCH_ALERT, "children"),
                "notes": Output(ids.BATCH_NOTES, "children"), "poll": Output(ids.BATCH_POLL, "disabled")},
        inputs={"upload": Input(ids.BATCH_UPLOAD, "contents"), "demo_clicks": Input(ids.BATCH_DEMO_BUTTON, "n_clicks"),
                "filenames": State(ids.BATCH_UPLOAD, "filename"), "settings": SETTINGS,
                "nm_per_px": State(ids.NM_PER_PX, "value"), "pattern": State(ids.SAMPLE_PATTERN, "value")},
        prevent_initial_call=True,
    )(start)
    app.callback(
        output={"value": Output(ids.BATCH_PROGRESS, "value"), "max": Output(ids.BATCH_PROGRESS, "max"),
                "text": Output(ids.BATCH_PROGRESS_TEXT, "children"),
                "poll": Output(ids.BATCH_POLL, "disabled", allow_duplicate=True),
                "revision": Output(ids.STORE_BATCH_REVISION, "data"),
                "alert": Output(ids.BATCH_ALERT, "children", allow_duplicate=True)},
        inputs={"n_intervals": Input(ids.BATCH_POLL, "n_intervals"), "batch": Input(ids.STORE_BATCH, "data"),
                "revision": State(ids.STORE_BATCH_REVISION, "data")},
        prevent_initial_call="initial_duplicate",
    )(poll)
    app.callback(
        output={"table": Output(ids.IMAGE_TABLE, "children"), "options": Output(ids.POOLED_SAMPLE, "options"),
                "sample": Output(ids.POOLED_SAMPLE, "value"), "figure": Output(ids.POOLED_HISTOGRAM, "figure"),
                "stats": Output(ids.POOLED_STATS, "children"), "hint": Output(ids.POOLED_HINT, "children"),
                "compare": Output(ids.COMPARE_FIGURE, "figure"), "compare_table": Output(ids.COMPARE_TABLE, "children"),
                "tests": Output(ids.COMPARE_TESTS, "children"),
                "alert": Output(ids.BATCH_ALERT, "children", allow_duplicate=True)},
        inputs={"revision": Input(ids.STORE_BATCH_REVISION, "data"), "view": VIEW,
                "pooled_sample": Input(ids.POOLED_SAMPLE, "value"), "batch": State(ids.STORE_BATCH, "data")},
        prevent_initial_call=True,
    )(refresh)
    app.callback(
        output={"revision": Output(ids.STORE_BATCH_REVISION, "data", allow_duplicate=True),
                "alert": Output(ids.BATCH_ALERT, "children", allow_duplicate=True)},
        inputs={"exclude_clicks": Input({"type": ids.EXCLUDE_IMAGE, "index": ALL}, "n_clicks"),
                "sample_names": Input({"type": ids.IMAGE_SAMPLE, "index": ALL}, "value"),
                "group_clicks": Input(ids.GROUP_BUTTON, "n_clicks"),
                "exclude_ids": State({"type": ids.EXCLUDE_IMAGE, "index": ALL}, "id"),
                "sample_ids": State({"type": ids.IMAGE_SAMPLE, "index": ALL}, "id"),
                "pattern": State(ids.SAMPLE_PATTERN, "value"), "batch": State(ids.STORE_BATCH, "data")},
        prevent_initial_call=True,
    )(change)
    app.callback(
        output={"source": Output(ids.STORE_SOURCE, "data", allow_duplicate=True),
                "analysis": Output(ids.STORE_ANALYSIS, "data", allow_duplicate=True),
                "gray": Output(ids.STORE_GRAY, "data", allow_duplicate=True),
                "edits": Output(ids.STORE_EDITS, "data", allow_duplicate=True),
                "file_info": Output(ids.FILE_INFO, "children", allow_duplicate=True),
                "notes": Output(ids.NOTES, "children", allow_duplicate=True),
                "alert": Output(ids.ALERT, "children", allow_duplicate=True)},
        inputs={"open_clicks": Input({"type": ids.OPEN_IMAGE, "index": ALL}, "n_clicks"),
                "open_ids": State({"type": ids.OPEN_IMAGE, "index": ALL}, "id"),
                "batch": State(ids.STORE_BATCH, "data")},
        prevent_initial_call=True,
    )(open_image)
    app.callback(
        output={"revision": Output(ids.STORE_BATCH_REVISION, "data", allow_duplicate=True),
                "alert": Output(ids.BATCH_ALERT, "children", allow_duplicate=True)},
        inputs={"results": Input(ids.STORE_RESULTS, "data"), "source": State(ids.STORE_SOURCE, "data"),
                "analysis": State(ids.STORE_ANALYSIS, "data"), "edits": State(ids.STORE_EDITS, "data"),
                "edge_mode": State(ids.EDGE_MODE, "value"), "batch": State(ids.STORE_BATCH, "data")},
        prevent_initial_call=True,
    )(write_back)
    app.callback(
        output={"file": Output(ids.BATCH_DOWNLOAD, "data"),
                "alert": Output(ids.BATCH_ALERT, "children", allow_duplicate=True)},
        inputs={"clicks": Input(ids.DOWNLOAD_BATCH_BUTTON, "n_clicks"), "batch": State(ids.STORE_BATCH, "data"),
                "edge_mode": State(ids.EDGE_MODE, "value")},
        prevent_initial_call=True,
    )(download)
