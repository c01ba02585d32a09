"""The samples view's batches, kept on the server: a folder per batch and one SQLite index.

The browser keeps only a batch's id (:func:`check_batch_id`); everything else lives under
``SAEMI_DATA_DIR/batches`` (:func:`app.config.batches_dir`), so a page reload, another gunicorn worker
or a restarted one finds the batch and loses nothing. Nothing is created before the first batch is
stored.

Layout::

    batches/index.sqlite            the index (WAL mode; each change is one short transaction)
    batches/<id>/input/<i>          the uploaded bytes of image i (and <i>.txt, its sidecar)
    batches/<id>/result/<i>.json    what the analysis gave (particles, provenance, summary, measures)
    batches/<id>/result/<i>.png     its label image (16-bit PNG)
    batches/<id>/current/<i>.json   the image after corrections on the page (labels, particles,
                                    calibration, edits and the analysis they apply to), when any
    batches/<id>/teach/             the fine-tune of the batch's model (:mod:`app.session.teach`): its
                                    state, a cancel request, the results it replaced
    batches/<id>/models/<name>/     tuned and uploaded model folders (weights, config.json, scale scorer)
    batches/<id>/classes/<h>.json   a sample's particle classes (names and clicked examples), <h> a hash
                                    of the sample name

Tables of ``index.sqlite``:

``batches`` (``id``, ``created``, ``params`` as JSON, ``n_images``, ``revision``, ``runner``, ``heartbeat``)
    ``revision`` grows with every change of the batch, so a page redraws only when it moved; ``runner``
    and ``heartbeat`` name the thread analysing the batch and when it last showed life
    (:mod:`app.session.batchrun`).
``images`` (``batch_id``, ``idx``, ``name``, ``sample``, ``status``, ``stage``, ``error``, ``excluded``,
``n_particles``, ``updated``)
    ``status`` is ``queued``, ``done`` or ``failed``; ``stage`` the last stage reported while it runs.
``checked`` (``batch_id``, ``idx``)
    the images the user marked as fully checked (every pixel of their labels is right).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from app import config
from app.analysis.errors import SaemiInputError
from app.analysis.pipeline import AnalysisParams
from app.analysis.quality import ImageMeasures
from app.batch import DEFAULT_SAMPLE, ImageJob, ImageOutcome
from app.session.stores import table_from_json, table_to_json

#: A batch id: ``secrets.token_urlsafe(24)``, 32 characters of the URL-safe base64 alphabet.
BATCH_ID = re.compile(r"[A-Za-z0-9_-]{32}")
_IMAGE_REF = re.compile(r"([A-Za-z0-9_-]{32})/(\d{1,6})")
#: The sentence for an id that is malformed, unknown or expired.
UNKNOWN_BATCH = ("This batch is not on the server (it may have expired after {hours:.0f} hours); "
                 "please upload the images again.")
#: Longest sample name.
MAX_SAMPLE_NAME = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    params TEXT NOT NULL,
    n_images INTEGER NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0,
    runner TEXT,
    heartbeat REAL
);
CREATE TABLE IF NOT EXISTS images (
    batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    sample TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    stage TEXT NOT NULL DEFAULT '',
    error TEXT,
    excluded INTEGER NOT NULL DEFAULT 0,
    n_particles INTEGER,
    updated REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, idx)
);
CREATE INDEX IF NOT EXISTS batches_created ON batches(created);
CREATE TABLE IF NOT EXISTS checked (
    batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    PRIMARY KEY (batch_id, idx)
);
"""


@dataclass(frozen=True)
class NewImage:
    """One image of a new batch: its name, bytes, sidecar text (if any) and sample."""

    name: str
    data: bytes
    sidecar_text: str | None = None
    sample: str = DEFAULT_SAMPLE


@dataclass(frozen=True)
class ImageRow:
    """One image as the index lists it."""

    index: int
    name: str
    sample: str
    status: str
    stage: str
    error: str | None
    excluded: bool
    n_particles: int | None


@dataclass(frozen=True)
class Progress:
    """Where a batch stands: images finished (done or failed) of the total, and the stage of the latest."""

    total: int
    done: int
    failed: int
    stage: str
    revision: int

    @property
    def finished(self) -> bool:
        return self.done + self.failed >= self.total


@dataclass(frozen=True)
class CurrentImage:
    """An image after the page's corrections (canvas edits, calibration, a rerun with other settings)."""

    labels_png: bytes
    particles: pd.DataFrame
    nm_per_px: float | None
    provenance: dict[str, str]
    analysis: dict[str, Any]
    edits: dict[str, Any]


