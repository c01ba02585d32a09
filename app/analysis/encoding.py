"""Compact, lossless encodings of images for per-session storage (``dcc.Store``) and downloads.

Decoding checks the PNG header (format, pixel mode, size against the expected shape and
:data:`~app.analysis.limits.DEFAULT_MAX_PIXELS`) before any pixel is decompressed.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping

import numpy as np
from PIL import Image, PngImagePlugin

from app.analysis.errors import SaemiInputError
from app.analysis.limits import DEFAULT_MAX_PIXELS, MAX_LABEL_ID

__all__ = ["MAX_LABEL_ID", "gray_to_png_b64", "gray_to_uint8", "labels_to_png_b64", "labels_to_png_bytes",
           "png_b64_to_gray", "png_b64_to_labels", "png_bytes_to_labels", "rgb_to_png_data_url"]
#: Pillow modes of the PNGs this module writes: 16-bit labels (read back as I;16 or I) and 8-bit gray.
_LABEL_MODES = ("I;16", "I;16B", "I", "L")
_GRAY_MODES = ("L",)


def labels_to_png_bytes(label_image: np.ndarray) -> bytes:
    """Encode an instance label image as a 16-bit grayscale PNG (0 = background).

    Raises
    ------
    SaemiInputError
        If there are more than 65,535 particles.

    Examples
    --------
    >>> labels = np.array([[0, 1], [300, 2]])
    >>> np.array_equal(png_bytes_to_labels(labels_to_png_bytes(labels)), labels)
    True
    """
    labels = np.asarray(label_image)
    if labels.size and int(labels.max()) > MAX_LABEL_ID:
        raise SaemiInputError(
            f"The image holds {int(labels.max())} particles; label images store at most {MAX_LABEL_ID}."
        )
    return _png_bytes(labels.astype(np.uint16))


def png_bytes_to_labels(data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a label PNG written by :func:`labels_to_png_bytes` into an int32 array.

    Raises
    ------
    SaemiInputError
        For anything but a 16-bit (or 8-bit) grayscale PNG of ``shape`` (rows, cols) when given,
        of at most :data:`~app.analysis.limits.DEFAULT_MAX_PIXELS` otherwise; checked from the header.
    """
    with _open_png(data, _LABEL_MODES, shape, "label image") as image:
        return _pixels(image, "label image").astype(np.int32)


def labels_to_png_b64(label_image: np.ndarray) -> str:
    """Label image as base64 text of a 16-bit PNG."""
    return base64.b64encode(labels_to_png_bytes(label_image)).decode("ascii")


def png_b64_to_labels(text: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Inverse of :func:`labels_to_png_b64`; ``shape`` as in :func:`png_bytes_to_labels`."""
    return png_bytes_to_labels(_b64decode(text), shape)


def gray_to_uint8(gray: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] to uint8 with rounding."""
    return np.clip(np.rint(np.asarray(gray, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def gray_to_png_b64(gray: np.ndarray) -> str:
    """Float image in [0, 1] as base64 text of an 8-bit PNG."""
    return base64.b64encode(_png_bytes(gray_to_uint8(gray))).decode("ascii")


def png_b64_to_gray(text: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Inverse of :func:`gray_to_png_b64`: float32 in [0, 1]; ``shape`` as in :func:`png_bytes_to_labels`."""
    with _open_png(_b64decode(text), _GRAY_MODES, shape, "image") as image:
        return _pixels(image, "image").astype(np.float32) / 255.0


def _pixels(image: Image.Image, what: str) -> np.ndarray:
    try:
        return np.asarray(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise SaemiInputError(f"The stored {what} is truncated or damaged.") from exc


def _open_png(data: bytes, modes: tuple[str, ...], shape: tuple[int, int] | None, what: str) -> Image.Image:
    """The PNG in ``data``, opened (header read, no pixel decoded) and checked; the caller closes it."""
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise SaemiInputError(f"The stored {what} is not a PNG image.") from exc
    rows, cols = image.height, image.width
    problem = None
    if image.mode not in modes:
        problem = f"The stored {what} has pixel mode {image.mode}, not one SAEMI writes."
    elif shape is not None and (rows, cols) != tuple(shape):
        problem = f"The stored {what} is {cols} x {rows} pixels, not the image's {shape[1]} x {shape[0]}."
    elif rows * cols > DEFAULT_MAX_PIXELS and shape is None:
        problem = f"The stored {what} is {cols} x {rows} pixels, above the limit of {DEFAULT_MAX_PIXELS} pixels."
    if problem:
        image.close()
        raise SaemiInputError(problem)
    return image


def rgb_to_png_data_url(rgb: np.ndarray, text: Mapping[str, str] | None = None) -> str:
    """A uint8 gray, RGB or RGBA array as a ``data:image/png;base64`` URL (for figures and the canvas).

    ``text`` entries are written into the PNG as text chunks.
    """
    png = _png_bytes(np.asarray(rgb, dtype=np.uint8), text)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png_bytes(array: np.ndarray, text: Mapping[str, str] | None = None) -> bytes:
    """``array`` (uint8 gray, RGB or RGBA, or uint16 gray) as PNG bytes, favouring speed over size."""
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1, pnginfo=info)
    return buffer.getvalue()


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise SaemiInputError("Stored session data is damaged; please upload the image again.") from exc
