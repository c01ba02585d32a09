"""Synthetic SEM/TEM images of particles with exact instance labels.

The generator serves three purposes: on-the-fly training crops for the segmentation model, test
images with a known answer, and the demo images shipped in ``demo_images/``. Everything is drawn
from one seed, so a sample is reproducible from its arguments alone.

A sample is built in five steps:

1. draw the conditions (pixel size, shape family, arrangement, size distribution, decorations);
2. lay out the burned-in decorations (data bar, scale bar, panel letter) so particles can avoid
   or be cut by them;
3. place and rasterise the particles (later particles occlude earlier ones), then clean the label
   image so that every instance is one 4-connected region and nothing is labelled under a
   decoration;
4. render the image *from the final label image* (substrate, SEM edge brightening or TEM
   thickness contrast, blur, shot noise, scan-line noise), so image and labels always agree;
5. burn the decorations into the 8-bit image.

The helpers :func:`render_scale_bar`, :func:`render_data_bar` and :func:`render_panel_letter` draw
the decorations on any image, for tests of scale-bar reading and data-bar detection.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage
from skimage.measure import label as connected_components

from app.analysis.errors import SaemiInputError

MODALITIES = ("sem", "tem")
SHAPES = ("round", "faceted", "elongated", "irregular", "mixed")
ARRANGEMENTS = ("isolated", "touching", "clustered")
MIN_PARTICLE_AREA_PX = 4
"""Visible fragments smaller than this (cut by the frame or a decoration) are not labelled."""

_NICE_MANTISSAS = (1.0, 2.0, 5.0)
_MAX_CROP_PARTICLES = 500
"""Cap on the particles of a training crop, which keeps a crop fast when particles are tiny."""
_LETTERS = ("a", "b", "c", "d", "a)", "b)", "(a)", "(b)", "A", "B", "C)")


@dataclass(frozen=True)
class SyntheticSample:
    """One generated image with its ground truth.

    Attributes
    ----------
    image : np.ndarray
        ``uint8`` (H, W) grayscale image, decorations included.
    labels : np.ndarray
        ``uint16`` (H, W) instance ids, 0 = background, ids ``1..n`` contiguous. Data bar, scale
        bar and panel letters are 0. Every id is one 4-connected region.
    nm_per_px : float
        Pixel size in nanometres.
    modality : str
        ``"sem"`` (bright particles on a darker substrate) or ``"tem"`` (dark on bright).
    data_bar_rows : tuple of int or None
        ``(y0, y1)``: rows ``y0 <= y < y1`` hold the burned-in data bar.
    scale_bar : dict or None
        ``x0``, ``x1`` (bar columns ``x0 <= x < x1``), ``y0``, ``y1`` (bar rows), ``y`` (middle
        row), ``length_px``, ``length_nm``, ``label`` (for example ``"200 nm"``), ``bbox``
        ``(x0, y0, x1, y1)`` of everything drawn, ``in_data_bar``.
    true_ecd_px : np.ndarray
        Equivalent circular diameter of each labelled particle as drawn, from its label area;
        entry ``i`` belongs to id ``i + 1``.
    touches_border : np.ndarray
        Boolean per id: the particle touches the image frame or the data bar.
    letter : dict or None
        ``text`` and ``bbox`` of the panel letter.
    params : dict
        The conditions actually used (shape, arrangement, median_diameter_px, sigma_log,
        n_particles placed, ...).
    """

    image: np.ndarray
    labels: np.ndarray
    nm_per_px: float
    modality: str
    data_bar_rows: tuple[int, int] | None
    scale_bar: dict | None
    true_ecd_px: np.ndarray
    touches_border: np.ndarray
    letter: dict | None = None
    params: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Decorations
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Particles
# ----------------------------------------------------------------------------------------------


@dataclass
class _Particle:
    """One particle: centre, area-equivalent radius and a shape in its own rotated frame."""

    cx: float
    cy: float
    radius_px: float
    kind: str  # "disk", "polygon", "rod" or "star"
    angle: float
    aspect: float = 1.0
    n_sides: int = 0
    apothem_px: float = 0.0
    half_len_px: float = 0.0
    cap_px: float = 0.0
    harmonics: np.ndarray | None = None  # rows (k, amplitude, phase)
    extent_px: float = 0.0  # circumscribed radius
    _profile: np.ndarray | None = None

    def rho(self, dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Normalised radial coordinate (<= 1 inside) and, for polygons, the facet normal angle."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        u = dx * c + dy * s
        v = dy * c - dx * s
        if self.kind == "rod":
            return np.hypot(np.maximum(np.abs(u) - self.half_len_px, 0.0), v) / self.cap_px, None
        root = math.sqrt(self.aspect)
        u = u / root
        v = v * root
        if self.kind == "disk":
            return np.hypot(u, v) / self.radius_px, None
        if self.kind == "polygon":
            phi = np.arange(self.n_sides) * (2 * math.pi / self.n_sides)
            proj = u[..., None] * np.cos(phi) + v[..., None] * np.sin(phi)
            facet = np.argmax(proj, axis=-1)
            best = np.take_along_axis(proj, facet[..., None], axis=-1)[..., 0]
            return best / self.apothem_px, phi[facet] + self.angle
        theta = np.arctan2(v, u)
        orders, amplitudes, phases = self.harmonics.T
        r = 1.0 + np.cos(theta[..., None] * orders + phases) @ amplitudes
        return np.hypot(u, v) / (self.radius_px * np.maximum(r, 0.35)), None

    def radius_towards(self, angle: float) -> float:
        """Distance from the centre to the outline along the image-frame direction ``angle``."""
        if self._profile is None:  # outline radius at 64 directions, computed once
            directions = np.linspace(0.0, 2 * math.pi, 65)[:-1, None]
            if self.kind == "rod":
                t = np.linspace(0.0, self.extent_px * 1.05, 48)[None, :]
                rho, _ = self.rho(t * np.cos(directions), t * np.sin(directions))
                first_outside = np.argmax(rho > 1.0, axis=1)
                first_outside[~np.any(rho > 1.0, axis=1)] = t.size - 1
                self._profile = t[0, first_outside]
            else:  # rho is homogeneous of degree one along a ray from the centre
                rho, _ = self.rho(np.cos(directions[:, 0]), np.sin(directions[:, 0]))
                self._profile = 1.0 / rho
        index = int(round((angle % (2 * math.pi)) / (2 * math.pi) * 64)) % 64
        return float(self._profile[index])


def _make_particle(rng: np.random.Generator, family: str, diameter_px: float) -> _Particle:
    """A particle of the given shape family whose area equals that of a disk of ``diameter_px``."""
    radius = diameter_px / 2.0
    angle = rng.uniform(0, 2 * math.pi)
    if family == "round":
        aspect = rng.uniform(1.0, 1.12)
        return _Particle(0, 0, radius, "disk", angle, aspect, extent_px=radius * math.sqrt(aspect))
    if family == "faceted":
        n_sides = int(rng.choice([3, 4, 4, 4, 5, 6, 6, 8]))
        aspect = rng.uniform(1.0, 1.5 if n_sides == 4 else 1.2)
        apothem = radius * math.sqrt(math.pi / (n_sides * math.tan(math.pi / n_sides)))
        extent = apothem / math.cos(math.pi / n_sides) * math.sqrt(aspect)
        return _Particle(
            0, 0, radius, "polygon", angle, aspect, n_sides=n_sides, apothem_px=apothem, extent_px=extent
        )
    if family == "elongated":
        if rng.random() < 0.5:
            aspect = rng.uniform(1.6, 4.0)
            return _Particle(0, 0, radius, "disk", angle, aspect, extent_px=radius * math.sqrt(aspect))
        aspect = rng.uniform(1.8, 5.0)  # (half length + cap) / cap
        cap = radius * math.sqrt(math.pi / (math.pi + 4 * (aspect - 1)))
        half_len = (aspect - 1) * cap
        return _Particle(
            0, 0, radius, "rod", angle, aspect, half_len_px=half_len, cap_px=cap, extent_px=half_len + cap
        )
    orders = np.arange(2, 8, dtype=np.float64)
    amplitudes = rng.normal(0.0, 0.16, orders.size) / orders**0.7
    phases = rng.uniform(0, 2 * math.pi, orders.size)
    base = radius / math.sqrt(1 + 0.5 * float(np.sum(amplitudes**2)))
    aspect = rng.uniform(1.0, 1.4)
    extent = base * (1 + float(np.sum(np.abs(amplitudes)))) * math.sqrt(aspect)
    harmonics = np.column_stack([orders, amplitudes, phases])
    return _Particle(0, 0, base, "star", angle, aspect, harmonics=harmonics, extent_px=extent)


def _hits_boxes(x: float, y: float, r: float, boxes: list[tuple[int, int, int, int]]) -> bool:
    for x0, y0, x1, y1 in boxes:
        if x0 - r <= x <= x1 + r and y0 - r <= y <= y1 + r:
            return True
    return False


def _place(
    rng: np.random.Generator,
    particles: list[_Particle],
    arrangement: str,
    height: int,
    width: int,
    avoid_boxes: list[tuple[int, int, int, int]],
) -> list[_Particle]:
    """Give each particle a centre according to ``arrangement``; particles that find no room are dropped."""
    n = len(particles)
    cx = np.empty(n)
    cy = np.empty(n)
    ext = np.empty(n)
    req = np.empty(n)
    placed: list[_Particle] = []
    cluster_of = np.zeros(n, dtype=np.int64)
    members: dict[int, list[int]] = {}
    if arrangement == "clustered":
        n_clusters = max(1, int(round(n / rng.uniform(6, 25))))
        cluster_of = rng.integers(0, n_clusters, n)
    budget = 12 * n + 100

    def free(x: float, y: float, p: _Particle, k: int, factor: float, skip: int) -> bool:
        if _hits_boxes(x, y, p.extent_px, avoid_boxes):
            return False
        if k == 0:
            return True
        dist = np.hypot(cx[:k] - x, cy[:k] - y)
        if arrangement == "isolated":
            limit = ext[:k] + p.extent_px + 2.0
        else:
            limit = (req[:k] + p.radius_px) * factor
        if skip >= 0:
            limit[skip] = 0.0
        return not np.any(dist < limit)

    def random_xy(p: _Particle) -> tuple[float, float]:
        slack = 0.3 * p.extent_px
        return rng.uniform(-slack, width + slack), rng.uniform(-slack, height + slack)

    for i, p in enumerate(particles):
        k = len(placed)
        ok = False
        tries = 0
        while budget > 0 and tries < 15 and not ok:
            budget -= 1
            tries += 1
            group = members.get(int(cluster_of[i]), []) if arrangement == "clustered" else None
            if arrangement == "isolated" or k == 0 or (group is not None and not group) or (
                arrangement == "touching" and rng.random() < 0.04
            ):
                x, y = random_xy(p)
                skip = -1
                factor = 1.0
            else:
                if group is not None:
                    j = int(group[int(rng.integers(0, len(group)))])
                elif rng.random() < 0.5:  # grow from the most recent particles, where there is room
                    j = int(rng.integers(max(0, k - 20), k))
                else:
                    j = int(rng.integers(0, k))
                direction = rng.uniform(0, 2 * math.pi)
                touch = rng.uniform(0.90, 0.98) if arrangement == "touching" else rng.uniform(0.72, 0.95)
                reach = placed[j].radius_towards(direction) + p.radius_towards(direction + math.pi)
                x = cx[j] + touch * reach * math.cos(direction)
                y = cy[j] + touch * reach * math.sin(direction)
                if not (-p.extent_px < x < width + p.extent_px and -p.extent_px < y < height + p.extent_px):
                    continue
                skip = j
                factor = 0.92 if arrangement == "touching" else 0.7
            ok = free(x, y, p, k, factor, skip)
        if not ok:
            continue
        p.cx, p.cy = x, y
        cx[k], cy[k], ext[k], req[k] = x, y, p.extent_px, p.radius_px
        if arrangement == "clustered":
            members.setdefault(int(cluster_of[i]), []).append(k)
        placed.append(p)
    return placed


def _rasterise(
    particles: list[_Particle], height: int, width: int, tem_absorbance: np.ndarray | None, mu: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw particles in order (later on top): label, radial coordinate and surface-normal angle maps."""
    labels = np.zeros((height, width), dtype=np.int32)
    rho_map = np.zeros((height, width), dtype=np.float32)
    normal_map = np.zeros((height, width), dtype=np.float32)
    for index, p in enumerate(particles, start=1):
        x0 = max(int(math.floor(p.cx - p.extent_px - 1)), 0)
        x1 = min(int(math.ceil(p.cx + p.extent_px + 2)), width)
        y0 = max(int(math.floor(p.cy - p.extent_px - 1)), 0)
        y1 = min(int(math.ceil(p.cy + p.extent_px + 2)), height)
        if x0 >= x1 or y0 >= y1:
            continue
        dx = np.arange(x0, x1, dtype=np.float64)[None, :] - p.cx
        dy = np.arange(y0, y1, dtype=np.float64)[:, None] - p.cy
        rho, facet = p.rho(dx, dy)
        inside = rho <= 1.0
        if not inside.any():
            continue
        if facet is None:
            dx_full, dy_full = np.broadcast_arrays(dx, dy)
            normal = np.arctan2(dy_full[inside], dx_full[inside])
        else:
            normal = facet[inside]
        labels[y0:y1, x0:x1][inside] = index
        rho_map[y0:y1, x0:x1][inside] = rho[inside]
        normal_map[y0:y1, x0:x1][inside] = normal
        if tem_absorbance is not None:
            if p.kind == "polygon":  # a flat crystal: nearly uniform projected thickness
                thickness = 0.75 + 0.25 * np.minimum(1.0, (1.0 - rho[inside]) * 6.0)
            else:
                thickness = np.sqrt(np.clip(1.0 - rho[inside] ** 2, 0.0, 1.0))
            tem_absorbance[y0:y1, x0:x1][inside] += mu[index] * thickness
    return labels, rho_map, normal_map


