"""Burned-in decorations of a micrograph: scale bar, microscope data bar and panel letter.

The ``render_*`` functions draw a decoration on a copy of any 2-D image (integer, or float in
[0, 1]) and return its geometry, so the synthetic generator can keep particles away from it and
tests of scale-bar reading and data-bar detection can draw one on an image of their own. Drawing
uses Pillow: a value layer and a coverage layer are painted and then blended onto the image.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from app.analysis.errors import SaemiInputError

PANEL_LETTERS = ("a", "b", "c", "d", "a)", "b)", "(a)", "(b)", "A", "B", "C)")
"""Panel letters the generator draws from."""

_NICE_MANTISSAS = (1.0, 2.0, 5.0)


@functools.lru_cache(maxsize=64)
def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """A scalable sans-serif font of about ``size_px`` pixels, with fallbacks."""
    size_px = max(6, int(size_px))
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size_px)
    except OSError:
        pass
    try:
        return ImageFont.load_default(size=size_px)
    except TypeError:  # Pillow < 10.1 has no scalable default font
        return ImageFont.load_default()


def nice_scale_length_nm(nm_per_px: float, width_px: int, max_fraction: float = 0.25) -> float:
    """Largest round length (1, 2 or 5 times a power of ten, in nm) not wider than ``max_fraction``.

    Parameters
    ----------
    nm_per_px : float
        Pixel size in nanometres.
    width_px : int
        Image width in pixels.
    max_fraction : float
        Largest bar length as a fraction of the width.

    Returns
    -------
    float
        The length in nm; with the default fraction the bar spans 10-25 % of the width.
    """
    if nm_per_px <= 0 or width_px <= 0:
        raise SaemiInputError("The pixel size and the image width must be positive.")
    limit_nm = max_fraction * width_px * nm_per_px
    exponent = math.floor(math.log10(limit_nm))
    candidates = [m * 10.0**e for e in (exponent - 1, exponent) for m in _NICE_MANTISSAS]
    return max(c for c in candidates if c <= limit_nm * (1 + 1e-9))


def format_length(length_nm: float) -> str:
    """Scale-bar label for a length: ``"200 nm"``, ``"1 µm"``, ``"2.5 µm"``."""
    if length_nm >= 1000:
        return f"{length_nm / 1000:g} µm"
    return f"{length_nm:g} nm"


class _Canvas:
    """Two Pillow layers (value and coverage) composited onto an array at the end."""

    def __init__(self, height: int, width: int):
        self.value = Image.new("L", (width, height), 0)
        self.alpha = Image.new("L", (width, height), 0)
        self._value_draw = ImageDraw.Draw(self.value)
        self._alpha_draw = ImageDraw.Draw(self.alpha)

    def rectangle(self, box: tuple[int, int, int, int], value: int) -> None:
        """Fill columns ``x0 <= x < x1`` and rows ``y0 <= y < y1``."""
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            return
        self._value_draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=value)
        self._alpha_draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=255)

    def text(self, xy: tuple[int, int], text: str, font, value: int) -> None:
        """Draw ``text`` with its Pillow anchor (top-left of the line box) at ``xy``."""
        self._value_draw.text(xy, text, font=font, fill=value)
        self._alpha_draw.text(xy, text, font=font, fill=255)

    def composite(self, image: np.ndarray) -> np.ndarray:
        """Blend the drawing onto ``image`` (uint8, or float in [0, 1]) and return a new array."""
        alpha = np.asarray(self.alpha, dtype=np.float32) / 255.0
        value = np.asarray(self.value, dtype=np.float32) / 255.0
        if np.issubdtype(image.dtype, np.integer):
            top = float(np.iinfo(image.dtype).max)
            blended = image.astype(np.float32) * (1 - alpha) + value * top * alpha
            return np.clip(np.rint(blended), 0, top).astype(image.dtype)
        return (image * (1 - alpha) + value * alpha).astype(image.dtype)


def _text_size(text: str, font) -> tuple[int, int, int, int]:
    """Bounding box ``(left, top, right, bottom)`` of ``text`` drawn at the origin."""
    return ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)


def _check_image(image: np.ndarray) -> None:
    """Raise :class:`SaemiInputError` unless ``image`` is 2-D and at least 8x8 pixels."""
    if image.ndim != 2 or min(image.shape) < 8:
        raise SaemiInputError(
            "Decorations can only be drawn on a 2-D grayscale image of at least 8x8 pixels."
        )


def _draw_scale_bar(
    canvas: _Canvas,
    nm_per_px: float,
    length_nm: float,
    x0: int,
    y_bottom: int,
    font_size_px: int,
    value: int,
    thickness_px: int,
) -> dict:
    """Draw bar and centred label above it, bottom of the bar at ``y_bottom``; return the geometry."""
    length_px = int(round(length_nm / nm_per_px))
    text = format_length(length_nm)
    font = _font(font_size_px)
    left, top, right, bottom = _text_size(text, font)
    bar_y0, bar_y1 = y_bottom - thickness_px, y_bottom
    gap_px = max(1, thickness_px // 2)
    text_x = x0 + (length_px - (right - left)) // 2 - left
    text_y = bar_y0 - gap_px - bottom
    canvas.rectangle((x0, bar_y0, x0 + length_px, bar_y1), value)
    canvas.text((text_x, text_y), text, font, value)
    bbox = (
        min(x0, text_x + left),
        text_y + top,
        max(x0 + length_px, text_x + right),
        bar_y1,
    )
    return {
        "x0": int(x0),
        "x1": int(x0 + length_px),
        "y0": int(bar_y0),
        "y1": int(bar_y1),
        "y": int((bar_y0 + bar_y1 - 1) // 2),
        "length_px": length_px,
        "length_nm": float(length_nm),
        "label": text,
        "bbox": tuple(int(v) for v in bbox),
    }


def render_scale_bar(
    image: np.ndarray,
    nm_per_px: float,
    *,
    length_nm: float | None = None,
    corner: str = "bottom-right",
    bright: bool = True,
    box: bool = False,
    font_size_px: int | None = None,
    thickness_px: int | None = None,
    margin_px: int | None = None,
) -> tuple[np.ndarray, dict]:
    """Burn a free-standing scale bar with its label into a copy of ``image``.

    Parameters
    ----------
    image : np.ndarray
        2-D ``uint8`` (or other integer) image, or float image in [0, 1].
    nm_per_px : float
        Pixel size; the bar is ``round(length_nm / nm_per_px)`` pixels long.
    length_nm : float, optional
        Bar length in nm; by default the largest round length up to 25 % of the width.
    corner : {"bottom-right", "bottom-left", "top-right", "top-left"}
        Where the bar sits.
    bright : bool
        White bar and text (True) or black (False).
    box : bool
        Draw an opaque box of the opposite colour behind bar and label.
    font_size_px, thickness_px, margin_px : int, optional
        Label size, bar thickness and distance from the frame; scaled to the image by default.

    Returns
    -------
    image : np.ndarray
        New image of the same dtype with the scale bar.
    info : dict
        ``x0``, ``x1`` (bar columns ``x0 <= x < x1``), ``y0``, ``y1`` (bar rows), ``y``,
        ``length_px``, ``length_nm``, ``label``, ``bbox`` ``(x0, y0, x1, y1)`` of all drawn
        pixels (box included), ``in_data_bar`` (False).

    Examples
    --------
    >>> img, info = render_scale_bar(np.zeros((200, 300), np.uint8), 2.0, length_nm=100)
    >>> info["length_px"], info["label"]
    (50, '100 nm')
    """
    _check_image(image)
    height, width = image.shape
    if length_nm is None:
        length_nm = nice_scale_length_nm(nm_per_px, width)
    if nm_per_px <= 0 or length_nm <= 0:
        raise SaemiInputError("The pixel size and the scale bar length must be positive.")
    length_px = int(round(length_nm / nm_per_px))
    if length_px < 2 or length_px > width - 4:
        raise SaemiInputError(
            f"A {format_length(length_nm)} scale bar does not fit in a {width} px wide image."
        )
    short_side = min(height, width)
    font_size_px = font_size_px or max(8, int(round(short_side * 0.035)))
    thickness_px = thickness_px or max(2, int(round(short_side * 0.008)))
    margin_px = margin_px if margin_px is not None else max(3, int(round(short_side * 0.03)))
    pad_px = max(2, font_size_px // 3) if box else 0
    left, top, right, bottom = _text_size(format_length(length_nm), _font(font_size_px))
    block_w = max(length_px, right - left)
    block_h = thickness_px + max(1, thickness_px // 2) + (bottom - top)
    if corner.endswith("right"):
        x_block = width - margin_px - pad_px - block_w
    else:
        x_block = margin_px + pad_px
    x0 = x_block + (block_w - length_px) // 2
    if corner.startswith("bottom"):
        y_bottom = height - margin_px - pad_px
    else:
        y_bottom = margin_px + pad_px + block_h
    fg, bg = (255, 0) if bright else (0, 255)
    canvas = _Canvas(height, width)
    box_xy = (x_block - pad_px, y_bottom - block_h - pad_px, x_block + block_w + pad_px, y_bottom + pad_px)
    if box:
        canvas.rectangle(box_xy, bg)
    info = _draw_scale_bar(canvas, nm_per_px, length_nm, x0, y_bottom, font_size_px, fg, thickness_px)
    if box:
        info["bbox"] = box_xy
    info["bbox"] = _clip_box(info["bbox"], height, width)
    info["in_data_bar"] = False
    return canvas.composite(image), info


def _clip_box(box: tuple[int, int, int, int], height: int, width: int) -> tuple[int, int, int, int]:
    """Clip ``(x0, y0, x1, y1)`` to the image frame."""
    x0, y0, x1, y1 = box
    return (max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1)))


def data_bar_text(
    nm_per_px: float, width_px: int, rng: np.random.Generator | None = None, modality: str = "sem"
) -> str:
    """Microscope-style information line, e.g. ``"HV 10.0 kV  mag 50 000x  WD 5.1 mm"``.

    The magnification is the one a 127 mm wide display would show for this pixel size; the
    accelerating voltage is typical of the modality.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    mag = 127e6 / (width_px * nm_per_px)
    mag_text = f"{int(round(mag, -2 if mag > 1000 else 0)):,}".replace(",", " ")
    voltages_kv = [1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0] if modality == "sem" else [80.0, 120.0, 200.0, 300.0]
    hv = rng.choice(voltages_kv)
    wd = rng.uniform(2.0, 15.0)
    parts = [f"HV {hv:.1f} kV", f"mag {mag_text}x", f"WD {wd:.1f} mm"]
    if rng.random() < 0.5:
        parts.append(str(rng.choice(["det ETD", "det TLD", "SE", "InLens", "BSE"])))
    return "  ".join(parts)


