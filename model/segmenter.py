"""The U-Net segmenter: SAEMI's default :class:`app.analysis.segmentation.Segmenter`.

The shipped network (``model/saemi_unet.keras``) and its settings (``model/config.json``) are loaded
lazily, once per process, in Keras safe mode. Segmentation normalises the image, estimates the
particle size with a first pass at a reduced scale, rescales so that particles appear at the size
the network was trained on (as Cellpose does with its diameter), runs tiled inference, and turns
the two output maps into instances with a marker-controlled watershed.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.analysis.errors import ModelLoadError, SaemiInputError
from model.inference import Progress, predict_at_scale
from model.postprocess import maps_to_instances
from model.preprocess import median_diameter_px, normalize_percentile

logger = logging.getLogger(__name__)

#: Environment variable naming the folder with ``saemi_unet.keras`` and ``config.json``.
MODEL_DIR_ENV = "SAEMI_MODEL_DIR"
WEIGHTS_NAME = "saemi_unet.keras"
CONFIG_NAME = "config.json"


def default_model_dir() -> Path:
    """``$SAEMI_MODEL_DIR`` if set, else the folder of this module (where the weights ship)."""
    return Path(os.environ.get(MODEL_DIR_ENV, Path(__file__).resolve().parent))


@dataclass(frozen=True)
class ShippedModel:
    """A loaded network with the settings it was trained and validated with."""

    model: object
    config: dict


def read_config(model_dir: Path) -> dict:
    """Read ``config.json`` from ``model_dir``.

    Raises
    ------
    ModelLoadError
        When the file is missing or is not valid JSON.
    """
    path = Path(model_dir) / CONFIG_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ModelLoadError(f"The model settings file {path} is missing; reinstall SAEMI's model folder "
                             "or choose the classical segmenter.") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"The model settings file {path} is corrupted ({err}).") from err


def load_keras_model(path: Path):
    """Load a ``.keras`` file in safe mode without compiling it.

    Raises
    ------
    ModelLoadError
        When the file is missing or cannot be read as a Keras model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"The segmentation model weights {path} are missing; reinstall SAEMI's model "
                             "folder or choose the classical segmenter.")
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # Keras raises many types (ValueError, OSError, zipfile errors) for bad files.
        raise ModelLoadError(f"The segmentation model weights {path} are corrupted or unreadable "
                             f"({type(err).__name__}); reinstall SAEMI's model folder.") from err


@functools.lru_cache(maxsize=4)
def load_shipped_model(model_dir: str | None = None) -> ShippedModel:
    """Load the shipped network and its config once per process (cached per folder).

    Parameters
    ----------
    model_dir : str, optional
        Folder holding ``saemi_unet.keras`` and ``config.json``; default :func:`default_model_dir`.

    Raises
    ------
    ModelLoadError
        When either file is missing or corrupted.
    """
    folder = Path(model_dir) if model_dir else default_model_dir()
    config = read_config(folder)
    model = load_keras_model(folder / config.get("weights", WEIGHTS_NAME))
    logger.info("Loaded segmentation model %s version %s", folder, config.get("version"))
    return ShippedModel(model, config)


def _as_gray(gray: np.ndarray) -> np.ndarray:
    gray = np.asarray(gray)
    if gray.ndim == 3 and gray.shape[-1] in (3, 4):
        gray = gray[..., :3].mean(axis=-1)
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise SaemiInputError(f"The segmenter needs a 2-D grayscale image; got an array of shape {gray.shape}.")
    return gray.astype(np.float32, copy=False)


