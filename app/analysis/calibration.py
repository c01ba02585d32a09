"""Pixel size (nm per pixel) from microscope metadata, sidecar files, scale bars or the user.

Every calibration carries its ``source`` (where the number came from) and a one-sentence
``detail`` that the UI shows, so a scientist can check the number before trusting the sizes.

Sources, in the order :func:`resolve_calibration` prefers them:

1. ``manual``: a value typed by the user (or the CLI's ``--nm-per-px``).
2. ``metadata:*``: the microscope's own record, read with :mod:`tifffile` (FEI/Thermo Fisher,
   Zeiss, TESCAN, standard TIFF resolution tags, ImageJ) or from a JEOL/Hitachi sidecar text.
3. ``scalebar:user`` / ``scalebar:ocr``: the burned-in scale bar, measured in pixels, with its
   label typed by the user or read by OCR (see :mod:`app.analysis.scalebar`).
4. ``databar:field_width``: the horizontal field width printed in the data bar, divided by the
   image width; also the cross-check of an OCR'd scale bar.
"""

from __future__ import annotations

import io
import logging
import math
import re
from dataclasses import dataclass
from typing import Any

import tifffile
from PIL import Image, UnidentifiedImageError

from app.analysis.errors import SaemiInputError
from app.analysis.imageio import is_tiff

logger = logging.getLogger(__name__)

SOURCES = (
    "metadata:fei",
    "metadata:zeiss",
    "metadata:tescan",
    "metadata:jeol",
    "metadata:hitachi",
    "metadata:tiff",
    "databar:field_width",
    "scalebar:ocr",
    "scalebar:user",
    "manual",
    "none",
)

#: Relative difference above which two calibrations are reported as disagreeing.
DISAGREEMENT_TOLERANCE = 0.02

#: Pixel sizes accepted from generic TIFF resolution tags. Above 10 µm per pixel the tag almost
#: surely holds a print resolution (72-2400 dpi describe paper, not the specimen).
MAX_TIFF_NM_PER_PX = 1.0e4

_NM_PER_UNIT = {
    "pm": 1.0e-3,
    "nm": 1.0,
    "um": 1.0e3,
    "µm": 1.0e3,  # U+00B5 MICRO SIGN
    "μm": 1.0e3,  # U+03BC GREEK SMALL LETTER MU
    "micron": 1.0e3,
    "microns": 1.0e3,
    "mm": 1.0e6,
    "cm": 1.0e7,
    "m": 1.0e9,
}

_LENGTH_RE = re.compile(
    r"^\s*(?P<value>[0-9]+(?:[.,][0-9]*)?|[.,][0-9]+)\s*(?P<unit>[a-zµμ]+)\s*$",
    re.IGNORECASE,
)

TESCAN_TAG = 50431
FEI_TAGS = (34680, 34682)
ZEISS_TAG = 34118


@dataclass(frozen=True)
class ScaleBarEvidence:
    """The burned-in scale bar behind a calibration (or behind a reading left to the user).

    Attributes
    ----------
    x0, x1 : int
        First and one-past-last column of the bar.
    y : int
        Row through the middle of the bar.
    label_text : str
        The label as OCR read it (or as the user typed it); empty when it was not read.
    ocr_confidence : float or None
        Tesseract's confidence in the label, 0-100; None when OCR gave no reading.
    """

    x0: int
    x1: int
    y: int
    label_text: str = ""
    ocr_confidence: float | None = None


@dataclass(frozen=True)
class Calibration:
    """A pixel size and where it came from.

    Attributes
    ----------
    nm_per_px : float or None
        Size of one (square) pixel in nanometres; None when the image is uncalibrated.
    source : str
        One of :data:`SOURCES`, for example ``"metadata:fei"``.
    detail : str
        A short sentence for the user, such as
        ``"FEI metadata [Scan] PixelWidth = 2.5e-09 m"``.
    warning : str
        Sentences the user should read before trusting the number (sources that disagree, a
        scale-bar label that could not be read or needs confirming); empty when there are none.
    scale_bar : ScaleBarEvidence or None
        The scale bar found in the image, whether or not it gave the pixel size.
    """

    nm_per_px: float | None
    source: str
    detail: str
    warning: str = ""
    scale_bar: ScaleBarEvidence | None = None


