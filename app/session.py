"""Session glue between the Dash callbacks and the analysis core.

Every function here is plain Python (no Dash import): it takes the JSON-ready payloads that live in the
browser's ``dcc.Store`` components, calls the core, and returns new payloads or the inputs of a figure.
Callbacks stay short and these functions are tested without a browser.

Stores
------
``analysis``
    What one segmentation run produced: the base label image (16-bit PNG, base64), the particle table
    measured on it, the calibration found without the user's override, the data bar, the settings and
    provenance fields. Replaced when the image or a segmentation setting changes.
``gray``
    The image as an 8-bit PNG (base64), for the overlay and for re-measuring mean intensities.
``edits``
    ``{"batches": [[stroke dict, ...], ...], "cursor": n, "version": v}``: the canvas saves applied so
    far; the current labels are the base labels with ``batches[:cursor]`` replayed. Undo and redo move
    the cursor; ``version`` counts every change so the canvas image is always refreshed.
``results``
    The current labels and particle table after edits and the pixel-size override.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from PIL import Image, PngImagePlugin

from app import config
from app.analysis import calibration as cal
from app.analysis import encoding, imageio, linecal, pipeline, report, stats, strokes
from app.analysis.databar import DataBar
from app.analysis.errors import ModelLoadError, SaemiInputError
from app.figures import histogram_figure, label_colour_image, overlay_figure
from app.segmenters import get_segmenter

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Shown when something unexpected fails; the details go to the server log only.
GENERIC_ERROR = "Something went wrong on the server while handling that request; please try again."
#: The demo image offered by the "Try the demo" button.
DEMO_IMAGE = config.DEMO_DIR / "demo_sem.png"

#: Quantities the histogram can show: key -> (label, pixel column, nm column, unit kind).
QUANTITIES: dict[str, tuple[str, str, str | None, str]] = {
    "ecd": ("Equivalent circular diameter", "ecd_px", "ecd_nm", "length"),
    "area": ("Area", "area_px", "area_nm2", "area"),
    "feret_max": ("Maximum Feret diameter", "feret_max_px", "feret_max_nm", "length"),
    "feret_min": ("Minimum Feret diameter", "feret_min_px", "feret_min_nm", "length"),
    "aspect_ratio": ("Aspect ratio", "aspect_ratio", None, "none"),
    "circularity": ("Circularity", "circularity", None, "none"),
}
#: What a mouse drag on the overlay does: zoom, or draw the calibration line.
DRAG_MODES = ("zoom", "drawline")
#: Colour of the calibration line on the overlay.
LINE_COLOUR = "#00e5ff"
_UNITS = {("length", True): "nm", ("length", False): "px", ("area", True): "nm²", ("area", False): "px²"}


@dataclass
class Outcome:
    """Result of :func:`guarded`: a value, or a message for the user (never both)."""

    value: Any = None
    message: str | None = None


def guarded(func: Callable[..., T], *args: Any, **kwargs: Any) -> Outcome:
    """Call ``func`` and turn failures into a sentence for the user.

    A :class:`SaemiInputError` keeps its own sentence, a :class:`ModelLoadError` too (with advice to use
    the classical segmenter); anything else is logged with its traceback and replaced by
    :data:`GENERIC_ERROR`, so the server keeps serving.
    """
    try:
        return Outcome(value=func(*args, **kwargs))
    except SaemiInputError as exc:
        return Outcome(message=str(exc))
    except ModelLoadError as exc:
        logger.exception("The segmentation model could not be loaded")
        return Outcome(message=f"{exc} Choose the classical segmenter meanwhile.")
    except Exception:  # noqa: BLE001 - last line of defence for the server; logged in full
        logger.exception("Unexpected failure in %s", getattr(func, "__name__", func))
        return Outcome(message=GENERIC_ERROR)


# --------------------------------------------------------------------------------------------- analysis
def settings_to_params(settings: Mapping[str, Any]) -> pipeline.AnalysisParams:
    """Analysis parameters from the UI's settings (the manual pixel size is applied later)."""
    data_bar = settings.get("data_bar_mode") or "auto"
    if data_bar == "manual":
        rows = str(settings.get("data_bar_rows") or "").strip()
        if not rows:
            raise SaemiInputError("Type the data-bar rows as 'first:last' (for example '700:768').")
        data_bar = rows
    label = str(settings.get("scale_bar_label") or "").strip() or None
    return pipeline.AnalysisParams.from_dict(
        {
            "segmenter": settings.get("segmenter") or "classical",
            "split_touching": bool(settings.get("split_touching", True)),
            "min_area_px": settings.get("min_area_px") if settings.get("min_area_px") is not None else 0,
            "data_bar": data_bar,
            "scale_bar_label": label,
            "diameter_px": settings.get("diameter_px"),
            "views": settings.get("views"),
        }
    )