def render_data_bar(
    image: np.ndarray,
    nm_per_px: float,
    *,
    height_px: int | None = None,
    position: str = "bottom",
    dark: bool = True,
    text: str | None = None,
    scale_bar: bool = True,
    length_nm: float | None = None,
) -> tuple[np.ndarray, dict]:
    """Burn a microscope data bar (uniform strip with text and scale bar) into a copy of ``image``.

    The strip replaces the image rows it covers, as microscopes do.

    Parameters
    ----------
    image : np.ndarray
        2-D ``uint8`` (or other integer) image, or float image in [0, 1].
    nm_per_px : float
        Pixel size, for the scale bar and the magnification in the default text.
    height_px : int, optional
        Strip height; 8 % of the image height by default.
    position : {"bottom", "top"}
        Which edge the strip sits on.
    dark : bool
        Dark strip with light text (True) or light strip with dark text.
    text : str, optional
        Information text; a plausible HV / mag / WD line by default.
    scale_bar : bool
        Draw a scale bar with its label at the right end of the strip.
    length_nm : float, optional
        Scale bar length; by default the largest round length up to 25 % of the width.

    Returns
    -------
    image : np.ndarray
        New image of the same dtype.
    info : dict
        ``rows`` ``(y0, y1)`` of the strip, ``text``, ``dark``, ``position`` and ``scale_bar``
        (dict as in :func:`render_scale_bar`, with ``in_data_bar`` True, or None).
    """
    _check_image(image)
    height, width = image.shape
    if position not in ("bottom", "top"):
        raise SaemiInputError(f"The data bar position must be 'bottom' or 'top', not {position!r}.")
    height_px = height_px or max(8, int(round(0.08 * height)))
    if not 4 <= height_px <= height // 2:
        raise SaemiInputError("The data bar must be between 4 pixels and half the image high.")
    y0, y1 = (height - height_px, height) if position == "bottom" else (0, height_px)
    fg, bg = (235, 20) if dark else (15, 230)
    canvas = _Canvas(height, width)
    canvas.rectangle((0, y0, width, y1), bg)
    font_size_px = max(6, int(round(height_px * 0.42)))
    font = _font(font_size_px)
    margin_px = max(2, height_px // 5)
    bar_info = None
    text_right_limit = width - margin_px
    if scale_bar:
        if length_nm is None:
            length_nm = nice_scale_length_nm(nm_per_px, width)
        length_px = int(round(length_nm / nm_per_px))
        if 2 <= length_px <= width // 2:
            thickness_px = max(2, height_px // 8)
            x0 = width - margin_px - length_px
            bar_info = _draw_scale_bar(
                canvas, nm_per_px, length_nm, x0, y1 - margin_px, font_size_px, fg, thickness_px
            )
            bar_info["bbox"] = _clip_box(bar_info["bbox"], height, width)
            bar_info["in_data_bar"] = True
            text_right_limit = bar_info["bbox"][0] - margin_px
    if text is None:
        text = data_bar_text(nm_per_px, width)
    left, top, right, bottom = _text_size(text, font)
    while text and right - left > text_right_limit - margin_px:
        text = text.rsplit("  ", 1)[0] if "  " in text else ""
        left, top, right, bottom = _text_size(text, font)
    if text:
        text_y = y0 + (height_px - (bottom - top)) // 2 - top
        canvas.text((margin_px - left, text_y), text, font, fg)
    info = {"rows": (y0, y1), "text": text, "dark": dark, "position": position, "scale_bar": bar_info}
    return canvas.composite(image), info


def render_panel_letter(
    image: np.ndarray,
    letter: str = "a",
    *,
    corner: str = "top-left",
    bright: bool = True,
    box: bool = False,
    font_size_px: int | None = None,
) -> tuple[np.ndarray, dict]:
    """Burn a figure panel letter ("a", "b)", "(c)") into a corner of a copy of ``image``.

    Returns
    -------
    image : np.ndarray
        New image of the same dtype.
    info : dict
        ``text`` and ``bbox`` ``(x0, y0, x1, y1)`` of the drawn pixels (box included).
    """
    _check_image(image)
    height, width = image.shape
    font_size_px = font_size_px or max(9, int(round(min(height, width) * 0.06)))
    font = _font(font_size_px)
    left, top, right, bottom = _text_size(letter, font)
    margin_px = max(2, font_size_px // 3)
    pad_px = max(2, font_size_px // 5) if box else 0
    text_w, text_h = right - left, bottom - top
    x = margin_px + pad_px if corner.endswith("left") else width - margin_px - pad_px - text_w
    y = margin_px + pad_px if corner.startswith("top") else height - margin_px - pad_px - text_h
    fg, bg = (255, 0) if bright else (0, 255)
    canvas = _Canvas(height, width)
    bbox = (x - pad_px, y - pad_px, x + text_w + pad_px, y + text_h + pad_px)
    if box:
        canvas.rectangle(bbox, bg)
    canvas.text((x - left, y - top), letter, font, fg)
    return canvas.composite(image), {"text": letter, "bbox": _clip_box(bbox, height, width)}


def grow_box(box: tuple[int, int, int, int], by_px: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Widen ``(x0, y0, x1, y1)`` by ``by_px`` on every side, clipped to a ``height`` x ``width`` frame."""
    x0, y0, x1, y1 = box
    return _clip_box((x0 - by_px, y0 - by_px, x1 + by_px, y1 + by_px), height, width)
