"""The information band (data bar) that microscopes burn into the bottom or top of an image.

A data bar is a strip of full-width rows whose background is one flat value, holding text,
a scale bar and sometimes separator lines. The image above it is textured, or flat at another
value. The detector walks from the edge inward over rows that are mostly one value (failing
that, mostly the edge row's value, so that a flat image of another value ends the walk) and
accepts the strip only when it
has printed marks in it, starts with a straight, clean edge (a margin or border line right
after textured rows: particles never end along one row), and its background value is rare in
the image (so a dark or white, clipped background around particles is not a bar).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from app.analysis.errors import SaemiInputError

#: Half-width of the window around a row's most common value that counts as "background".
BACKGROUND_TOLERANCE = 2.0 / 255.0
#: A row is bar-like when at least this fraction of it sits at its most common value.
MIN_ROW_UNIFORMITY = 0.5
#: When no strip is found otherwise, its rows must share the edge row's most common value
#: within this much (a flat image of another value above the strip then ends it).
MAX_MODE_CHANGE = 0.1
#: One of the strip's first rows (its margin or border line) is at least this uniform; JPEG
#: ringing keeps real bars below 1, flat backgrounds that fade into the image stay near 0.5.
CLEAN_ROW_UNIFORMITY = 0.8
CLEAN_EDGE_ROWS = 3
#: This many consecutive textured rows end the strip.
END_RUN_ROWS = 6
#: Bounds on the strip height, as a fraction of the image height.
MIN_BAR_FRACTION = 0.02
MAX_BAR_FRACTION = 0.35
MIN_BAR_ROWS = 8
#: Printed marks differ from the bar background by at least this much.
INK_CONTRAST = 0.25
#: At most this fraction of the image above may share the bar's background value.
MAX_BACKGROUND_IN_IMAGE = 0.25


@dataclass(frozen=True)
class DataBar:
    """Rows ``[y0, y1)`` of an image that belong to the data bar and are kept out of analysis."""

    y0: int
    y1: int

    @property
    def height_px(self) -> int:
        """Number of rows in the bar."""
        return self.y1 - self.y0


def _row_modes(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Most common value of each row (on a 256-level grid) and the fraction of the row near it."""
    levels = np.clip(np.rint(gray * 255.0), 0, 255).astype(np.int64)
    n_rows, n_cols = levels.shape
    offsets = (np.arange(n_rows) * 256)[:, None]
    counts = np.bincount((levels + offsets).ravel(), minlength=n_rows * 256).reshape(n_rows, 256)
    modes = counts.argmax(axis=1)
    window = int(round(BACKGROUND_TOLERANCE * 255.0))
    cumulative = np.concatenate([np.zeros((n_rows, 1), np.int64), counts.cumsum(axis=1)], axis=1)
    low = np.clip(modes - window, 0, 256)
    high = np.clip(modes + window + 1, 0, 256)
    rows = np.arange(n_rows)
    near = cumulative[rows, high] - cumulative[rows, low]
    return modes / 255.0, near / n_cols


def _bottom_bar_height(
    gray: np.ndarray, modes: np.ndarray, uniformity: np.ndarray, *, same_value: bool = False
) -> int | None:
    """Height of a data bar at the bottom edge of ``gray``, or None.

    ``modes`` and ``uniformity`` are the per-row results of :func:`_row_modes`. With
    ``same_value``, only rows whose most common value is the edge row's (within
    :data:`MAX_MODE_CHANGE`) belong to the strip, so that a flat image of another value above
    it ends it.
    """
    n_rows = gray.shape[0]
    bar_like = uniformity >= MIN_ROW_UNIFORMITY
    if same_value:
        bar_like &= np.abs(modes - modes[-1]) <= MAX_MODE_CHANGE
    if not bar_like[-1]:
        return None
    top = n_rows - 1
    textured_run = 0
    for row in range(n_rows - 1, -1, -1):
        if bar_like[row]:
            top = row
            textured_run = 0
        else:
            textured_run += 1
            if textured_run >= END_RUN_ROWS:
                break
    else:
        return None  # uniform rows reach the far edge: a flat image, not a bar
    height = n_rows - top
    if height < max(MIN_BAR_ROWS, MIN_BAR_FRACTION * n_rows) or height > MAX_BAR_FRACTION * n_rows:
        return None
    if uniformity[top : top + CLEAN_EDGE_ROWS].max() < CLEAN_ROW_UNIFORMITY:
        return None  # no straight edge: flat background that fades into the image
    strip = gray[top:]
    image = gray[:top]
    background = float(np.median(modes[top:][bar_like[top:]]))
    if np.mean(np.abs(strip - background) > INK_CONTRAST) < 0.002:
        return None  # nothing printed in the strip
    if np.mean(np.abs(image - background) <= BACKGROUND_TOLERANCE) > MAX_BACKGROUND_IN_IMAGE:
        return None  # the image itself is mostly this flat value
    return height


