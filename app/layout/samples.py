"""The samples view: a batch upload, its progress, the images with their samples and flags, the pooled
histogram of a sample, the samples compared, and the download of every result."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from dash import dcc, html

from app import config
from app.analysis import limits
from app.layout import ids

#: How often the page asks how a running batch stands, in milliseconds.
POLL_INTERVAL_MS = 1000


def samples_panel() -> html.Div:
    """The samples view, with its own upload and the stores that keep the batch's id and revision."""
    limit = (f"Up to {limits.MAX_BATCH_IMAGES} images and {config.MAX_BATCH_BYTES / 1e6:.0f} MB together, loose "
             "or in .zip archives; a JEOL or Hitachi .txt file named like its image calibrates it. The segmentation "
             "settings and the pixel size override above apply to the whole batch.")
    return html.Div(
        [
            html.H3("Samples: many images, pooled and compared"),
            dcc.Upload(
                id=ids.BATCH_UPLOAD,
                children=html.Div(["Drop many images, or a .zip of them, here, or ", html.A("click to choose them")]),
                className="upload", multiple=True, accept="image/*,.tif,.tiff,.txt,.zip",
                max_size=config.MAX_BATCH_BYTES,
            ),
            html.Div(limit, className="hint"),
            html.Div([
                html.Label("Samples from the file names (a regular expression; its first group names the sample)",
                           className="field-label"),
                dcc.Input(id=ids.SAMPLE_PATTERN, type="text", placeholder=r"(.*)_\d+$  (empty: one sample)",
                          debounce=True),
                html.Button("Group", id=ids.GROUP_BUTTON, n_clicks=0, className="button"),
                html.Button("Try the samples demo", id=ids.BATCH_DEMO_BUTTON, n_clicks=0, className="button"),
                html.Span(" Two synthetic samples of three TEM images each, with known, different sizes.",
                          className="hint"),
            ], className="controls"),
            html.Div(id=ids.BATCH_ALERT, role="alert", className="alert"),
            html.Ul(id=ids.BATCH_NOTES, className="notes"),
            html.Div([html.Progress(id=ids.BATCH_PROGRESS, value="0", max="1"),
                      html.Span(id=ids.BATCH_PROGRESS_TEXT, role="status", className="hint")],
                     className="batch-progress"),
            dcc.Interval(id=ids.BATCH_POLL, interval=POLL_INTERVAL_MS, disabled=True),
            html.H4("Images"),
            html.Div(id=ids.IMAGE_TABLE, className="image-table"),
            html.H4("Pooled sample"),
            html.Div([html.Label("Sample", className="field-label"),
                      dcc.Dropdown(id=ids.POOLED_SAMPLE, clearable=False, options=[])], className="field"),
            html.Div(id=ids.POOLED_HINT, className="hint"),
            html.Div([dcc.Graph(id=ids.POOLED_HISTOGRAM, className="histogram", config={"displaylogo": False}),
                      html.Div(id=ids.POOLED_STATS, className="stats")], className="histogram-row"),
            teach_section(),
            html.H4("Samples compared (ECD)"),
            dcc.Graph(id=ids.COMPARE_FIGURE, config={"displaylogo": False}),
            html.Div(id=ids.COMPARE_TABLE, className="stats"),
            html.Div(id=ids.COMPARE_TESTS),
            html.Button("All results of the batch (.zip)", id=ids.DOWNLOAD_BATCH_BUTTON, n_clicks=0,
                        className="button"),
            dcc.Download(id=ids.BATCH_DOWNLOAD),
            dcc.Store(id=ids.STORE_BATCH, storage_type="session"),
            dcc.Store(id=ids.STORE_BATCH_REVISION),
        ],
        className="panel samples",
    )


def teach_section() -> html.Div:
    """Teach the model on my corrections: the button, progress, Cancel, the before/after view with Keep and
    Discard, the model in use, and its download and upload."""
    hidden = {"display": "none"}
    return html.Div([
        html.H4("Teach the model on my corrections"),
        html.Div("Fine-tunes a copy of the U-Net on the corrected images of the sample chosen above: only the "
                 "region your corrections changed counts (and a few pixels around it), or the whole image once "
                 "you mark it fully checked. Then the sample's other images are analysed again with it.",
                 className="hint"),
        html.Div([
            html.Button("Teach the model on my corrections", id=ids.TEACH_BUTTON, n_clicks=0, className="button"),
            html.Button("Cancel", id=ids.TEACH_CANCEL, n_clicks=0, className="button", style=hidden),
            html.Button("Keep the tuned model", id=ids.TEACH_KEEP, n_clicks=0, className="button", style=hidden),
            html.Button("Discard it", id=ids.TEACH_DISCARD, n_clicks=0, className="button", style=hidden),
        ], className="controls"),
        html.Div(id=ids.TEACH_ALERT, role="alert", className="alert"),
        html.Div([html.Progress(id=ids.TEACH_PROGRESS, value="0", max="1"),
                  html.Span(id=ids.TEACH_TEXT, role="status", className="hint")], className="batch-progress"),
        dcc.Interval(id=ids.TEACH_POLL, interval=POLL_INTERVAL_MS, disabled=True),
        html.Div(id=ids.TEACH_TABLE),
        html.Div([dcc.Graph(id=ids.TEACH_OVERLAY_BEFORE, config={"displaylogo": False}, style=hidden),
                  dcc.Graph(id=ids.TEACH_OVERLAY_AFTER, config={"displaylogo": False}, style=hidden)],
                 className="histogram-row"),
        html.Div(id=ids.MODEL_IN_USE, className="hint"),
        html.Div([
            html.Button("Download the tuned model (.zip)", id=ids.MODEL_DOWNLOAD_BUTTON, n_clicks=0,
                        className="button"),
            dcc.Download(id=ids.MODEL_DOWNLOAD),
            dcc.Upload(id=ids.MODEL_UPLOAD, children=html.Div(["Use a model .zip from an earlier session: drop it "
                                                                "here, or ", html.A("choose it")]),
                       className="upload", multiple=False, accept=".zip"),
        ], className="controls"),
    ], className="teach")


