"""Configuration read from environment variables, with documented defaults, in one place.

| variable | default | meaning |
|---|---|---|
| ``SAEMI_MAX_UPLOAD_MB`` | 50 | largest accepted upload, in megabytes (decimal) |
| ``SAEMI_MAX_MEGAPIXELS`` | 70 | largest accepted image, in megapixels (8192 x 8192 = 67 Mpx) |
| ``SAEMI_SEGMENTER`` | ``unet`` when the shipped model is sound, else ``classical`` | default segmenter |
| ``SAEMI_MIN_AREA_PX`` | 10 | default minimum particle area |
| ``SAEMI_MAX_SIDECAR_KB`` | 1000 | largest JEOL/Hitachi ``.txt`` file uploaded with an image, in kilobytes |
| ``SAEMI_SECRET_KEY`` | generated into ``SAEMI_DATA_DIR`` | signs the page's stored data (same value on every server) |
| ``SAEMI_DATA_DIR`` | ``~/.cache/saemi`` (``$XDG_CACHE_HOME``) | the server's own files (the generated key) |
| ``SAEMI_STORE_MAX_AGE_H`` | 168 | hours the page's stored data stays valid; an older page must be reloaded |
| ``SAEMI_MAX_BATCH_MB`` | 100 | largest batch upload of the samples view (all files, a ``.zip`` counted unpacked), MB |
| ``SAEMI_BATCH_TTL_HOURS`` | 48 | hours a batch's results are kept on the server (``SAEMI_DATA_DIR/batches``) |
| ``SAEMI_SCHEDULER`` | unset | Dask scheduler of the samples view (``tcp://host:8786``); unset: the web worker |
| ``SAEMI_TEACH_MINUTES`` | 3 | time budget of "Teach the model on my corrections" (a fine-tune), in minutes |

Derived limits: the request body (Flask ``MAX_CONTENT_LENGTH``) is :data:`MAX_REQUEST_BYTES`, three
times the upload limit: the largest callback carries the upload's base64 data URL (4/3 of the file)
and its sidecar, or the analysis and image stores of the previous analysis (each below the file's
size for the images SAEMI accepts). The browser's ``dcc.Upload`` refuses files over
:data:`MAX_UPLOAD_BYTES` before sending them. Every limit of the analysis core (TIFF pages and samples,
brush width, strokes per save, ...) is listed with its reason in :mod:`app.analysis.limits`.

Two more belong to the model package and are read there, so that ``model/`` never imports the app:
``SAEMI_MODEL_DIR`` (the folder with the weights and ``config.json``, default ``<repo>/model``;
:func:`model.config.default_model_dir`) and ``SAEMI_DATA_ROOT`` (the real images with masks used by
training and evaluation, default ``<repo>/../shared/datasets``; :func:`model.data.data_root`).
"""

from __future__ import annotations

import os
from pathlib import Path

from app.analysis.limits import DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, MAX_SIDECAR_BYTES

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "demo_images"


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


MAX_UPLOAD_BYTES = int(_env_float("SAEMI_MAX_UPLOAD_MB", DEFAULT_MAX_BYTES / 1e6) * 1_000_000)
MAX_PIXELS = int(_env_float("SAEMI_MAX_MEGAPIXELS", DEFAULT_MAX_PIXELS / 1e6) * 1_000_000)
DEFAULT_MIN_AREA_PX = int(_env_float("SAEMI_MIN_AREA_PX", 10))
SEGMENTER_OVERRIDE = os.environ.get("SAEMI_SEGMENTER") or None
MAX_SIDECAR_BYTES = int(_env_float("SAEMI_MAX_SIDECAR_KB", MAX_SIDECAR_BYTES / 1e3) * 1_000)
MAX_REQUEST_BYTES = 3 * MAX_UPLOAD_BYTES
SECRET_KEY = os.environ.get("SAEMI_SECRET_KEY") or None
STORE_MAX_AGE_S = int(_env_float("SAEMI_STORE_MAX_AGE_H", 168) * 3600)
MAX_BATCH_BYTES = int(_env_float("SAEMI_MAX_BATCH_MB", DEFAULT_MAX_BATCH_BYTES / 1e6) * 1_000_000)
BATCH_TTL_S = _env_float("SAEMI_BATCH_TTL_HOURS", 48) * 3600


def teach_minutes() -> float:
    """The fine-tune's time budget (``SAEMI_TEACH_MINUTES``, default 3), read when a fine-tune starts."""
    return _env_float("SAEMI_TEACH_MINUTES", 3.0)


def data_dir() -> Path:
    """Folder of the server's own files (``SAEMI_DATA_DIR``); not created here."""
    configured = os.environ.get("SAEMI_DATA_DIR")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "saemi"


def batches_dir() -> Path:
    """Folder of the samples view's batches (``SAEMI_DATA_DIR/batches``); created when the first batch is stored."""
    return data_dir() / "batches"
