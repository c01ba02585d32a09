"""The samples view: a batch started from an upload or the demo, its progress, its images grouped into
samples, pooled and compared, an image opened in the single-image view, corrections written back, and
every result in one ``.zip``.

The batch lives on the server (:class:`app.session.batchstore.BatchStore`); the page keeps only its id.
Plain Python, no Dash: each callback of :mod:`app.callbacks.samples` calls one function here.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from app import config
from app.analysis import encoding, imageio, limits, report, stats
from app.analysis.archive import SIDECAR_SUFFIX, unpack_uploads
from app.analysis.calibration import Calibration
from app.analysis.databar import DataBar
from app.analysis.errors import SaemiInputError
from app.analysis.pipeline import AnalysisParams, summary_row
from app.analysis.samples import (
    ImageRecord,
    batch_provenance,
    class_report,
    pooled_class_views,
    pooled_sizes,
    pooled_view,
    record_flags,
    sample_report,
    sample_tables,
)
from app.analysis.view import ViewOptions
from app.batch import DEFAULT_SAMPLE, sample_of
from app.figures import samples_figure
from app.session import downloads, signing
from app.session.batchrun import ensure_running
from app.session.batchstore import BatchStore, CurrentImage, ImageRow, NewImage, image_ref, parse_image_ref
from app.session.classes import classifier_provenance, classify_record, sample_classifiers, split_outputs
from app.session.demo_samples import DEMO_NM_PER_PX, DEMO_PATTERN, demo_files
from app.session.display import HistogramOutputs, view_outputs
from app.session.start import PageSettings, _as_list, _sidecar_text
from app.session.stores import AnalysisState, EditsState, GrayState, ResultsState, Source, table_to_json

# -- starting a batch -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartedBatch:
    """A batch stored and set running: its id, and sentences about files left out."""

    batch_id: str
    notes: tuple[str, ...] = ()


def _params(settings: PageSettings, nm_per_px: float | None) -> AnalysisParams:
    """The batch's settings: the page's segmentation settings and the pixel size typed (if any)."""
    return AnalysisParams.from_dict({**settings.to_params().to_dict(), "nm_per_px": nm_per_px})


def _create(store: BatchStore, files: Sequence[tuple[str, bytes]], params: AnalysisParams,
            pattern: str | None) -> StartedBatch:
    unpacked = unpack_uploads(files, max_files=2 * limits.MAX_BATCH_IMAGES, max_total_bytes=config.MAX_BATCH_BYTES,
                              max_file_bytes=config.MAX_UPLOAD_BYTES)
    sidecars = {f.name.rsplit(".", 1)[0].lower(): f for f in unpacked.files if f.name.lower().endswith(SIDECAR_SUFFIX)}
    images = [f for f in unpacked.files if not f.name.lower().endswith(SIDECAR_SUFFIX)]
    if not images:
        raise SaemiInputError("The upload holds no image (PNG, JPEG, TIFF or BMP, loose or in a .zip).")
    if len(images) > limits.MAX_BATCH_IMAGES:
        raise SaemiInputError(f"The upload holds {len(images)} images; a batch takes at most "
                              f"{limits.MAX_BATCH_IMAGES}. Split it into several batches.")
    new = []
    for image in images:
        sidecar = sidecars.get(image.name.rsplit(".", 1)[0].lower())
        if sidecar is not None and len(sidecar.data) > config.MAX_SIDECAR_BYTES:
            raise SaemiInputError(f"'{sidecar.name}' is larger than {config.MAX_SIDECAR_BYTES / 1e6:.3g} MB.")
        new.append(NewImage(image.name, image.data, None if sidecar is None else _sidecar_text(sidecar.data),
                            sample_of(image.name, pattern or None)))
    batch_id = store.create(new, params)
    ensure_running(store, batch_id)
    notes = (f"Left out (not an image or a .txt): {', '.join(unpacked.skipped)}.",) if unpacked.skipped else ()
    return StartedBatch(batch_id, notes)


def start_batch(store: BatchStore, contents: Any, filenames: Any, settings: PageSettings,
                nm_per_px: float | None = None, pattern: str | None = None) -> StartedBatch:
    """Store the uploaded images (loose, or ``.zip`` archives of them, with JEOL/Hitachi ``.txt`` files
    named like their images) as a new batch, grouped by ``pattern`` (:func:`app.batch.sample_of`), and
    start analysing it.

    Raises
    ------
    SaemiInputError
        When a limit (:mod:`app.analysis.limits`, :mod:`app.config`) is passed, a file cannot be read, or a
        name does not match the pattern. The sizes are checked from the data URLs' lengths first.
    """
    urls = _as_list(contents)
    names = [str(name) for name in _as_list(filenames)] + ["upload"] * len(urls)
    if not urls:
        raise SaemiInputError("Choose the images (or a .zip of them) to analyse.")
    if len(urls) > 2 * limits.MAX_BATCH_IMAGES:
        raise SaemiInputError(f"{len(urls)} files were uploaded; a batch takes at most {limits.MAX_BATCH_IMAGES} "
                              "images (each with its .txt file, if any).")
    approximate = sum(len(url) * 3 // 4 for url in urls if isinstance(url, str))
    if approximate > config.MAX_BATCH_BYTES:
        raise SaemiInputError(f"The upload is about {approximate / 1e6:.0f} MB; a batch takes at most "
                              f"{config.MAX_BATCH_BYTES / 1e6:.0f} MB. Split it into several batches.")
    files = [(name, imageio.decode_data_url(url, config.MAX_BATCH_BYTES, "file")) for url, name in zip(urls, names)]
    return _create(store, files, _params(settings, nm_per_px), pattern)


def start_demo_batch(store: BatchStore, settings: PageSettings, nm_per_px: float | None = None) -> StartedBatch:
    """The samples demo (:mod:`app.session.demo_samples`) as a new batch, at its known pixel size unless
    another is typed."""
    return _create(store, demo_files(), _params(settings, nm_per_px or DEMO_NM_PER_PX), DEMO_PATTERN)


# -- progress --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgressView:
    """The progress bar's value and maximum, its sentence, whether the batch is finished and its revision."""

    value: int
    total: int
    text: str
    finished: bool
    revision: int