def _clean_labels(labels: np.ndarray, min_area_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep each id's largest 4-connected piece if at least ``min_area_px``; renumber 1..n in order.

    Returns
    -------
    labels : np.ndarray
        int32 label image with ids 1..n.
    source : np.ndarray
        ``source[new_id]`` = the id it had in the input (index 0 maps to 0).
    """
    pieces = connected_components(labels, background=0, connectivity=1)
    n_pieces = int(pieces.max())
    owner = np.zeros(n_pieces + 1, dtype=np.int64)
    owner[pieces.ravel()] = labels.ravel()
    sizes = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
    candidates = np.arange(1, n_pieces + 1)
    order = candidates[np.lexsort((-sizes[candidates], owner[candidates]))]
    _, first = np.unique(owner[order], return_index=True)
    best = order[first]
    best = best[sizes[best] >= min_area_px]
    best = best[np.argsort(owner[best])]
    new_id = np.zeros(n_pieces + 1, dtype=np.int32)
    new_id[best] = np.arange(1, best.size + 1, dtype=np.int32)
    source = np.concatenate([[0], owner[best]])
    return new_id[pieces], source


# ----------------------------------------------------------------------------------------------
# Appearance
# ----------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, height: int, width: int, scale_px: float) -> np.ndarray:
    """Zero-mean, unit-variance random field with features about ``scale_px`` across."""
    step = max(1, int(scale_px // 3))
    small = rng.standard_normal((height // step + 3, width // step + 3)).astype(np.float32)
    small = ndimage.gaussian_filter(small, max(0.5, scale_px / step / 2.0), mode="wrap")
    if step > 1:
        small = ndimage.zoom(small, step, order=1)[1 : height + 1, 1 : width + 1]
    noise = small[:height, :width]
    noise = noise - noise.mean()
    return noise / (noise.std() + 1e-6)


def _gradient(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A linear ramp of unit peak-to-peak amplitude in a random direction, centred on zero."""
    angle = rng.uniform(0, 2 * math.pi)
    y = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    return math.sin(angle) * y + math.cos(angle) * x


def _substrate(rng: np.random.Generator, height: int, width: int, level: float, modality: str) -> np.ndarray:
    """Graded, textured background around ``level``."""
    image = level + rng.uniform(0.0, 0.15) * _gradient(rng, height, width)
    if modality == "sem":
        image = image + rng.uniform(0.01, 0.05) * _smooth_noise(rng, height, width, rng.uniform(20, 120))
        image = image + rng.uniform(0.005, 0.04) * _smooth_noise(rng, height, width, rng.uniform(2, 6))
    else:  # amorphous support film: fine speckle and a gentle thickness variation
        image = image + rng.uniform(0.005, 0.03) * _smooth_noise(rng, height, width, rng.uniform(60, 200))
        image = image + rng.uniform(0.01, 0.04) * _smooth_noise(rng, height, width, rng.uniform(1.5, 3))
    return image.astype(np.float32)


def _render(
    rng: np.random.Generator,
    modality: str,
    labels: np.ndarray,
    source: np.ndarray,
    rho_map: np.ndarray,
    normal_map: np.ndarray,
    absorbance: np.ndarray | None,
    faceted: np.ndarray,
) -> np.ndarray:
    """Grayscale float image in [0, 1] rendered from the final label image."""
    height, width = labels.shape
    inside = labels > 0
    pid = source[labels[inside]]
    n_total = int(source.max()) + 1 if source.size else 1
    light = rng.uniform(0, 2 * math.pi)
    if modality == "sem":
        bg_level = rng.uniform(0.12, 0.35)
        image = _substrate(rng, height, width, bg_level, modality)
        particle_level = bg_level + rng.uniform(0.12, 0.35) + rng.normal(0, 0.03, n_total)
        rim = rng.uniform(0.15, 0.45)
        sharpness = rng.uniform(3.0, 9.0)
        shade = rng.uniform(0.0, 0.12)
        rho = rho_map[inside]
        facing = np.cos(normal_map[inside] - light)
        value = particle_level[pid] + rim * rho**sharpness + shade * rho * facing
        is_facet = faceted[pid]
        band = is_facet & (rho > 0.72)  # side facets of a faceted crystal catch more or less signal
        value[band] += rng.uniform(0.03, 0.1) * facing[band]
        image[inside] = value + 0.02 * _smooth_noise(rng, height, width, 3.0)[inside]
        if rng.random() < 0.5:  # dark shadow halo on the substrate around particles
            halo = ndimage.gaussian_filter(inside.astype(np.float32), rng.uniform(1.5, 4.0))
            image[~inside] -= rng.uniform(0.03, 0.1) * halo[~inside]
    else:
        bg_level = rng.uniform(0.6, 0.9)
        image = _substrate(rng, height, width, bg_level, modality)
        absorbance = np.where(inside, absorbance, 0.0).astype(np.float32)
        image = image * np.exp(-absorbance)
        fringe = ndimage.gaussian_filter(inside.astype(np.float32), rng.uniform(0.8, 1.8)) - inside
        image = image + rng.uniform(0.0, 0.25) * fringe * bg_level  # bright Fresnel fringe outside the edge
    blur = rng.uniform(0.4, 1.6)
    image = ndimage.gaussian_filter(np.clip(image, 0.0, 1.0), blur)
    electrons = float(np.exp(rng.uniform(math.log(15), math.log(400))))
    image = rng.poisson(image * electrons).astype(np.float32) / electrons
    image += rng.normal(0.0, rng.uniform(0.0, 0.03), (height, 1)).astype(np.float32)  # scan-line offsets
    return np.clip(image, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Public generator
# ----------------------------------------------------------------------------------------------


def _choose(rng: np.random.Generator, value, options: tuple[str, ...], name: str) -> str:
    if value is None:
        return str(rng.choice(options))
    if value not in options:
        raise SaemiInputError(f"Unknown {name} {value!r}; choose one of {', '.join(options)}.")
    return value


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(math.log(low), math.log(high))))


