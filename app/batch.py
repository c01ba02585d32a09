"""Many images at once, on Dask distributed: the samples engine shared by the command line and the page.

:func:`analyze_job` is the work of one image: a plain function of plain inputs that returns plain data
(:class:`ImageOutcome`), so it runs the same in this process, on a :class:`distributed.LocalCluster` or on
a remote cluster. :func:`run_batch` maps it over the images and yields each outcome as it completes.
Every worker loads the segmenter once, when it starts (:class:`LoadSegmenter`, a worker plugin), never
per image. A task whose worker dies is run again by Dask on another worker; outcomes are keyed by the
image's index, so none is lost or counted twice.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from distributed import WorkerPlugin

from app.analysis.encoding import labels_to_png_bytes
from app.analysis.errors import SaemiInputError
from app.analysis.imageio import decode_image
from app.analysis.pipeline import AnalysisParams
from app.analysis.quality import ImageMeasures, image_measures
from app.analysis.segmentation import ProgressCallback
from app.analysis.workload import relative_work
from app.config import MAX_PIXELS, MAX_UPLOAD_BYTES
from app.engine import analyze_file, get_segmenter
from model.config import ModelLoadError

logger = logging.getLogger(__name__)

#: Environment variable with the address of an existing Dask scheduler (``tcp://host:8786``).
SCHEDULER_ENV = "SAEMI_SCHEDULER"
#: Dask settings for the clusters SAEMI starts itself (see the comments in the file). ``make run`` and the
#: Procfile give them to their ``dask scheduler`` and ``dask worker`` processes through ``DASK_CONFIG``.
DASK_SETTINGS_FILE = Path(__file__).with_name("dask.yaml")


def local_dask_settings() -> dict[str, object]:
    """The settings of :data:`DASK_SETTINGS_FILE` as dotted keys, for ``dask.config.set``.

    Examples
    --------
    >>> local_dask_settings()["distributed.worker.profile.enabled"]
    False
    """
    def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
        flat: dict[str, object] = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                flat.update(flatten(value, f"{prefix}{key}."))
            else:
                flat[f"{prefix}{key}"] = value
        return flat

    return flatten(yaml.safe_load(DASK_SETTINGS_FILE.read_text()))


#: The sample name of every image when no grouping is given.
DEFAULT_SAMPLE = "sample"


@dataclass(frozen=True)
class ImageJob:
    """One image of a batch: its index in the batch, name, file content and sidecar text."""

    index: int
    name: str
    data: bytes
    sidecar_text: str | None = None


@dataclass
class ImageOutcome:
    """What one image gave: its results, or the sentence saying why it could not be analysed."""

    index: int
    name: str
    error: str | None = None
    labels_png: bytes = b""
    particles: pd.DataFrame = field(default_factory=pd.DataFrame)
    provenance: dict[str, str] = field(default_factory=dict)
    summary: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    measures: ImageMeasures | None = None
    shape: tuple[int, int] = (0, 0)
    frame: tuple[int, int] = (0, 0)
    worker_pid: int = 0


def analyze_job(job: ImageJob, params: AnalysisParams, progress: ProgressCallback | None = None) -> ImageOutcome:
    """Analyse one image; a file that cannot be analysed gives an outcome with its sentence.

    ``progress(fraction, message)`` hears the stages of the analysis (see :func:`app.engine.analyze_file`).
    """
    try:
        result = analyze_file(job.data, job.name, params, sidecar_text=job.sidecar_text, progress=progress)
    except (SaemiInputError, ModelLoadError) as exc:
        return ImageOutcome(job.index, job.name, error=str(exc), worker_pid=os.getpid())
    except Exception:  # noqa: BLE001 - one bad file must not stop the batch; logged in full
        logger.exception("Unexpected failure on %s", job.name)
        return ImageOutcome(job.index, job.name, worker_pid=os.getpid(),
                            error="SAEMI failed on this file unexpectedly; the details are in the log.")
    measures = image_measures(result.decoded.gray, result.particles, result.frame, result.calibration.nm_per_px)
    return ImageOutcome(job.index, job.name, labels_png=labels_to_png_bytes(result.label_image),
                        particles=result.particles, provenance=result.provenance(), summary=result.summary(),
                        notes=list(result.notes), measures=measures, shape=tuple(result.decoded.shape),
                        frame=tuple(result.frame), worker_pid=os.getpid())


def work_priority(job: ImageJob) -> int:
    """The Dask priority of an image: its guessed work (:func:`app.analysis.workload.relative_work`),
    so that heavy images start first; 0 for a file that does not decode (it fails at once)."""
    try:
        gray = decode_image(job.data, job.name, max_bytes=MAX_UPLOAD_BYTES, max_pixels=MAX_PIXELS).gray
    except Exception:  # noqa: BLE001 - only a hint; the worker gives the file its sentence
        return 0
    return int(round(relative_work(gray)))


class LoadSegmenter(WorkerPlugin):
    """Dask worker plugin: build (and, for the U-Net, load and trace) the batch's segmenter when a worker
    starts, so every image a worker gets finds the model in memory."""

    name = "saemi-load-segmenter"

    def __init__(self, params: AnalysisParams) -> None:
        self.segmenter = params.segmenter
        self.diameter_px = params.diameter_px
        self.views = params.views
        self.model_dir = params.model_dir

    def setup(self, worker=None) -> None:
        if self.segmenter == "unet":
            _limit_network_threads(getattr(getattr(worker, "state", None), "nthreads", None) or 1)
        segmenter = get_segmenter(self.segmenter, self.diameter_px, self.views, self.model_dir)
        if hasattr(segmenter, "warm_up"):
            segmenter.warm_up()


def _limit_network_threads(threads: int) -> None:
    """Give the network as many threads as the worker has task threads, so that N single-thread workers on
    N cores do not each start N compute threads. TensorFlow takes this only before its first use in the
    process; a worker that already used it keeps its setting."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        logger.debug("TensorFlow already initialised in this worker; its thread settings stay")