def batch_progress(store: BatchStore, batch_id: str) -> ProgressView:
    """How the batch stands; unfinished images whose runner is gone are resubmitted from this process."""
    ensure_running(store, batch_id)
    progress = store.progress(batch_id)
    finished = progress.done + progress.failed
    text = f"{finished} of {progress.total} images analysed"
    if progress.failed:
        text += f" ({progress.failed} could not be)"
    text += "." if progress.finished else f"; now {progress.stage or 'waiting for a worker'}."
    return ProgressView(finished, progress.total, text, progress.finished, progress.revision)


# -- the images of a batch -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedImage:
    """One image of a batch with its current results (after corrections); ``record`` is None until it is done."""

    row: ImageRow
    record: ImageRecord | None = None
    provenance: dict[str, str] = dataclasses.field(default_factory=dict)
    labels_png: bytes = b""
    corrected: bool = False
    checked: bool = False


def load_images(store: BatchStore, batch_id: str) -> list[LoadedImage]:
    """Every image of the batch; finished ones with their particles as last corrected on the page."""
    loaded = []
    checked = store.checked(batch_id)
    for row in store.images(batch_id):
        if row.status != "done":
            loaded.append(LoadedImage(row))
            continue
        outcome = store.outcome(batch_id, row.index)
        current = store.current(batch_id, row.index)
        particles = outcome.particles if current is None else current.particles
        nm_per_px = outcome.summary.get("nm_per_px") if current is None else current.nm_per_px
        measures = replace(outcome.measures, n_particles=len(particles), nm_per_px=nm_per_px)
        record = ImageRecord(row.name, row.sample, particles, nm_per_px, outcome.shape, outcome.frame, measures,
                             row.excluded)
        loaded.append(LoadedImage(row, record, outcome.provenance if current is None else current.provenance,
                                  outcome.labels_png if current is None else current.labels_png, current is not None,
                                  row.index in checked))
    return _with_classes(store, batch_id, loaded)


