"""Teach the model on my corrections: fine-tune the batch's model on a sample's corrected images, segment the
sample's other images again with the tuned model, and keep or discard it; download and upload model folders.

Plain Python, no Dash: each callback of :mod:`app.callbacks.teach` calls one function here.

What is learnt from
    Every image of the sample that was corrected on the canvas, with its corrected labels as the truth. Only
    the region the corrections changed counts (:func:`app.analysis.labels.corrected_region`: the pixels of
    every particle drawn, deleted, split or merged, and where foreground and background swapped, grown by
    :data:`~app.analysis.labels.CORRECTION_MARGIN_PX` px), or the whole image once it is marked "fully
    checked" (then its labels, corrected or not, are all taken as right).
Where it runs
    On a worker of the batch's Dask cluster (``SAEMI_SCHEDULER``), the image bytes and labels sent with the
    task (:func:`app.batch.run_tune`); without a cluster, in a thread of this web worker. A daemon thread of
    the web worker that pressed Teach follows it and writes its state to ``teach/state.json`` of the
    batch's folder, so any web worker answers the page's poll. The budget is ``SAEMI_TEACH_MINUTES``.
Cancel
    Stops the fine-tune and keeps nothing: the previous model stays in use.
Failures
    A worker that dies gives "interrupted" (Dask's rerun finds the task started once); a web worker that
    dies while following a fine-tune stops its heartbeat, and the page then reads "interrupted". The
    previous model stays in use either way.
After a fine-tune
    The tuned model is stored in ``models/<id>/`` of the batch (its ``config.json`` holds the provenance:
    base version, images and regions, steps, seed, time). The sample's images that were not corrected are
    analysed again with it (the batch runner, ``params.model_dir``); the page shows their counts and D50
    before and after, and the overlay of one. Keep makes the tuned model the batch's; Discard puts back the
    previous results and settings.
"""

from __future__ import annotations

import base64
import logging
import re
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from app import config
from app.analysis import encoding, imageio
from app.analysis.errors import SaemiInputError
from app.analysis.labels import corrected_region
from app.analysis.samples import ImageRecord
from app.batch import TUNE_FAILED, TUNE_INTERRUPTED, TuneExample, TuneJob, TuneOutcome, run_tune
from app.figures import overlay_figure
from app.session.batchrun import _client, ensure_running
from app.session.batchstore import BatchStore, new_batch_id
from app.session.samples import _d50
from app.session.stores import table_from_json
from model.config import ModelLoadError, default_model_dir, read_config
from model.finetune import REFITTING
from model.loading import MAX_MODEL_ZIP_BYTES, model_folder_zip, unpack_model_zip

logger = logging.getLogger(__name__)

STATE = "teach/state.json"
#: A fine-tune whose follower has not written for this long is taken for interrupted.
STALE_S = 120.0
#: States in which a fine-tune or its re-segmentation is under way (Teach is refused meanwhile).
BUSY = ("running", "resegmenting")
INTERRUPTED = ("The fine-tune was interrupted (the server process following it stopped), so the previous "
               "model stays in use; press Teach again to retry.")


def _now() -> float:
    return time.time()


def _state(store: BatchStore, batch_id: str) -> dict[str, Any]:
    return store.read_json(batch_id, STATE) or {}


def _write(store: BatchStore, batch_id: str, state: dict[str, Any]) -> None:
    store.write_json(batch_id, STATE, {**state, "updated": _now()})


def _idle(state: dict[str, Any] | None) -> bool:
    """Whether no fine-tune of the batch is under way or waits for Keep or Discard."""
    return (state or {}).get("status") not in (*BUSY, "review")


def _cancel_path(store: BatchStore, batch_id: str, tune_id: str) -> Path:
    return store.folder(batch_id) / "teach" / f"cancel-{tune_id}"


# -- marking images fully checked ------------------------------------------------------------------------


def toggle_checked(store: BatchStore, batch_id: str, index: int) -> None:
    """Mark an image as fully checked (its labels are right everywhere), or take the mark back."""
    store.set_checked(batch_id, index, index not in store.checked(batch_id))


# -- what is learnt from ---------------------------------------------------------------------------------


