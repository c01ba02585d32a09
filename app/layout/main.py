"""The page: upload, settings, histogram and statistics, overlay, paint canvas, downloads."""

from __future__ import annotations

from dash import dcc, html
from dash_canvas import DashCanvas

from app import config
from app.analysis.stats import EDGE_MODES
from app.analysis.strokes import TOOL_COLOURS
from app.analysis.view import QUANTITIES
from app.layout import ids
from app.layout.classes import classes_panel
from app.layout.samples import samples_panel
from model.registry import SEGMENTER_CHOICES

#: Display width of the paint canvas; strokes are mapped back to full-resolution image pixels.
CANVAS_WIDTH_PX = 640
#: Widest brush of the canvas slider, in canvas display pixels (see ``MAX_BRUSH_PX`` in app.analysis.limits).
CANVAS_BRUSH_MAX_PX = 40
#: Canvas buttons that would move or scale the drawing (only the pencil, its undo and Save are shown).
CANVAS_HIDDEN_BUTTONS = ["zoom", "pan", "line", "rectangle", "select"]

QUANTITY_OPTIONS = [
    {"label": f"{spec.label} ({spec.abbreviation})" if spec.abbreviation else spec.label, "value": key}
    for key, spec in QUANTITIES.items()
]
BASIS_OPTIONS = [
    {"label": "by number", "value": "number"},
    {"label": "by area", "value": "area"},
    {"label": "by volume", "value": "volume"},
]
_EDGE_LABELS = {"miles-lantuejoul": "Miles–Lantuéjoul correction"}
EDGE_OPTIONS = [{"label": _EDGE_LABELS.get(mode, mode), "value": mode} for mode in EDGE_MODES]
DATA_BAR_OPTIONS = [
    {"label": "detect", "value": "auto"},
    {"label": "none", "value": "off"},
    {"label": "rows:", "value": "manual"},
]
TOOL_OPTIONS = [
    {"label": "Draw (add particle)", "value": "draw"},
    {"label": "Remove (delete touched particles)", "value": "remove"},
    {"label": "Erase (clear pixels)", "value": "erase"},
]


def _field(label: str, control, hint: str | None = None) -> html.Div:
    children = [html.Label(label, className="field-label"), control]
    if hint:
        children.append(html.Div(hint, className="hint"))
    return html.Div(children, className="field")


def instructions() -> html.Details:
    """The instructions panel."""
    steps = [
        "Upload an SEM or TEM image (PNG, JPEG, TIFF or BMP) by clicking or dropping it on the upload area, "
        "or press “Try the demo”. For a JEOL or Hitachi image, drop the .txt file the microscope saved "
        "with it together with the image: its pixel size calibrates the image.",
        "The server segments the image at full resolution and measures every particle. Change a "
        "segmentation setting and the analysis reruns on the same image.",
        "Check the pixel size: it is read from the microscope's metadata or the scale bar when possible; "
        "type a value in nm/px to override it. Sizes are in nm when calibrated, in px otherwise.",
        "Read the histogram and the statistics; choose the quantity, the weighting, the bin width, how "
        "particles on the image edge count, and optional size and shape filters.",
        "Check the segmentation on the overlay (zoom with the mouse).",
        "Correct it on the paint canvas: pick Draw, Remove or Erase, paint, then press Save to apply. "
        "Undo and Redo step through the applied edits.",
        "Optionally, sort the particles into classes: type class names in “Particle classes”, choose one and "
        "click particles of it on the overlay; the histogram, statistics and CSV are then split by class.",
        "Download the per-particle CSV, the label image (16-bit PNG) or the summary CSV.",
    ]
    return html.Details(
        [html.Summary("How to use SAEMI"), html.Ol([html.Li(s) for s in steps])],
        className="panel instructions",
    )


def upload_panel() -> html.Div:
    """Upload area, demo button, file information and messages."""
    limit = (f"Up to {config.MAX_UPLOAD_BYTES / 1e6:.0f} MB and {config.MAX_PIXELS / 1e6:.0f} megapixels; "
             "PNG, JPEG, TIFF (8/16-bit, float) or BMP. A JEOL or Hitachi .txt file may be dropped together "
             "with the image for its pixel size.")
    return html.Div(
        [
            dcc.Upload(
                id=ids.UPLOAD,
                children=html.Div(["Drag and drop an image (and its JEOL/Hitachi .txt, if any) here, or ",
                                   html.A("click to choose the files")]),
                className="upload",
                multiple=True,
                accept="image/*,.tif,.tiff,.txt",
                max_size=config.MAX_UPLOAD_BYTES,  # per file; the browser does not send a larger one
            ),
            html.Div(limit, className="hint"),
            html.Div(
                [
                    html.Button("Try the demo", id=ids.DEMO_BUTTON, n_clicks=0, className="button"),
                    html.Span(
                        " The demo is a synthetic SEM image rendered by SAEMI's own generator, "
                        "with a known pixel size.",
                        className="hint",
                    ),
                ],
                className="demo-row",
            ),
            html.Div(
                [html.Span(className="spinner"),
                 "Segmenting and measuring at full resolution; this takes about a second per megapixel "
                 "on this server."],
                id=ids.BUSY, role="status", className="busy", style={"display": "none"},
            ),
            html.Div(id=ids.FILE_INFO, className="file-info"),
            html.Div(id=ids.ALERT, role="alert", className="alert"),
            html.Ul(id=ids.NOTES, className="notes"),
        ],
        className="panel",
    )