def _with_classes(store: BatchStore, batch_id: str, loaded: list[LoadedImage]) -> list[LoadedImage]:
    """The images of the samples that have particle classes, their particles with ``class`` columns."""
    classifiers = sample_classifiers(store.classes(batch_id))
    classed = []
    for image in loaded:
        if image.record is None or image.record.sample not in classifiers:
            classed.append(image)
            continue
        job = store.job(batch_id, image.row.index)
        gray = imageio.decode_image(job.data, job.name, max_bytes=config.MAX_UPLOAD_BYTES,
                                    max_pixels=config.MAX_PIXELS).gray
        record = classify_record(image.record, classifiers[image.record.sample], image.labels_png, gray)
        classed.append(replace(image, record=record))
    return classed


def _d50(record: ImageRecord, edge_mode: str) -> tuple[float, str]:
    selected, _ = stats.edge_selection(record.particles, "exclude" if edge_mode == "miles-lantuejoul" else edge_mode,
                                       image_shape=record.shape, frame=record.frame)
    unit = "nm" if record.nm_per_px is not None else "px"
    values = selected[f"ecd_{unit}"].to_numpy(dtype=float) if len(selected) else np.zeros(0)
    return (float(np.quantile(values, 0.5, method="hazen")) if values.size else float("nan")), unit


def image_rows(images: Sequence[LoadedImage], edge_mode: str) -> list[dict[str, Any]]:
    """One row per image for the page's table: index, name, sample, status, particles detected, ECD D50 (in
    the statistics), quality flags, excluded, corrected, fully checked, the segmenter that analysed it, and the
    sentence of a failure."""
    flags = record_flags([image.record for image in images if image.record is not None])
    rows = []
    for image in images:
        row = image.row
        entry = {"index": row.index, "name": row.name, "sample": row.sample, "status": row.status,
                 "n_particles": None, "d50": "", "flags": [], "excluded": row.excluded,
                 "corrected": image.corrected, "checked": image.checked,
                 "segmenter": image.provenance.get("segmenter", ""), "error": row.error or ""}
        if image.record is not None:
            d50, unit = _d50(image.record, edge_mode)
            entry.update(n_particles=int(len(image.record.particles)), flags=flags.get(row.name, []),
                         d50=f"{d50:.4g} {unit}" if np.isfinite(d50) else "–")
        rows.append(entry)
    return rows


def sample_names(images: Sequence[LoadedImage]) -> list[str]:
    """The batch's samples, in the order their first image appears."""
    return list(dict.fromkeys(image.row.sample for image in images))


def pooled_outputs(images: Sequence[LoadedImage], sample: str | None, view: ViewOptions) -> HistogramOutputs:
    """Histogram (with its log-normal fit), statistics, bin-width hint and filter summary of every particle
    of ``sample`` (the first sample when None), as the single-image view shows one image's."""
    names = sample_names(images)
    chosen = sample if sample in names else (names[0] if names else DEFAULT_SAMPLE)
    records = [image.record for image in images if image.record is not None and image.row.sample == chosen]
    per_class = pooled_class_views(records, view)
    if per_class:
        return split_outputs(pooled_view(records, view), per_class, view)
    return view_outputs(pooled_view(records, view), view)


@dataclass(frozen=True)
class ComparisonView:
    """The comparison figure, per-sample rows (statistics with 95% CIs) and per-pair rows (tests, sentence)."""

    figure: object
    sample_rows: list[dict[str, Any]]
    comparison_rows: list[dict[str, Any]]
    note: str


