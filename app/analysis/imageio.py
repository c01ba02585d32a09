"""Decoding of uploaded electron-microscopy images into a normalised grayscale array.

Every failure a user can cause becomes a :class:`~app.analysis.errors.SaemiInputError` whose message is a
sentence that names the file and says what to do. Size limits are checked from the file header, before
any pixel is decoded, so a decompression bomb never reaches memory: the width and height, and for a
TIFF also the number of pages, the depth (tag 32997), the samples per pixel, the tile size and the
decoded size in bytes (:mod:`app.analysis.limits`).

How pixel values are read
-------------------------
- The orientation the camera recorded (EXIF or TIFF tag 274) is applied, as browsers do.
- 8-bit images keep their absolute scale (value / 255). Deeper integer images, signed ones included,
  and floating-point images are stretched from their own minimum to maximum.
- NaN and infinite pixels are ignored for that range and become 0; finite values as large as
  ±1e308 are scaled without overflow. Complex data and other non-numeric pixel types are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import struct
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from app.analysis.errors import SaemiInputError
from app.analysis.limits import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    MAX_TIFF_PAGES,
    MAX_TIFF_SAMPLES,
    max_decoded_bytes,
)

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_PIXELS", "MIN_SIDE_PX", "DecodedImage", "decode_data_url",
           "decode_image", "is_tiff"]
#: Smallest image side we try to analyse, in pixels.
MIN_SIDE_PX = 8
#: EXIF / TIFF orientation tag.
_ORIENTATION_TAG = 0x0112

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
SUPPORTED_FORMATS = "PNG, JPEG, TIFF or BMP"


@dataclass
class DecodedImage:
    """An image ready for analysis.

    Attributes
    ----------
    gray : ndarray of float32, shape (rows, cols)
        Intensities scaled to [0, 1].
    filename : str
        Name of the uploaded file.
    sha256 : str
        Hex digest of the file's bytes (for provenance).
    source_dtype : str
        Pixel type of the file (``uint8``, ``uint16``, ``float32`` ...).
    mode : str
        Colour layout of the file (``gray``, ``rgb``, ``rgba``, ``palette``).
    n_pages : int
        Number of pages (frames) in the file; only the first is analysed.
    notes : list of str
        Sentences for the user about how the file was read.
    data : bytes
        The original file content (kept for metadata calibration; never stored in the browser).
    """

    gray: np.ndarray
    filename: str
    sha256: str
    source_dtype: str
    mode: str
    n_pages: int = 1
    notes: list[str] = field(default_factory=list)
    data: bytes = b""

    @property
    def shape(self) -> tuple[int, int]:
        """Image size as (rows, cols) in pixels."""
        return (int(self.gray.shape[0]), int(self.gray.shape[1]))


def decode_data_url(contents: str, max_bytes: int | None = None, what: str = "file") -> bytes:
    """Return the bytes of a ``data:...;base64,...`` URL as sent by ``dcc.Upload``.

    ``max_bytes``, when given, is checked from the text's length before anything is decoded.

    Raises
    ------
    SaemiInputError
        If the string is not a base64 data URL, or holds more than ``max_bytes``.
    """
    if not isinstance(contents, str) or "," not in contents:
        raise SaemiInputError("The upload did not arrive as a file; please choose the file again.")
    header, _, payload = contents.partition(",")
    if ";base64" not in header:
        raise SaemiInputError("The upload was not base64-encoded; please choose the file again.")
    if max_bytes is not None and len(payload) // 4 * 3 > max_bytes + 2:
        raise SaemiInputError(
            f"The uploaded {what} is about {len(payload) * 3 / 4e6:.1f} MB, above the limit of "
            f"{max_bytes / 1e6:.3g} MB; please upload a smaller one."
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SaemiInputError("The upload was damaged in transfer; please choose the file again.") from exc


def decode_image(
    data: bytes,
    filename: str = "image",
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedImage:
    """Decode PNG, JPEG, TIFF or BMP bytes into a grayscale float image in [0, 1].

    Parameters
    ----------
    data : bytes
        File content.
    filename : str
        Name shown in messages.
    max_bytes, max_pixels : int, optional
        Limits of the file size in bytes and of the image size in pixels (the web app and the CLI
        pass the deployment's, see ``app.config``).

    Returns
    -------
    DecodedImage

    Raises
    ------
    SaemiInputError
        For an empty, unreadable, truncated, too large or too small file.

    Examples
    --------
    >>> buf = io.BytesIO(); Image.new("L", (32, 16), 128).save(buf, "PNG")
    >>> decode_image(buf.getvalue(), "grey.png").shape
    (16, 32)
    """
    name = filename or "image"
    if not data:
        raise SaemiInputError(f"The file '{name}' is empty (0 bytes); please upload an image file.")
    if len(data) > max_bytes:
        raise SaemiInputError(
            f"The file '{name}' is {len(data) / 1e6:.1f} MB, above the limit of {max_bytes / 1e6:.0f} MB; "
            "please crop or compress it."
        )
    if is_tiff(data):
        array, mode, n_pages = _read_tiff(data, name, max_pixels)
    else:
        array, mode, n_pages = _read_with_pillow(data, name, max_pixels)

    notes: list[str] = []
    if n_pages > 1:
        notes.append(f"The file has {n_pages} pages; page 1 of {n_pages} was analysed.")
    _check_dtype(array.dtype, name)
    if array.ndim not in (2, 3) or array.size == 0:
        raise SaemiInputError(f"The file '{name}' holds no 2-D image SAEMI can read; please export it again.")
    source_dtype = str(array.dtype)
    gray = _to_gray(array, mode)
    if min(gray.shape) < MIN_SIDE_PX:
        raise SaemiInputError(
            f"The image '{name}' is only {gray.shape[1]} x {gray.shape[0]} pixels; "
            f"at least {MIN_SIDE_PX} x {MIN_SIDE_PX} are needed to find particles."
        )
    gray, scale_note = _scale_to_unit(gray, source_dtype)
    if scale_note:
        notes.append(scale_note)
    return DecodedImage(
        gray=gray,
        filename=name,
        sha256=hashlib.sha256(data).hexdigest(),
        source_dtype=source_dtype,
        mode=mode,
        n_pages=n_pages,
        notes=notes,
        data=data,
    )


def is_tiff(data: bytes) -> bool:
    """Whether ``data`` starts with a TIFF or BigTIFF signature (either byte order).

    Examples
    --------
    >>> is_tiff(b"II*\\x00rest"), is_tiff(b"\\x89PNG")
    (True, False)
    """
    return data[:4] in _TIFF_MAGIC


def _check_pixels(width: int, height: int, name: str, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise SaemiInputError(
            f"The image '{name}' declares {width} x {height} pixels ({width * height / 1e6:.0f} megapixels), "
            f"above the limit of {max_pixels / 1e6:.0f} megapixels; please downsample or crop it."
        )


def _check_dtype(dtype: np.dtype, name: str) -> None:
    if np.issubdtype(dtype, np.complexfloating):
        raise SaemiInputError(
            f"The image '{name}' holds complex numbers (such as a Fourier transform); SAEMI measures real "
            "intensities: please export the magnitude or the real part."
        )
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise SaemiInputError(f"The image '{name}' holds pixels of type {dtype}, which are not intensities.")


def _check_tiff_page(page, n_pages: int, name: str, max_pixels: int) -> None:
    """Every dimension the page declares, checked against the limits before it is decoded."""
    if n_pages > MAX_TIFF_PAGES:
        raise SaemiInputError(
            f"The TIFF file '{name}' has {n_pages} pages, above the limit of {MAX_TIFF_PAGES}; "
            "please save the image you want to analyse on its own."
        )
    if page.imagedepth > 1:
        raise SaemiInputError(
            f"The TIFF file '{name}' holds a volume {page.imagedepth} slices deep; SAEMI reads 2-D images. "
            "Please save one slice on its own."
        )
    if page.samplesperpixel > MAX_TIFF_SAMPLES:
        raise SaemiInputError(
            f"The TIFF file '{name}' has {page.samplesperpixel} samples per pixel, above the limit of "
            f"{MAX_TIFF_SAMPLES} (gray, RGB or RGBA); please export it as a gray or RGB image."
        )
    if len(page.shape) < 2 or page.dtype is None:
        raise SaemiInputError(f"The TIFF file '{name}' holds no 2-D image SAEMI can read.")
    _check_pixels(int(page.imagewidth), int(page.imagelength), name, max_pixels)
    itemsize = page.dtype.itemsize
    decoded = int(np.prod(page.shape, dtype=np.int64)) * itemsize
    tile = int(page.tilewidth or 0) * int(page.tilelength or 0) * int(page.tiledepth or 1)
    tile_bytes = tile * page.samplesperpixel * itemsize
    limit = max_decoded_bytes(max_pixels)
    if decoded > limit or tile_bytes > limit:
        raise SaemiInputError(
            f"The TIFF file '{name}' would take {max(decoded, tile_bytes) / 1e6:.0f} MB once decoded, above the "
            f"limit of {limit / 1e6:.0f} MB; please export it as an 8- or 16-bit gray image."
        )


def _read_tiff(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, str, int]:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            pages = tif.pages
            n_pages = len(pages)
            page = pages[0]
            if not isinstance(page, tifffile.TiffPage):
                raise SaemiInputError(f"The TIFF file '{name}' holds no 2-D image SAEMI can read.")
            _check_tiff_page(page, n_pages, name, max_pixels)
            array = page.asarray()
            orientation = int(page.tags.valueof(_ORIENTATION_TAG, 1) or 1)
            if array.dtype == np.bool_:  # bilevel (1-bit) image
                array = array.astype(np.uint8) * np.uint8(255)
            photometric = getattr(page.photometric, "name", str(page.photometric))
    except SaemiInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for damaged files
        raise SaemiInputError(
            f"The TIFF file '{name}' could not be read; it may be truncated or damaged."
        ) from exc
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
        array = np.moveaxis(array, 0, -1)
    if photometric == "PALETTE":
        mode = "palette"
    elif array.ndim == 3 and array.shape[-1] == 4:
        mode = "rgba"
    elif array.ndim == 3 and array.shape[-1] >= 3:
        mode = "rgb"
    elif array.ndim == 3:
        array, mode = array[..., 0], "gray"
    else:
        mode = "gray"
    if photometric == "MINISWHITE" and array.ndim == 2:
        array = _invert(array)
    return _orient(array, orientation), mode, n_pages


def _read_with_pillow(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, str, int]:
    try:
        # The pixel limit is checked here, from the header; Pillow's own decompression-bomb warning is
        # left alone (its filter would be process-wide, which threaded workers cannot share).
        image = Image.open(io.BytesIO(data))
        _check_pixels(image.width, image.height, name, max_pixels)
        if image.format not in {"PNG", "JPEG", "BMP", "TIFF", "MPO", "GIF"}:
            raise SaemiInputError(
                f"The file '{name}' is a {image.format} image; please upload {SUPPORTED_FORMATS}."
            )
        n_pages = int(getattr(image, "n_frames", 1) or 1)
        image.load()
        orientation = int(image.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except SaemiInputError:
        raise
    except UnidentifiedImageError as exc:
        raise SaemiInputError(
            f"The file '{name}' is not an image SAEMI can read; please upload {SUPPORTED_FORMATS}."
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SaemiInputError(
            f"The image '{name}' declares far more pixels than its file size allows (over "
            f"{max_pixels / 1e6:.0f} megapixels, the limit); it was not decoded."
        ) from exc
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, EOFError, struct.error) as exc:
        raise SaemiInputError(
            f"The file '{name}' could not be decoded; it looks truncated or damaged. Please export it again."
        ) from exc
    pil_mode = image.mode
    if pil_mode == "P":
        mode = "palette"
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif pil_mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        mode = "rgba" if pil_mode == "RGBA" else "rgb"
        if pil_mode not in ("RGB", "RGBA"):
            image = image.convert("RGB")
    elif pil_mode in ("LA", "PA"):
        mode = "gray"
        image = image.convert("L")
    elif pil_mode == "1":
        mode = "gray"
        image = image.convert("L")
    else:
        mode = "gray"
    array = np.asarray(image)
    if pil_mode.startswith("I;16"):
        array = array.astype(np.uint16, copy=False)
    elif pil_mode == "I" and array.size and array.min() >= 0 and array.max() <= 65535:
        array = array.astype(np.uint16)
    return _orient(array, orientation), mode, n_pages


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """The image as it is meant to be seen: EXIF / TIFF orientation 2 to 8 applied (1 and others: as stored).

    Examples
    --------
    >>> _orient(np.array([[1, 2], [3, 4]]), 6)  # rotated 90 degrees clockwise for display
    array([[3, 1],
           [4, 2]])
    """
    turns = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
             5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
             8: lambda a: np.rot90(a, 1)}
    if orientation not in turns or array.ndim < 2:
        return array
    return np.ascontiguousarray(turns[orientation](array))


def _invert(array: np.ndarray) -> np.ndarray:
    """MINISWHITE to MINISBLACK: integers from their type's maximum, floats from their largest finite value."""
    if np.issubdtype(array.dtype, np.integer):
        return np.iinfo(array.dtype).max - array
    if array.dtype == np.bool_:
        return ~array
    finite = np.isfinite(array)
    if not finite.any():
        return array
    return np.max(array, where=finite, initial=-np.inf) - array


def _to_gray(array: np.ndarray, mode: str) -> np.ndarray:
    """Collapse colour channels with ITU-R BT.601 luma weights; alpha is ignored."""
    if array.ndim == 2:
        return array
    if array.shape[-1] < 3:  # gray with alpha, or a damaged file's partial colour
        return array[..., 0]
    rgb = array[..., :3].astype(np.float64)
    gray = rgb @ np.array([0.299, 0.587, 0.114])
    if np.issubdtype(array.dtype, np.integer):
        gray = np.clip(np.rint(gray), 0, np.iinfo(array.dtype).max).astype(array.dtype)
    return gray


def _scale_to_unit(gray: np.ndarray, source_dtype: str) -> tuple[np.ndarray, str]:
    """Scale to float32 in [0, 1].

    8-bit images keep their absolute scale (value / 255). Deeper integer and floating-point images are
    stretched from their own minimum to maximum, so a 12-bit detector's counts in a 16-bit file or a float
    TIFF in arbitrary units neither clip nor vanish into the bottom of the range.
    """
    if gray.dtype == np.uint8:
        return (gray.astype(np.float32) / 255.0), ""
    if gray.dtype == np.bool_:
        return gray.astype(np.float32), ""
    values = gray.astype(np.float64)
    finite = np.isfinite(values)
    all_finite = bool(finite.all())
    if not all_finite and not finite.any():
        raise SaemiInputError("The image holds no valid intensities (every pixel is NaN or infinite).")
    low = float(np.min(values, where=finite, initial=np.inf))
    high = float(np.max(values, where=finite, initial=-np.inf))
    if high > low:
        if np.isfinite(high - low):
            values -= low
            values /= high - low
        else:  # finite extremes such as +-1e308, whose difference overflows: scale halves
            values *= 0.5
            values -= low * 0.5
            values /= high * 0.5 - low * 0.5
    else:
        values[:] = 0.0
    if not all_finite:
        values[~finite] = 0.0
    scaled = values.astype(np.float32)
    note = f"{source_dtype} intensities from {low:.6g} to {high:.6g} were scaled to the full range."
    return scaled, note
