"""The typed payloads of the page's ``dcc.Store`` components.

Each store holds one small frozen dataclass. ``to_store()`` gives the JSON-ready dict the browser
keeps; ``from_store(payload)`` reads it back and checks it (keys, types, sizes against the image),
raising :class:`~app.analysis.errors.SaemiInputError` with :data:`DAMAGED_STORE` when the payload is
not one the server wrote. Callbacks read stores only through these classes.

Every store payload is signed by the server (:mod:`app.session.signing`): the browser keeps
``{"signed": token}`` and ``from_store`` checks the signature and age before it decodes anything.
The checks after it (sizes, shapes, id ranges against the image) still hold for a payload the
server signed, so that a leaked key does not give away the server's memory.

Stores
------
``source`` (:class:`Source`)
    Which image is analysed: an upload (by file name), the demo, or an image of a batch.
``analysis`` (:class:`AnalysisState`)
    What one segmentation run produced: the base label image (16-bit PNG, base64), the particle table
    measured on it, the calibration found in the image, the data bar, the settings and provenance,
    and the line drawn on the overlay to calibrate (:class:`MeasuredLine`). Replaced when the image or
    a segmentation setting changes.
``gray`` (:class:`GrayState`)
    The image as an 8-bit PNG (base64), for the overlay and for re-measuring mean intensities.
``edits`` (:class:`EditsState`)
    The canvas saves applied so far; the current labels are the base labels with
    ``batches[:cursor]`` replayed. Undo and redo move the cursor; ``version`` counts every change so
    that the canvas image is always refreshed.
``results`` (:class:`ResultsState`)
    The current labels and particle table after edits and the pixel-size override.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from app import config
from app.analysis import encoding, limits
from app.analysis.calibration import Calibration, ScaleBarEvidence
from app.analysis.databar import DataBar
from app.analysis.errors import SaemiInputError
from app.analysis.pipeline import AnalysisParams
from app.session import signing
from app.session.signing import DAMAGED_STORE

__all__ = ["DAMAGED_STORE", "AnalysisState", "EditsState", "GrayState", "MeasuredLine", "ResultsState", "Source"]


def _damaged(reason: str) -> SaemiInputError:
    return signing.damaged(reason)


def _mapping(payload: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise _damaged(f"the {name} store is not an object")
    return payload


def _pair(value: Any, name: str) -> tuple[int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise _damaged(f"{name} is not a pair of whole numbers")
    return int(value[0]), int(value[1])


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _damaged(f"{name} is not text")
    return value


def calibration_to_store(calibration: Calibration) -> dict[str, Any]:
    """JSON form of a :class:`~app.analysis.calibration.Calibration`."""
    bar = calibration.scale_bar
    return {"nm_per_px": calibration.nm_per_px, "source": calibration.source, "detail": calibration.detail,
            "warning": calibration.warning,
            "scale_bar": None if bar is None else {"x0": bar.x0, "x1": bar.x1, "y": bar.y,
                                                   "label_text": bar.label_text,
                                                   "ocr_confidence": bar.ocr_confidence}}


def _scale_bar_from_store(payload: Any) -> ScaleBarEvidence | None:
    """The scale bar of a stored calibration (absent from payloads written before it was kept)."""
    if payload is None:
        return None
    data = _mapping(payload, "the scale bar")
    try:
        x0, x1, y = (data[key] for key in ("x0", "x1", "y"))
    except KeyError as exc:
        raise _damaged(f"the scale bar lacks {exc.args[0]!r}") from exc
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (x0, x1, y)) or not 0 <= x0 < x1:
        raise _damaged("the scale bar's columns are not whole numbers in order")
    confidence = data.get("ocr_confidence")
    if confidence is not None and (isinstance(confidence, bool) or not isinstance(confidence, (int, float))):
        raise _damaged("the scale bar's OCR confidence is not a number")
    return ScaleBarEvidence(x0, x1, y, _text(data.get("label_text", ""), "the scale bar's label"),
                            None if confidence is None else float(confidence))


def calibration_from_store(payload: Any) -> Calibration:
    """Inverse of :func:`calibration_to_store`, checked."""
    data = _mapping(payload, "calibration")
    nm_per_px = data.get("nm_per_px")
    if nm_per_px is not None and (isinstance(nm_per_px, bool) or not isinstance(nm_per_px, (int, float))
                                  or not np.isfinite(nm_per_px) or nm_per_px <= 0):
        raise _damaged("the pixel size is not a positive number")
    return Calibration(None if nm_per_px is None else float(nm_per_px), _text(data.get("source", "none"), "source"),
                       _text(data.get("detail", ""), "detail"), _text(data.get("warning", ""), "warning"),
                       _scale_bar_from_store(data.get("scale_bar")))


def table_to_json(table: pd.DataFrame) -> str:
    """Particle table as compact JSON (pandas ``split`` orientation)."""
    return table.to_json(orient="split", index=False, double_precision=10)


def table_from_json(text: str) -> pd.DataFrame:
    """Inverse of :func:`table_to_json`; an empty table keeps its columns."""
    try:
        table = pd.read_json(io.StringIO(_text(text, "the particle table")), orient="split", dtype=False)
    except ValueError as exc:
        raise _damaged("the particle table cannot be read") from exc
    if "touches_edge" in table.columns:
        table["touches_edge"] = table["touches_edge"].astype(bool)
    return table


@dataclass(frozen=True)
class Source:
    """The image being analysed: ``kind`` is ``"upload"``, ``"demo"`` or ``"batch"`` (an image of a batch of
    the samples view; ``filename`` then names it, see :func:`app.session.batchstore.image_ref`)."""

    kind: str
    filename: str

    def to_store(self) -> dict[str, str]:
        return signing.sign("source", {"kind": self.kind, "filename": self.filename})

    @classmethod
    def from_store(cls, payload: Any) -> Source | None:
        """The source, or None when no image was chosen yet."""
        if not payload:
            return None
        data = _mapping(signing.verify("source", payload), "source")
        kind = data.get("kind")
        if kind not in ("upload", "demo", "batch"):
            raise _damaged("unknown image source")
        return cls(kind, _text(data.get("filename", ""), "the file name"))


@dataclass(frozen=True)
class MeasuredLine:
    """A line drawn on the overlay and the real length typed for it.

    ``calibration`` is set when both are usable, else ``message`` says what is missing.
    """

    line_px: tuple[float, float, float, float] | None
    length: str
    calibration: Calibration | None = None
    message: str | None = None

    def to_store(self) -> dict[str, Any]:
        return {"line_px": None if self.line_px is None else list(self.line_px), "length": self.length,
                "calibration": None if self.calibration is None else calibration_to_store(self.calibration),
                "message": self.message}

    @classmethod
    def from_store(cls, payload: Any) -> MeasuredLine | None:
        if not payload:
            return None
        data = _mapping(payload, "measured line")
        line = data.get("line_px")
        if line is not None:
            if not isinstance(line, (list, tuple)) or len(line) != 4 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in line):
                raise _damaged("the measured line is not four numbers")
            line = tuple(float(v) for v in line)
        message = data.get("message")
        return cls(line, _text(data.get("length", ""), "the line length"),
                   None if data.get("calibration") is None else calibration_from_store(data["calibration"]),
                   None if message is None else _text(message, "the line message"))


@dataclass(frozen=True)
class AnalysisState:
    """One segmentation run of one image (the ``analysis`` store)."""

    labels_png: str
    particles_json: str
    shape: tuple[int, int]
    frame: tuple[int, int]
    filename: str
    sha256: str
    source_dtype: str
    mode: str
    segmenter: str
    params: AnalysisParams
    calibration: Calibration
    data_bar: DataBar | None
    notes: tuple[str, ...] = ()
    analysed_at: str = ""
    measured_line: MeasuredLine | None = None

    def to_store(self) -> dict[str, Any]:
        return signing.sign("analysis", {
            "labels_png": self.labels_png,
            "particles": self.particles_json,
            "shape": list(self.shape),
            "frame": list(self.frame),
            "filename": self.filename,
            "sha256": self.sha256,
            "source_dtype": self.source_dtype,
            "mode": self.mode,
            "segmenter": self.segmenter,
            "params": self.params.to_dict(),
            "calibration": calibration_to_store(self.calibration),
            "data_bar": None if self.data_bar is None else [self.data_bar.y0, self.data_bar.y1],
            "notes": list(self.notes),
            "analysed_at": self.analysed_at,
            "measured_line": None if self.measured_line is None else self.measured_line.to_store(),
        })

    @classmethod
    def from_store(cls, payload: Any) -> AnalysisState | None:
        """The analysis, or None when nothing was analysed yet."""
        if not payload:
            return None
        data = _mapping(signing.verify("analysis", payload), "analysis")
        try:
            shape = _pair(data["shape"], "the image size")
            frame = _pair(data["frame"], "the analysed rows")
            if (min(shape) < 1 or shape[0] * shape[1] > config.MAX_PIXELS
                    or not 0 <= frame[0] <= frame[1] <= shape[0]):
                raise _damaged("the image size or analysed rows are out of range")
            bar = None if data.get("data_bar") is None else DataBar(*_pair(data["data_bar"], "the data bar"))
            if bar is not None and not 0 <= bar.y0 <= bar.y1 <= shape[0]:
                raise _damaged("the data bar lies outside the image")
            notes = data.get("notes") or []
            if not isinstance(notes, list):
                raise _damaged("the notes are not a list")
            return cls(
                labels_png=_text(data["labels_png"], "the label image"),
                particles_json=_text(data["particles"], "the particle table"),
                shape=shape,
                frame=frame,
                filename=_text(data["filename"], "the file name"),
                sha256=_text(data["sha256"], "the checksum"),
                source_dtype=_text(data["source_dtype"], "the data type"),
                mode=_text(data["mode"], "the image mode"),
                segmenter=_text(data["segmenter"], "the segmenter"),
                params=AnalysisParams.from_dict(_mapping(data["params"], "settings")),
                calibration=calibration_from_store(data["calibration"]),
                data_bar=bar,
                notes=tuple(_text(note, "a note") for note in notes),
                analysed_at=_text(data.get("analysed_at", ""), "the analysis time"),
                measured_line=MeasuredLine.from_store(data.get("measured_line")),
            )
        except KeyError as exc:
            raise _damaged(f"the analysis store lacks {exc.args[0]!r}") from exc

    def labels(self) -> np.ndarray:
        """The base label image, checked against the image size."""
        return _labels_of(self.labels_png, self.shape)

    def particles(self) -> pd.DataFrame:
        """The particle table measured on the base labels."""
        return table_from_json(self.particles_json)

    def with_measured_line(self, measured: MeasuredLine | None) -> AnalysisState:
        return replace(self, measured_line=measured)


def _labels_of(labels_png: str, shape: tuple[int, int] | None) -> np.ndarray:
    """The label image, its PNG header checked against ``shape`` before any pixel is decoded."""
    try:
        return encoding.png_b64_to_labels(labels_png, shape)
    except SaemiInputError as exc:
        raise _damaged(str(exc)) from exc


@dataclass(frozen=True)
class GrayState:
    """The image as an 8-bit PNG (the ``gray`` store)."""

    png: str

    def to_store(self) -> dict[str, str]:
        return signing.sign("gray", {"png": self.png})

    @classmethod
    def from_store(cls, payload: Any) -> GrayState | None:
        if not payload:
            return None
        return cls(_text(_mapping(signing.verify("gray", payload), "image").get("png"), "the image"))

    @classmethod
    def from_image(cls, gray: np.ndarray) -> GrayState:
        """From a float image in [0, 1]."""
        return cls(encoding.gray_to_png_b64(gray))

    def image(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The image as float32 in [0, 1]; ``shape`` (rows, cols), when given, is checked before decoding."""
        try:
            return encoding.png_b64_to_gray(self.png, shape)
        except SaemiInputError as exc:
            raise _damaged(str(exc)) from exc