NO_CALIBRATION = Calibration(None, "none", "No pixel size found; sizes are in pixels.")


def parse_length(text: str) -> float:
    """Parse a length such as ``"200 nm"`` or ``"1 µm"`` into nanometres.

    Parameters
    ----------
    text : str
        A number followed by a unit: ``pm``, ``nm``, ``µm`` (micro sign or Greek mu), ``um``,
        ``micron``, ``mm``, ``cm`` or ``m``. A decimal comma is accepted.

    Returns
    -------
    float
        The length in nanometres.

    Raises
    ------
    SaemiInputError
        When the text is not a positive number with a known length unit.

    Examples
    --------
    >>> parse_length("0.5um")
    500.0
    >>> parse_length("500 pm")
    0.5
    """
    match = _LENGTH_RE.match(text or "")
    unit = match.group("unit").lower() if match else ""
    if not match or unit not in _NM_PER_UNIT:
        raise SaemiInputError(
            f"Could not read {text!r} as a length; write a number and a unit, "
            "for example '200 nm' or '1 µm'."
        )
    value = float(match.group("value").replace(",", "."))
    if value <= 0:
        raise SaemiInputError(f"The length {text!r} must be greater than zero.")
    return value * _NM_PER_UNIT[unit]


def _positive(value: Any) -> float | None:
    """Return ``value`` as a finite positive float, or None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    return number


def _text(value: Any) -> str:
    """Decode a tag value (bytes or str) to text, tolerating any encoding."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _fei_calibration(tif: tifffile.TiffFile) -> Calibration | None:
    """Pixel width from FEI/Thermo Fisher ``[Scan]`` (or ``[EScan]``) sections, in metres."""
    metadata = tif.fei_metadata
    if not metadata:
        return None
    for section in ("Scan", "EScan"):
        width_m = _positive(metadata.get(section, {}).get("PixelWidth"))
        if width_m is not None:
            return Calibration(
                width_m * 1e9,
                "metadata:fei",
                f"FEI metadata [{section}] PixelWidth = {width_m:.6g} m",
            )
    return None


def _zeiss_calibration(tif: tifffile.TiffFile) -> Calibration | None:
    """Image pixel size from the Zeiss ``CZ_SEM`` tag.

    Zeiss records both ``AP_IMAGE_PIXEL_SIZE`` ("Image Pixel Size", the size of a pixel of the
    stored image) and ``AP_PIXEL_SIZE`` ("Pixel Size", tied to the scan store resolution);
    only the first one describes the saved image.
    """
    metadata = tif.sem_metadata
    if not metadata:
        return None
    entry = metadata.get("ap_image_pixel_size")
    if not isinstance(entry, tuple) or len(entry) < 2:
        return None
    value = _positive(entry[1])
    unit = str(entry[2]) if len(entry) > 2 else ""
    if value is None or unit.lower() not in _NM_PER_UNIT:
        logger.info("Zeiss Image Pixel Size %r has no usable unit", entry)
        return None
    return Calibration(
        value * _NM_PER_UNIT[unit.lower()],
        "metadata:zeiss",
        f"Zeiss metadata Image Pixel Size = {value:g} {unit}",
    )


def _tescan_calibration(tif: tifffile.TiffFile) -> Calibration | None:
    """``PixelSizeX`` (metres) from the TESCAN tag 50431.

    tifffile has no parser for this tag, so its text (``key=value`` lines, possibly after a
    binary header) is searched for the one key needed.
    """
    tag = tif.pages.first.tags.get(TESCAN_TAG)
    if tag is None:
        return None
    match = re.search(r"PixelSizeX\s*=\s*([-+0-9.eE]+)", _text(tag.value))
    width_m = _positive(match.group(1)) if match else None
    if width_m is None:
        return None
    return Calibration(
        width_m * 1e9, "metadata:tescan", f"TESCAN metadata PixelSizeX = {width_m:.6g} m"
    )