def detect_data_bar(gray: np.ndarray, *, fei_height_px: int | None = None) -> DataBar | None:
    """Find the data bar at the bottom (or else the top) of an image.

    Parameters
    ----------
    gray : ndarray
        2-D float image in [0, 1].
    fei_height_px : int, optional
        The image height without the bar, from FEI metadata (``[Image] ResolutionY``). When
        smaller than the image height, the bar is every row below it and no detection runs.

    Returns
    -------
    DataBar or None
        The rows to exclude, or None when the image has no data bar.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> gray = rng.uniform(0.2, 0.8, (200, 300))
    >>> gray[170:] = 0.0
    >>> gray[180:190, 20:120] = 1.0
    >>> detect_data_bar(gray)
    DataBar(y0=170, y1=200)
    """
    n_rows = gray.shape[0]
    if fei_height_px is not None and 0 < fei_height_px < n_rows:
        return DataBar(int(fei_height_px), n_rows)
    modes, uniformity = _row_modes(gray)
    for same_value in (False, True):
        bottom = _bottom_bar_height(gray, modes, uniformity, same_value=same_value)
        if bottom is not None:
            return DataBar(n_rows - bottom, n_rows)
        top = _bottom_bar_height(gray[::-1], modes[::-1], uniformity[::-1], same_value=same_value)
        if top is not None:
            return DataBar(0, top)
    return None


_SPEC_RE = re.compile(r"^\s*(-?\d*)\s*:\s*(-?\d*)\s*$")


def parse_data_bar_spec(text: str, height: int) -> DataBar | None:
    """Parse the user's data-bar override.

    Parameters
    ----------
    text : str
        ``"off"`` (or ``"none"``) for no bar; ``"y0:y1"`` for rows ``[y0, y1)``. Either end may
        be left out (``"700:"`` means to the bottom) and negative numbers count from the bottom
        (``"-60:"`` is the last 60 rows), as in Python slices.
    height : int
        Image height in pixels.

    Returns
    -------
    DataBar or None
        The rows to exclude, or None for ``"off"``.

    Raises
    ------
    SaemiInputError
        When the text is neither ``off`` nor a row range inside the image.

    Examples
    --------
    >>> parse_data_bar_spec("700:768", 768)
    DataBar(y0=700, y1=768)
    >>> parse_data_bar_spec("-68:", 768)
    DataBar(y0=700, y1=768)
    """
    if text.strip().lower() in ("off", "none"):
        return None
    match = _SPEC_RE.match(text)
    if match is None:
        raise SaemiInputError(
            f"Could not read the data-bar rows {text!r}; write 'y0:y1' (for example '700:768') "
            "or 'off'."
        )
    y0, y1, _ = slice(
        int(match.group(1)) if match.group(1) not in ("", "-") else None,
        int(match.group(2)) if match.group(2) not in ("", "-") else None,
    ).indices(height)
    if y1 <= y0 or (y0 == 0 and y1 == height):
        raise SaemiInputError(
            f"The data-bar rows {text!r} must cover part of the image, which has {height} rows."
        )
    return DataBar(y0, y1)
