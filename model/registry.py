"""The segmenters SAEMI offers, by name: the U-Net (default once its weights ship) and the classical one."""

from __future__ import annotations

import os

from app.analysis.errors import SaemiInputError
from app.analysis.segmentation import ClassicalSegmenter, Segmenter
from model.segmenter import UNetSegmenter

#: (name, label) of each segmenter, in the order the page lists them.
SEGMENTER_CHOICES: tuple[tuple[str, str], ...] = (
    ("unet", "U-Net (deep learning, default)"),
    ("classical", "Classical (threshold + watershed)"),
)
SEGMENTER_NAMES = tuple(name for name, _ in SEGMENTER_CHOICES)


def make_segmenter(name: str, *, diameter_px: float | None = None, views: int | None = None,
                   model_dir: str | os.PathLike | None = None) -> Segmenter:
    """A new segmenter called ``name`` (the U-Net loads its weights lazily, once per process and folder).

    Parameters
    ----------
    name : str
        One of :data:`SEGMENTER_NAMES`.
    diameter_px : float, optional
        Typical particle diameter in image pixels; the U-Net then looks once, at its scale, instead of at
        every octave.
        The classical segmenter ignores it.
    views : int, optional
        Views of the image the U-Net averages in each pass (1 to 4; default: its config's).
        The classical segmenter ignores it.
    model_dir : path, optional
        The U-Net's model folder (default :func:`model.config.default_model_dir`).

    Raises
    ------
    SaemiInputError
        For an unknown name, or a diameter or a number of views the U-Net cannot take.
    """
    if name == "classical":
        return ClassicalSegmenter()
    if name == "unet":
        return UNetSegmenter(model_dir, diameter_px=diameter_px, views=views)
    raise SaemiInputError(f"Unknown segmenter '{name}'; choose one of: {', '.join(SEGMENTER_NAMES)}.")