def start_session(data: bytes, filename: str, settings: Mapping[str, Any],
                  sidecar_text: str | None = None) -> dict[str, dict]:
    """Decode and analyse an uploaded image.

    Parameters
    ----------
    data : bytes
        The file content.
    filename : str
        The file's name.
    settings : mapping
        ``segmenter``, ``split_touching``, ``min_area_px``, ``data_bar_mode`` (auto, off, manual),
        ``data_bar_rows``, ``scale_bar_label``, ``diameter_px`` (None: the U-Net estimates it),
        ``views`` (None: the model's default).
    sidecar_text : str, optional
        The JEOL or Hitachi ``.txt`` file uploaded with the image; its pixel size calibrates the image.

    Returns
    -------
    dict
        ``{"analysis": ..., "gray": ..., "edits": ...}``, the new store payloads.

    Raises
    ------
    SaemiInputError
        For a file that cannot be analysed.
    """
    params = settings_to_params(settings)
    decoded = imageio.decode_image(data, filename)
    metadata = cal.read_metadata_calibration(data, filename, sidecar_text)
    segmenter = get_segmenter(params.segmenter, params.diameter_px, params.views)
    result = pipeline.analyze_decoded(decoded, params, segmenter=segmenter, metadata_calibration=metadata)
    bar = result.data_bar
    notes = list(result.notes)
    if sidecar_text is not None and metadata.nm_per_px is None:
        notes.append("The .txt file uploaded with the image holds no JEOL or Hitachi pixel size; it was ignored.")
    if bar is not None:
        notes.append(f"Data bar in rows {bar.y0}:{bar.y1} is kept out of the analysis (change it under Data bar).")
    analysis = {
        "labels_png": encoding.labels_to_png_b64(result.label_image),
        "particles": table_to_json(result.particles),
        "shape": list(decoded.shape),
        "frame": list(result.frame),
        "filename": decoded.filename,
        "sha256": decoded.sha256,
        "source_dtype": decoded.source_dtype,
        "mode": decoded.mode,
        "segmenter": f"{result.segmenter_name} {result.segmenter_version}",
        "params": params.to_dict(),
        "calibration": calibration_to_dict(result.calibration),
        "data_bar": None if bar is None else [int(bar.y0), int(bar.y1)],
        "notes": notes,
        "analysed_at": result.analysed_at,
    }
    return {"analysis": analysis, "gray": {"png": encoding.gray_to_png_b64(decoded.gray)}, "edits": new_edits()}


@dataclass(frozen=True)
class UploadFiles:
    """The files of one upload: the image's data URL and name, and the sidecar's data URL (if any)."""

    image_url: str
    image_name: str
    sidecar_url: str | None = None


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def is_sidecar_name(filename: str | None) -> bool:
    """Whether an uploaded file is a microscope sidecar text (its name ends with ``.txt``)."""
    return str(filename or "").lower().endswith(".txt")


