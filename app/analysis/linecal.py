"""Calibration from a line that the user draws on the image and whose real length they type.

The overlay figure's axes map one unit to one image pixel, so the end points of a line drawn on it
are image pixel coordinates and ``nm_per_px = length_nm / length_px``. Plotly reports a drawn or
edited line in its ``relayoutData`` in one of two shapes:

- ``{"shapes": [{"type": "line", "x0": ..., "y0": ..., "x1": ..., "y1": ...}, ...]}`` after a new
  shape is drawn (the list holds every shape of the figure, the newest last);
- ``{"shapes[2].x0": ..., "shapes[2].y0": ..., ...}`` after an existing shape is moved or resized.

:func:`line_from_relayout` reads both; :func:`line_calibration` turns a line and a typed length into a
:class:`~app.analysis.calibration.Calibration` with source ``scalebar:user``; and
:func:`combine_calibrations` decides between it, the typed pixel size and what the image carried.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from app.analysis.calibration import DISAGREEMENT_TOLERANCE, Calibration, parse_length, resolve_calibration
from app.analysis.errors import SaemiInputError

#: A line's end points in image pixels: (x0, y0, x1, y1).
Line = tuple[float, float, float, float]

_INDEXED_KEY = re.compile(r"^shapes\[(?P<index>\d+)\]\.(?P<coord>[xy][01])$")
_COORDS = ("x0", "y0", "x1", "y1")
#: Lines shorter than this (in pixels) cannot calibrate anything.
MIN_LINE_PX = 1.0


def _line_of(shape: Mapping[str, Any]) -> Line | None:
    """The end points of one shape dict, or None when a coordinate is missing or not a number."""
    try:
        line = tuple(float(shape[key]) for key in _COORDS)
    except (KeyError, TypeError, ValueError):
        return None
    return line if all(math.isfinite(value) for value in line) else None


def line_from_relayout(relayout: Mapping[str, Any] | None) -> Line | None:
    """The line drawn or edited last, from a plotly ``relayoutData`` dict.

    Parameters
    ----------
    relayout : mapping or None
        The graph's ``relayoutData``: a full ``shapes`` list (the newest line shape is taken) or
        ``shapes[i].x0``-style keys (the highest index that has all four coordinates is taken).
        Zoom, pan and autosize events carry neither and give None.

    Returns
    -------
    tuple of float or None
        ``(x0, y0, x1, y1)`` in image pixels, or None when the event holds no line.

    Examples
    --------
    >>> line_from_relayout({"shapes[0].x0": 1, "shapes[0].y0": 2, "shapes[0].x1": 4, "shapes[0].y1": 6})
    (1.0, 2.0, 4.0, 6.0)
    >>> line_from_relayout({"xaxis.range[0]": 10}) is None
    True
    """
    if not relayout:
        return None
    shapes = relayout.get("shapes")
    if isinstance(shapes, list):
        lines = [_line_of(shape) for shape in shapes if isinstance(shape, Mapping) and shape.get("type") == "line"]
        lines = [line for line in lines if line is not None]
        return lines[-1] if lines else None
    indexed: dict[int, dict[str, Any]] = {}
    for key, value in relayout.items():
        match = _INDEXED_KEY.match(str(key))
        if match:
            indexed.setdefault(int(match.group("index")), {})[match.group("coord")] = value
    for index in sorted(indexed, reverse=True):
        line = _line_of(indexed[index])
        if line is not None:
            return line
    return None


def line_length_px(line: Line) -> float:
    """Euclidean length of a line in pixels.

    Examples
    --------
    >>> line_length_px((0.0, 0.0, 3.0, 4.0))
    5.0
    """
    x0, y0, x1, y1 = line
    return math.hypot(x1 - x0, y1 - y0)


def line_calibration(line: Line | None, length_text: str | None) -> Calibration:
    """The pixel size given by a drawn line and its real length.

    Parameters
    ----------
    line : tuple of float or None
        ``(x0, y0, x1, y1)`` in image pixels, as from :func:`line_from_relayout`.
    length_text : str or None
        The real length, for example ``"500 nm"`` or ``"1 µm"`` (see
        :func:`~app.analysis.calibration.parse_length`).

    Returns
    -------
    Calibration
        ``nm_per_px = length_nm / length_px`` with source ``scalebar:user``.

    Raises
    ------
    SaemiInputError
        When no line is drawn, the line is shorter than :data:`MIN_LINE_PX`, or the length is
        missing or cannot be read.

    Examples
    --------
    >>> line_calibration((10.0, 5.0, 210.0, 5.0), "500 nm").nm_per_px
    2.5
    """
    if line is None:
        raise SaemiInputError(
            "No line is drawn: choose 'Measure a length' and drag a line over the scale bar "
            "(or a feature of known size) on the image."
        )
    if not (length_text or "").strip():
        raise SaemiInputError("Type the real length of the drawn line, for example '500 nm'.")
    length_nm = parse_length(length_text)
    length_px = line_length_px(line)
    if length_px < MIN_LINE_PX:
        raise SaemiInputError(
            f"The drawn line is only {length_px:.2f} px long; drag a longer line over the scale bar."
        )
    return Calibration(
        length_nm / length_px,
        "scalebar:user",
        f"Line of {length_px:.1f} px drawn by the user = {length_nm:g} nm",
    )


def _disagreement(other: Calibration, chosen: Calibration) -> str | None:
    """A warning when ``other`` differs from ``chosen`` by more than the tolerance, else None."""
    difference = abs(other.nm_per_px - chosen.nm_per_px) / chosen.nm_per_px
    if difference <= DISAGREEMENT_TOLERANCE:
        return None
    return (
        f"The pixel size from {other.source} ({other.nm_per_px:.4g} nm/px) differs by "
        f"{difference:.1%} from the drawn line ({chosen.nm_per_px:.4g} nm/px), which is used."
    )


def combine_calibrations(
    found: Calibration, line: Calibration | None, manual_nm_per_px: float | None
) -> tuple[Calibration, list[str]]:
    """The calibration in force given what the image carried, a drawn line and a typed value.

    A typed pixel size wins over everything (as in
    :func:`~app.analysis.calibration.resolve_calibration`); otherwise the drawn line wins over the
    metadata and the scale bar found in the image, since the user drew it on purpose.

    Parameters
    ----------
    found : Calibration
        The calibration found in the image (metadata, OCR'd or labelled scale bar, or none).
    line : Calibration or None
        From :func:`line_calibration`, or None when no line calibration is set.
    manual_nm_per_px : float or None
        The typed override.

    Returns
    -------
    calibration : Calibration
        The one used.
    warnings : list of str
        One sentence per other source that differs by more than
        :data:`~app.analysis.calibration.DISAGREEMENT_TOLERANCE`, and a note when the typed value
        overrides a drawn line.

    Raises
    ------
    SaemiInputError
        When the typed pixel size is not a positive number.
    """
    if line is None:
        return resolve_calibration([found], manual_nm_per_px)
    if manual_nm_per_px is not None:
        chosen, warnings = resolve_calibration([found, line], manual_nm_per_px)
        note = (f"The typed pixel size is used; the drawn line ({line.nm_per_px:.4g} nm/px) is ignored "
                "while the override is set.")
        return chosen, [*warnings, note]
    warnings = []
    if found.nm_per_px is not None:
        warning = _disagreement(found, line)
        if warning:
            warnings.append(warning)
    return line, warnings