def teach_examples(store: BatchStore, batch_id: str, sample: str) -> list[TuneExample]:
    """The images of ``sample`` to learn from: the corrected ones (their corrected region) and the fully
    checked ones (whole image), with their bytes and labels.

    Raises
    ------
    SaemiInputError
        When the sample has no such image.
    """
    checked = store.checked(batch_id)
    examples = []
    for row in store.images(batch_id):
        if row.sample != sample or row.status != "done":
            continue
        current = store.current(batch_id, row.index)
        if current is None and row.index not in checked:
            continue
        labels_png = store.outcome(batch_id, row.index).labels_png if current is None else current.labels_png
        data = store.job(batch_id, row.index).data
        if row.index in checked:
            supervised_png, region = None, "whole image (marked fully checked)"
        else:
            original = encoding.png_bytes_to_labels(store.outcome(batch_id, row.index).labels_png)
            changed = corrected_region(original, encoding.png_bytes_to_labels(current.labels_png, original.shape))
            if not changed.any():  # a new pixel size or rerun, no canvas correction
                continue
            supervised_png = encoding.labels_to_png_bytes(changed.astype(np.int32))
            region = f"corrected region ({int(changed.sum())} px)"
        examples.append(TuneExample(row.name, data, labels_png, supervised_png, region))
    if not examples:
        raise SaemiInputError(f"No image of sample '{sample}' is corrected yet: open one, correct it on the canvas "
                              "(or mark it fully checked), then press Teach.")
    return examples


def _model_dir(store: BatchStore, batch_id: str) -> Path:
    model_dir = store.params(batch_id).model_dir
    return Path(model_dir) if model_dir else default_model_dir()


def _base_files(model_dir: Path) -> dict[str, bytes]:
    settings = read_config(model_dir)
    names = [settings.weights, "config.json"] + ([settings.input_scale.scorer_file]
                                                 if settings.input_scale.scorer_file else [])
    return {name: (model_dir / name).read_bytes() for name in names}


# -- starting, following and cancelling a fine-tune -------------------------------------------------------


def start_teaching(store: BatchStore, batch_id: str, sample: Any, *, minutes: float | None = None,
                   seed: int = 0) -> str:
    """Start fine-tuning the batch's model on the corrected images of ``sample``; returns the fine-tune's id.

    Raises
    ------
    SaemiInputError
        When a fine-tune of this batch is under way or waits for Keep or Discard, the batch uses another
        segmenter than the U-Net, or the sample has nothing to learn from.
    """
    if not _idle(status(store, batch_id)):
        raise SaemiInputError("A fine-tune of this batch is under way or waits for Keep or Discard.")
    params = store.params(batch_id)
    if params.segmenter != "unet":
        raise SaemiInputError("Only the U-Net can be taught; choose the U-Net segmenter and start the batch again.")
    if not isinstance(sample, str) or sample not in {row.sample for row in store.images(batch_id)}:
        raise SaemiInputError("Choose the sample to teach on (the pooled sample's menu).")
    if store.unfinished(batch_id):
        raise SaemiInputError("Wait until every image of the batch is analysed, then press Teach.")
    examples = teach_examples(store, batch_id, sample)
    tune_id = new_batch_id()[:16]
    base_dir = _model_dir(store, batch_id)
    job = TuneJob(tune_id, _base_files(base_dir), tuple(examples), config.teach_minutes() if minutes is None
                  else float(minutes), seed)
    state = {"tune_id": tune_id, "status": "running", "sample": sample, "step": 0, "loss": None,
             "seconds_left": job.minutes * 60, "minutes": job.minutes, "started": _now(), "updated": _now(),
             "images": [e.name for e in examples], "base_version": read_config(base_dir).version, "message": ""}
    if not store.write_json_if(batch_id, STATE, _idle, state):  # another web worker started one meanwhile
        raise SaemiInputError("A fine-tune of this batch is under way or waits for Keep or Discard.")
    threading.Thread(target=_follow, args=(store, batch_id, job), daemon=True,
                     name=f"saemi-teach-{batch_id[:6]}").start()
    return tune_id


def _follow(store: BatchStore, batch_id: str, job: TuneJob) -> None:
    """The daemon thread that runs or follows a fine-tune and records what happens."""
    state = _state(store, batch_id)
    last_write = [0.0]

    def on_progress(step: int, loss: float, seconds_left: float, phase: str) -> None:
        state.update(step=int(step), loss=float(loss), seconds_left=float(seconds_left), phase=str(phase))
        if _now() - last_write[0] > 0.3 or seconds_left <= 0:
            last_write[0] = _now()
            _write(store, batch_id, state)

    def on_wait() -> None:
        _write(store, batch_id, state)

    try:
        with _client() as client:
            outcome = run_tune(job, client=client, on_progress=on_progress, on_wait=on_wait,
                               cancelled=_cancel_path(store, batch_id, job.tune_id).is_file)
    except Exception as exc:  # noqa: BLE001 - a cluster that fails or loses the task: reported, logged
        logger.exception("Fine-tune of batch %s failed", batch_id)
        killed = type(exc).__name__ == "KilledWorker"
        outcome = TuneOutcome("interrupted" if killed else "failed", TUNE_INTERRUPTED if killed else TUNE_FAILED)
    try:
        _finish(store, batch_id, job, state, outcome)
    except Exception:  # noqa: BLE001 - the page reads a sentence; logged
        logger.exception("Fine-tune of batch %s could not be stored", batch_id)
        _write(store, batch_id, {**state, "status": "failed", "message": TUNE_FAILED})


