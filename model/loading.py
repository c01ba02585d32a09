"""Loading the network: in Keras safe mode, lazily, once per process and model folder.

TensorFlow is imported only when a network is actually loaded; :func:`model_problem` checks a model
folder without it (start-up uses it to decide whether the U-Net can be offered).
"""

from __future__ import annotations

import functools
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from model.config import ModelConfig, ModelLoadError, default_model_dir, read_config

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShippedModel:
    """A loaded network with the settings it was trained and validated with."""

    model: object
    config: ModelConfig


def load_keras_model(path: str | os.PathLike):
    """Load a ``.keras`` file in safe mode without compiling it.

    Raises
    ------
    ModelLoadError
        When the file is missing or cannot be read as a Keras model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"The segmentation model weights {path.name} are missing; reinstall SAEMI's model "
                             "folder or choose the classical segmenter.")
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # Keras raises many types (ValueError, OSError, zipfile errors) for bad files.
        raise ModelLoadError(f"The segmentation model weights {path.name} are corrupted or unreadable "
                             f"({type(err).__name__}); reinstall SAEMI's model folder.") from err


@functools.lru_cache(maxsize=4)
def load_shipped_model(model_dir: str | None = None) -> ShippedModel:
    """Load the network of a model folder and its settings once per process (cached per folder).

    Parameters
    ----------
    model_dir : str, optional
        Folder holding the weights and ``config.json``; default :func:`model.config.default_model_dir`.

    Raises
    ------
    ModelLoadError
        When either file is missing or corrupted.
    """
    folder = Path(model_dir) if model_dir else default_model_dir()
    config = read_config(folder)
    model = load_keras_model(folder / config.weights)
    logger.info("Loaded segmentation model %s version %s", folder, config.version)
    return ShippedModel(model, config)


def model_problem(model_dir: str | os.PathLike | None = None) -> str | None:
    """Check a model folder without importing TensorFlow.

    Reads ``config.json`` and verifies that the ``.keras`` archive it names exists and passes its CRC
    checks. Loading the network itself stays lazy (once per worker process).

    Parameters
    ----------
    model_dir : path, optional
        Folder with ``config.json`` and the weights; default :func:`model.config.default_model_dir`.

    Returns
    -------
    str or None
        A sentence for the log and the page when the model cannot be used, else None.
    """
    folder = Path(model_dir) if model_dir is not None else default_model_dir()
    try:
        weights = folder / read_config(folder).weights
    except ModelLoadError as exc:
        return f"{exc} The classical segmenter is used instead."
    if not weights.is_file():
        return (f"The U-Net weights {weights.name} are missing; the classical segmenter is used instead. "
                "Reinstall the model folder to restore the U-Net.")
    try:
        with zipfile.ZipFile(weights) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError):
        damaged = weights.name
    if damaged is not None:
        return (f"The U-Net weights {weights.name} are corrupted; the classical segmenter is used instead. "
                "Reinstall the model folder to restore the U-Net.")
    return None


#: Layer types a model folder may use: those of the U-Net factory (:func:`model.unet.build_unet`).
ALLOWED_LAYERS = frozenset({"InputLayer", "Conv2D", "BatchNormalization", "Activation", "MaxPooling2D",
                            "UpSampling2D", "Concatenate"})
#: Largest weights file accepted, and largest total it may unpack to (a zip bomb is refused unopened).
MAX_WEIGHTS_BYTES = 50_000_000
MAX_UNPACKED_BYTES = 200_000_000


def check_weights_file(path: str | os.PathLike) -> None:
    """Refuse a ``.keras`` file that is not a SAEMI U-Net, before and after loading it in safe mode.

    Checked in this order: the file's size, the sizes its zip entries unpack to, loading in Keras safe
    mode (no Lambda layers or other code), the layer types (:data:`ALLOWED_LAYERS`), one grayscale input
    of any size and one output of two maps.

    Raises
    ------
    ModelLoadError
        With a sentence naming the first problem found.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"The model file {path.name} is missing.")
    if path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise ModelLoadError(f"The model file {path.name} is larger than {MAX_WEIGHTS_BYTES // 1_000_000} MB.")
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelLoadError(f"The model file {path.name} is not a Keras archive.") from err
    if unpacked > MAX_UNPACKED_BYTES:
        raise ModelLoadError(f"The model file {path.name} would unpack to {unpacked / 1e6:.0f} MB, above the "
                             f"limit of {MAX_UNPACKED_BYTES // 1_000_000} MB.")
    network = load_keras_model(path)
    kinds = {type(layer).__name__ for layer in network.layers}
    if not kinds <= ALLOWED_LAYERS:
        raise ModelLoadError(f"The model file {path.name} uses layers SAEMI does not run: "
                             f"{', '.join(sorted(kinds - ALLOWED_LAYERS))}.")
    inputs, outputs = network.inputs, network.outputs
    if (len(inputs) != 1 or tuple(inputs[0].shape[1:]) != (None, None, 1) or len(outputs) != 1
            or tuple(outputs[0].shape[1:]) != (None, None, 2)):
        raise ModelLoadError(f"The model file {path.name} does not take one grayscale image and give two maps.")


def check_model_folder(model_dir: str | os.PathLike) -> None:
    """Refuse a model folder (a fine-tuned or uploaded one) whose settings or weights are not a SAEMI U-Net
    (see :func:`check_weights_file`); raises ``ModelLoadError`` with a sentence."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise ModelLoadError(f"The model folder {folder.name} does not exist.")
    check_weights_file(folder / read_config(folder).weights)