class UNetSegmenter:
    """Segment particles with the shipped U-Net (name ``"unet"``).

    Parameters
    ----------
    model_dir : str or Path, optional
        Folder with ``saemi_unet.keras`` and ``config.json``; default :func:`default_model_dir`.
        Nothing is read until :meth:`load` or :meth:`segment` is called.
    """

    name = "unet"

    def __init__(self, model_dir: str | os.PathLike | None = None) -> None:
        self.model_dir = str(Path(model_dir)) if model_dir is not None else str(default_model_dir())

    def load(self) -> ShippedModel:
        """Load (once per process) and return the network and its config; raises ``ModelLoadError``."""
        return load_shipped_model(self.model_dir)

    @property
    def version(self) -> str:
        """Model version from ``config.json`` (recorded in provenance)."""
        return str(self.load().config.get("version", "unknown"))

    def predict_maps(self, gray: np.ndarray, *, progress: Progress | None = None) -> tuple[np.ndarray, float]:
        """Network output maps at the resolution of ``gray`` and the scale they were computed at.

        A first pass at a reduced scale (longest side about ``first_pass_max_side_px``) gives a
        particle-size estimate; further passes rescale the image so that the median particle
        diameter is near the training diameter, until the scale changes by less than the tolerance.

        Returns
        -------
        maps : numpy.ndarray
            float32 (rows, cols, 2): particle probability and centre map.
        scale : float
            The scale factor of the final pass.
        """
        shipped = self.load()
        cfg = shipped.config
        scaling = cfg["input_scale"]
        image = normalize_percentile(_as_gray(gray), *cfg["normalisation"]["percentiles"])
        rows, cols = image.shape
        max_scale = min(scaling["max_scale"], np.sqrt(scaling["max_scaled_pixels"] / (rows * cols)))
        scale = float(np.clip(scaling["first_pass_max_side_px"] / max(rows, cols), scaling["min_scale"], 1.0))
        scale = min(scale, max_scale)
        tried: list[float] = []
        maps = None
        for pass_index in range(scaling["max_passes"]):
            def pass_progress(fraction: float, message: str, _i: int = pass_index) -> None:
                if progress is not None:
                    progress(min(0.9, (_i + fraction) / scaling["max_passes"]), message)

            maps = predict_at_scale(shipped.model, image, scale, tile=cfg["tile_px"], overlap=cfg["overlap_px"],
                                    batch_size=cfg["batch_size"], progress=pass_progress)
            tried.append(scale)
            if pass_index + 1 == scaling["max_passes"]:
                break
            next_scale = self._next_scale(maps, scale, max_scale, cfg)
            if any(max(next_scale / s, s / next_scale) <= scaling["rescale_tolerance"] for s in tried):
                break
            scale = next_scale
        logger.debug("U-Net passes at scales %s", tried)
        return maps, scale

    @staticmethod
    def _next_scale(maps: np.ndarray, scale: float, max_scale: float, cfg: dict) -> float:
        """Scale that brings the median particle diameter found in ``maps`` to the training diameter."""
        # Instances at the network's own resolution are enough for a size estimate and cheap to get.
        step = max(1, int(round(1.0 / scale)))
        labels = maps_to_instances(maps[::step, ::step, 0], maps[::step, ::step, 1],
                                   foreground_threshold=cfg["thresholds"]["foreground"],
                                   centre_threshold=cfg["thresholds"]["centre"])
        diameter_px = median_diameter_px(labels, min_area_px=4)
        if diameter_px is None:
            return min(1.0, max_scale) if scale < 1.0 else scale
        diameter_px *= step
        target = cfg["input_scale"]["target_diameter_px"] / diameter_px
        return float(np.clip(target, cfg["input_scale"]["min_scale"], max_scale))

    def segment(self, gray: np.ndarray, *, progress: Progress | None = None) -> np.ndarray:
        """Return int32 instance labels (0 = background) of the same shape as ``gray``.

        Parameters
        ----------
        gray : numpy.ndarray
            2-D float image (values in [0, 1] by convention; any range works since the image is
            normalised by percentiles). An RGB(A) array is averaged to gray.
        progress : callable, optional
            ``progress(fraction, message)``.

        Raises
        ------
        ModelLoadError
            When the shipped weights or their config are missing or corrupted.
        """
        maps, scale = self.predict_maps(gray, progress=progress)
        thresholds = self.load().config["thresholds"]
        area_factor = 1.0 / scale ** 2  # network-scale areas to areas in image pixels
        if progress is not None:
            progress(0.92, "Separating particles")
        labels = maps_to_instances(
            maps[..., 0], maps[..., 1], foreground_threshold=thresholds["foreground"],
            centre_threshold=thresholds["centre"],
            min_marker_area_px=max(1, int(round(thresholds["min_marker_area_px"] * area_factor))),
            min_area_px=max(1, int(round(thresholds["min_area_px"] * area_factor))))
        if progress is not None:
            progress(1.0, "Segmentation done")
        return labels