def image_filename(filenames: str | list[str] | None) -> str:
    """Name of the image among the uploaded file names (the first that is not a ``.txt``)."""
    names = [str(name) for name in _as_list(filenames)]
    return next((name for name in names if not is_sidecar_name(name)), "upload")


def split_upload(contents: str | list[str] | None, filenames: str | list[str] | None) -> UploadFiles:
    """Tell the image from the JEOL/Hitachi sidecar among the files of a ``dcc.Upload`` (``multiple=True``).

    Parameters
    ----------
    contents : str or list of str
        The data URL(s) of the uploaded file(s).
    filenames : str or list of str
        Their names, in the same order.

    Returns
    -------
    UploadFiles

    Raises
    ------
    SaemiInputError
        When no image, more than one image or more than one ``.txt`` file was uploaded.
    """
    urls = _as_list(contents)
    names = [str(name) for name in _as_list(filenames)]
    names += ["upload"] * (len(urls) - len(names))
    images = [(url, name) for url, name in zip(urls, names) if not is_sidecar_name(name)]
    sidecars = [(url, name) for url, name in zip(urls, names) if is_sidecar_name(name)]
    if len(images) > 1:
        raise SaemiInputError(
            f"{len(images)} images were uploaded together ({', '.join(name for _, name in images)}); upload one "
            "image at a time, with at most its JEOL or Hitachi .txt file."
        )
    if not images:
        raise SaemiInputError("Only a .txt file was uploaded; drop the image together with its .txt file.")
    if len(sidecars) > 1:
        raise SaemiInputError(
            f"{len(sidecars)} .txt files were uploaded ({', '.join(name for _, name in sidecars)}); drop only the "
            "one the microscope saved with the image."
        )
    image_url, image_name = images[0]
    return UploadFiles(image_url, image_name, sidecars[0][0] if sidecars else None)


def _sidecar_text(data: bytes) -> str:
    """Text of a sidecar file: UTF-8, or Latin-1 for the bytes UTF-8 cannot read (older JEOL files)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def start_from_upload(contents: str | list[str], filename: str | list[str] | None,
                      settings: Mapping[str, Any]) -> dict[str, dict]:
    """:func:`start_session` for the ``contents`` data URL(s) of a ``dcc.Upload``.

    The upload may hold the image and a JEOL/Hitachi sidecar ``.txt`` (see :func:`split_upload`).
    """
    files = split_upload(contents, filename)
    sidecar = None if files.sidecar_url is None else _sidecar_text(imageio.decode_data_url(files.sidecar_url))
    return start_session(imageio.decode_data_url(files.image_url), files.image_name, settings, sidecar)


def start_demo(settings: Mapping[str, Any]) -> dict[str, dict]:
    """:func:`start_session` on the bundled synthetic demo image."""
    if not DEMO_IMAGE.is_file():
        raise SaemiInputError("The demo image is not installed on this server.")
    return start_session(DEMO_IMAGE.read_bytes(), DEMO_IMAGE.name, settings)


def choose_source(trigger: str | None, filename: str | list[str] | None,
                  source: Mapping[str, Any] | None) -> dict | None:
    """Which image to analyse: a new upload, the demo, or (for a settings change) the current one.

    ``trigger`` is ``"upload"``, ``"demo"`` or anything else for a settings change; ``filename`` is the
    upload's file name(s). Returns None when there is no image yet.
    """
    if trigger == "upload":
        return {"kind": "upload", "filename": image_filename(filename)}
    if trigger == "demo":
        return {"kind": "demo", "filename": DEMO_IMAGE.name}
    return dict(source) if source else None


def run_analysis(source: Mapping[str, Any], contents: str | list[str] | None, settings: Mapping[str, Any],
                 filenames: str | list[str] | None = None) -> dict[str, dict]:
    """Analyse the image that ``source`` names.

    For an upload, ``contents`` and ``filenames`` are the ``dcc.Upload``'s data URL(s) and file name(s)
    (the image and, optionally, its sidecar ``.txt``); without ``filenames`` the source's name is used.
    """
    if source["kind"] == "demo":
        return start_demo(settings)
    if not contents:
        raise SaemiInputError("The uploaded file is no longer available; please upload it again.")
    return start_from_upload(contents, filenames or source.get("filename", "upload"), settings)


def keep_measured_line(analysis: Mapping[str, Any], previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The new analysis with the line calibration of the previous one, when both are of the same image.

    A segmentation setting change rebuilds the analysis payload; the line drawn on the image (and the
    length typed for it) still hold for the same pixels, identified by the file's SHA-256.
    """
    measured = (previous or {}).get("measured_line")
    if not measured or previous.get("sha256") != analysis.get("sha256"):
        return dict(analysis)
    return {**analysis, "measured_line": measured}


