"""Starting an analysis: the page's settings, the uploaded files or the demo, and the new stores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from app import config
from app.analysis import imageio
from app.analysis.encoding import labels_to_png_b64
from app.analysis.errors import SaemiInputError
from app.analysis.pipeline import AnalysisParams
from app.engine import analyze_file
from app.session.batchstore import BatchStore, parse_image_ref
from app.session.stores import AnalysisState, EditsState, GrayState, Source, table_to_json

#: The demo image offered by the "Try the demo" button.
DEMO_IMAGE = config.DEMO_DIR / "demo_sem.png"


@dataclass(frozen=True)
class PageSettings:
    """The segmentation settings as the page's controls send them (any of them may be None).

    ``diameter_px`` is the typical particle diameter typed for the U-Net (None: every octave);
    ``look_twice`` asks the U-Net to average two views.
    """

    segmenter: str | None = None
    diameter_px: float | None = None
    split_touching: bool = True
    min_area_px: int | None = None
    data_bar_mode: str | None = None
    data_bar_rows: str | None = None
    scale_bar_label: str | None = None
    look_twice: bool = False

    def to_params(self) -> AnalysisParams:
        """The analysis parameters (the manual pixel size is applied later, to the results).

        Raises
        ------
        SaemiInputError
            For manual data-bar rows left empty, or settings that are not numbers where numbers are asked for.
        """
        data_bar = self.data_bar_mode or "auto"
        if data_bar == "manual":
            rows = str(self.data_bar_rows or "").strip()
            if not rows:
                raise SaemiInputError("Type the data-bar rows as 'first:last' (for example '700:768').")
            data_bar = rows
        return AnalysisParams.from_dict({
            "segmenter": self.segmenter or "classical",
            "split_touching": bool(self.split_touching),
            "min_area_px": self.min_area_px if self.min_area_px is not None else 0,
            "data_bar": data_bar,
            "scale_bar_label": str(self.scale_bar_label or "").strip() or None,
            "diameter_px": self.diameter_px,
            "views": 2 if self.look_twice else None,
        })


class Started(NamedTuple):
    """The stores of a new analysis."""

    analysis: AnalysisState
    gray: GrayState
    edits: EditsState


def start_session(data: bytes, filename: str, settings: PageSettings, sidecar_text: str | None = None) -> Started:
    """Decode and analyse an image file (:func:`app.engine.analyze_file`) into new stores.

    Parameters
    ----------
    data : bytes
        The file content.
    filename : str
        The file's name.
    settings : PageSettings
        The page's segmentation settings.
    sidecar_text : str, optional
        The JEOL or Hitachi ``.txt`` file uploaded with the image; its pixel size calibrates the image.

    Raises
    ------
    SaemiInputError
        For a file that cannot be analysed.
    """
    params = settings.to_params()
    result = analyze_file(data, filename, params, sidecar_text=sidecar_text)
    bar = result.data_bar
    notes = list(result.notes)
    if bar is not None:
        notes.append(f"Data bar in rows {bar.y0}:{bar.y1} is kept out of the analysis (change it under Data bar).")
    decoded = result.decoded
    analysis = AnalysisState(
        labels_png=labels_to_png_b64(result.label_image),
        particles_json=table_to_json(result.particles),
        shape=tuple(decoded.shape),
        frame=tuple(result.frame),
        filename=decoded.filename,
        sha256=decoded.sha256,
        source_dtype=decoded.source_dtype,
        mode=decoded.mode,
        segmenter=f"{result.segmenter_name} {result.segmenter_version}",
        params=params,
        calibration=result.calibration,
        data_bar=bar,
        notes=tuple(notes),
        analysed_at=result.analysed_at,
    )
    return Started(analysis, GrayState.from_image(decoded.gray), EditsState())


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


def image_filename(filenames: str | Sequence[str] | None) -> str:
    """Name of the image among the uploaded file names (the first that is not a ``.txt``)."""
    names = [str(name) for name in _as_list(filenames)]
    return next((name for name in names if not is_sidecar_name(name)), "upload")


def split_upload(contents: str | Sequence[str] | None, filenames: str | Sequence[str] | None) -> UploadFiles:
    """Tell the image from the JEOL/Hitachi sidecar among the files of a ``dcc.Upload`` (``multiple=True``).

    Parameters
    ----------
    contents : str or list of str
        The data URL(s) of the uploaded file(s).
    filenames : str or list of str
        Their names, in the same order.

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


def start_from_upload(contents: str | Sequence[str], filenames: str | Sequence[str] | None,
                      settings: PageSettings) -> Started:
    """:func:`start_session` for the data URL(s) of a ``dcc.Upload`` (the image and, optionally, its sidecar)."""
    files = split_upload(contents, filenames)
    sidecar = None
    if files.sidecar_url is not None:  # sizes checked from the data URLs' length, before decoding
        sidecar = _sidecar_text(imageio.decode_data_url(files.sidecar_url, config.MAX_SIDECAR_BYTES, ".txt file"))
    image = imageio.decode_data_url(files.image_url, config.MAX_UPLOAD_BYTES, "image")
    return start_session(image, files.image_name, settings, sidecar)


def start_demo(settings: PageSettings) -> Started:
    """:func:`start_session` on the bundled synthetic demo image."""
    if not DEMO_IMAGE.is_file():
        raise SaemiInputError("The demo image is not installed on this server.")
    return start_session(DEMO_IMAGE.read_bytes(), DEMO_IMAGE.name, settings)


def choose_source(trigger: str | None, filenames: str | Sequence[str] | None, source: Source | None) -> Source | None:
    """Which image to analyse: a new upload, the demo, or (for a settings change) the current one.

    ``trigger`` is ``"upload"``, ``"demo"`` or anything else for a settings change. Returns None when
    there is no image yet.
    """
    if trigger == "upload":
        return Source("upload", image_filename(filenames))
    if trigger == "demo":
        return Source("demo", DEMO_IMAGE.name)
    return source


def run_analysis(source: Source, contents: str | Sequence[str] | None, settings: PageSettings,
                 filenames: str | Sequence[str] | None = None) -> Started:
    """Analyse the image that ``source`` names (for an upload, the ``dcc.Upload``'s data URLs and names)."""
    if source.kind == "demo":
        return start_demo(settings)
    if source.kind == "batch":  # an image of a batch of the samples view, read back from the server
        store = BatchStore()
        batch_id, index = parse_image_ref(source.filename)
        job = store.job(store.check_id(batch_id), index)
        return start_session(job.data, job.name, settings, job.sidecar_text)
    if not contents:
        raise SaemiInputError("The uploaded file is no longer available; please upload it again.")
    return start_from_upload(contents, filenames or source.filename, settings)


def keep_measured_line(analysis: AnalysisState, previous: AnalysisState | None) -> AnalysisState:
    """The new analysis with the line calibration of the previous one, when both are of the same image.

    A segmentation setting change rebuilds the analysis; the line drawn on the image (and the length
    typed for it) still hold for the same pixels, identified by the file's SHA-256.
    """
    if previous is None or previous.measured_line is None or previous.sha256 != analysis.sha256:
        return analysis
    return analysis.with_measured_line(previous.measured_line)


def file_info(analysis: AnalysisState) -> str:
    """One line naming the analysed file and its size in pixels."""
    rows, cols = analysis.shape
    return f"{analysis.filename}: {cols} × {rows} px ({analysis.source_dtype}, {analysis.mode})"