def _finish(store: BatchStore, batch_id: str, job: TuneJob, state: dict[str, Any], outcome: TuneOutcome) -> None:
    state.update(steps=outcome.steps, seconds=round(outcome.seconds, 1))
    if outcome.status != "done":
        _write(store, batch_id, {**state, "status": outcome.status, "message": outcome.message})
        return
    model_dir = store.folder(batch_id) / "models" / job.tune_id
    settings = unpack_model_zip(outcome.model_zip, model_dir)
    state.update(model=job.tune_id, version=settings.version, first_loss=outcome.first_loss,
                 last_loss=outcome.last_loss, seconds_left=0.0)
    _resegment(store, batch_id, state, model_dir)


def _resegment(store: BatchStore, batch_id: str, state: dict[str, Any], model_dir: Path) -> None:
    """Analyse the sample's uncorrected images again with ``model_dir``, keeping their results for Discard."""
    params = store.params(batch_id)
    rows = [row for row in store.images(batch_id) if row.sample == state["sample"] and row.status == "done"]
    corrected = {row.index for row in rows if store.current(batch_id, row.index) is not None}
    again = [row.index for row in rows if row.index not in corrected]
    before = store.folder(batch_id) / "teach" / "before"
    shutil.rmtree(before, ignore_errors=True)
    before.mkdir(parents=True)
    result = store.folder(batch_id) / "result"
    for index in again:
        for suffix in (".json", ".png"):
            shutil.copy(result / f"{index}{suffix}", before / f"{index}{suffix}")
    store.set_params(batch_id, replace(params, model_dir=str(model_dir)))
    store.requeue(batch_id, again)  # before the state says so, so a poll never finds them done already
    state.update(status="resegmenting", indices=again, before_params=params.to_dict(),
                 before_counts={str(row.index): row.n_particles for row in rows if row.index in again})
    _write(store, batch_id, state)
    ensure_running(store, batch_id)


