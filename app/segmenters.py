"""Registry of the segmenters the app and CLI offer. The U-Net is the default once its weights ship."""

from __future__ import annotations

import functools

from app import config
from app.analysis.errors import SaemiInputError
from app.analysis.segmentation import ClassicalSegmenter, Segmenter

SEGMENTER_CHOICES: list[tuple[str, str]] = [
    ("unet", "U-Net (deep learning, default)"),
    ("classical", "Classical (threshold + watershed)"),
]
SEGMENTER_NAMES = tuple(name for name, _ in SEGMENTER_CHOICES)


def shipped_model_present() -> bool:
    """True when the shipped U-Net weights and their config are in the model folder."""
    return (config.MODEL_DIR / "saemi_unet.keras").is_file() and (config.MODEL_DIR / "config.json").is_file()


def default_segmenter_name() -> str:
    """``SAEMI_SEGMENTER`` if set, else ``unet`` when its weights ship, else ``classical``."""
    if config.SEGMENTER_OVERRIDE:
        return config.SEGMENTER_OVERRIDE
    return "unet" if shipped_model_present() else "classical"


@functools.lru_cache(maxsize=None)
def get_segmenter(name: str) -> Segmenter:
    """The segmenter called ``name``, built once per process (the U-Net loads its weights lazily).

    Raises
    ------
    SaemiInputError
        For an unknown name.
    """
    if name == "classical":
        return ClassicalSegmenter()
    if name == "unet":
        from model.segmenter import UNetSegmenter

        return UNetSegmenter()
    raise SaemiInputError(f"Unknown segmenter '{name}'; choose one of: {', '.join(SEGMENTER_NAMES)}.")