def new_batch_id() -> str:
    """A fresh, unguessable batch id."""
    return secrets.token_urlsafe(24)


def check_sample_name(name: object) -> str:
    """A sample name as typed, stripped; refused when empty, too long or not printable text."""
    text = str(name or "").strip() if isinstance(name, (str, type(None))) else ""
    if not text or len(text) > MAX_SAMPLE_NAME or not text.isprintable():
        raise SaemiInputError(f"A sample name is 1 to {MAX_SAMPLE_NAME} printable characters.")
    return text


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _unique_names(names: Sequence[str]) -> list[str]:
    """The names, each stem made unique by a ``_2``, ``_3``... (the download names files after the stems).

    Examples
    --------
    >>> _unique_names(["a.png", "A.tif", "b.png"])
    ['a.png', 'A_2.tif', 'b.png']
    """
    seen: set[str] = set()
    unique = []
    for name in names:
        stem, dot, suffix = name.rpartition(".")
        if not dot or not stem:
            stem, suffix = name, ""
        candidate, number = stem, 2
        while candidate.lower() in seen:
            candidate = f"{stem}_{number}"
            number += 1
        seen.add(candidate.lower())
        unique.append(f"{candidate}.{suffix}" if suffix else candidate)
    return unique


def image_ref(batch_id: str, index: int) -> str:
    """The text that names one image of a batch in the page's ``source`` store."""
    return f"{batch_id}/{index}"


def parse_image_ref(text: object) -> tuple[str, int]:
    """(batch id, image index) from :func:`image_ref`'s text, checked for format.

    Examples
    --------
    >>> parse_image_ref("A" * 32 + "/3")[1]
    3
    """
    match = _IMAGE_REF.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise SaemiInputError("That image is not part of this batch.")
    return match.group(1), int(match.group(2))


