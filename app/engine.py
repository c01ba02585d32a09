"""Analyse one image file: the entry point that the web app and the command line share.

``bytes → decoded image and its metadata calibration → segmenter → calibrated, segmented, measured
result`` (:func:`analyze_file`). The segmenters are built by :mod:`model.registry` and kept per
process and settings in a small cache (:func:`get_segmenter`); the U-Net's weights are cached apart,
once per process and model folder.
"""

from __future__ import annotations

import functools
import os

from app import config
from app.analysis.calibration import read_file_metadata
from app.analysis.imageio import decode_image
from app.analysis.pipeline import AnalysisParams, AnalysisResult, analyze_decoded
from app.analysis.segmentation import ProgressCallback, Segmenter
from model.loading import model_problem
from model.registry import make_segmenter

#: How many (segmenter, diameter, views) combinations a process keeps built; the diameter is typed by
#: users, so the cache must not grow with each new number.
SEGMENTER_CACHE_SIZE = 16


def default_segmenter_name(model_dir: str | os.PathLike | None = None) -> str:
    """``SAEMI_SEGMENTER`` if set, else ``unet`` when its model folder is sound, else ``classical``."""
    if config.SEGMENTER_OVERRIDE:
        return config.SEGMENTER_OVERRIDE
    return "unet" if model_problem(model_dir) is None else "classical"


@functools.lru_cache(maxsize=SEGMENTER_CACHE_SIZE)
def get_segmenter(name: str, diameter_px: float | None = None, views: int | None = None,
                  model_dir: str | None = None) -> Segmenter:
    """The segmenter called ``name`` with these settings, built once per process (see
    :func:`model.registry.make_segmenter`); at most :data:`SEGMENTER_CACHE_SIZE` are kept.

    Raises
    ------
    SaemiInputError
        For an unknown name, or a diameter or a number of views the U-Net cannot take.
    """
    return make_segmenter(name, diameter_px=diameter_px, views=views, model_dir=model_dir)


def analyze_file(data: bytes, filename: str, params: AnalysisParams, *, sidecar_text: str | None = None,
                 progress: ProgressCallback | None = None) -> AnalysisResult:
    """Decode, calibrate, segment and measure one image file.

    Parameters
    ----------
    data : bytes
        The file's content (PNG, JPEG, TIFF or BMP).
    filename : str
        Its name, shown in messages and written into the provenance.
    params : AnalysisParams
        Every setting of the analysis, the segmenter's name included.
    sidecar_text : str, optional
        A JEOL or Hitachi ``.txt`` file saved with the image; its pixel size calibrates the image.
    progress : callable, optional
        ``progress(fraction, message)`` while the segmenter works.

    Returns
    -------
    AnalysisResult
        With a note when a sidecar was given but holds no pixel size.

    Raises
    ------
    SaemiInputError
        For a file that cannot be analysed, or settings the segmenter cannot take.
    model.config.ModelLoadError
        When the U-Net's files are missing or corrupted.
    """
    decoded = decode_image(data, filename, max_bytes=config.MAX_UPLOAD_BYTES, max_pixels=config.MAX_PIXELS)
    metadata = read_file_metadata(data, filename, sidecar_text)  # one parse: calibration and data-bar height
    segmenter = get_segmenter(params.segmenter, params.diameter_px, params.views, params.model_dir)
    result = analyze_decoded(decoded, params, segmenter=segmenter, progress=progress,
                             metadata=metadata)
    if sidecar_text is not None and metadata.calibration.nm_per_px is None:
        result.notes.append("The .txt file uploaded with the image holds no JEOL or Hitachi pixel size; "
                            "it was ignored.")
    return result