#: What a task sends to ``on_stage`` when it starts, before the segmenter reports anything.
STARTED = "Reading the image and its calibration"


def _analyze_reporting(job: ImageJob, params: AnalysisParams, topic: str) -> ImageOutcome:
    """:func:`analyze_job` on a Dask worker, its stages sent as events ``(index, fraction, message)`` on ``topic``."""
    from distributed import get_worker

    worker = get_worker()

    def progress(fraction: float, message: str) -> None:
        worker.log_event(topic, (job.index, float(fraction), str(message)))

    progress(0.0, STARTED)
    return analyze_job(job, params, progress)


def run_batch(jobs: Sequence[ImageJob], params: AnalysisParams, *, client=None,
              on_stage: Callable[[int, float, str], None] | None = None) -> Iterator[ImageOutcome]:
    """Analyse ``jobs`` and yield each :class:`ImageOutcome` as it completes (in no fixed order).

    Parameters
    ----------
    jobs : sequence of ImageJob
        The images.
    params : AnalysisParams
        One setting for all images.
    client : distributed.Client, optional
        Runs the images on its cluster; without one they run here, one after the other.
    on_stage : callable, optional
        ``on_stage(index, fraction, message)`` hears each image's stages while it is analysed (on a cluster,
        as Dask events on a topic of this batch, in the client's event-loop thread).
    """
    if client is None:
        for job in jobs:
            if on_stage is not None:
                on_stage(job.index, 0.0, STARTED)
            progress = None if on_stage is None else functools.partial(on_stage, job.index)
            yield analyze_job(job, params, progress)
        return
    from distributed import as_completed

    client.register_plugin(LoadSegmenter(params))
    if on_stage is None:
        task, extra = analyze_job, {}
    else:
        topic = f"saemi-stage-{uuid.uuid4().hex}"
        client.subscribe_topic(topic, lambda event: on_stage(*event[1]))
        task, extra = _analyze_reporting, {"topic": topic}
    # Each image is sent as soon as its work is guessed; the scheduler starts the queued images heaviest
    # first (Dask runs higher priorities first), so the batch does not end on one heavy image.
    futures = [client.submit(task, job, params=params, pure=False, priority=work_priority(job), **extra)
               for job in jobs]
    try:
        seen: set[int] = set()
        for future in as_completed(futures):
            outcome = future.result()
            if outcome.index not in seen:  # a rerun task cannot give an image twice
                seen.add(outcome.index)
                yield outcome
    finally:
        if on_stage is not None:
            client.unsubscribe_topic(topic)