def file_info(analysis: Mapping[str, Any]) -> str:
    """One line naming the analysed file and its size in pixels."""
    rows, cols = analysis["shape"]
    return f"{analysis['filename']}: {cols} × {rows} px ({analysis['source_dtype']}, {analysis['mode']})"


def calibration_to_dict(calibration: cal.Calibration) -> dict[str, Any]:
    """JSON form of a :class:`~app.analysis.calibration.Calibration`."""
    return {"nm_per_px": calibration.nm_per_px, "source": calibration.source, "detail": calibration.detail}


def calibration_from_dict(data: Mapping[str, Any]) -> cal.Calibration:
    """Inverse of :func:`calibration_to_dict`."""
    return cal.Calibration(data.get("nm_per_px"), data.get("source", "none"), data.get("detail", ""))


def table_to_json(table: pd.DataFrame) -> str:
    """Particle table as compact JSON (pandas ``split`` orientation)."""
    return table.to_json(orient="split", index=False, double_precision=10)


def table_from_json(text: str) -> pd.DataFrame:
    """Inverse of :func:`table_to_json`; an empty table keeps its columns."""
    table = pd.read_json(io.StringIO(text), orient="split", dtype=False)
    if "touches_edge" in table.columns:
        table["touches_edge"] = table["touches_edge"].astype(bool)
    return table


def _data_bar(analysis: Mapping[str, Any]) -> DataBar | None:
    bar = analysis.get("data_bar")
    return None if bar is None else DataBar(int(bar[0]), int(bar[1]))


# ------------------------------------------------------------------------------------------------ edits
def new_edits() -> dict[str, Any]:
    """An empty edit history."""
    return {"batches": [], "cursor": 0, "version": 0}


def apply_canvas(edits: Mapping[str, Any], analysis: Mapping[str, Any], json_data: str,
                 canvas_width_px: float) -> dict[str, Any]:
    """Add the strokes of one canvas save to the edit history (dropping any undone edits).

    Raises
    ------
    SaemiInputError
        For malformed canvas data, or when nothing was drawn.
    """
    if not json_data:
        raise SaemiInputError("The canvas sent no drawing; paint a stroke, then press Save.")
    parsed = strokes.parse_canvas_json(json_data, tuple(analysis["shape"]), canvas_width_px)
    if not parsed:
        raise SaemiInputError("No strokes to apply: paint on the mask with a tool, then press Save.")
    cursor = int(edits.get("cursor", 0))
    batches = list(edits.get("batches", []))[:cursor] + [[s.to_dict() for s in parsed]]
    return {"batches": batches, "cursor": cursor + 1, "version": int(edits.get("version", 0)) + 1}


def undo(edits: Mapping[str, Any]) -> dict[str, Any]:
    """Step the edit cursor back by one applied save (no change at the start)."""
    cursor = max(int(edits.get("cursor", 0)) - 1, 0)
    return {**edits, "cursor": cursor, "version": int(edits.get("version", 0)) + 1}


def redo(edits: Mapping[str, Any]) -> dict[str, Any]:
    """Step the edit cursor forward by one undone save (no change at the end)."""
    cursor = min(int(edits.get("cursor", 0)) + 1, len(edits.get("batches", [])))
    return {**edits, "cursor": cursor, "version": int(edits.get("version", 0)) + 1}