def settings_panel(default_segmenter: str) -> html.Div:
    """Segmentation and calibration settings."""
    return html.Div(
        [
            html.H3("Segmentation"),
            _field("Segmenter", dcc.Dropdown(
                id=ids.SEGMENTER, options=[{"label": lab, "value": val} for val, lab in SEGMENTER_CHOICES],
                value=default_segmenter, clearable=False)),
            # No ``min``: dcc.Input sends None for a number outside its range, which would silently mean
            # "automatic"; without it a 0 or a negative value reaches the server and gets a sentence.
            _field("Typical particle diameter (px)",
                   dcc.Input(id=ids.DIAMETER_PX, type="number", placeholder="auto", debounce=True),
                   "Optional, used by the U-Net only: leave empty to let it look at every particle size at once."),
            _field("Model views",
                   dcc.Checklist(id=ids.VIEWS, options=[{"label": " Look twice", "value": "twice"}], value=[]),
                   "U-Net only: also shows it the image turned by 180° and averages the two. About twice "
                   "as slow; slightly more accurate on the validation images."),
            dcc.Checklist(id=ids.SPLIT_TOUCHING, options=[{"label": " Split touching particles", "value": "split"}],
                          value=["split"]),
            _field("Minimum area (px)", dcc.Input(id=ids.MIN_AREA, type="number", min=0, step=1,
                                                 value=config.DEFAULT_MIN_AREA_PX, debounce=True)),
            _field("Data bar (kept out of the analysis)", html.Div([
                dcc.RadioItems(id=ids.DATA_BAR_MODE, options=DATA_BAR_OPTIONS, value="auto", inline=True),
                dcc.Input(id=ids.DATA_BAR_ROWS, type="text", placeholder="700:768", debounce=True,
                          className="short-input"),
            ])),
            html.H3("Calibration"),
            _field("Pixel size override (nm/px)",
                   dcc.Input(id=ids.NM_PER_PX, type="number", min=0, placeholder="from the image", debounce=True),
                   "Leave empty to use the metadata or the scale bar."),
            _field("Scale-bar label", dcc.Input(id=ids.SCALE_BAR_LABEL, type="text", placeholder="e.g. 200 nm",
                                                debounce=True),
                   "Only needed when a scale bar is found but its label cannot be read."),
            html.Div(id=ids.CALIBRATION_INFO, className="calibration-info"),
        ],
        className="panel settings",
    )


def histogram_panel() -> html.Div:
    """Histogram controls, the histogram and the statistics table."""
    controls = html.Div(
        [
            _field("Quantity", dcc.Dropdown(id=ids.QUANTITY, options=QUANTITY_OPTIONS, value="ecd", clearable=False)),
            _field("Weighting", dcc.RadioItems(id=ids.BASIS, options=BASIS_OPTIONS, value="number", inline=True)),
            _field("Bin width", dcc.Input(id=ids.BIN_WIDTH, type="number", min=0, placeholder="auto",
                                          debounce=True), None),
            html.Div(id=ids.BIN_WIDTH_HINT, className="hint"),
            _field("Particles on the image edge",
                   dcc.RadioItems(id=ids.EDGE_MODE, options=EDGE_OPTIONS, value="exclude", inline=True)),
            _field("Filters: ECD from / to (table unit), minimum circularity", html.Div([
                dcc.Input(id=ids.MIN_ECD, type="number", min=0, placeholder="min ECD", debounce=True,
                          className="short-input"),
                dcc.Input(id=ids.MAX_ECD, type="number", min=0, placeholder="max ECD", debounce=True,
                          className="short-input"),
                dcc.Input(id=ids.MIN_CIRCULARITY, type="number", min=0, max=1, step=0.05,
                          placeholder="min circ.", debounce=True, className="short-input"),
            ])),
            html.Div(id=ids.FILTER_INFO, className="hint"),
        ],
        className="controls",
    )
    return html.Div(
        [
            html.H3("Size distribution"),
            controls,
            html.Div(
                [
                    dcc.Graph(id=ids.HISTOGRAM, className="histogram", config={"displaylogo": False}),
                    html.Div(id=ids.STATS_TABLE, className="stats"),
                ],
                className="histogram-row",
            ),
        ],
        className="panel",
    )