def comparison(images: Sequence[LoadedImage], edge_mode: str) -> ComparisonView:
    """The samples compared (ECD, excluded images left out, pooled in nm when calibrated)."""
    records = [image.record for image in images if image.record is not None]
    pooled = pooled_sizes(records, edge_mode=edge_mode)
    sample_rows, comparison_rows = sample_report(records, edge_mode=edge_mode)
    class_rows, class_comparisons = class_report(records, edge_mode=edge_mode)
    sample_rows, comparison_rows = [*sample_rows, *class_rows], [*comparison_rows, *class_comparisons]
    units = set(pooled.units.values())
    unit = "nm" if "nm" in units else "px"
    shown = {name: values for name, values in pooled.sizes.items() if pooled.units[name] == unit}
    note = ""
    if len(units) > 1:
        note = ("Samples without a pixel size are left out of the figure and compared only among themselves: "
                "sizes in nm and in px are never mixed.")
    return ComparisonView(samples_figure(shown, unit=unit), sample_rows, comparison_rows, note)


# -- changing a batch ------------------------------------------------------------------------------------


def toggle_excluded(store: BatchStore, batch_id: str, index: int) -> None:
    """Leave an image out of its sample's pool, or take it back."""
    store.set_excluded(batch_id, index, not store.image(batch_id, index).excluded)


def assign_sample(store: BatchStore, batch_id: str, index: int, name: Any) -> None:
    """Put one image into the sample called ``name`` (typed by hand)."""
    store.set_samples(batch_id, {index: name})


def group_by_pattern(store: BatchStore, batch_id: str, pattern: str | None) -> None:
    """Put every image into the sample its name gives by ``pattern`` (one sample when it is empty)."""
    store.set_samples(batch_id, {row.index: sample_of(row.name, pattern or None) for row in store.images(batch_id)})


# -- one image in the single-image view ------------------------------------------------------------------


def _calibration(provenance: dict[str, str]) -> Calibration:
    text = provenance.get("nm_per_px") or ""
    return Calibration(float(text) if text else None, provenance.get("calibration_source", "none"),
                       provenance.get("calibration_detail", ""), provenance.get("calibration_warning", ""))


def _data_bar(provenance: dict[str, str]) -> DataBar | None:
    rows = provenance.get("data_bar_rows", "none")
    if rows in ("", "none"):
        return None
    y0, y1 = rows.split(":")
    return DataBar(int(y0), int(y1))


@dataclass(frozen=True)
class OpenedImage:
    """The single-image view's stores for one image of a batch."""

    source: Source
    analysis: AnalysisState
    gray: GrayState
    edits: EditsState


def open_image(store: BatchStore, batch_id: str, index: Any) -> OpenedImage:
    """An analysed image of the batch in the single-image view: its segmentation as last corrected, with
    the corrections (canvas edits) that can still be undone."""
    job = store.job(batch_id, index)
    decoded = imageio.decode_image(job.data, job.name, max_bytes=config.MAX_UPLOAD_BYTES,
                                   max_pixels=config.MAX_PIXELS)
    current = store.current(batch_id, index)
    if current is not None:
        analysis = AnalysisState.from_store(signing.sign("analysis", current.analysis))
        edits = EditsState.from_store(signing.sign("edits", current.edits))
    else:
        outcome = store.outcome(batch_id, index)
        prov = outcome.provenance
        analysis = AnalysisState(
            labels_png=encoding.labels_to_png_b64(encoding.png_bytes_to_labels(outcome.labels_png, decoded.shape)),
            particles_json=table_to_json(outcome.particles), shape=tuple(decoded.shape), frame=outcome.frame,
            filename=job.name, sha256=decoded.sha256, source_dtype=decoded.source_dtype, mode=decoded.mode,
            segmenter=prov.get("segmenter", ""), params=store.params(batch_id), calibration=_calibration(prov),
            data_bar=_data_bar(prov), notes=tuple(outcome.notes), analysed_at=prov.get("analysed_at", ""))
        edits = EditsState()
    return OpenedImage(Source("batch", image_ref(batch_id, index)), analysis, GrayState.from_image(decoded.gray), edits)