def before_after_table(rows: Sequence[dict[str, Any]]) -> html.Table | str:
    """Per image analysed again with the tuned model: particles and ECD D50 before -> after."""
    if not rows:
        return ""
    head = html.Tr([html.Th(text) for text in ("Image", "Particles before", "Particles after", "ECD D50 before",
                                               "ECD D50 after")])
    body = [html.Tr([html.Td(row["name"]), html.Td(str(row["before"]), className="count-before"),
                     html.Td(str(row["after"]), className="count-after"), html.Td(row["d50_before"]),
                     html.Td(row["d50_after"])]) for row in rows]
    return html.Table([html.Thead(head), html.Tbody(body)], className="before-after")


_STATUS = {"queued": "waiting", "done": "done", "failed": "failed"}


def image_table(rows: Sequence[dict[str, Any]]) -> html.Table:
    """The batch's images: sample (editable), status, particles detected, D50, flags, open and exclude buttons."""
    head = html.Tr([html.Th(text) for text in ("Image", "Sample", "Status", "Particles", "ECD D50",
                                               "Quality flags", "", "Segmented by")])
    body = []
    for row in rows:
        index = row["index"]
        done = row["status"] == "done"
        status = _STATUS.get(row["status"], row["status"]) + (" (corrected)" if row["corrected"] else "")
        buttons = [] if not done else [
            html.Button("Open", id={"type": ids.OPEN_IMAGE, "index": index}, className="button small"),
            html.Button("Include" if row["excluded"] else "Exclude", id={"type": ids.EXCLUDE_IMAGE, "index": index},
                        className="button small"),
            html.Button("Fully checked \u2713" if row.get("checked") else "Mark fully checked",
                        id={"type": ids.CHECK_IMAGE, "index": index}, className="button small",
                        title="Every particle of this image is right: teach on the whole image, not only "
                              "the corrected region"),
        ]
        body.append(html.Tr([
            html.Td(row["name"], className="image-name"),
            html.Td(dcc.Input(id={"type": ids.IMAGE_SAMPLE, "index": index}, value=row["sample"], type="text",
                              debounce=True, className="short-input")),
            html.Td([status, *([html.Div(row["error"], className="hint")] if row["error"] else [])]),
            html.Td("" if row["n_particles"] is None else str(row["n_particles"]), className="count"),
            html.Td(row["d50"]),
            html.Td(html.Ul([html.Li(flag) for flag in row["flags"]]) if row["flags"] else ""),
            html.Td(buttons),
            html.Td(row.get("segmenter", ""), className="segmenter"),
        ], className="excluded" if row["excluded"] else None))
    return html.Table([html.Thead(head), html.Tbody(body)])


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _with_ci(row: dict[str, Any], key: str) -> str:
    low, high = row.get(f"{key}_ci95_low"), row.get(f"{key}_ci95_high")
    return f"{_number(row.get(key))} ({_number(low)} – {_number(high)})"


def comparison_table(sample_rows: Sequence[dict[str, Any]]) -> html.Table:
    """Per sample: images, particles, D10, D50, D90, geometric mean and GSD, each with its 95% CI."""
    head = html.Tr([html.Th(text) for text in ("Sample", "Images", "Particles", "D10 (95% CI)", "D50 (95% CI)",
                                               "D90 (95% CI)", "Geometric mean (95% CI)", "GSD (95% CI)", "Note")])
    body = []
    for row in sample_rows:
        unit = row.get("unit") or ""
        cells = [row["sample"], str(row.get("n_images", "")), str(row.get("n_particles", 0))]
        if unit:
            cells += [_with_ci(row, f"{key}_{unit}") + f" {unit}" for key in ("d10", "d50", "d90", "geo_mean")]
            cells.append(_with_ci(row, "gsd"))
        else:
            cells += ["–"] * 5
        cells.append(row.get("note") or "")
        body.append(html.Tr([html.Td(cell) for cell in cells], className="sample-row"))
    return html.Table([html.Thead(head), html.Tbody(body)])


def tests_list(comparison_rows: Sequence[dict[str, Any]], note: str = "") -> html.Div:
    """For each pair of samples: the D50 ratio with its CI, the test p-values and the sentence."""
    items = [html.Li([
        html.Div(row["summary"], className="comparison-sentence"),
        html.Div(f"{row['sample_b']} / {row['sample_a']}: D50 ratio {_number(row['d50_ratio_b_over_a'])} "
                 f"(95% CI {_number(row['d50_ratio_ci95_low'])} – {_number(row['d50_ratio_ci95_high'])}); "
                 f"Kolmogorov–Smirnov p = {_number(row['ks_pvalue'])}; "
                 f"Anderson–Darling p = {_number(row['anderson_darling_pvalue'])}", className="hint"),
    ]) for row in comparison_rows]
    return html.Div([html.Ul(items), *([html.Div(note, className="hint")] if note else [])])
