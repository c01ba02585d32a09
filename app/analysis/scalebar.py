"""Find the burned-in scale bar, measure it in pixels and read its label with Tesseract OCR.

The bar is a long, thin, filled horizontal rectangle of one intensity (bright on a dark bar or
dark on a bright one). Its label is the line of text nearest to it. OCR is optional: without
``pytesseract`` or the ``tesseract`` program the bar is still measured and the user is asked
for the label.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu

from app.analysis.calibration import NO_CALIBRATION, Calibration, parse_length
from app.analysis.databar import DataBar

logger = logging.getLogger(__name__)

#: Without a data bar, the bar is searched in this bottom fraction of the image.
SEARCH_FRACTION = 0.3
#: Smallest bar length in pixels.
MIN_LENGTH_PX = 15
#: A bar is at least this many times longer than it is thick.
MIN_ELONGATION = 5.0
#: Smallest intensity difference between the bar and its surroundings.
MIN_CONTRAST = 0.2
#: Label crops are enlarged to these heights in pixels before OCR, tried in turn (Tesseract reads
#: text of 30-40 px cap height best; much larger text makes it see extra digits).
OCR_CROP_HEIGHTS_PX = (48, 36, 64)
#: Leading digits of the values that scale bars show (1, 2, 2.5, 3, 4, 5 times a power of ten).
ROUND_MANTISSAS = (1.0, 2.0, 2.5, 3.0, 4.0, 5.0)
#: Largest enlargement of a label crop.
OCR_MAX_UPSCALE = 8.0
#: Plausible pixel sizes for electron micrographs, in nm (HRTEM to low-magnification SEM).
PLAUSIBLE_NM_PER_PX = (0.005, 2.0e4)


@dataclass(frozen=True)
class ScaleBar:
    """A scale bar found in an image.

    Attributes
    ----------
    x0, x1 : int
        First and one-past-last column of the bar, so ``length_px == x1 - x0``.
    y : int
        Row through the middle of the bar.
    length_px : int
        Length of the bar in pixels.
    label_text : str or None
        The label as OCR read it, or None when it could not be read.
    length_nm : float or None
        The length the label states, in nanometres.
    nm_per_px : float or None
        ``length_nm / length_px``, or None without a readable label.
    """

    x0: int
    x1: int
    y: int
    length_px: int
    label_text: str | None
    length_nm: float | None
    nm_per_px: float | None


@functools.lru_cache(maxsize=1)
def tesseract_available() -> bool:
    """Tell whether ``pytesseract`` and the ``tesseract`` program can both be used.

    Returns
    -------
    bool
        True when OCR can run.
    """
    try:
        import pytesseract
    except ImportError:
        return False
    try:
        pytesseract.get_tesseract_version()
    except (pytesseract.TesseractNotFoundError, OSError):
        return False
    return True


@dataclass(frozen=True)
class _Box:
    """Bounding box of a connected component, rows ``[r0, r1)`` and columns ``[c0, c1)``."""

    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def height(self) -> int:
        return self.r1 - self.r0

    @property
    def center_row(self) -> float:
        return 0.5 * (self.r0 + self.r1)


def _bar_candidates(mask: np.ndarray) -> tuple[list[tuple[int, _Box]], list[_Box]]:
    """Components of ``mask`` shaped like a scale bar (label index and box), and all boxes."""
    # Only components holding a horizontal run of MIN_LENGTH_PX pixels can be bars; finding
    # them first keeps noisy regions with many small components fast.
    long_runs = ndimage.binary_opening(mask, structure=np.ones((1, MIN_LENGTH_PX), bool))
    if not long_runs.any():
        return [], []
    labels, _ = ndimage.label(mask)
    boxes = [
        _Box(s[0].start, s[0].stop, s[1].start, s[1].stop) for s in ndimage.find_objects(labels)
    ]
    n_cols = mask.shape[1]
    candidates = []
    for index in np.unique(labels[long_runs]):
        box = boxes[index - 1]
        width = box.c1 - box.c0
        if width < MIN_LENGTH_PX or width > 0.95 * n_cols:
            continue
        component = labels[box.r0 : box.r1, box.c0 : box.c1] == index
        full_rows = np.flatnonzero(component.sum(axis=1) >= 0.9 * width)
        if full_rows.size == 0 or width < MIN_ELONGATION * full_rows.size:
            continue
        if full_rows.size * width < 0.5 * component.sum():
            continue  # mostly something other than a bar: a frame, a grid, a blob
        candidates.append((int(index), box))
    return candidates, boxes


def _label_box(bar: _Box, bar_index: int, boxes: list[_Box]) -> _Box | None:
    """Bounding box of the text line nearest to the bar (above, below or beside it)."""
    length = bar.c1 - bar.c0
    reach = 0.6 * length + 20
    glyphs = [
        box
        for index, box in enumerate(boxes, start=1)
        if index != bar_index
        and 3 <= box.height <= max(60, length)
        and box.c1 > bar.c0 - reach
        and box.c0 < bar.c1 + reach
    ]

    def gap(box: _Box) -> float:
        dy = max(bar.r0 - box.r1, box.r0 - bar.r1, 0)
        dx = max(bar.c0 - box.c1, box.c0 - bar.c1, 0)
        return float(np.hypot(dx, dy))

    near = [box for box in glyphs if gap(box) <= reach]
    if not near:
        return None
    seed = min(near, key=gap)
    line = _Box(seed.r0, seed.r1, seed.c0, seed.c1)
    grown = True
    while grown:
        grown = False
        for box in glyphs:
            same_line = abs(box.center_row - line.center_row) <= 0.5 * line.height + 2
            close = box.c0 <= line.c1 + 1.5 * line.height and box.c1 >= line.c0 - 1.5 * line.height
            inside = (
                line.c0 <= box.c0 and box.c1 <= line.c1 and line.r0 <= box.r0 and box.r1 <= line.r1
            )
            if same_line and close and not inside:
                line = _Box(
                    min(line.r0, box.r0), max(line.r1, box.r1),
                    min(line.c0, box.c0), max(line.c1, box.c1),
                )
                grown = True
    return line


def _ocr(crop: np.ndarray, bright_text: bool, target_height_px: int) -> str | None:
    """Read one line of text from a crop: upscale, binarise to black on white, Tesseract."""
    import pytesseract

    height, width = crop.shape
    scale = min(max(1.0, target_height_px / height), OCR_MAX_UPSCALE)
    image = Image.fromarray(np.clip(crop * 255.0, 0, 255).astype(np.uint8))
    image = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BICUBIC)
    upscaled = np.asarray(image, dtype=np.float32)
    if upscaled.max() - upscaled.min() < 1.0:
        return None
    threshold = threshold_otsu(upscaled)
    ink = upscaled > threshold if bright_text else upscaled <= threshold
    page = np.where(ink, 0, 255).astype(np.uint8)
    page = np.pad(page, 20, constant_values=255)
    try:
        text = pytesseract.image_to_string(Image.fromarray(page), config="--psm 7")
    except pytesseract.TesseractError:
        logger.warning("Tesseract failed on a scale-bar label", exc_info=True)
        return None
    return text.strip() or None


_LABEL_RE = re.compile(r"([0-9OoIlS|]+(?:[.,][0-9Oo]+)?)([A-Za-zµμ&]{0,4})")


def interpret_label(text: str, length_px: int) -> float | None:
    """Turn an OCR reading of a scale-bar label into a length in nanometres.

    OCR often reads the micro sign as ``u``, ``p``, ``k``, ``H`` or a few letters, or drops it.
    Scale bars labelled in picometres (or kilometres) are practically unknown in electron
    microscopy, so every unit ending in ``m`` other than ``nm`` and ``mm`` is taken as µm; a
    ``pm`` reading is kept only when µm would give an implausible pixel size. Digits misread as
    letters (``O`` for 0, ``l`` or ``I`` for 1, ``S`` for 5) are mapped back.

    Parameters
    ----------
    text : str
        The OCR output, such as ``"500 nm"`` or ``"1 pm"``.
    length_px : int
        Length of the bar in pixels, to judge plausibility.

    Returns
    -------
    float or None
        The length in nanometres, or None when no plausible reading exists.

    Examples
    --------
    >>> interpret_label("2 pm", 200)
    2000.0
    >>> interpret_label("l00 nm", 100)
    100.0
    """
    for match in _LABEL_RE.finditer(text.replace(" ", "")):
        number = match.group(1).translate(str.maketrans("OoIlS|", "001151")).replace(",", ".")
        unit = match.group(2).lower().replace("μ", "µ")
        if unit in ("nm", "mm"):
            readings = [unit]
        elif unit.endswith("m"):
            readings = ["µm", "pm"] if unit == "pm" else ["µm"]
        else:
            continue
        for reading in readings:
            length_nm = parse_length(f"{number} {reading}")
            if PLAUSIBLE_NM_PER_PX[0] <= length_nm / length_px <= PLAUSIBLE_NM_PER_PX[1]:
                return length_nm
    return None


def _is_round(length_nm: float) -> bool:
    """Tell whether a length has one of the leading digits that scale bars use."""
    mantissa = length_nm / 10.0 ** np.floor(np.log10(length_nm))
    return any(abs(mantissa - round_value) < 1e-6 for round_value in ROUND_MANTISSAS)


def _read_label(
    crop: np.ndarray, bright_text: bool, length_px: int
) -> tuple[str | None, float | None]:
    """OCR a label at several enlargements; keep the first reading with a round value.

    Returns the text and its length in nm, else the first plausible reading, else the first
    reading with a length of None.
    """
    readings = []
    for target_height_px in OCR_CROP_HEIGHTS_PX:
        text = _ocr(crop, bright_text, target_height_px)
        length_nm = interpret_label(text, length_px) if text else None
        if length_nm is not None and _is_round(length_nm):
            return text, length_nm
        readings.append((text, length_nm))
    plausible = [reading for reading in readings if reading[1] is not None]
    return (plausible or readings)[0]


def find_scale_bar(gray: np.ndarray, *, search_rows: DataBar | None = None) -> ScaleBar | None:
    """Find a scale bar, measure its length and read its label.

    Parameters
    ----------
    gray : ndarray
        2-D float image in [0, 1].
    search_rows : DataBar, optional
        Rows to search (the data bar); the bottom :data:`SEARCH_FRACTION` of the image otherwise.

    Returns
    -------
    ScaleBar or None
        The longest bar-shaped mark found, or None. ``label_text`` and ``nm_per_px`` are None
        when OCR is unavailable or could not read a plausible label.
    """
    n_rows = gray.shape[0]
    if search_rows is not None:
        row0, row1 = search_rows.y0, search_rows.y1
    else:
        row0, row1 = int(n_rows * (1.0 - SEARCH_FRACTION)), n_rows
    region = gray[row0:row1].astype(np.float32)
    if region.size == 0:
        return None
    background = float(np.median(region))
    best = None
    for sign in (1.0, -1.0):
        contrast = sign * (region - background)
        peak = float(contrast.max())
        if peak < MIN_CONTRAST:
            continue
        candidates, boxes = _bar_candidates(contrast > 0.5 * peak)
        for index, box in candidates:
            if best is None or box.c1 - box.c0 > best[1].c1 - best[1].c0:
                best = (index, box, boxes, sign)
    if best is None:
        return None
    index, box, boxes, sign = best
    length_px = box.c1 - box.c0
    y = row0 + (box.r0 + box.r1) // 2
    label_text = length_nm = None
    if tesseract_available():
        line = _label_box(box, index, boxes)
        if line is not None:
            margin = max(2, line.height // 3)
            crop = region[
                max(0, line.r0 - margin) : line.r1 + margin,
                max(0, line.c0 - margin) : line.c1 + margin,
            ]
            label_text, length_nm = _read_label(crop, sign > 0, length_px)
            logger.info("Scale bar %d px, label read as %r", length_px, label_text)
    nm_per_px = length_nm / length_px if length_nm is not None else None
    return ScaleBar(box.c0, box.c1, y, length_px, label_text, length_nm, nm_per_px)


def calibration_from_scale_bar(bar: ScaleBar, user_label: str | None = None) -> Calibration:
    """Pixel size from a scale bar and its label.

    Parameters
    ----------
    bar : ScaleBar
        The measured bar.
    user_label : str, optional
        The label typed by the user (``"500 nm"``); wins over the OCR reading.

    Returns
    -------
    Calibration
        ``scalebar:user`` or ``scalebar:ocr``, or :data:`NO_CALIBRATION` when no label is known.

    Raises
    ------
    SaemiInputError
        When ``user_label`` is not a length.
    """
    if user_label is not None and user_label.strip():
        length_nm = parse_length(user_label)
        return Calibration(
            length_nm / bar.length_px,
            "scalebar:user",
            f"Scale bar of {bar.length_px} px labelled {user_label.strip()!r} by the user",
        )
    if bar.nm_per_px is not None:
        return Calibration(
            bar.nm_per_px,
            "scalebar:ocr",
            f"Scale bar of {bar.length_px} px, label read by OCR as {bar.label_text!r}",
        )
    return NO_CALIBRATION
