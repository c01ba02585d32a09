"""Configuration read from environment variables, with documented defaults, in one place.

| variable | default | meaning |
|---|---|---|
| ``SAEMI_MAX_UPLOAD_MB`` | 50 | largest accepted upload, in megabytes (decimal) |
| ``SAEMI_MAX_MEGAPIXELS`` | 70 | largest accepted image, in megapixels (8192 x 8192 = 67 Mpx) |
| ``SAEMI_SEGMENTER`` | ``unet`` when the shipped model is sound, else ``classical`` | default segmenter |
| ``SAEMI_MIN_AREA_PX`` | 10 | default minimum particle area |

Two more belong to the model package and are read there, so that ``model/`` never imports the app:
``SAEMI_MODEL_DIR`` (the folder with the weights and ``config.json``, default ``<repo>/model``;
:func:`model.config.default_model_dir`) and ``SAEMI_DATA_ROOT`` (the real images with masks used by
training and evaluation, default ``<repo>/../shared/datasets``; :func:`model.data.data_root`).
"""

from __future__ import annotations

import os
from pathlib import Path

from app.analysis.imageio import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "demo_images"


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


MAX_UPLOAD_BYTES = int(_env_float("SAEMI_MAX_UPLOAD_MB", DEFAULT_MAX_BYTES / 1e6) * 1_000_000)
MAX_PIXELS = int(_env_float("SAEMI_MAX_MEGAPIXELS", DEFAULT_MAX_PIXELS / 1e6) * 1_000_000)
DEFAULT_MIN_AREA_PX = int(_env_float("SAEMI_MIN_AREA_PX", 10))
SEGMENTER_OVERRIDE = os.environ.get("SAEMI_SEGMENTER") or None
