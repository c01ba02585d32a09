"""Decoding of uploaded electron-microscopy images into a normalised grayscale array.

Every failure a user can cause becomes a :class:`~app.analysis.errors.SaemiInputError` whose message is a
sentence that names the file and says what to do. Size limits are checked from the file header, before
any pixel is decoded, so a decompression bomb never reaches memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from app.analysis.errors import SaemiInputError

#: Smallest image side we try to analyse, in pixels.
MIN_SIDE_PX = 8
#: Default limits of :func:`decode_image`: 50 MB of file and 70 megapixels (8192 x 8192 is 67 Mpx).
DEFAULT_MAX_BYTES = 50_000_000
DEFAULT_MAX_PIXELS = 70_000_000

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


def decode_data_url(contents: str) -> bytes:
    """Return the bytes of a ``data:...;base64,...`` URL as sent by ``dcc.Upload``.

    Raises
    ------
    SaemiInputError
        If the string is not a base64 data URL.
    """
    if not isinstance(contents, str) or "," not in contents:
        raise SaemiInputError("The upload did not arrive as a file; please choose the file again.")
    header, _, payload = contents.partition(",")
    if ";base64" not in header:
        raise SaemiInputError("The upload was not base64-encoded; please choose the file again.")
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


def _read_tiff(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, str, int]:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            pages = tif.pages
            n_pages = len(pages)
            page = pages[0]
            shape = page.shape
            if len(shape) < 2:
                raise SaemiInputError(f"The TIFF file '{name}' holds no 2-D image.")
            samples = page.samplesperpixel
            if samples > 1 and page.planarconfig == 1:  # contiguous: (rows, cols, samples)
                height, width = shape[0], shape[1]
            elif samples > 1:  # separate planes: (samples, rows, cols)
                height, width = shape[-2], shape[-1]
            else:
                height, width = shape[-2], shape[-1]
            _check_pixels(int(width), int(height), name, max_pixels)
            array = page.asarray()
            if array.dtype == np.bool_:  # bilevel (1-bit) image
                array = array.astype(np.uint8) * np.uint8(255)
            photometric = getattr(page.photometric, "name", str(page.photometric))
    except SaemiInputError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        raise SaemiInputError(
            f"The TIFF file '{name}' could not be read ({type(exc).__name__}); it may be truncated or damaged."
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
    return array, mode, n_pages


def _read_with_pillow(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, str, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_pixels(image.width, image.height, name, max_pixels)
            n_pages = int(getattr(image, "n_frames", 1) or 1)
            if image.format not in {"PNG", "JPEG", "BMP", "TIFF", "MPO", "GIF"}:
                raise SaemiInputError(
                    f"The file '{name}' is a {image.format} image; please upload {SUPPORTED_FORMATS}."
                )
            image.load()
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
    except (OSError, SyntaxError, ValueError) as exc:
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
    return array, mode, n_pages


def _invert(array: np.ndarray) -> np.ndarray:
    if np.issubdtype(array.dtype, np.integer):
        return np.iinfo(array.dtype).max - array
    return array.max() - array


def _to_gray(array: np.ndarray, mode: str) -> np.ndarray:
    """Collapse colour channels with ITU-R BT.601 luma weights; alpha is ignored."""
    if array.ndim == 2:
        return array
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
    if not finite.any():
        raise SaemiInputError("The image holds no valid intensities (every pixel is NaN or infinite).")
    if not finite.all():
        values = np.where(finite, values, np.nan)
    low = float(np.nanmin(values))
    high = float(np.nanmax(values))
    if high > low:
        scaled = (values - low) / (high - low)
    else:
        scaled = np.zeros_like(values)
    scaled = np.nan_to_num(scaled, nan=0.0).astype(np.float32)
    note = f"{source_dtype} intensities from {low:.6g} to {high:.6g} were scaled to the full range."
    return scaled, note