@dataclass(frozen=True)
class EditsState:
    """The applied canvas saves (the ``edits`` store): each batch is a list of stroke dicts."""

    batches: tuple[tuple[Mapping[str, Any], ...], ...] = ()
    cursor: int = 0
    version: int = 0

    def to_store(self) -> dict[str, Any]:
        return signing.sign("edits", {"batches": [list(batch) for batch in self.batches], "cursor": self.cursor,
                                      "version": self.version})

    @classmethod
    def from_store(cls, payload: Any) -> EditsState:
        """The edit history; an empty one when there is none yet."""
        if not payload:
            return cls()
        data = _mapping(signing.verify("edits", payload), "edits")
        batches, cursor, version = data.get("batches", []), data.get("cursor", 0), data.get("version", 0)
        if not isinstance(batches, list) or not all(isinstance(b, list) for b in batches):
            raise _damaged("the edits are not lists of strokes")
        for number, name in ((cursor, "edit cursor"), (version, "edit version")):
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise _damaged(f"the {name} is not a whole number")
        if cursor > len(batches):
            raise _damaged("the edit cursor is past the last edit")
        if len(batches) > limits.MAX_SAVES or not all(isinstance(item, Mapping) for b in batches for item in b):
            raise _damaged("the edits are not a history this server keeps")
        return cls(tuple(tuple(batch) for batch in batches), cursor, version)

    @property
    def applied(self) -> tuple[tuple[Mapping[str, Any], ...], ...]:
        """The batches in force (those before the cursor)."""
        return self.batches[: self.cursor]