def edit_info(edits: Mapping[str, Any]) -> str:
    """A short line on the edit history for the UI."""
    cursor, total = int(edits.get("cursor", 0)), len(edits.get("batches", []))
    return f"{cursor} edit(s) applied" + (f", {total - cursor} can be redone." if total > cursor else ".")


# ---------------------------------------------------------------------------------------------- results
def effective_calibration(analysis: Mapping[str, Any], nm_per_px: float | None) -> tuple[cal.Calibration, list[str]]:
    """The calibration in force: the user's value when given, else a drawn line, else the one found in the image.

    A message about an incomplete line measurement (see :func:`measure_line`) is added to the warnings.
    """
    found = calibration_from_dict(analysis["calibration"])
    measured = analysis.get("measured_line") or {}
    line = calibration_from_dict(measured["calibration"]) if measured.get("calibration") else None
    calibration, warnings = linecal.combine_calibrations(found, line, nm_per_px)
    return calibration, [*warnings, *([measured["message"]] if measured.get("message") else [])]


def compute_results(analysis: Mapping[str, Any], gray: Mapping[str, Any] | None,
                    edits: Mapping[str, Any] | None, nm_per_px: float | None) -> dict[str, Any]:
    """Current labels and particle table after the canvas edits and the pixel-size override.

    Without edits and without an override the analysis' own table is reused (nothing is re-measured).
    """
    edits = edits or new_edits()
    calibration, warnings = effective_calibration(analysis, nm_per_px)
    cursor = int(edits.get("cursor", 0))
    if cursor == 0 and nm_per_px is None and not (analysis.get("measured_line") or {}).get("calibration"):
        labels_png, particles = analysis["labels_png"], analysis["particles"]
    else:
        intensity = encoding.png_b64_to_gray(gray["png"]) if gray else None
        params = pipeline.AnalysisParams.from_dict(analysis["params"])
        labels, table = pipeline.remeasure(current_labels(analysis, edits), intensity, params, calibration,
                                           _data_bar(analysis))
        labels_png, particles = encoding.labels_to_png_b64(labels), table_to_json(table)
    return {
        "labels_png": labels_png,
        "particles": particles,
        "calibration": calibration_to_dict(calibration),
        "warnings": warnings,
        "n_edits": cursor,
        "version": int(edits.get("version", 0)),
    }


def current_labels(analysis: Mapping[str, Any], edits: Mapping[str, Any] | None) -> np.ndarray:
    """The base labels with the applied canvas edits replayed."""
    base = encoding.png_b64_to_labels(analysis["labels_png"])
    if not edits or not int(edits.get("cursor", 0)):
        return base
    return strokes.apply_edits(base, list(edits["batches"])[: int(edits["cursor"])])


def calibration_text(results: Mapping[str, Any]) -> list[str]:
    """Sentences on where the pixel size came from, and any disagreement."""
    calibration = results["calibration"]
    if calibration["nm_per_px"] is None:
        head = "Not calibrated: sizes are in pixels. Enter nm/px or a scale-bar label to calibrate."
    else:
        head = f"Pixel size {calibration['nm_per_px']:.4g} nm/px, source: {calibration['source']}."
    return [head, calibration["detail"], *results.get("warnings", [])]