def generate_sample(
    seed: int,
    height: int = 768,
    width: int = 1024,
    *,
    modality: str | None = "sem",
    nm_per_px: float | None = None,
    shape: str | None = None,
    n_particles: int | None = None,
    median_diameter_px: float | None = None,
    sigma_log: float | None = None,
    arrangement: str | None = None,
    data_bar: bool | None = None,
    scale_bar: bool | None = None,
    letters: bool | None = None,
) -> SyntheticSample:
    """Generate a synthetic SEM or TEM image of particles with its exact instance labels.

    Every argument left as None is drawn at random from ``seed``; the result depends only on the
    arguments.

    Parameters
    ----------
    seed : int
        Seed of the random generator.
    height, width : int
        Image size in pixels (decorations included).
    modality : {"sem", "tem"} or None
        SEM: bright particles with bright rims on a darker textured substrate. TEM bright field:
        dark particles on a bright film, darker where thicker. None picks one at random.
    nm_per_px : float, optional
        Pixel size in nm.
    shape : {"round", "faceted", "elongated", "irregular", "mixed"}, optional
        Shape family; "mixed" draws a family per particle.
    n_particles : int, optional
        Number of particles to place (fewer may fit; see ``params["n_placed"]``).
    median_diameter_px : float, optional
        Median of the log-normal distribution of area-equivalent diameters, in pixels.
    sigma_log : float, optional
        Standard deviation of the natural log of the diameter.
    arrangement : {"isolated", "touching", "clustered"}, optional
        Isolated particles never touch; touching ones are placed against a neighbour; clustered
        ones form overlapping agglomerates. Later particles occlude earlier ones.
    data_bar : bool, optional
        Burn a data bar into the bottom (sometimes top) rows.
    scale_bar : bool, optional
        Draw a scale bar: inside the data bar if there is one, free-standing otherwise.
    letters : bool, optional
        Draw a panel letter in a corner.

    Returns
    -------
    SyntheticSample

    Examples
    --------
    >>> sample = generate_sample(3, 128, 160, modality="tem", data_bar=False)
    >>> sample.image.shape, sample.labels.dtype.name
    ((128, 160), 'uint16')
    """
    if height < 32 or width < 32:
        raise SaemiInputError("A synthetic image must be at least 32x32 pixels.")
    rng = np.random.default_rng(seed)
    modality = _choose(rng, modality, MODALITIES, "modality")
    shape = _choose(rng, shape, SHAPES, "shape")
    arrangement = _choose(rng, arrangement, ARRANGEMENTS, "arrangement")
    if nm_per_px is None:
        nm_per_px = _log_uniform(rng, 0.5, 40.0) if modality == "sem" else _log_uniform(rng, 0.1, 3.0)
    short_side = min(height, width)
    if median_diameter_px is None:
        median_diameter_px = _log_uniform(rng, 6.0, max(8.0, short_side / 5.0))
    if sigma_log is None:
        sigma_log = rng.uniform(0.05, 0.35)
    if nm_per_px <= 0 or median_diameter_px <= 0 or sigma_log < 0:
        raise SaemiInputError("Pixel size and median diameter must be positive and sigma_log not negative.")
    if n_particles is None:
        coverage = rng.uniform(0.08, 0.3) if arrangement == "isolated" else rng.uniform(0.2, 0.55)
        mean_area = math.pi / 4 * median_diameter_px**2 * math.exp(2 * sigma_log**2)
        n_particles = int(np.clip(round(coverage * height * width / mean_area), 1, 1200))
    if n_particles < 0:
        raise SaemiInputError("The number of particles cannot be negative.")
    if data_bar is None:
        data_bar = bool(rng.random() < 0.45)
    if scale_bar is None:
        scale_bar = bool(data_bar or rng.random() < 0.5)
    if letters is None:
        letters = bool(rng.random() < 0.3)

    # 1. decorations layout (drawn on a blank image now, burned into the real one at the end)
    blank = np.zeros((height, width), dtype=np.uint8)
    decorations = []
    zero_boxes: list[tuple[int, int, int, int]] = []
    avoid_boxes: list[tuple[int, int, int, int]] = []
    data_bar_rows = None
    bar_info = None
    letter_info = None
    bright_marks = modality == "sem" or rng.random() < 0.3
    if data_bar:
        kwargs = {
            "height_px": max(8, int(round(height * rng.uniform(0.06, 0.10)))),
            "position": "bottom" if rng.random() < 0.9 else "top",
            "dark": bool(rng.random() < 0.7),
            "text": data_bar_text(nm_per_px, width, rng, modality),
            "scale_bar": scale_bar,
        }
        _, info = render_data_bar(blank, nm_per_px, **kwargs)
        decorations.append((render_data_bar, (nm_per_px,), kwargs))
        data_bar_rows = info["rows"]
        bar_info = info["scale_bar"]
        zero_boxes.append((0, data_bar_rows[0], width, data_bar_rows[1]))
    elif scale_bar:
        kwargs = {
            "corner": str(rng.choice(["bottom-right", "bottom-right", "bottom-left", "top-right"])),
            "bright": bright_marks,
            "box": bool(rng.random() < 0.5),
        }
        _, bar_info = render_scale_bar(blank, nm_per_px, **kwargs)
        decorations.append((render_scale_bar, (nm_per_px,), kwargs))
        zero_boxes.append(_grow(bar_info["bbox"], 2, height, width))
        if not kwargs["box"]:
            avoid_boxes.append(_grow(bar_info["bbox"], 3, height, width))
    if letters:
        kwargs = {
            "letter": str(rng.choice(_LETTERS)),
            "corner": "top-left" if rng.random() < 0.8 else "top-right",
            "bright": bright_marks,
            "box": bool(rng.random() < 0.3),
        }
        _, letter_info = render_panel_letter(blank, **kwargs)
        decorations.append((render_panel_letter, (), kwargs))
        zero_boxes.append(_grow(letter_info["bbox"], 2, height, width))
        if not kwargs["box"]:
            avoid_boxes.append(_grow(letter_info["bbox"], 3, height, width))

    # 2. particles
    families = ("round", "faceted", "elongated", "irregular")
    diameters = median_diameter_px * np.exp(sigma_log * rng.standard_normal(n_particles))
    diameters = np.clip(diameters, 3.0, 2.5 * max(height, width))
    particles = []
    for diameter in diameters:
        family = str(rng.choice(families)) if shape == "mixed" else shape
        particles.append(_make_particle(rng, family, float(diameter)))
    if arrangement == "isolated":  # big first, so small ones fill the gaps and the size law is kept
        particles.sort(key=lambda q: -q.extent_px)
    placed = _place(rng, particles, arrangement, height, width, avoid_boxes)
    mu = np.concatenate([[0.0], rng.uniform(0.4, 2.2) * rng.uniform(0.6, 1.4, len(placed))])
    absorbance = np.zeros((height, width), dtype=np.float32) if modality == "tem" else None
    raw_labels, rho_map, normal_map = _rasterise(placed, height, width, absorbance, mu)
    for x0, y0, x1, y1 in zero_boxes:
        raw_labels[y0:y1, x0:x1] = 0
    labels, source = _clean_labels(raw_labels, MIN_PARTICLE_AREA_PX)
    faceted = np.array([False] + [p.kind == "polygon" for p in placed], dtype=bool)

    # 3. appearance, then the burned-in decorations
    gray = _render(rng, modality, labels, source, rho_map, normal_map, absorbance, faceted)
    low, high = np.percentile(gray, [0.2, 99.8]) if rng.random() < 0.5 else (0.0, 1.0)
    gray = np.clip((gray - low) / max(high - low, 1e-3), 0.0, 1.0)
    image = np.rint(gray * 255).astype(np.uint8)
    for function, args, kwargs in decorations:
        image, _ = function(image, *args, **kwargs)

    areas_px = np.bincount(labels.ravel(), minlength=len(source))[1:]
    touches = _touching_border(labels, len(source) - 1, data_bar_rows)
    params = {
        "shape": shape,
        "arrangement": arrangement,
        "median_diameter_px": float(median_diameter_px),
        "sigma_log": float(sigma_log),
        "n_requested": int(n_particles),
        "n_placed": len(placed),
        "seed": seed,
    }
    return SyntheticSample(
        image=image,
        labels=labels.astype(np.uint16),
        nm_per_px=float(nm_per_px),
        modality=modality,
        data_bar_rows=data_bar_rows,
        scale_bar=bar_info,
        true_ecd_px=np.sqrt(4.0 * areas_px / math.pi),
        touches_border=touches,
        letter=letter_info,
        params=params,
    )