class BatchStore:
    """The batches under ``root`` (default :func:`app.config.batches_dir`), kept ``ttl_s`` seconds.

    Every method opens its own short connection, so one store can be shared by threads, and any number
    of stores (one per process) can work on the same folder.
    """

    def __init__(self, root: Path | None = None, *, ttl_s: float | None = None) -> None:
        self.root = Path(root) if root is not None else config.batches_dir()
        self.ttl_s = config.BATCH_TTL_S if ttl_s is None else float(ttl_s)

    # -- connection -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.root.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.root / "index.sqlite", timeout=30, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.executescript(_SCHEMA)
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    def folder(self, batch_id: str) -> Path:
        """The folder of a batch (its id checked for format only)."""
        if not isinstance(batch_id, str) or not BATCH_ID.fullmatch(batch_id):
            raise self._unknown()
        return self.root / batch_id

    def _unknown(self) -> SaemiInputError:
        return SaemiInputError(UNKNOWN_BATCH.format(hours=self.ttl_s / 3600))

    # -- batches ----------------------------------------------------------------------------------
    def create(self, images: Sequence[NewImage], params: AnalysisParams) -> str:
        """Store a new batch's images (all queued) and return its id; expired batches are removed first."""
        if not images:
            raise SaemiInputError("The upload holds no image.")
        self.expire()
        batch_id = new_batch_id()
        folder = self.folder(batch_id)
        names = _unique_names([image.name for image in images])
        for index, image in enumerate(images):
            _write_atomic(folder / "input" / str(index), image.data)
            if image.sidecar_text is not None:
                _write_atomic(folder / "input" / f"{index}.txt", image.sidecar_text.encode("utf-8"))
        now = time.time()
        with self._db() as db:
            db.execute("INSERT INTO batches (id, created, params, n_images) VALUES (?, ?, ?, ?)",
                       (batch_id, now, json.dumps(params.to_dict()), len(images)))
            db.executemany("INSERT INTO images (batch_id, idx, name, sample, updated) VALUES (?, ?, ?, ?, ?)",
                           [(batch_id, index, name, check_sample_name(image.sample), now)
                            for index, (name, image) in enumerate(zip(names, images))])
        return batch_id

    def check_id(self, batch_id: object) -> str:
        """``batch_id`` when it is well formed and names a batch on the server that has not expired.

        Raises
        ------
        SaemiInputError
            Otherwise (the same sentence whatever the reason).
        """
        if not isinstance(batch_id, str) or not BATCH_ID.fullmatch(batch_id):
            raise self._unknown()
        with self._db() as db:
            row = db.execute("SELECT created FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None or row[0] < time.time() - self.ttl_s:
            raise self._unknown()
        return batch_id

    def params(self, batch_id: str) -> AnalysisParams:
        """The batch's analysis settings."""
        with self._db() as db:
            row = db.execute("SELECT params FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            raise self._unknown()
        return AnalysisParams.from_dict(json.loads(row[0]))

    def expire(self, now: float | None = None) -> list[str]:
        """Remove the batches older than the time to live; returns their ids."""
        limit = (time.time() if now is None else now) - self.ttl_s
        with self._db() as db:
            old = [row[0] for row in db.execute("SELECT id FROM batches WHERE created < ?", (limit,))]
            db.executemany("DELETE FROM batches WHERE id = ?", [(batch_id,) for batch_id in old])
        for batch_id in old:
            shutil.rmtree(self.root / batch_id, ignore_errors=True)
        return old

    # -- images -----------------------------------------------------------------------------------
    def images(self, batch_id: str) -> list[ImageRow]:
        """The batch's images, in upload order."""
        with self._db() as db:
            rows = db.execute("SELECT idx, name, sample, status, stage, error, excluded, n_particles FROM images "
                              "WHERE batch_id = ? ORDER BY idx", (batch_id,)).fetchall()
        return [ImageRow(index, name, sample, status, stage, error, bool(excluded), n_particles)
                for index, name, sample, status, stage, error, excluded, n_particles in rows]

    def image(self, batch_id: str, index: object) -> ImageRow:
        """One image of the batch; an index that is not one of its images is refused."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise SaemiInputError("That image is not part of this batch.")
        found = [row for row in self.images(batch_id) if row.index == index]
        if not found:
            raise SaemiInputError("That image is not part of this batch.")
        return found[0]

    def progress(self, batch_id: str) -> Progress:
        """Images finished of the total, and the stage last reported by an image still running."""
        with self._db() as db:
            counts = dict(db.execute("SELECT status, COUNT(*) FROM images WHERE batch_id = ? GROUP BY status",
                                     (batch_id,)).fetchall())
            running = db.execute("SELECT name, stage FROM images WHERE batch_id = ? AND status = 'queued' "
                                 "AND stage != '' ORDER BY updated DESC LIMIT 1", (batch_id,)).fetchone()
            revision = db.execute("SELECT revision FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if revision is None:
            raise self._unknown()
        stage = f"{running[0]}: {running[1]}" if running else ""
        return Progress(sum(counts.values()), counts.get("done", 0), counts.get("failed", 0), stage, revision[0])

    def job(self, batch_id: str, index: int) -> ImageJob:
        """The analysis job of one image, read from its stored bytes."""
        row = self.image(batch_id, index)
        folder = self.folder(batch_id) / "input"
        sidecar = folder / f"{index}.txt"
        return ImageJob(index, row.name, (folder / str(index)).read_bytes(),
                        sidecar.read_text(encoding="utf-8") if sidecar.is_file() else None)

    def unfinished(self, batch_id: str) -> list[int]:
        """The indices of the images not analysed yet."""
        return [row.index for row in self.images(batch_id) if row.status == "queued"]

    def set_stage(self, batch_id: str, index: int, stage: str) -> None:
        """Record the stage an image's analysis reports (ignored once the image is finished)."""
        with self._db() as db:
            db.execute("UPDATE images SET stage = ?, updated = ? WHERE batch_id = ? AND idx = ? AND status = 'queued'",
                       (str(stage)[:200], time.time(), batch_id, index))

    def _bump(self, db: sqlite3.Connection, batch_id: str) -> None:
        db.execute("UPDATE batches SET revision = revision + 1 WHERE id = ?", (batch_id,))

    def save_outcome(self, batch_id: str, outcome: ImageOutcome) -> None:
        """Store what an image's analysis gave and mark it done (or failed, with its sentence)."""
        folder = self.folder(batch_id) / "result"
        if outcome.error is None:
            _write_atomic(folder / f"{outcome.index}.png", outcome.labels_png)
            _write_atomic(folder / f"{outcome.index}.json", json.dumps({
                "particles": table_to_json(outcome.particles), "provenance": outcome.provenance,
                "summary": outcome.summary, "notes": outcome.notes,
                "measures": None if outcome.measures is None else asdict(outcome.measures),
                "shape": list(outcome.shape), "frame": list(outcome.frame)}, default=_json_number).encode())
        status = "failed" if outcome.error else "done"
        with self._db() as db:
            db.execute("UPDATE images SET status = ?, error = ?, stage = '', n_particles = ?, updated = ? "
                       "WHERE batch_id = ? AND idx = ?",
                       (status, outcome.error, None if outcome.error else len(outcome.particles), time.time(),
                        batch_id, outcome.index))
            self._bump(db, batch_id)

    def fail_unfinished(self, batch_id: str, sentence: str) -> None:
        """Mark every image not analysed yet as failed with ``sentence``."""
        with self._db() as db:
            db.execute("UPDATE images SET status = 'failed', error = ?, stage = '', updated = ? "
                       "WHERE batch_id = ? AND status = 'queued'", (sentence, time.time(), batch_id))
            self._bump(db, batch_id)

    def outcome(self, batch_id: str, index: int) -> ImageOutcome:
        """An analysed image as its analysis gave it (before any correction on the page)."""
        row = self.image(batch_id, index)
        if row.status != "done":
            raise SaemiInputError(f"'{row.name}' has no results yet." if row.status == "queued"
                                  else f"'{row.name}' could not be analysed: {row.error}")
        folder = self.folder(batch_id) / "result"
        data = json.loads((folder / f"{index}.json").read_text(encoding="utf-8"))
        measures = data.get("measures")
        return ImageOutcome(index, row.name, labels_png=(folder / f"{index}.png").read_bytes(),
                            particles=table_from_json(data["particles"]), provenance=data["provenance"],
                            summary=data["summary"], notes=list(data["notes"]),
                            measures=None if measures is None else ImageMeasures(**measures),
                            shape=tuple(data["shape"]), frame=tuple(data["frame"]))

    def save_current(self, batch_id: str, index: int, current: CurrentImage) -> None:
        """Store an image as corrected on the page; the pooled results use it from now on."""
        self.image(batch_id, index)
        folder = self.folder(batch_id) / "current"
        _write_atomic(folder / f"{index}.png", current.labels_png)
        _write_atomic(folder / f"{index}.json", json.dumps({
            "particles": table_to_json(current.particles), "nm_per_px": current.nm_per_px,
            "provenance": current.provenance, "analysis": current.analysis,
            "edits": current.edits}, default=_json_number).encode())
        with self._db() as db:
            db.execute("UPDATE images SET n_particles = ?, updated = ? WHERE batch_id = ? AND idx = ?",
                       (len(current.particles), time.time(), batch_id, index))
            self._bump(db, batch_id)

    def current(self, batch_id: str, index: int) -> CurrentImage | None:
        """The image as corrected on the page, or None when it was not corrected."""
        folder = self.folder(batch_id) / "current"
        path = folder / f"{index}.json"
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return CurrentImage((folder / f"{index}.png").read_bytes(), table_from_json(data["particles"]),
                            data["nm_per_px"], data["provenance"], data["analysis"], data["edits"])

    def set_excluded(self, batch_id: str, index: int, excluded: bool) -> None:
        """Leave an image out of its sample's pool, or take it back."""
        self.image(batch_id, index)
        with self._db() as db:
            db.execute("UPDATE images SET excluded = ? WHERE batch_id = ? AND idx = ?",
                       (int(bool(excluded)), batch_id, index))
            self._bump(db, batch_id)

    def set_samples(self, batch_id: str, samples: Mapping[int, str]) -> None:
        """Assign images (by index) to samples."""
        known = {row.index for row in self.images(batch_id)}
        if not set(samples) <= known:
            raise SaemiInputError("That image is not part of this batch.")
        names = {index: check_sample_name(name) for index, name in samples.items()}
        with self._db() as db:
            db.executemany("UPDATE images SET sample = ? WHERE batch_id = ? AND idx = ?",
                           [(name, batch_id, index) for index, name in names.items()])
            self._bump(db, batch_id)

    def set_params(self, batch_id: str, params: AnalysisParams) -> None:
        """Change the batch's analysis settings (for the images analysed from now on)."""
        with self._db() as db:
            db.execute("UPDATE batches SET params = ? WHERE id = ?", (json.dumps(params.to_dict()), batch_id))
            self._bump(db, batch_id)

    def requeue(self, batch_id: str, indices: Sequence[int]) -> None:
        """Queue finished images again (their stored results stay until new ones replace them)."""
        with self._db() as db:
            db.executemany("UPDATE images SET status = 'queued', stage = '', error = NULL, updated = ? "
                           "WHERE batch_id = ? AND idx = ?", [(time.time(), batch_id, int(i)) for i in indices])
            self._bump(db, batch_id)

    def restore_done(self, batch_id: str, counts: Mapping[int, int]) -> None:
        """Mark images done again with their particle counts (results put back in their folder)."""
        with self._db() as db:
            db.executemany("UPDATE images SET status = 'done', stage = '', error = NULL, n_particles = ?, "
                           "updated = ? WHERE batch_id = ? AND idx = ?",
                           [(int(n), time.time(), batch_id, int(i)) for i, n in counts.items()])
            self._bump(db, batch_id)

    def checked(self, batch_id: str) -> set[int]:
        """The images marked as fully checked."""
        with self._db() as db:
            return {row[0] for row in db.execute("SELECT idx FROM checked WHERE batch_id = ?", (batch_id,))}

    def set_checked(self, batch_id: str, index: int, checked: bool) -> None:
        """Mark an image as fully checked (all its labels are right), or not."""
        self.image(batch_id, index)
        with self._db() as db:
            if checked:
                db.execute("INSERT OR IGNORE INTO checked (batch_id, idx) VALUES (?, ?)", (batch_id, index))
            else:
                db.execute("DELETE FROM checked WHERE batch_id = ? AND idx = ?", (batch_id, index))
            self._bump(db, batch_id)

    def read_json(self, batch_id: str, name: str) -> Any:
        """A JSON file of the batch's folder (``teach/state.json``...), or None when there is none."""
        path = self.folder(batch_id) / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def write_json(self, batch_id: str, name: str, data: Any) -> None:
        """Write a JSON file of the batch's folder atomically."""
        _write_atomic(self.folder(batch_id) / name, json.dumps(data, default=_json_number).encode())

    def write_json_if(self, batch_id: str, name: str, allowed: Callable[[Any], bool], data: Any) -> bool:
        """Write ``data`` to a JSON file of the batch's folder only if ``allowed(what it holds now)``; the
        check and the write hold the index's write lock, so two processes cannot both pass the check."""
        with self._db():
            if not allowed(self.read_json(batch_id, name)):
                return False
            self.write_json(batch_id, name, data)
        return True

    def _classes_path(self, batch_id: str, sample: str) -> Path:
        return self.folder(batch_id) / "classes" / f"{hashlib.sha256(sample.encode('utf-8')).hexdigest()[:32]}.json"

    def save_classes(self, batch_id: str, sample: str, classes: Mapping[str, Any] | None) -> None:
        """Store the particle classes of a sample (their names and clicked examples, see
        :meth:`app.session.classes.ClassesState.to_dict`), or forget them (None)."""
        self.check_id(batch_id)
        name = check_sample_name(sample)
        path = self._classes_path(batch_id, name)
        if classes is None:
            path.unlink(missing_ok=True)
        else:
            _write_atomic(path, json.dumps({"sample": name, "classes": dict(classes)},
                                           default=_json_number).encode())
        with self._db() as db:
            self._bump(db, batch_id)

    def classes(self, batch_id: str) -> dict[str, dict]:
        """The particle classes stored per sample (sample name -> what :meth:`save_classes` was given)."""
        folder = self.folder(batch_id) / "classes"
        stored = {}
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            data = json.loads(path.read_text(encoding="utf-8"))
            stored[str(data["sample"])] = data["classes"]
        return stored

    # -- the runner's claim -----------------------------------------------------------------------
    def claim(self, batch_id: str, runner: str, *, stale_s: float) -> bool:
        """Make ``runner`` the batch's runner unless another one showed life in the last ``stale_s`` seconds."""
        now = time.time()
        with self._db() as db:
            changed = db.execute("UPDATE batches SET runner = ?, heartbeat = ? WHERE id = ? AND "
                                 "(runner IS NULL OR heartbeat IS NULL OR heartbeat < ?)",
                                 (runner, now, batch_id, now - stale_s)).rowcount
        return changed == 1

    def heartbeat(self, batch_id: str, runner: str) -> bool:
        """Record that ``runner`` is alive; False when it is no longer the batch's runner."""
        with self._db() as db:
            changed = db.execute("UPDATE batches SET heartbeat = ? WHERE id = ? AND runner = ?",
                                 (time.time(), batch_id, runner)).rowcount
        return changed == 1

    def release(self, batch_id: str, runner: str) -> None:
        """``runner`` stops running the batch."""
        with self._db() as db:
            db.execute("UPDATE batches SET runner = NULL, heartbeat = NULL WHERE id = ? AND runner = ?",
                       (batch_id, runner))


def _json_number(value: object) -> object:
    """numpy scalars in JSON (the summaries hold some)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