def _imagej_calibration(tif: tifffile.TiffFile) -> Calibration | None:
    """Pixel size from ImageJ's ``unit`` and the XResolution tag (pixels per unit)."""
    metadata = tif.imagej_metadata
    if not metadata:
        return None
    unit = str(metadata.get("unit", "")).strip()
    unit_key = unit.lower().replace("\\u00b5", "µ")
    if unit_key not in _NM_PER_UNIT:
        return None
    tag = tif.pages.first.tags.get("XResolution")
    if tag is None:
        return None
    numerator, denominator = tag.value
    px_per_unit = _positive(numerator / denominator) if denominator else None
    if px_per_unit is None:
        return None
    return Calibration(
        _NM_PER_UNIT[unit_key] / px_per_unit,
        "metadata:tiff",
        f"ImageJ calibration {1.0 / px_per_unit:.6g} {unit} per pixel",
    )


def _resolution_tag_calibration(tif: tifffile.TiffFile) -> Calibration | None:
    """Pixel size from the standard XResolution / ResolutionUnit tags (inch or centimetre)."""
    tags = tif.pages.first.tags
    resolution_tag = tags.get("XResolution")
    unit_tag = tags.get("ResolutionUnit")
    if resolution_tag is None or unit_tag is None:
        return None
    unit_nm = {2: 2.54e7, 3: 1.0e7}.get(int(unit_tag.value))
    numerator, denominator = resolution_tag.value
    px_per_unit = _positive(numerator / denominator) if denominator else None
    if unit_nm is None or px_per_unit is None:
        return None
    nm_per_px = unit_nm / px_per_unit
    unit_name = "inch" if int(unit_tag.value) == 2 else "cm"
    if nm_per_px > MAX_TIFF_NM_PER_PX:
        logger.info("Ignoring TIFF resolution %g px/%s (a print setting)", px_per_unit, unit_name)
        return None
    return Calibration(
        nm_per_px,
        "metadata:tiff",
        f"TIFF resolution tags {px_per_unit:.6g} pixels per {unit_name}",
    )


def _tiff_calibrations(
    tif: tifffile.TiffFile, filename: str
) -> tuple[list[Calibration], int | None, Calibration | None]:
    """Vendor calibrations in a TIFF (FEI, Zeiss, TESCAN), its width, and a generic calibration.

    Unreadable metadata is logged and gives no calibration and no width.
    """
    try:
        width_px = int(tif.pages.first.imagewidth)
        found = []
        for reader in (_fei_calibration, _zeiss_calibration, _tescan_calibration):
            calibration = reader(tif)
            if calibration is not None:
                found.append(calibration)
        generic = _imagej_calibration(tif) or _resolution_tag_calibration(tif)
    except Exception:  # noqa: BLE001 - metadata must never stop an analysis
        logger.warning("Could not read TIFF metadata of %s", filename, exc_info=True)
        return [], None, None
    return found, width_px, generic


def _first_calibration(
    vendor: list[Calibration],
    generic: Calibration | None,
    sidecar_text: str | None,
    width_px: int | None,
) -> Calibration:
    """Vendor tags, else a usable sidecar, else generic tags, else :data:`NO_CALIBRATION`."""
    if vendor:
        return vendor[0]
    if sidecar_text:
        sidecar = parse_sidecar(sidecar_text, image_width_px=width_px)
        if sidecar.nm_per_px is not None:
            return sidecar
    return generic or NO_CALIBRATION


def read_metadata_calibration(
    data: bytes, filename: str, sidecar_text: str | None = None
) -> Calibration:
    """Read the pixel size that the microscope recorded with the image.

    Vendor TIFF tags (FEI, Zeiss, TESCAN) come first, then a JEOL or Hitachi sidecar text, then
    generic ImageJ or TIFF resolution tags whose unit is a length.

    Parameters
    ----------
    data : bytes
        The uploaded image file.
    filename : str
        Its name, used only in log messages.
    sidecar_text : str, optional
        Contents of the ``.txt`` file that JEOL and Hitachi microscopes save beside the image.

    Returns
    -------
    Calibration
        The first calibration found, or :data:`NO_CALIBRATION`. Unreadable or odd metadata is
        logged and skipped, never raised.

    See Also
    --------
    read_file_metadata : The same, with the FEI image height, from one parse.
    """
    return read_file_metadata(data, filename, sidecar_text).calibration


