"""Configuration read from environment variables, with documented defaults, in one place.

| variable | default | meaning |
|---|---|---|
| ``SAEMI_MAX_UPLOAD_MB`` | 50 | largest accepted upload, in megabytes (decimal) |
| ``SAEMI_MAX_MEGAPIXELS`` | 70 | largest accepted image, in megapixels (8192 x 8192 = 67 Mpx) |
| ``SAEMI_SEGMENTER`` | ``unet`` when the shipped model exists, else ``classical`` | default segmenter |
| ``SAEMI_MODEL_DIR`` | ``<repo>/model`` | folder holding ``saemi_unet.keras`` and ``config.json`` |
| ``SAEMI_DATASETS`` | ``<repo>/../shared/datasets`` | real images with masks, for training and evaluation |
| ``SAEMI_MIN_AREA_PX`` | 10 | default minimum particle area |
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "demo_images"


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


MAX_UPLOAD_BYTES = int(_env_float("SAEMI_MAX_UPLOAD_MB", 50.0) * 1_000_000)
MAX_PIXELS = int(_env_float("SAEMI_MAX_MEGAPIXELS", 70.0) * 1_000_000)
DEFAULT_MIN_AREA_PX = int(_env_float("SAEMI_MIN_AREA_PX", 10))
MODEL_DIR = Path(os.environ.get("SAEMI_MODEL_DIR", REPO_ROOT / "model"))
DATASETS_DIR = Path(os.environ.get("SAEMI_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))
SEGMENTER_OVERRIDE = os.environ.get("SAEMI_SEGMENTER") or None