def overlay_panel() -> html.Div:
    """The segmentation over the image."""
    return html.Div(
        [
            html.H3("Segmentation over the image"),
            html.Div([
                _field("Opacity", dcc.Slider(id=ids.OVERLAY_OPACITY, min=0, max=1, step=0.05, value=0.7,
                                             marks={0: "0", 0.5: "0.5", 1: "1"})),
                _field("Show", dcc.RadioItems(id=ids.OVERLAY_MODE, inline=True, value="outline",
                                              options=[{"label": "outlines", "value": "outline"},
                                                       {"label": "filled", "value": "fill"},
                                                       {"label": "by class", "value": "class"}])),
                _field("Mouse drag", dcc.RadioItems(id=ids.LINE_MODE, inline=True, value="zoom",
                                                    options=[{"label": "zoom", "value": "zoom"},
                                                             {"label": "Measure a length", "value": "drawline"}])),
                _field("Real length of the line", dcc.Input(id=ids.LINE_LENGTH, type="text", debounce=True,
                                                            placeholder="e.g. 500 nm", className="short-input"),
                       "Draw a line over the scale bar, type its length: it sets nm/px (source scalebar:user) "
                       "unless a pixel size override is typed, which wins."),
            ], className="controls"),
            dcc.Graph(id=ids.OVERLAY, className="overlay", config={"scrollZoom": True, "displaylogo": False}),
        ],
        className="panel",
    )


def canvas_panel() -> html.Div:
    """The paint canvas with its tools, undo and redo."""
    return html.Div(
        [
            html.H3("Correct the segmentation"),
            html.Div(
                "Choose a tool and paint on the mask, then press Save to apply the strokes. Draw adds the "
                "painted pixels as a particle; Remove deletes every particle the stroke touches; Erase clears "
                "the painted pixels (and can cut a particle in two).",
                className="hint",
            ),
            html.Div([
                _field("Tool", dcc.RadioItems(id=ids.CANVAS_TOOL, options=TOOL_OPTIONS, value="draw", inline=True)),
                _field("Brush width (canvas px)",
                       dcc.Slider(id=ids.CANVAS_BRUSH, min=1, max=CANVAS_BRUSH_MAX_PX, step=1, value=8,
                                  marks={1: "1", 20: "20", 40: "40"})),
                _field("Mask colours", dcc.RadioItems(id=ids.CANVAS_COLOUR, inline=True, value="colour",
                                                      options=[{"label": "one colour per particle", "value": "colour"},
                                                               {"label": "black and white", "value": "bw"}])),
                html.Button("Undo", id=ids.UNDO, n_clicks=0, className="button"),
                html.Button("Redo", id=ids.REDO, n_clicks=0, className="button"),
                html.Span(id=ids.EDIT_INFO, className="hint"),
            ], className="controls"),
            html.Div(
                DashCanvas(id=ids.CANVAS, width=CANVAS_WIDTH_PX, lineWidth=8, lineColor=TOOL_COLOURS["draw"],
                           tool="pencil", hide_buttons=CANVAS_HIDDEN_BUTTONS, goButtonTitle="Save"),
                className="canvas-box",
            ),
        ],
        className="panel",
    )


def download_panel() -> html.Div:
    """Download buttons."""
    return html.Div(
        [
            html.H3("Download"),
            html.Button("Particles (CSV)", id=ids.DOWNLOAD_CSV_BUTTON, n_clicks=0, className="button"),
            html.Button("Label image (16-bit PNG)", id=ids.DOWNLOAD_LABELS_BUTTON, n_clicks=0, className="button"),
            html.Button("Summary (CSV)", id=ids.DOWNLOAD_SUMMARY_BUTTON, n_clicks=0, className="button"),
            dcc.Download(id=ids.DOWNLOAD),
        ],
        className="panel",
    )


def build_layout(default_segmenter: str, notice: str | None = None) -> html.Div:
    """The whole page; per-session state lives only in the ``dcc.Store`` components at the end.

    ``notice`` is a start-up problem (such as missing model weights) shown at the top of the page.
    """
    results = dcc.Loading(
        id=ids.RESULTS_LOADING, type="circle",
        children=html.Div([histogram_panel(), overlay_panel()]),
    )
    return html.Div(
        [
            html.Header([html.H1("SAEMI"), html.Span("particle sizes from electron-microscopy images",
                                                     className="subtitle")]),
            html.Div(notice or "", id=ids.STARTUP_NOTICE, role="alert", className="alert"),
            instructions(),
            html.Div([upload_panel(), settings_panel(default_segmenter)], className="top-row"),
            results,
            classes_panel(),
            canvas_panel(),
            download_panel(),
            samples_panel(),
            dcc.Store(id=ids.STORE_SOURCE),
            dcc.Store(id=ids.STORE_ANALYSIS),
            dcc.Store(id=ids.STORE_GRAY),
            dcc.Store(id=ids.STORE_EDITS),
            dcc.Store(id=ids.STORE_RESULTS),
            dcc.Store(id=ids.STORE_CLASSES),
        ],
        className="page",
    )