def sample_of(name: str, pattern: str | None) -> str:
    """The sample an image belongs to: the first group of ``pattern`` matched on its name without the
    extension (:data:`DEFAULT_SAMPLE` without a pattern).

    Raises
    ------
    SaemiInputError
        When the name does not match, or the pattern has no group.

    Examples
    --------
    >>> sample_of("annealed_03.tif", r"(.*)_[^_]*$")
    'annealed'
    """
    if not pattern:
        return DEFAULT_SAMPLE
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    try:
        match = re.search(pattern, stem)
    except re.error as exc:
        raise SaemiInputError(f"The sample pattern {pattern!r} is not a valid regular expression ({exc}).") from exc
    if match is None or not match.groups() or not match.group(1):
        raise SaemiInputError(f"'{name}' does not match the sample pattern {pattern!r} (its first group names the "
                              "sample).")
    return match.group(1)


@contextlib.contextmanager
def batch_client(scheduler: str | None = None, *, workers: int | None = None):
    """A Dask client for a batch, closed (with its local cluster, if it made one) on leaving.

    It connects to the scheduler at ``scheduler`` (or ``$SAEMI_SCHEDULER``), else starts a local cluster
    of ``workers`` processes (default: one per core) with one thread each: the network's own threads
    then do not compete.
    """
    from distributed import Client, LocalCluster

    address = scheduler or os.environ.get(SCHEDULER_ENV)
    if address:
        with Client(address) as client:
            yield client
        return
    import dask

    with dask.config.set(local_dask_settings()), \
            LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                         dashboard_address=None, silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


# -- fine-tuning on a worker ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneExample:
    """One corrected image to learn from: its file, its corrected labels (16-bit PNG), the supervised region
    (a 0/1 PNG, None for the whole image) and the words that describe the region in the provenance."""

    name: str
    data: bytes
    labels_png: bytes
    supervised_png: bytes | None
    region: str


@dataclass(frozen=True)
class TuneJob:
    """A fine-tune: its id, the base model folder's files (name -> bytes), the examples, budget and seed.
    Everything travels with the task, so a worker needs no shared disk."""

    tune_id: str
    base_files: dict[str, bytes]
    examples: tuple[TuneExample, ...]
    minutes: float
    seed: int = 0


@dataclass(frozen=True)
class TuneOutcome:
    """What a fine-tune gave: ``status`` is ``done``, ``cancelled``, ``interrupted`` or ``failed`` (with its
    sentence in ``message``); ``model_zip`` is the tuned model folder (:func:`model.loading.model_folder_zip`)."""

    status: str
    message: str = ""
    model_zip: bytes = b""
    version: str = ""
    steps: int = 0
    seconds: float = 0.0
    first_loss: float = float("nan")
    last_loss: float = float("nan")


#: The sentence of a fine-tune whose worker died (Dask would otherwise run it again from the start).
TUNE_INTERRUPTED = ("The fine-tune was interrupted (its worker stopped), so the previous model stays in use; "
                    "press Teach again to retry.")
TUNE_FAILED = "The fine-tune failed unexpectedly; the details are in the log. The previous model stays in use."