def save_correction(store: BatchStore, source: Source | None, analysis: AnalysisState | None, edits: EditsState,
                    results: ResultsState | None, edge_mode: str) -> bool:
    """Write the single-image view's current results back into the batch, when they are those of a batch
    image and differ from what its analysis gave (canvas edits, a pixel size, a rerun with other settings).

    Returns whether anything was written; the pooled results then use the corrected image.
    """
    if source is None or source.kind != "batch" or analysis is None or results is None:
        return False
    batch_id, index = parse_image_ref(source.filename)
    store.check_id(batch_id)
    job = store.job(batch_id, index)
    if hashlib.sha256(job.data).hexdigest() != analysis.sha256:  # the stores are of another image
        return False
    changed = (results.n_edits > 0 or results.calibration.nm_per_px != analysis.calibration.nm_per_px
               or analysis.params != store.params(batch_id) or store.current(batch_id, index) is not None)
    if not changed:
        return False
    store.save_current(batch_id, index, CurrentImage(
        labels_png=encoding.labels_to_png_bytes(results.labels()), particles=results.particles(),
        nm_per_px=results.calibration.nm_per_px, provenance=downloads.provenance(analysis, results, edge_mode),
        analysis=signing.verify("analysis", analysis.to_store()),
        edits=signing.verify("edits", edits.to_store())))
    return True


# -- downloads -------------------------------------------------------------------------------------------


def _png_with_text(png: bytes, text: dict[str, str]) -> bytes:
    """The PNG with ``text`` as its tEXt chunks (the provenance of a label image)."""
    image = Image.open(io.BytesIO(png))
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(str(key)[:79], str(value))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] or "image"


def batch_zip(store: BatchStore, batch_id: str, edge_mode: str) -> bytes:
    """Every result of the batch in one ``.zip``: ``images/<name>_particles.csv`` and ``images/<name>_labels.png``
    per image (as corrected), ``pooled_particles.csv``, ``summary.csv``, ``samples.csv`` (per-sample statistics,
    comparisons and tests) and, when some images failed, ``failed.csv``. Every file carries the provenance
    (``#`` lines, or PNG text), with the edge treatment in force."""
    images = load_images(store, batch_id)
    done = [image for image in images if image.record is not None]
    if not done:
        raise SaemiInputError("No image of this batch has results yet.")
    params = replace(store.params(batch_id), edge_mode=edge_mode)
    buffer = io.BytesIO()
    summaries = []
    classifiers = sample_classifiers(store.classes(batch_id))
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for image in done:
            record = image.record
            prov = {**downloads.public_provenance(image.provenance), "param_edge_mode": edge_mode,
                    "sample": record.sample, "excluded_from_pool": str(record.excluded)}
            if record.sample in classifiers:
                prov.update(classifier_provenance(classifiers[record.sample]))
            stem = _stem(record.name)
            archive.writestr(f"images/{stem}_particles.csv", report.particles_csv(record.particles, prov))
            archive.writestr(f"images/{stem}_labels.png", _png_with_text(image.labels_png, prov))
            summaries.append(summary_row(record.name, record.particles, params, _calibration(image.provenance),
                                         record.shape, record.frame))
        provenance = {**batch_provenance(downloads.public_provenance(done[0].provenance),
                                         [image.row.name for image in done]), "param_edge_mode": edge_mode}
        for sample, classifier in classifiers.items():
            provenance[f"classifier of sample {sample}"] = classifier.provenance
        for name, text in sample_tables([image.record for image in done], summaries, provenance,
                                        edge_mode=edge_mode).items():
            archive.writestr(name, text)
        failed = [{"image": image.row.name, "sample": image.row.sample, "reason": image.row.error}
                  for image in images if image.row.status == "failed"]
        if failed:
            archive.writestr("failed.csv", report.summary_csv(failed, provenance))
    return buffer.getvalue()


def zip_download(store: BatchStore, batch_id: str, edge_mode: str) -> dict[str, Any]:
    """``dcc.Download`` payload of :func:`batch_zip`."""
    return {"content": base64.b64encode(batch_zip(store, batch_id, edge_mode)).decode("ascii"),
            "filename": "saemi_samples.zip", "base64": True, "type": "application/zip"}

