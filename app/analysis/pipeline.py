"""One analysis entry point shared by the web app and the command line.

``decoded image → calibration, data bar → segmentation → labels → per-particle table``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from app.analysis import __version__
from app.analysis import calibration as _cal
from app.analysis import databar as _databar
from app.analysis import scalebar as _scalebar
from app.analysis import stats as _stats
from app.analysis.errors import SaemiInputError
from app.analysis.imageio import DecodedImage
from app.analysis.labels import finalize_labels
from app.analysis.measure import measure_particles
from app.analysis.segmentation import ProgressCallback, Segmenter
from app.analysis.stats import EDGE_MODES

logger = logging.getLogger(__name__)


def _is_positive_number(value: object) -> bool:
    """Whether ``value`` is a finite real number above zero (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(value) and value > 0


@dataclass(frozen=True)
class AnalysisParams:
    """Every user setting that changes the result.

    Attributes
    ----------
    segmenter : str
        Name of the segmenter (``"unet"``, ``"classical"``).
    split_touching : bool
        Keep touching particles apart (True) or merge them into connected components (False).
    min_area_px : int
        Particles with fewer pixels are dropped.
    edge_mode : str
        Treatment of particles touching the frame in the statistics: ``"exclude"``, ``"include"`` or
        ``"miles-lantuejoul"``. Edge particles are always kept in the label image and the CSV.
    nm_per_px : float or None
        Manual pixel size; overrides every other calibration source.
    data_bar : str
        ``"auto"`` (detect), ``"off"`` or ``"y0:y1"`` (rows to exclude).
    scale_bar_label : str or None
        The user's reading of the scale bar label (``"500 nm"``), used when OCR cannot read it.
    diameter_px : float or None
        Typical particle diameter in image pixels given by the user; the U-Net then looks once, at the
        scale that brings it to the trained size, instead of at every octave. Ignored by the classical
        segmenter.
    views : int or None
        Views of the image the U-Net averages in each of its passes (1 to 4; None: the model's
        default). Each view adds the cost of one more look. Ignored by the classical segmenter.
    model_dir : str or None
        The U-Net's model folder, for a fine-tuned model (None: the shipped one). Ignored by the
        classical segmenter; written into the provenance only when set.
    """

    segmenter: str = "classical"
    split_touching: bool = True
    min_area_px: int = 10
    edge_mode: str = "exclude"
    nm_per_px: float | None = None
    data_bar: str = "auto"
    scale_bar_label: str | None = None
    diameter_px: float | None = None
    views: int | None = None
    model_dir: str | None = None

    def __post_init__(self) -> None:
        if self.edge_mode not in EDGE_MODES:
            raise SaemiInputError(f"Edge handling must be one of {', '.join(EDGE_MODES)}.")
        if not (isinstance(self.min_area_px, (int, np.integer)) and self.min_area_px >= 0):
            raise SaemiInputError("The minimum particle area must be a whole number of pixels, 0 or more.")
        if self.nm_per_px is not None and not (math.isfinite(self.nm_per_px) and self.nm_per_px > 0):
            raise SaemiInputError("The pixel size must be a positive number of nanometres per pixel.")
        if self.diameter_px is not None and not _is_positive_number(self.diameter_px):
            raise SaemiInputError(
                f"The typical particle diameter must be a positive number of pixels (got {self.diameter_px}); "
                "leave it empty to let the U-Net look at every particle size."
            )

    def to_dict(self) -> dict:
        """JSON-ready settings."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping | None) -> AnalysisParams:
        """Settings from a (possibly partial) mapping; unknown keys are ignored."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known and v is not None}
        try:
            for key in ("min_area_px", "views"):
                if key in kwargs:
                    kwargs[key] = int(kwargs[key])
            for key in ("nm_per_px", "diameter_px"):
                if key in kwargs:
                    kwargs[key] = float(kwargs[key])
        except (TypeError, ValueError) as exc:
            raise SaemiInputError("Settings must be numbers where numbers are asked for.") from exc
        return cls(**kwargs)


@dataclass
class AnalysisResult:
    """Everything one analysis produced."""

    decoded: DecodedImage
    label_image: np.ndarray
    particles: pd.DataFrame
    calibration: _cal.Calibration
    data_bar: _databar.DataBar | None
    scale_bar: _scalebar.ScaleBar | None
    segmenter_name: str
    segmenter_version: str
    params: AnalysisParams
    notes: list[str] = field(default_factory=list)
    analysed_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    @property
    def frame(self) -> tuple[int, int]:
        """Rows [start, stop) analysed (the image without its data bar)."""
        return analysed_rows(self.decoded.shape[0], self.data_bar)

    def provenance(self) -> dict[str, str]:
        """Provenance for report headers."""
        return build_provenance(
            filename=self.decoded.filename,
            sha256=self.decoded.sha256,
            shape=self.decoded.shape,
            segmenter=f"{self.segmenter_name} {self.segmenter_version}",
            params=self.params,
            calibration=self.calibration,
            data_bar=self.data_bar,
            analysed_at=self.analysed_at,
        )

    def summary(self) -> dict[str, object]:
        """Summary row (counts and size statistics) for this image."""
        return summary_row(self.decoded.filename, self.particles, self.params, self.calibration,
                           self.decoded.shape, self.frame)


def analysed_rows(height: int, data_bar: _databar.DataBar | None) -> tuple[int, int]:
    """Rows [start, stop) left for analysis once the data bar is removed."""
    if data_bar is None:
        return (0, height)
    if data_bar.y0 <= 0:
        return (min(data_bar.y1, height), height)
    return (0, max(0, min(data_bar.y0, height)))


#: The outline convention that sizes are meant to follow, written into every CSV's provenance; the size
#: bias each segmenter still has against it, per particle size, is in the model card.
OUTLINE_CONVENTION = ("a particle's edge is where the blurred image is halfway between the particle's level just "
                      "inside the edge and the local background just outside it (half-maximum). The measured bias "
                      "per particle size is in the model card (model/README.md) under 'The boundary convention'")


def build_provenance(
    *,
    filename: str,
    sha256: str,
    shape: tuple[int, int],
    segmenter: str,
    params: AnalysisParams,
    calibration: _cal.Calibration,
    data_bar: _databar.DataBar | None,
    analysed_at: str,
) -> dict[str, str]:
    """Provenance for CSV headers: what was analysed, how, and with which calibration."""
    prov = {
        "software": f"SAEMI {__version__}",
        "file": filename,
        "sha256": sha256,
        "image_size_px": f"{shape[1]} x {shape[0]} (width x height)",
        "segmenter": segmenter,
        "outline_convention": OUTLINE_CONVENTION,
        "calibration_source": calibration.source,
        "nm_per_px": "" if calibration.nm_per_px is None else f"{calibration.nm_per_px:.6g}",
        "calibration_detail": calibration.detail,
        "calibration_warning": calibration.warning,
        **_scale_bar_provenance(calibration.scale_bar),
        "data_bar_rows": "none" if data_bar is None else f"{data_bar.y0}:{data_bar.y1}",
        "analysed_at": analysed_at,
    }
    for key, value in params.to_dict().items():
        if key == "model_dir" and value is None:
            continue  # the shipped model: the segmenter's version says which
        prov[f"param_{key}"] = "" if value is None else str(value)
    return prov


def _scale_bar_provenance(bar: _cal.ScaleBarEvidence | None) -> dict[str, str]:
    """The scale bar found, as a reader can check it: pixel coordinates, label as read, OCR confidence."""
    if bar is None:
        return {"scale_bar_px": "none", "scale_bar_label_text": "", "scale_bar_ocr_confidence": ""}
    return {
        "scale_bar_px": f"columns {bar.x0}:{bar.x1} at row {bar.y} ({bar.x1 - bar.x0} px)",
        "scale_bar_label_text": bar.label_text,
        "scale_bar_ocr_confidence": "" if bar.ocr_confidence is None else f"{bar.ocr_confidence:.0f}",
    }


def decide_data_bar(decoded: DecodedImage, spec: str,
                    metadata: _cal.FileMetadata | None = None) -> _databar.DataBar | None:
    """The data bar to exclude, from the user's setting (``auto``, ``off`` or ``y0:y1``).

    ``metadata`` is the file's metadata when it was read already (else it is read from ``decoded.data``).
    """
    spec = (spec or "auto").strip().lower()
    if spec == "off":
        return None
    if spec == "auto":
        if metadata is not None:
            fei_height = metadata.fei_image_height_px
        else:
            fei_height = _cal.fei_image_height_px(decoded.data) if decoded.data else None
        return _databar.detect_data_bar(decoded.gray, fei_height_px=fei_height)
    return _databar.parse_data_bar_spec(spec, decoded.shape[0])


def _read_scale_bar(
    decoded: DecodedImage, params: AnalysisParams, data_bar: _databar.DataBar | None
) -> tuple[_scalebar.ScaleBar | None, _cal.Calibration | None, _cal.Calibration | None, list[str]]:
    """The scale bar, its calibration, the data bar's field width and any sentence on a failure.

    Reading the image's own marks never stops an analysis: anything that goes wrong is logged and
    leaves the image uncalibrated by them, with a sentence. Only a label the user typed that is
    not a length raises.
    """
    try:
        bar = _scalebar.find_scale_bar(decoded.gray, search_rows=data_bar)
        bar_cal = None if bar is None else _scalebar.calibration_from_scale_bar(bar, params.scale_bar_label)
        field = None if data_bar is None else _scalebar.field_width_calibration(decoded.gray, data_bar)
    except SaemiInputError:
        raise
    except Exception:  # noqa: BLE001 - reading a scale bar must never stop an analysis
        logger.warning("Could not read the scale bar of %s", decoded.filename, exc_info=True)
        return None, None, None, ["The scale bar could not be read; type its label or a pixel size to calibrate."]
    return bar, bar_cal, field, []


def _cross_check(bar_cal: _cal.Calibration | None,
                 field: _cal.Calibration | None) -> tuple[list[_cal.Calibration], list[str]]:
    """The image's own calibrations after checking the scale bar against the data bar's field width.

    When both exist and differ by more than the tolerance, a label typed by the user is kept and
    an OCR reading is not: neither the OCR'd bar nor the field width is applied, and the sentence
    shows both.
    """
    if bar_cal is None or bar_cal.nm_per_px is None or field is None:
        return [c for c in (bar_cal, field) if c is not None], []
    difference = abs(field.nm_per_px - bar_cal.nm_per_px) / bar_cal.nm_per_px
    if difference <= _cal.DISAGREEMENT_TOLERANCE:
        confirmed = dataclasses.replace(
            bar_cal, detail=f"{bar_cal.detail}; confirmed by the data bar's field width ({field.nm_per_px:.4g} nm/px)")
        return [confirmed], []
    both = (f"the scale bar gives {bar_cal.nm_per_px:.4g} nm/px ({bar_cal.detail}) and the data bar's field "
            f"width gives {field.nm_per_px:.4g} nm/px ({field.detail}), {difference:.1%} apart")
    if bar_cal.source == "scalebar:user":
        return [bar_cal], [f"The pixel sizes disagree: {both}; the typed label is used."]
    return [], [f"The pixel sizes disagree: {both}. Neither is used; type the scale-bar label or a pixel "
                "size you trust."]


def decide_calibration(
    decoded: DecodedImage,
    params: AnalysisParams,
    data_bar: _databar.DataBar | None,
    *,
    metadata: _cal.FileMetadata | None = None,
) -> tuple[_cal.Calibration, _scalebar.ScaleBar | None, list[str]]:
    """Pixel size from metadata, the scale bar, the data bar's field width and the user's override.

    Returns
    -------
    calibration : Calibration
        The one chosen (see :func:`app.analysis.calibration.resolve_calibration`); its ``warning``
        holds the sentences below that concern it, and its ``scale_bar`` the bar found, if any.
    scale_bar : ScaleBar or None
        The bar found in the image.
    notes : list of str
        Sentences for the user: sources that disagree, and why a scale bar did not calibrate the image.
    """
    candidates = []
    if metadata is not None:
        candidates.append(metadata.calibration)
    elif decoded.data:
        candidates.append(_cal.read_metadata_calibration(decoded.data, decoded.filename))
    bar, bar_cal, field, notes = _read_scale_bar(decoded, params, data_bar)
    image_cals, disagreements = _cross_check(bar_cal, field)
    calibration, warnings = _cal.resolve_calibration(candidates + image_cals, params.nm_per_px)
    warnings = disagreements + warnings
    if calibration.nm_per_px is None and not disagreements and bar_cal is not None and bar_cal.warning:
        notes.append(bar_cal.warning)
    if bar is not None:
        calibration = dataclasses.replace(calibration, scale_bar=bar_cal.scale_bar)
    sentences = notes + warnings
    if sentences:
        calibration = dataclasses.replace(calibration, warning=" ".join(sentences))
    return calibration, bar, sentences


def analyze_decoded(
    decoded: DecodedImage,
    params: AnalysisParams,
    *,
    segmenter: Segmenter,
    progress: ProgressCallback | None = None,
    metadata: _cal.FileMetadata | None = None,
) -> AnalysisResult:
    """Calibrate, segment and measure one decoded image.

    Parameters
    ----------
    decoded : DecodedImage
        From :func:`app.analysis.imageio.decode_image`.
    params : AnalysisParams
        User settings.
    segmenter : Segmenter
        The segmenter to run (see :mod:`model.registry`).
    progress : callable, optional
        ``progress(fraction, message)``.
    metadata : FileMetadata, optional
        The file's metadata, already read (:func:`app.analysis.calibration.read_file_metadata`); else
        it is read from ``decoded.data``.

    Returns
    -------
    AnalysisResult
    """
    data_bar = decide_data_bar(decoded, params.data_bar, metadata)
    start, stop = analysed_rows(decoded.shape[0], data_bar)
    labels = np.zeros(decoded.shape, dtype=np.int32)
    # Reading the scale bar (OCR in a tesseract subprocess, about 0.2 s) does not depend on the
    # segmentation, so it runs in a worker thread while the segmenter works.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="saemi-calibration") as pool:
        calibrating = pool.submit(
            decide_calibration, decoded, params, data_bar, metadata=metadata
        )
        segmentation_notes: list[str] = []
        if stop - start >= 2:
            region = decoded.gray[start:stop]
            labels[start:stop] = segmenter.segment(region, progress=progress, notes=segmentation_notes)
        calibration, scale_bar, notes = calibrating.result()
    labels = finalize_labels(labels, split_touching=params.split_touching, min_area_px=params.min_area_px)
    particles = measure_particles(
        labels, intensity_image=decoded.gray, nm_per_px=calibration.nm_per_px, frame=(start, stop)
    )
    return AnalysisResult(
        decoded=decoded,
        label_image=labels,
        particles=particles,
        calibration=calibration,
        data_bar=data_bar,
        scale_bar=scale_bar,
        segmenter_name=segmenter.name,
        segmenter_version=segmenter.version,
        params=params,
        notes=list(decoded.notes) + notes + segmentation_notes,
    )


def remeasure(
    label_image: np.ndarray,
    gray: np.ndarray | None,
    params: AnalysisParams,
    calibration: _cal.Calibration,
    data_bar: _databar.DataBar | None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Clean and measure an edited label image with the same settings (after canvas strokes).

    Returns
    -------
    label_image : ndarray of int32
        Sequential labels (the data bar blanked, particles under the minimum area dropped); its ids are
        the ``particle_id`` values of the table.
    particles : DataFrame
        As from :func:`app.analysis.measure.measure_particles`.
    """
    frame = analysed_rows(label_image.shape[0], data_bar)
    labels = np.asarray(label_image, dtype=np.int32).copy()
    labels[: frame[0]] = 0
    labels[frame[1] :] = 0
    labels = finalize_labels(labels, split_touching=True, min_area_px=params.min_area_px)
    table = measure_particles(labels, intensity_image=gray, nm_per_px=calibration.nm_per_px, frame=frame)
    return labels, table


def summary_row(
    image_name: str,
    particles: pd.DataFrame,
    params: AnalysisParams,
    calibration: _cal.Calibration,
    shape: tuple[int, int],
    frame: tuple[int, int],
) -> dict[str, object]:
    """One row of ``summary.csv``: counts and ECD statistics after the edge treatment.

    The pixel statistics are always present and the nanometre ones are added when the image is
    calibrated, so a batch mixing both keeps one set of columns. ``n_particles`` counts the particles
    in the statistics (edge particles excluded unless ``edge_mode`` keeps them).
    """
    selected, weights = _stats.edge_selection(particles, params.edge_mode, image_shape=shape, frame=frame)
    row: dict[str, object] = {
        "image": image_name,
        "n_particles": 0,
        "n_detected": int(len(particles)),
        "n_edge": int(particles["touches_edge"].sum()) if len(particles) else 0,
        "edge_mode": params.edge_mode,
        "nm_per_px": calibration.nm_per_px,
        "calibration_source": calibration.source,
        "calibration_warning": calibration.warning,
    }
    units = ["px", "nm"] if calibration.nm_per_px is not None and "ecd_nm" in particles.columns else ["px"]
    for unit in units:
        column = f"ecd_{unit}"
        values = selected[column].to_numpy(dtype=float) if len(selected) else np.zeros(0)
        stats = _stats.summarize(values, weights)
        for key in ("mean", "median", "std", "min", "max", "d10", "d50", "d90", "geo_mean"):
            row[f"{key}_ecd_{unit}"] = stats[key]
        for key in ("mean_ci95", "d50_ci95"):
            low, high = stats[key]
            base = key.replace("_ci95", "")
            row[f"{base}_ecd_{unit}_ci95_low"] = low
            row[f"{base}_ecd_{unit}_ci95_high"] = high
        row["cv_ecd"] = stats["cv"]
        row["gsd"] = stats["gsd"]
        row["ci_note"] = stats["ci_note"]
        row["n_particles"] = int(stats["count"])
    return row