def tune_job(job: TuneJob, progress: Callable[[int, float, float, str], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> TuneOutcome:
    """Fine-tune a copy of the job's base model on its examples (:func:`model.finetune.finetune_images`).

    ``progress(step, loss, seconds_left, phase)`` hears every step (:func:`model.finetune.finetune_images`); a
    true ``should_stop()`` ends the fine-tune, which is then reported ``cancelled`` (without a model).
    """
    import tempfile
    from pathlib import Path

    from app.analysis.encoding import png_bytes_to_labels
    from app.analysis.imageio import decode_image
    from model.finetune import finetune_images, labelled_image
    from model.loading import model_folder_zip

    stopped = []

    def stop() -> bool:
        if should_stop is not None and should_stop():
            stopped.append(True)
        return bool(stopped)

    try:
        with tempfile.TemporaryDirectory(prefix="saemi-tune-") as folder:
            base, out = Path(folder) / "base", Path(folder) / "tuned"
            base.mkdir()
            for name, data in job.base_files.items():
                (base / Path(name).name).write_bytes(data)
            images = []
            for example in job.examples:
                gray = decode_image(example.data, example.name).gray
                labels = png_bytes_to_labels(example.labels_png, gray.shape)
                region = None if example.supervised_png is None else png_bytes_to_labels(example.supervised_png,
                                                                                         gray.shape) > 0
                images.append(labelled_image(gray, labels, example.name, region))
            result = finetune_images(base, images, out, minutes=job.minutes, seed=job.seed, progress=progress,
                                     should_stop=stop, regions={e.name: e.region for e in job.examples})
            if stopped:
                return TuneOutcome("cancelled", "The fine-tune was cancelled; the previous model stays in use.",
                                   steps=result.steps, seconds=result.seconds)
            return TuneOutcome("done", model_zip=model_folder_zip(out), version=result.version, steps=result.steps,
                               seconds=result.seconds, first_loss=result.first_loss, last_loss=result.last_loss)
    except (SaemiInputError, ModelLoadError) as exc:
        return TuneOutcome("failed", f"{exc} The previous model stays in use.")
    except Exception:  # noqa: BLE001 - reported as a sentence; logged in full
        logger.exception("Fine-tune %s failed", job.tune_id)
        return TuneOutcome("failed", TUNE_FAILED)


#: Seconds between two looks of a worker's fine-tune at its cancel event.
CANCEL_CHECK_S = 0.5


def _tune_on_worker(job: TuneJob, topic: str) -> TuneOutcome:
    """:func:`tune_job` on a Dask worker: progress as events on ``topic``, cancelled by the event
    ``<topic>-cancel``. A task that finds it already started once (its worker died and Dask runs it again)
    reports ``interrupted`` instead of starting over."""
    import time

    from distributed import Event, get_worker

    worker = get_worker()
    started = Event(f"{topic}-started")
    if started.is_set():
        return TuneOutcome("interrupted", TUNE_INTERRUPTED)
    started.set()
    cancel = Event(f"{topic}-cancel")
    last_look = [0.0, False]

    def should_stop() -> bool:
        now = time.monotonic()
        if now - last_look[0] >= CANCEL_CHECK_S:
            last_look[:] = [now, cancel.is_set()]
        return bool(last_look[1])

    def progress(step: int, loss: float, seconds_left: float, phase: str) -> None:
        worker.log_event(topic, (int(step), float(loss), float(seconds_left), str(phase)))

    return tune_job(job, progress, should_stop)


def run_tune(job: TuneJob, *, client=None, on_progress: Callable[[int, float, float, str], None] | None = None,
             cancelled: Callable[[], bool] | None = None, on_wait: Callable[[], None] | None = None) -> TuneOutcome:
    """Run a fine-tune on ``client``'s cluster (or here, without one) and return its outcome.

    ``on_progress(step, loss, seconds_left, phase)`` hears each step; ``cancelled()`` is asked about once a second
    (and passed on to the worker); ``on_wait()`` is called then too (a heartbeat). A worker that dies
    mid-way gives ``interrupted``: the fine-tune is never restarted silently.
    """
    if client is None:
        return tune_job(job, on_progress, cancelled)
    from distributed import Event

    topic = f"saemi-tune-{job.tune_id}"
    if on_progress is not None:
        client.subscribe_topic(topic, lambda event: on_progress(*event[1]))
    cancel = Event(f"{topic}-cancel", client=client)
    future = client.submit(_tune_on_worker, job, topic, pure=False)
    try:
        while True:
            try:
                return future.result(timeout=1.0)
            except TimeoutError:
                if cancelled is not None and cancelled():
                    cancel.set()
                if on_wait is not None:
                    on_wait()
    finally:
        future.cancel()
        if on_progress is not None:
            client.unsubscribe_topic(topic)
        for name in ("cancel", "started"):
            with contextlib.suppress(Exception):
                Event(f"{topic}-{name}", client=client).clear()
