"""Registry of the segmenters the app and CLI offer. The U-Net is the default once its weights ship."""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

from app import config
from app.analysis.errors import ModelLoadError, SaemiInputError
from app.analysis.segmentation import ClassicalSegmenter, Segmenter

SEGMENTER_CHOICES: list[tuple[str, str]] = [
    ("unet", "U-Net (deep learning, default)"),
    ("classical", "Classical (threshold + watershed)"),
]
SEGMENTER_NAMES = tuple(name for name, _ in SEGMENTER_CHOICES)


def model_problem(model_dir: Path | None = None) -> str | None:
    """Check the shipped model files without importing TensorFlow.

    Reads ``config.json`` and verifies that the ``.keras`` archive it names exists and passes its CRC
    checks. Loading the network itself stays lazy (once per worker process).

    Parameters
    ----------
    model_dir : Path, optional
        Folder with ``config.json`` and the weights; default ``app.config.MODEL_DIR``.

    Returns
    -------
    str or None
        A sentence for the log and the page when the model cannot be used, else None.
    """
    from model.segmenter import WEIGHTS_NAME, read_config

    folder = Path(model_dir) if model_dir is not None else config.MODEL_DIR
    try:
        weights = folder / str(read_config(folder).get("weights", WEIGHTS_NAME))
    except ModelLoadError as exc:
        return f"{exc} The classical segmenter is used instead."
    if not weights.is_file():
        return (f"The U-Net weights {weights} are missing; the classical segmenter is used instead. "
                "Reinstall the model folder to restore the U-Net.")
    try:
        with zipfile.ZipFile(weights) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError):
        damaged = weights.name
    if damaged is not None:
        return (f"The U-Net weights {weights} are corrupted; the classical segmenter is used instead. "
                "Reinstall the model folder to restore the U-Net.")
    return None


def default_segmenter_name(model_dir: Path | None = None) -> str:
    """``SAEMI_SEGMENTER`` if set, else ``unet`` when its files are sound, else ``classical``."""
    if config.SEGMENTER_OVERRIDE:
        return config.SEGMENTER_OVERRIDE
    return "unet" if model_problem(model_dir) is None else "classical"


@functools.lru_cache(maxsize=None)
def get_segmenter(name: str, diameter_px: float | None = None, views: int | None = None) -> Segmenter:
    """The segmenter called ``name``, built once per process and settings (the U-Net loads its weights lazily).

    Parameters
    ----------
    name : str
        One of :data:`SEGMENTER_NAMES`.
    diameter_px : float, optional
        Typical particle diameter in image pixels; the U-Net then skips its automatic size estimate.
        The classical segmenter ignores it. The network weights are cached per model folder, so each
        diameter costs only a small object.
    views : int, optional
        Views of the image the U-Net averages at its chosen scale (1 to 4; default: its config's).
        More views are slower and slightly more accurate. The classical segmenter ignores it.

    Raises
    ------
    SaemiInputError
        For an unknown name, or a diameter or a number of views the U-Net cannot take.
    """
    if name == "classical":
        return ClassicalSegmenter()
    if name == "unet":
        from model.segmenter import UNetSegmenter

        return UNetSegmenter(diameter_px=diameter_px, views=views)
    raise SaemiInputError(f"Unknown segmenter '{name}'; choose one of: {', '.join(SEGMENTER_NAMES)}.")