@dataclass(frozen=True)
class ResultsState:
    """Labels and table after the edits and the pixel-size override (the ``results`` store)."""

    labels_png: str
    particles_json: str
    calibration: Calibration
    warnings: tuple[str, ...] = ()
    n_edits: int = 0
    version: int = 0
    shape: tuple[int, int] | None = field(default=None, compare=False)

    def to_store(self) -> dict[str, Any]:
        return signing.sign("results", {
            "labels_png": self.labels_png, "particles": self.particles_json,
            "calibration": calibration_to_store(self.calibration), "warnings": list(self.warnings),
            "n_edits": self.n_edits, "version": self.version})

    @classmethod
    def from_store(cls, payload: Any, shape: tuple[int, int] | None = None) -> ResultsState | None:
        """The results, or None before the first analysis; ``shape`` (the image's) checks the labels."""
        if not payload:
            return None
        data = _mapping(signing.verify("results", payload), "results")
        try:
            warnings = data.get("warnings") or []
            if not isinstance(warnings, list):
                raise _damaged("the warnings are not a list")
            n_edits, version = data.get("n_edits", 0), data.get("version", 0)
            if any(isinstance(v, bool) or not isinstance(v, int) for v in (n_edits, version)):
                raise _damaged("the edit counters are not whole numbers")
            return cls(_text(data["labels_png"], "the label image"), _text(data["particles"], "the particle table"),
                       calibration_from_store(data["calibration"]),
                       tuple(_text(w, "a warning") for w in warnings), n_edits, version, shape)
        except KeyError as exc:
            raise _damaged(f"the results store lacks {exc.args[0]!r}") from exc

    @property
    def calibrated(self) -> bool:
        return self.calibration.nm_per_px is not None

    def labels(self) -> np.ndarray:
        """The current label image (checked against the image size when it is known)."""
        return _labels_of(self.labels_png, self.shape)

    def particles(self) -> pd.DataFrame:
        return table_from_json(self.particles_json)