@dataclass(frozen=True)
class FileMetadata:
    """What the file's metadata says: its pixel size, and the height of the image above an FEI data bar."""

    calibration: Calibration
    fei_image_height_px: int | None = None


def read_file_metadata(data: bytes, filename: str, sidecar_text: str | None = None) -> FileMetadata:
    """The calibration of :func:`read_metadata_calibration` and the FEI image height of
    :func:`fei_image_height_px`, from one parse of the file.

    Examples
    --------
    >>> read_file_metadata(b"\\x89PNG not a tiff", "x.png") == FileMetadata(NO_CALIBRATION)
    True
    """
    vendor: list[Calibration] = []
    generic = None
    width_px = None
    fei_height_px = None
    tif = _open_tiff(data, "Could not read TIFF metadata of %s", filename)
    if tif is not None:
        with tif:
            vendor, width_px, generic = _tiff_calibrations(tif, filename)
            fei_height_px = tiff_fei_image_height_px(tif)
    if sidecar_text and not vendor and width_px is None:
        width_px = _image_width_px(data)
    return FileMetadata(_first_calibration(vendor, generic, sidecar_text, width_px), fei_height_px)


def _open_tiff(data: bytes, message: str, *args: object) -> tifffile.TiffFile | None:
    """``data`` opened with tifffile; None when it is not a TIFF, or (logged) cannot be opened."""
    if not is_tiff(data):
        return None
    try:
        return tifffile.TiffFile(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - metadata must never stop an analysis
        logger.warning(message, *args, exc_info=True)
        return None


def _image_width_px(data: bytes) -> int | None:
    """Width of a non-TIFF image from its header, or None when Pillow cannot tell."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return int(image.size[0])
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def tiff_fei_image_height_px(tif: tifffile.TiffFile) -> int | None:
    """Height of the image proper, without the data bar, from FEI ``[Image] ResolutionY``.

    Parameters
    ----------
    tif : tifffile.TiffFile
        The open file.

    Returns
    -------
    int or None
        The number of image rows above the data bar, or None when the file has no readable FEI
        metadata with that entry.
    """
    try:
        metadata = tif.fei_metadata or {}
    except Exception:  # noqa: BLE001 - metadata must never stop an analysis
        logger.warning("Could not read FEI metadata", exc_info=True)
        return None
    height = _positive(metadata.get("Image", {}).get("ResolutionY"))
    return int(height) if height is not None else None


def fei_image_height_px(data: bytes) -> int | None:
    """Height of the image proper, without the data bar, from FEI ``[Image] ResolutionY``.

    Parameters
    ----------
    data : bytes
        The uploaded file.

    Returns
    -------
    int or None
        The number of image rows above the data bar, or None when the file is not an FEI TIFF.

    See Also
    --------
    tiff_fei_image_height_px : The same for an open TIFF file.
    """
    tif = _open_tiff(data, "Could not read FEI metadata")
    if tif is None:
        return None
    with tif:
        return tiff_fei_image_height_px(tif)


def _sidecar_values(text: str) -> dict[str, str]:
    """Keys and values of a sidecar: ``$KEY value`` (JEOL) or ``Key=value`` (Hitachi) lines."""
    values = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if line.startswith("$"):
            key, _, value = line.partition(" ")
            values[key.lstrip("$").upper()] = value.strip()
        elif "=" in line:
            key, _, value = line.partition("=")
            values[key.strip().upper()] = value.strip()
    return values


def parse_sidecar(text: str, *, image_width_px: int | None = None) -> Calibration:
    """Pixel size from a JEOL or Hitachi sidecar text file.

    JEOL writes the scale bar it burned into the image: ``$$SM_MICRON_BAR`` is the bar's length
    in pixels of the full-size image (``$CM_FULL_SIZE width height``) and ``$$SM_MICRON_MARKER``
    its label, so ``nm_per_px = length_nm(marker) / bar_px``. When the saved image is narrower
    than the full size, each saved pixel covers ``full_width / image_width`` full-size pixels.

    Hitachi (``[SemImageFile]`` sections) writes ``PixelSize=`` directly, in nanometres.

    Parameters
    ----------
    text : str
        The sidecar's contents.
    image_width_px : int, optional
        Width of the image the sidecar belongs to, to rescale a JEOL bar.

    Returns
    -------
    Calibration
        ``metadata:jeol`` or ``metadata:hitachi``, or :data:`NO_CALIBRATION` when neither
        format's keys are present or they hold no usable number.
    """
    values = _sidecar_values(text)
    if "PIXELSIZE" in values:
        pixel_nm = _positive(values["PIXELSIZE"])
        if pixel_nm is not None:
            return Calibration(
                pixel_nm, "metadata:hitachi", f"Hitachi sidecar PixelSize = {pixel_nm:g} nm"
            )
    bar_px = _positive(values.get("SM_MICRON_BAR"))
    marker = values.get("SM_MICRON_MARKER", "")
    if bar_px is None or not marker:
        return NO_CALIBRATION
    try:
        marker_nm = parse_length(marker)
    except SaemiInputError:
        logger.info("JEOL marker %r is not a length", marker)
        return NO_CALIBRATION
    nm_per_px = marker_nm / bar_px
    full_width = _positive((values.get("CM_FULL_SIZE") or "").split(" ")[0] or None)
    detail = f"JEOL sidecar: scale bar {marker} = {bar_px:g} px"
    if full_width is not None and image_width_px and int(full_width) != image_width_px:
        nm_per_px *= full_width / image_width_px
        detail += f" at full size {full_width:g} px wide, image {image_width_px} px wide"
    return Calibration(nm_per_px, "metadata:jeol", detail)


def _priority(calibration: Calibration) -> int:
    """Rank of a source: lower wins."""
    if calibration.source == "manual":
        return 0
    if calibration.source.startswith("metadata:"):
        return 1
    if calibration.source == "scalebar:user":
        return 2
    if calibration.source == "scalebar:ocr":
        return 3
    return 4


def resolve_calibration(
    candidates: list[Calibration], manual_nm_per_px: float | None
) -> tuple[Calibration, list[str]]:
    """Choose one calibration and warn where the sources disagree.

    Parameters
    ----------
    candidates : list of Calibration
        Everything found for the image (metadata, scale bar); uncalibrated entries are ignored.
    manual_nm_per_px : float or None
        The user's override, which wins over every other source.

    Returns
    -------
    calibration : Calibration
        The manual value if given, else metadata, else the scale bar, else the field width, else
        :data:`NO_CALIBRATION`.
    warnings : list of str
        One sentence for each other source that differs from the chosen one by more than
        :data:`DISAGREEMENT_TOLERANCE`, naming both values.

    Raises
    ------
    SaemiInputError
        When the manual value is not a positive finite number.
    """
    usable = [c for c in candidates if c.nm_per_px is not None]
    if manual_nm_per_px is not None:
        if _positive(manual_nm_per_px) is None:
            raise SaemiInputError(
                "The pixel size must be a positive number of nm per pixel, "
                f"not {manual_nm_per_px!r}."
            )
        manual = Calibration(
            float(manual_nm_per_px), "manual", f"Entered by the user: {manual_nm_per_px:g} nm/px"
        )
        usable.insert(0, manual)
    if not usable:
        return NO_CALIBRATION, []
    chosen = min(usable, key=_priority)
    warnings = []
    for other in usable:
        if other is chosen:
            continue
        difference = abs(other.nm_per_px - chosen.nm_per_px) / chosen.nm_per_px
        if difference > DISAGREEMENT_TOLERANCE:
            warnings.append(
                f"The pixel size from {other.source} ({other.nm_per_px:.4g} nm/px) differs by "
                f"{difference:.1%} from {chosen.source} ({chosen.nm_per_px:.4g} nm/px), "
                f"which is used."
            )
    return chosen, warnings