def measure_line(analysis: Mapping[str, Any], relayout: Mapping[str, Any] | None,
                 length_text: str | None) -> dict[str, Any] | None:
    """The analysis payload with the line calibration updated from the overlay and the typed length.

    The line comes from ``relayout`` (the overlay's ``relayoutData``) when it carries one, else the line
    measured before is kept. ``analysis["measured_line"]`` becomes ``{"line_px", "length", "calibration",
    "message"}``: the calibration when both a line and a readable length are given, else a sentence saying
    what is missing. Returns None when nothing changed (a zoom, say), so the results are not recomputed.
    """
    previous = analysis.get("measured_line")
    line = linecal.line_from_relayout(relayout) or (tuple(previous["line_px"]) if previous and
                                                    previous.get("line_px") else None)
    text = (length_text or "").strip()
    if line is None and not text:
        measured = None
    else:
        outcome = guarded(linecal.line_calibration, line, text)
        measured = {"line_px": None if line is None else [float(value) for value in line], "length": text,
                    "calibration": None if outcome.message else calibration_to_dict(outcome.value),
                    "message": outcome.message}
    if measured == previous:
        return None
    return {**analysis, "measured_line": measured}


# ------------------------------------------------------------------------------------------------- view
@dataclass(frozen=True)
class ViewOptions:
    """What the histogram and statistics show; none of it changes the segmentation."""

    quantity: str = "ecd"
    basis: str = "number"
    bin_width: float | None = None
    edge_mode: str = "exclude"
    min_ecd: float | None = None
    max_ecd: float | None = None
    min_circularity: float | None = None


@dataclass
class HistogramView:
    """Everything the histogram figure and the statistics table need."""

    values: np.ndarray
    weights: np.ndarray | None
    bin_width: float
    label: str
    unit: str
    basis: str
    summary: dict
    n_detected: int
    n_edge: int
    removed: dict


def quantity_column(quantity: str, calibrated: bool) -> tuple[str, str, str]:
    """(column, label, unit) of a histogram quantity; nm units when calibrated, px otherwise."""
    if quantity not in QUANTITIES:
        raise SaemiInputError(f"Unknown quantity '{quantity}'; choose one of {', '.join(QUANTITIES)}.")
    label, px_col, nm_col, kind = QUANTITIES[quantity]
    column = nm_col if calibrated and nm_col else px_col
    return column, label, _UNITS.get((kind, calibrated), "")