def _grow(box: tuple[int, int, int, int], by_px: int, height: int, width: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return _clip_box((x0 - by_px, y0 - by_px, x1 + by_px, y1 + by_px), height, width)


def _touching_border(labels: np.ndarray, n_ids: int, data_bar_rows: tuple[int, int] | None) -> np.ndarray:
    """Boolean per id 1..n: touches the image frame or the edge of the data bar."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    if data_bar_rows is not None:
        y0, y1 = data_bar_rows
        edge[max(y0 - 1, 0), :] = True
        edge[min(y1, labels.shape[0] - 1), :] = True
    touches = np.zeros(n_ids + 1, dtype=bool)
    touches[np.unique(labels[edge])] = True
    return touches[1:]


def generate_crop(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A random training crop covering the whole range of conditions.

    Renders a small full image of ``size`` x ``size`` pixels: either modality, every shape family
    and arrangement, particles from a few pixels to larger than the crop, with or without data
    bar, scale bar and letters.

    Parameters
    ----------
    rng : np.random.Generator
        Source of randomness; the crop is determined by its state.
    size : int
        Side of the square crop.

    Returns
    -------
    image : np.ndarray
        ``uint8`` (size, size).
    labels : np.ndarray
        ``uint16`` (size, size) instance ids.
    """
    seed = int(rng.integers(0, 2**63 - 1))
    if rng.random() < 0.15:  # a few big particles, some larger than the crop
        median_diameter_px = _log_uniform(rng, size / 4.0, 1.6 * size)
    else:
        median_diameter_px = _log_uniform(rng, 5.0, size / 5.0)
    sigma_log = rng.uniform(0.05, 0.35)
    coverage = rng.uniform(0.08, 0.55)
    mean_area_px = math.pi / 4 * median_diameter_px**2 * math.exp(2 * sigma_log**2)
    n_particles = int(np.clip(round(coverage * size * size / mean_area_px), 1, _MAX_CROP_PARTICLES))
    sample = generate_sample(
        seed,
        size,
        size,
        modality=str(rng.choice(MODALITIES)),
        median_diameter_px=median_diameter_px,
        sigma_log=sigma_log,
        n_particles=n_particles,
        data_bar=bool(rng.random() < 0.25),
    )
    return sample.image, sample.labels