def cancel_teaching(store: BatchStore, batch_id: str) -> None:
    """Ask the running fine-tune to stop; it keeps nothing (the previous model stays in use)."""
    state = _state(store, batch_id)
    if state.get("status") != "running":
        raise SaemiInputError("No fine-tune of this batch is running.")
    path = _cancel_path(store, batch_id, state["tune_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def status(store: BatchStore, batch_id: str) -> dict[str, Any]:
    """The fine-tune's state, brought up to date: a silent follower is interrupted, a re-segmentation whose
    images are all done is ready for review."""
    state = _state(store, batch_id)
    if state.get("status") == "running" and _now() - float(state.get("updated", 0)) > STALE_S:
        state = {**state, "status": "interrupted", "message": INTERRUPTED}
        _write(store, batch_id, state)
    if state.get("status") == "resegmenting":
        ensure_running(store, batch_id)
        if not set(state.get("indices", [])) & set(store.unfinished(batch_id)):
            state = {**state, "status": "review"}
            _write(store, batch_id, state)
    return state


# -- what the page shows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeachView:
    """The fine-tune as the page shows it: progress bar, sentence, whether to keep polling, which buttons
    apply, the before/after rows, and the model in use."""

    value: float = 0.0
    total: float = 1.0
    text: str = ""
    polling: bool = False
    running: bool = False
    review: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    overlays: tuple[object, object] | None = None
    revision: int = 0


def model_in_use(store: BatchStore, batch_id: str) -> str:
    """A sentence naming the model the batch analyses with."""
    model_dir = _model_dir(store, batch_id)
    params = store.params(batch_id)
    if params.segmenter != "unet":
        return f"The batch uses the {params.segmenter} segmenter."
    version = read_config(model_dir).version
    if not params.model_dir:
        return f"Model in use: the shipped U-Net {version}."
    kind = "uploaded" if model_dir.name.startswith("upload-") else "tuned"
    label = _state(store, batch_id).get("uploaded_name") if kind == "uploaded" else None
    return f"Model in use: the {kind} model {version}" + (f" (from {label})." if label else ".")


def teach_view(store: BatchStore, batch_id: str) -> TeachView:
    """The page's view of the batch's fine-tune (:func:`status`)."""
    state = status(store, batch_id)
    model = model_in_use(store, batch_id)
    kind = state.get("status")
    if kind is None:
        return TeachView(model=model)
    total = float(state.get("minutes", 1)) * 60
    if kind == "running":
        left = float(state.get("seconds_left") or 0)
        loss = state.get("loss")
        if state.get("phase") == REFITTING:
            text = (f"Fine-tuned on {len(state.get('images', []))} corrected images ({state.get('step', 0)} steps); "
                    f"now refitting the particle scorer for the tuned network: {left:.0f} s left.")
        else:
            text = (f"Fine-tuning on {len(state.get('images', []))} corrected images: step {state.get('step', 0)}, "
                    + (f"loss {loss:.4f}, " if loss is not None else "") + f"{left:.0f} s left.")
        return TeachView(total - left, total, text, polling=True, running=True, model=model)
    if kind == "resegmenting":
        done = len(set(state.get("indices", [])) - set(store.unfinished(batch_id)))
        text = (f"Fine-tuned ({state.get('steps', 0)} steps, loss {state.get('first_loss', float('nan')):.4f} -> "
                f"{state.get('last_loss', float('nan')):.4f}); analysing the sample's other images again with it: "
                f"{done} of {len(state.get('indices', []))}.")
        return TeachView(total, total, text, polling=True, model=model)
    if kind == "review":
        text = (f"Fine-tuned model {state.get('version')} ({state.get('steps', 0)} steps). Its results on the "
                "sample's other images are below: Keep it, or Discard it to put the previous results back.")
        return TeachView(total, total, text, review=True, model=model)
    return TeachView(0.0, total, state.get("message") or _DONE.get(kind, ""), model=model)


_DONE = {"kept": "The tuned model is kept: it is the batch's model now.",
         "discarded": "The tuned model was discarded; the previous results are back."}


def teach_page(store: BatchStore, batch_id: str, edge_mode: str) -> TeachView:
    """:func:`teach_view` with, while a tuned model waits for Keep or Discard, the before/after rows and the
    overlays of the first image analysed again, and the batch's revision (the image table redraws on it)."""
    view = teach_view(store, batch_id)
    if view.review:
        rows = before_after(store, batch_id, edge_mode)
        view = replace(view, rows=rows, overlays=overlays(store, batch_id, rows[0]["index"]) if rows else None)
    return replace(view, revision=store.progress(batch_id).revision)


def _record(name: str, sample: str, data: dict[str, Any], nm_per_px: float | None) -> ImageRecord:
    return ImageRecord(name, sample, table_from_json(data["particles"]), nm_per_px, tuple(data["shape"]),
                       tuple(data["frame"]), None, False)


def before_after(store: BatchStore, batch_id: str, edge_mode: str) -> list[dict[str, Any]]:
    """Per image analysed again: name, particles and ECD D50 before and after the fine-tune."""
    state = _state(store, batch_id)
    if state.get("status") not in ("review", "kept"):
        return []
    before = store.folder(batch_id) / "teach" / "before"
    rows = []
    for index in state.get("indices", []):
        row = store.image(batch_id, index)
        if row.status != "done" or not (before / f"{index}.json").is_file():
            continue
        after = store.outcome(batch_id, index)
        old = store.read_json(batch_id, f"teach/before/{index}.json")
        nm_per_px = after.summary.get("nm_per_px")
        old_d50, unit = _d50(_record(row.name, row.sample, old, nm_per_px), edge_mode)
        new_d50, _ = _d50(ImageRecord(row.name, row.sample, after.particles, nm_per_px, after.shape, after.frame,
                                      None, False), edge_mode)
        rows.append({"index": index, "name": row.name, "before": len(table_from_json(old["particles"])),
                     "after": len(after.particles), "d50_before": f"{old_d50:.4g} {unit}",
                     "d50_after": f"{new_d50:.4g} {unit}", "model": after.provenance.get("segmenter", "")})
    return rows


def overlays(store: BatchStore, batch_id: str, index: int) -> tuple[object, object]:
    """The overlay of one re-analysed image, before and after the fine-tune (two plotly figures)."""
    state = _state(store, batch_id)
    if index not in state.get("indices", []):
        raise SaemiInputError("That image was not analysed again with the tuned model.")
    job = store.job(batch_id, index)
    gray = imageio.decode_image(job.data, job.name, max_bytes=config.MAX_UPLOAD_BYTES,
                                max_pixels=config.MAX_PIXELS).gray
    pixels = encoding.gray_to_uint8(gray)
    before = encoding.png_bytes_to_labels((store.folder(batch_id) / "teach" / "before" / f"{index}.png").read_bytes(),
                                          gray.shape)
    after = encoding.png_bytes_to_labels(store.outcome(batch_id, index).labels_png, gray.shape)
    return (overlay_figure(pixels, before, opacity=0.6, mode="outline"),
            overlay_figure(pixels, after, opacity=0.6, mode="outline"))


# -- keep, discard -----------------------------------------------------------------------------------------


def keep_tuned(store: BatchStore, batch_id: str) -> None:
    """Keep the tuned model as the batch's model (and the results it gave)."""
    state = _state(store, batch_id)
    if state.get("status") != "review":
        raise SaemiInputError("There is no tuned model waiting for Keep or Discard.")
    _write(store, batch_id, {**state, "status": "kept", "message": ""})


def discard_tuned(store: BatchStore, batch_id: str) -> None:
    """Discard the tuned model: the previous settings and the re-analysed images' previous results come back."""
    from app.analysis.pipeline import AnalysisParams

    state = _state(store, batch_id)
    if state.get("status") != "review":
        raise SaemiInputError("There is no tuned model waiting for Keep or Discard.")
    before = store.folder(batch_id) / "teach" / "before"
    result = store.folder(batch_id) / "result"
    for index in state.get("indices", []):
        for suffix in (".json", ".png"):
            shutil.copy(before / f"{index}{suffix}", result / f"{index}{suffix}")
    store.set_params(batch_id, AnalysisParams.from_dict(state["before_params"]))
    store.restore_done(batch_id, {int(i): n for i, n in state.get("before_counts", {}).items()})
    shutil.rmtree(store.folder(batch_id) / "models" / str(state.get("model")), ignore_errors=True)
    _write(store, batch_id, {**state, "status": "discarded", "message": ""})


# -- download and upload ------------------------------------------------------------------------------------


def model_download(store: BatchStore, batch_id: str) -> dict[str, Any]:
    """``dcc.Download`` payload: the batch's tuned (or uploaded) model as a ``.zip`` (weights, ``config.json``,
    scale scorer)."""
    state = _state(store, batch_id)
    model_dir = store.params(batch_id).model_dir
    if state.get("status") in ("review", "kept") and state.get("model"):
        model_dir = str(store.folder(batch_id) / "models" / state["model"])
    if not model_dir:
        raise SaemiInputError("This batch has no tuned model yet: correct an image and press Teach first.")
    folder = Path(model_dir)
    version = read_config(folder).version
    return {"content": base64.b64encode(model_folder_zip(folder)).decode("ascii"),
            "filename": f"saemi_model_{re.sub(r'[^A-Za-z0-9.-]', '_', version)}.zip", "base64": True,
            "type": "application/zip"}


def upload_model(store: BatchStore, batch_id: str, contents: Any, filename: Any) -> str:
    """Check an uploaded model ``.zip`` (:func:`model.loading.unpack_model_zip`: size, entries, safe mode,
    layer allow-list, input and outputs) and make it the batch's model for the images analysed from now on.

    Returns the sentence naming the model now in use.

    Raises
    ------
    SaemiInputError
        With a sentence for any file that is not a sound SAEMI model ``.zip``.
    """
    state = status(store, batch_id)
    if state.get("status") in BUSY or state.get("status") == "review":
        raise SaemiInputError("Finish the fine-tune (Keep or Discard) before uploading a model.")
    if not isinstance(contents, str):
        raise SaemiInputError("Choose a model .zip to upload.")
    name = str(filename or "model.zip")[:100]
    if len(contents) * 3 // 4 > MAX_MODEL_ZIP_BYTES + 1000:
        raise SaemiInputError(f"The model file is larger than {MAX_MODEL_ZIP_BYTES // 1_000_000} MB.")
    data = imageio.decode_data_url(contents, MAX_MODEL_ZIP_BYTES, "model file")
    folder = store.folder(batch_id) / "models" / f"upload-{new_batch_id()[:16]}"
    try:
        unpack_model_zip(data, folder)
    except ModelLoadError as exc:
        raise SaemiInputError(f"The model file '{name}' was refused: {exc}") from exc
    params = store.params(batch_id)
    store.set_params(batch_id, replace(params, segmenter="unet", model_dir=str(folder)))
    _write(store, batch_id, {"status": "uploaded", "uploaded_name": name, "message": ""})
    return model_in_use(store, batch_id)