def nice_bin_width(values: np.ndarray, target_bins: int = 25) -> float:
    """A round bin width (1, 2 or 5 times a power of ten) giving about ``target_bins`` bins."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 1.0
    # nearly equal values would otherwise get absurdly narrow bins: span at least 20% of the median
    span = max(float(np.percentile(finite, 99) - finite.min()), 0.2 * abs(float(np.median(finite)))) or 1.0
    raw = span / target_bins
    power = 10.0 ** math.floor(math.log10(raw))
    return next(step * power for step in (1.0, 2.0, 5.0, 10.0) if step * power >= raw)


def view_results(results: Mapping[str, Any], analysis: Mapping[str, Any], view: ViewOptions) -> HistogramView:
    """Select, filter and weight the particles for the histogram and statistics.

    Edge particles are treated as ``view.edge_mode`` says; the size/shape filters apply to ECD (in the
    unit of the table: nm when calibrated) and circularity; the basis weights by ECD to the power 0, 2, 3.
    """
    table = table_from_json(results["particles"])
    calibrated = results["calibration"]["nm_per_px"] is not None
    column, label, unit = quantity_column(view.quantity, calibrated)
    ecd_col = "ecd_nm" if calibrated else "ecd_px"
    selected, edge_weights = stats.edge_selection(
        table, view.edge_mode, image_shape=tuple(analysis["shape"]), frame=tuple(analysis["frame"])
    )
    if edge_weights is not None:
        selected = selected.assign(_edge_weight=edge_weights)
    kept, removed = stats.apply_filters(selected, min_ecd=view.min_ecd, max_ecd=view.max_ecd,
                                        min_circularity=view.min_circularity, ecd_col=ecd_col)
    weights = stats.distribution_weights(kept[ecd_col].to_numpy(dtype=float), view.basis)
    if "_edge_weight" in kept.columns:
        weights = weights * kept["_edge_weight"].to_numpy(dtype=float)
    values = kept[column].to_numpy(dtype=float)
    use_weights = None if view.basis == "number" and edge_weights is None else weights
    bin_width = view.bin_width if view.bin_width and view.bin_width > 0 else nice_bin_width(values)
    return HistogramView(
        values=values,
        weights=use_weights,
        bin_width=float(bin_width),
        label=label,
        unit=unit,
        basis=view.basis,
        summary=stats.summarize(values, use_weights),
        n_detected=int(len(table)),
        n_edge=int(table["touches_edge"].sum()) if len(table) else 0,
        removed=removed,
    )


def _fmt(value: Any) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.4g}"


def stats_rows(view: HistogramView) -> list[tuple[str, str]]:
    """(statistic, value with unit) rows for the statistics table."""
    s, unit = view.summary, f" {view.unit}" if view.unit else ""
    rows = [
        ("Particles detected", _fmt(view.n_detected)),
        ("Touching the edge", _fmt(view.n_edge)),
        ("Count (in statistics)", _fmt(s["count"])),
    ]
    rows += [(name, _fmt(s[key]) + unit) for name, key in
             (("Mean", "mean"), ("Median", "median"), ("Standard deviation", "std"))]
    rows.append(("Coefficient of variation", _fmt(s["cv"])))
    rows += [(name, _fmt(s[key]) + unit) for name, key in
             (("Min", "min"), ("Max", "max"), ("D10", "d10"), ("D50", "d50"), ("D90", "d90"),
              ("Geometric mean", "geo_mean"))]
    rows.append(("Geometric std (GSD)", _fmt(s["gsd"])))
    for name, key in (("Mean 95% CI", "mean_ci95"), ("D50 95% CI", "d50_ci95")):
        low, high = s[key]
        rows.append((name, f"{_fmt(low)} – {_fmt(high)}{unit}"))
    rows.append(("Weighting", view.basis))
    if s.get("ci_note"):
        rows.append(("Note", s["ci_note"]))
    return rows


def filter_text(view: HistogramView) -> str:
    """How many particles each filter removed."""
    names = {"min_ecd": "minimum ECD", "max_ecd": "maximum ECD", "min_circularity": "minimum circularity"}
    parts = [f"{names[key]}: {n}" for key, n in view.removed.items() if n]
    return "Removed by the filters: " + ", ".join(parts) + "." if parts else "No particle removed by the filters."


# ------------------------------------------------------------------------------------------ images
def canvas_image(results: Mapping[str, Any], colour_mode: str) -> str:
    """PNG data URL of the mask for the paint canvas, at full resolution.

    The edit version is written into a PNG text chunk so the canvas reloads (and clears its strokes)
    after every applied save, even when the mask did not change.
    """
    labels = encoding.png_b64_to_labels(results["labels_png"])
    rgb = label_colour_image(labels, mode=colour_mode)
    info = PngImagePlugin.PngInfo()
    info.add_text("saemi-edit-version", str(results.get("version", 0)))
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buffer, format="PNG", pnginfo=info, compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ------------------------------------------------------------------------------------------ downloads
def provenance(analysis: Mapping[str, Any], results: Mapping[str, Any], view: ViewOptions) -> dict[str, str]:
    """Provenance header lines for the downloads, with the settings in force now."""
    params = pipeline.AnalysisParams.from_dict(
        {**analysis["params"], "edge_mode": view.edge_mode, "nm_per_px": _manual_value(results)}
    )
    prov = pipeline.build_provenance(
        filename=analysis["filename"],
        sha256=analysis["sha256"],
        shape=tuple(analysis["shape"]),
        segmenter=analysis["segmenter"],
        params=params,
        calibration=calibration_from_dict(results["calibration"]),
        data_bar=_data_bar(analysis),
        analysed_at=analysis["analysed_at"],
    )
    prov["canvas_edits"] = str(results.get("n_edits", 0))
    return prov


def _manual_value(results: Mapping[str, Any]) -> float | None:
    calibration = results["calibration"]
    return calibration["nm_per_px"] if calibration["source"] == "manual" else None


def _stem(analysis: Mapping[str, Any]) -> str:
    name = str(analysis["filename"]).rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] or "image"


def particles_download(analysis: Mapping[str, Any], results: Mapping[str, Any], view: ViewOptions) -> dict:
    """``dcc.Download`` payload of the per-particle CSV."""
    text = report.particles_csv(table_from_json(results["particles"]), provenance(analysis, results, view))
    return {"content": text, "filename": f"{_stem(analysis)}_particles.csv", "type": "text/csv"}


def labels_download(analysis: Mapping[str, Any], results: Mapping[str, Any]) -> dict:
    """``dcc.Download`` payload of the label image (16-bit PNG, 0 = background)."""
    return {"content": results["labels_png"], "filename": f"{_stem(analysis)}_labels.png",
            "base64": True, "type": "image/png"}


def summary_download(analysis: Mapping[str, Any], results: Mapping[str, Any], view: ViewOptions) -> dict:
    """``dcc.Download`` payload of the one-row summary CSV."""
    prov = provenance(analysis, results, view)
    params = pipeline.AnalysisParams.from_dict({**analysis["params"], "edge_mode": view.edge_mode})
    row = pipeline.summary_row(analysis["filename"], table_from_json(results["particles"]), params,
                               calibration_from_dict(results["calibration"]), tuple(analysis["shape"]),
                               tuple(analysis["frame"]))
    return {"content": report.summary_csv([row], prov), "filename": f"{_stem(analysis)}_summary.csv",
            "type": "text/csv"}


# ------------------------------------------------------------------------------------------- figures
def histogram_outputs(results: Mapping[str, Any], analysis: Mapping[str, Any],
                      view: ViewOptions) -> tuple[Any, list[tuple[str, str]], str, str]:
    """Histogram figure, statistics rows, bin-width hint and filter summary."""
    shown = view_results(results, analysis, view)
    figure = histogram_figure(shown.values, bin_width=shown.bin_width, weights=shown.weights,
                              quantity_label=shown.label, unit=shown.unit or "", basis=shown.basis)
    unit = f" {shown.unit}" if shown.unit else ""
    hint = f"Bins of {shown.bin_width:g}{unit}" + ("" if view.bin_width else " (automatic; type a width to change)")
    return figure, stats_rows(shown), hint, filter_text(shown)


def overlay(results: Mapping[str, Any], gray: Mapping[str, Any], opacity: float | None, mode: str | None,
            data_bar: list[int] | None = None, measured_line: Mapping[str, Any] | None = None,
            dragmode: str | None = None):
    """Overlay figure of the current labels over the image, with the data bar (if any) framed.

    The line measured for the calibration (if any) is drawn, editable, and ``dragmode`` (``"zoom"`` or
    ``"drawline"``) says what a mouse drag does.
    """
    labels = encoding.png_b64_to_labels(results["labels_png"])
    figure = overlay_figure("data:image/png;base64," + gray["png"], labels,
                            opacity=0.5 if opacity is None else float(opacity),
                            mode=mode or "outline")
    if data_bar:
        figure.add_shape(type="rect", x0=-0.5, x1=labels.shape[1] - 0.5, y0=data_bar[0] - 0.5,
                         y1=data_bar[1] - 0.5, line={"color": "#ffbf00", "width": 2, "dash": "dash"})
        figure.add_annotation(x=0, y=data_bar[0], xanchor="left", yanchor="bottom", showarrow=False,
                              text="data bar (not analysed)", font={"color": "#ffbf00"})
    line = (measured_line or {}).get("line_px")
    if line:
        figure.add_shape(type="line", x0=line[0], y0=line[1], x1=line[2], y1=line[3], editable=True,
                         line={"color": LINE_COLOUR, "width": 2})
    figure.update_layout(dragmode=dragmode if dragmode in DRAG_MODES else "zoom",
                         newshape={"line": {"color": LINE_COLOUR, "width": 2}})
    return figure
