"""Loading the network: in Keras safe mode, lazily, once per process and model folder.

TensorFlow is imported only when a network is actually loaded; :func:`model_problem` checks a model
folder without it (start-up uses it to decide whether the U-Net can be offered).
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from model.config import CONFIG_NAME, WEIGHTS_NAME, ModelConfig, ModelLoadError, default_model_dir, read_config
from model.trees import tree_problem

logger = logging.getLogger(__name__)


#: Why a model folder without a candidate scorer cannot segment.
NO_SCORER = ("The model folder has no candidate scorer (input_scale.scorer_file); fit one with "
             "python -m model.candidate_fit.")


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
        config = read_config(folder)
    except ModelLoadError as exc:
        return f"{exc} The classical segmenter is used instead."
    if config.input_scale.scorer is None:
        return f"{NO_SCORER} The classical segmenter is used instead."
    weights = folder / config.weights
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


def check_weights_file(path: str | os.PathLike, n_maps: int = 2) -> None:
    """Refuse a ``.keras`` file that is not a SAEMI U-Net, before and after loading it in safe mode.

    Checked in this order: the file's size, the sizes its zip entries unpack to, loading in Keras safe
    mode (no Lambda layers or other code), the layer types (:data:`ALLOWED_LAYERS`), one grayscale input
    of any size and one output of ``n_maps`` maps (the number its config names: 2, or 3 with a size map).

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
            or tuple(outputs[0].shape[1:]) != (None, None, n_maps)):
        words = {2: "two", 3: "three"}.get(n_maps, str(n_maps))
        raise ModelLoadError(f"The model file {path.name} does not take one grayscale image and give {words} maps, "
                             "as its settings say.")


def check_model_folder(model_dir: str | os.PathLike) -> None:
    """Refuse a model folder (a fine-tuned or uploaded one) whose settings or weights are not a SAEMI U-Net
    (see :func:`check_weights_file`); raises ``ModelLoadError`` with a sentence."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise ModelLoadError(f"The model folder {folder.name} does not exist.")
    config = read_config(folder)
    scorer = config.input_scale.scorer
    if scorer is None:
        raise ModelLoadError(NO_SCORER)
    if "trees" in scorer:
        problem = tree_problem(scorer)
        if problem is not None:
            raise ModelLoadError(f"The scorer file {config.input_scale.scorer_file} cannot be used: {problem}.")
    check_weights_file(folder / config.weights, len(config.architecture.outputs))


#: Largest model ``.zip`` accepted (the weights, ``config.json`` and the candidate scorer), and its most entries.
MAX_MODEL_ZIP_BYTES = 60_000_000
MAX_MODEL_ZIP_ENTRIES = 8
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}")


def model_folder_zip(model_dir: str | os.PathLike) -> bytes:
    """A model folder as a ``.zip``: the weights, ``config.json`` and the candidate scorer it names, at the top."""
    folder = Path(model_dir)
    config = read_config(folder)
    names = [config.weights, CONFIG_NAME] + ([config.input_scale.scorer_file] if config.input_scale.scorer_file
                                             else [])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.write(folder / name, name)
    return buffer.getvalue()


def unpack_model_zip(data: bytes, model_dir: str | os.PathLike) -> ModelConfig:
    """Unpack a model ``.zip`` (as :func:`model_folder_zip` writes it) into the new folder ``model_dir`` and
    check it (:func:`check_model_folder`); on any problem the folder is removed again.

    Checked in this order: the size of the upload, that it is a zip, its entries (at most
    :data:`MAX_MODEL_ZIP_ENTRIES` plain names at the top, no folders, no paths, nothing above
    :data:`MAX_UNPACKED_BYTES` unpacked), a ``config.json`` whose weights and candidate scorer are entries of
    the zip, then the weights (size, safe mode, layer allow-list, input and outputs).

    Raises
    ------
    ModelLoadError
        With a sentence naming the first problem found.
    """
    if len(data) > MAX_MODEL_ZIP_BYTES:
        raise ModelLoadError(f"The model file is larger than {MAX_MODEL_ZIP_BYTES // 1_000_000} MB.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as err:
        raise ModelLoadError("The model file is not a .zip of a SAEMI model folder.") from err
    with archive:
        entries = archive.infolist()
        names = [entry.filename for entry in entries]
        if not entries or len(entries) > MAX_MODEL_ZIP_ENTRIES:
            raise ModelLoadError(f"A SAEMI model .zip holds 2 to {MAX_MODEL_ZIP_ENTRIES} files; this one holds "
                                 f"{len(entries)}.")
        if any(entry.is_dir() or not _PLAIN_NAME.fullmatch(entry.filename) for entry in entries):
            raise ModelLoadError("The model .zip holds folders or paths; a SAEMI model .zip holds only its files, "
                                 "at the top.")
        if len(set(names)) != len(names):
            raise ModelLoadError("The model .zip holds the same file twice.")
        if sum(entry.file_size for entry in entries) > MAX_UNPACKED_BYTES:
            raise ModelLoadError(f"The model .zip would unpack to more than {MAX_UNPACKED_BYTES // 1_000_000} MB.")
        if CONFIG_NAME not in names:
            raise ModelLoadError(f"The model .zip has no {CONFIG_NAME}.")
        _check_named_files(archive, names)
        folder = Path(model_dir)
        folder.mkdir(parents=True)
        try:
            for entry in entries:  # sizes read back as written: a lying header cannot unpack more
                with archive.open(entry) as source, open(folder / entry.filename, "wb") as target:
                    written = 0
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written > entry.file_size or written > MAX_UNPACKED_BYTES:
                            raise ModelLoadError("The model .zip unpacks to more than its entries say.")
                        target.write(chunk)
            config = read_config(folder)
            check_model_folder(folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    return config


def _check_named_files(archive: zipfile.ZipFile, names: list[str]) -> None:
    """Refuse a ``config.json`` (read raw, before anything is unpacked) whose weights or candidate scorer are not
    files of the zip, so that reading the folder never opens a file outside it."""
    import json

    if archive.getinfo(CONFIG_NAME).file_size > 1_000_000:
        raise ModelLoadError(f"The {CONFIG_NAME} of the model .zip is larger than 1 MB.")
    try:
        settings = json.loads(archive.read(CONFIG_NAME))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"The {CONFIG_NAME} of the model .zip is not JSON.") from err
    scaling = settings.get("input_scale") if isinstance(settings, dict) else None
    wanted = [settings.get("weights", WEIGHTS_NAME) if isinstance(settings, dict) else None]
    if isinstance(scaling, dict) and scaling.get("scorer_file"):
        wanted.append(scaling["scorer_file"])
    missing = [str(name) for name in wanted if not isinstance(name, str) or name not in names]
    if missing:
        raise ModelLoadError(f"The model .zip lacks {', '.join(missing)}, which its {CONFIG_NAME} names.")
