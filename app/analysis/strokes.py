"""Paint-canvas strokes: parsing dash-canvas JSON and applying Draw, Remove and Erase to a label image.

Coordinates
-----------
dash-canvas (fabric.js) stores free-drawing paths in canvas display pixels. The background image object
carries ``scaleX``, the ratio display px / image px, so a canvas point maps to full-resolution image
coordinates as ``x_img = x_canvas / scaleX``. When no image object is present the ratio is
``canvas_width_px / image_width_px``. Brush widths are scaled the same way.

Tools are told apart by stroke colour (:data:`TOOL_COLOURS`), so one saved canvas may mix tools.

Limits
------
The brush width, the points and strokes of one save, the number of saves and the work of replaying
them all (:func:`check_edit_budget`) are bounded by :mod:`app.analysis.limits`, checked before any
stroke is drawn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from skimage import measure

from app.analysis.errors import SaemiInputError
from app.analysis.labels import add_orphan_regions, sequential_labels
from app.analysis.limits import (
    MAX_BRUSH_PX,
    MAX_EDIT_WORK_PX,
    MAX_PATHS_PER_SAVE,
    MAX_POINTS_PER_SAVE,
    MAX_REPLAYED_POINTS,
    MAX_SAVES,
)

#: Canvas line colour of each tool (what the UI sets as ``lineColor``).
TOOL_COLOURS = {"draw": "#00e000", "remove": "#ff0000", "erase": "#0080ff"}
_COLOUR_TOOLS = {colour: tool for tool, colour in TOOL_COLOURS.items()}
TOOLS = tuple(TOOL_COLOURS)
_MALFORMED = "A stored canvas edit is malformed; please redraw it."


@dataclass(frozen=True)
class Stroke:
    """One brush stroke in full-resolution image coordinates.

    Attributes
    ----------
    tool : str
        ``"draw"``, ``"remove"`` or ``"erase"``.
    points_xy : tuple of (float, float)
        Polyline vertices (x = column, y = row), in image pixels.
    width_px : float
        Brush diameter in image pixels.
    """

    tool: str
    points_xy: tuple[tuple[float, float], ...]
    width_px: float

    def to_dict(self) -> dict:
        """JSON-ready form (coordinates rounded to 0.1 px)."""
        return {
            "tool": self.tool,
            "points": [[round(x, 1), round(y, 1)] for x, y in self.points_xy],
            "width_px": round(float(self.width_px), 2),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Stroke:
        """Inverse of :meth:`to_dict`; raises SaemiInputError on malformed data."""
        try:
            tool = str(data["tool"])
            points = data["points"]
            if not isinstance(points, (list, tuple)) or len(points) > MAX_POINTS_PER_SAVE:
                raise ValueError("not a list of at most MAX_POINTS_PER_SAVE points")
            points = tuple((float(x), float(y)) for x, y in points)
            width_px = float(data["width_px"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise SaemiInputError(_MALFORMED) from exc
        if (tool not in TOOLS or not points or not np.isfinite(width_px) or not 0 < width_px <= MAX_BRUSH_PX
                or not np.isfinite(points).all()):
            raise SaemiInputError(_MALFORMED)
        return cls(tool, points, width_px)


def _tool_for_colour(colour: object) -> str | None:
    if not isinstance(colour, str):
        return None
    return _COLOUR_TOOLS.get(colour.strip().lower())


def parse_canvas_json(json_data: str, image_shape: tuple[int, int], canvas_width_px: float) -> list[Stroke]:
    """Read the strokes that dash-canvas saved.

    Parameters
    ----------
    json_data : str
        The canvas ``json_data`` property.
    image_shape : (int, int)
        (rows, cols) of the full-resolution image.
    canvas_width_px : float
        Display width of the canvas, used when the JSON holds no image object.

    Returns
    -------
    list of Stroke
        Strokes whose colour names a tool; other objects are ignored.

    Raises
    ------
    SaemiInputError
        If the text is not dash-canvas JSON.

    Examples
    --------
    >>> js = json.dumps({"objects": [{"type": "path", "stroke": "#ff0000", "strokeWidth": 10,
    ...                   "path": [["M", 10, 10], ["L", 50, 10]]}]})
    >>> s = parse_canvas_json(js, (100, 200), canvas_width_px=100)[0]
    >>> s.tool, s.points_xy, s.width_px
    ('remove', ((20.0, 20.0), (100.0, 20.0)), 20.0)
    """
    try:
        data = json.loads(json_data)
        objects = data["objects"]
        if not isinstance(objects, list):
            raise TypeError("objects is not a list")
    except (TypeError, ValueError, KeyError) as exc:
        raise SaemiInputError("The canvas sent data SAEMI cannot read; please redraw the strokes.") from exc
    rows, cols = image_shape
    scale = float(canvas_width_px) / float(cols) if cols else 1.0
    strokes: list[Stroke] = []
    n_points = 0
    try:
        for obj in objects:
            if not isinstance(obj, dict):
                continue
            if obj.get("type") == "image" and float(obj.get("scaleX", 0) or 0) > 0:
                scale = float(obj["scaleX"])
                continue
            tool = _tool_for_colour(obj.get("stroke"))
            if obj.get("type") != "path" or tool is None:
                continue
            if len(strokes) >= MAX_PATHS_PER_SAVE:
                raise SaemiInputError(
                    f"The canvas save holds more than {MAX_PATHS_PER_SAVE} strokes, the limit per save; "
                    "please press Save more often."
                )
            points = _path_points(obj.get("path", []), MAX_POINTS_PER_SAVE - n_points)
            n_points += len(points)
            if not points:
                continue
            width = float(obj.get("strokeWidth", 1)) * float(obj.get("scaleX", 1) or 1)
            stroke = Stroke(tool, tuple((x / scale, y / scale) for x, y in points), max(width / scale, 1.0))
            if not np.isfinite(stroke.width_px) or stroke.width_px > MAX_BRUSH_PX:
                raise SaemiInputError(
                    f"A stroke is {stroke.width_px:.3g} image pixels wide, above the brush limit of "
                    f"{MAX_BRUSH_PX:.0f}; please use a narrower brush."
                )
            if not np.isfinite(stroke.points_xy).all():
                raise ValueError("a stroke point is not finite in image pixels")
            strokes.append(stroke)
    except SaemiInputError:
        raise
    except (TypeError, ValueError, IndexError, OverflowError, ZeroDivisionError) as exc:
        raise SaemiInputError("The canvas sent data SAEMI cannot read; please redraw the strokes.") from exc
    return strokes


def _path_points(path: list, max_points: int) -> list[tuple[float, float]]:
    """Vertices of an SVG-like fabric path (M, L, Q commands; the end point of each command).

    Raises SaemiInputError when there are more than ``max_points``.
    """
    if not isinstance(path, (list, tuple)):
        raise TypeError("a path is not a list")
    if len(path) > max_points:
        raise SaemiInputError(
            f"The canvas save holds more than {MAX_POINTS_PER_SAVE} stroke points, the limit per save; "
            "please press Save more often."
        )
    points = []
    for command in path:
        if not isinstance(command, (list, tuple)) or len(command) < 3:
            continue
        x, y = float(command[-2]), float(command[-1])
        if np.isfinite(x) and np.isfinite(y):
            points.append((x, y))
    return points


def rasterize_stroke(stroke: Stroke, shape: tuple[int, int]) -> np.ndarray:
    """Pixels within half a brush width of the stroke's polyline.

    Examples
    --------
    >>> mask = rasterize_stroke(Stroke("draw", ((2.0, 5.0), (8.0, 5.0)), 3.0), (10, 10))
    >>> int(mask[5, 2:9].sum()), bool(mask[0, 0])
    (7, False)
    """
    rows, cols = shape
    mask = np.zeros(shape, dtype=bool)
    radius = stroke.width_px / 2.0
    pts = np.asarray(stroke.points_xy, dtype=np.float64)
    if len(pts) == 1:
        pts = np.vstack([pts, pts])
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        c_lo = max(int(np.floor(min(x0, x1) - radius)), 0)
        c_hi = min(int(np.ceil(max(x0, x1) + radius)) + 1, cols)
        r_lo = max(int(np.floor(min(y0, y1) - radius)), 0)
        r_hi = min(int(np.ceil(max(y0, y1) + radius)) + 1, rows)
        if c_lo >= c_hi or r_lo >= r_hi:
            continue
        yy, xx = np.mgrid[r_lo:r_hi, c_lo:c_hi]
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        t = np.zeros(xx.shape) if length2 == 0 else np.clip(((xx - x0) * dx + (yy - y0) * dy) / length2, 0, 1)
        dist2 = (xx - (x0 + t * dx)) ** 2 + (yy - (y0 + t * dy)) ** 2
        mask[r_lo:r_hi, c_lo:c_hi] |= dist2 <= radius * radius
    return mask


def apply_stroke(label_image: np.ndarray, stroke: Stroke) -> np.ndarray:
    """Apply one stroke and return a new label image.

    - ``draw``: painted background pixels become a new particle (one per connected piece); existing
      particles keep their pixels.
    - ``remove``: every particle that the stroke touches is deleted.
    - ``erase``: painted pixels become background; a particle cut in two becomes two particles.
    """
    labels = np.array(label_image, dtype=np.int32, copy=True)
    mask = rasterize_stroke(stroke, labels.shape)
    if not mask.any():
        return labels
    if stroke.tool == "draw":
        labels = add_orphan_regions(labels, mask, connectivity=1)
    elif stroke.tool == "remove":
        hit = np.unique(labels[mask])
        hit = hit[hit > 0]
        if hit.size:
            labels[np.isin(labels, hit)] = 0
    elif stroke.tool == "erase":
        labels[mask] = 0
        labels = measure.label(labels, background=0, connectivity=1).astype(np.int32)
    return labels


def apply_edits(label_image: np.ndarray, edits: list[list[dict]]) -> np.ndarray:
    """Replay batches of stroke dicts (as stored in the session) on a label image.

    Parameters
    ----------
    label_image : ndarray of int
        Labels before any edit.
    edits : list of list of dict
        Each inner list is one applied canvas save, in the order drawn; dicts as from :meth:`Stroke.to_dict`.

    Returns
    -------
    ndarray of int32
        Sequentially relabelled result.
    """
    labels = np.asarray(label_image, dtype=np.int32)
    if not isinstance(edits, (list, tuple)) or not all(isinstance(batch, (list, tuple)) for batch in edits):
        raise SaemiInputError(_MALFORMED)
    if len(edits) > MAX_SAVES:
        raise SaemiInputError(f"The edit history holds {len(edits)} saves, above the limit of {MAX_SAVES}.")
    batches = [[Stroke.from_dict(item) if isinstance(item, dict) else _malformed() for item in batch]
               for batch in edits]
    check_edit_budget(batches, labels.shape)
    for batch in batches:
        for stroke in batch:
            labels = apply_stroke(labels, stroke)
    return sequential_labels(labels)


def _malformed() -> Stroke:
    raise SaemiInputError(_MALFORMED)


def edit_work_px(strokes: list[Stroke], shape: tuple[int, int]) -> float:
    """Pixel visits of applying ``strokes``: one pass over the image per stroke, plus each segment's box.

    Examples
    --------
    >>> edit_work_px([Stroke("draw", ((2.0, 5.0), (8.0, 5.0)), 3.0)], (10, 10))
    150.0
    """
    rows, cols = shape
    work = 0.0
    for stroke in strokes:
        pts = np.asarray(stroke.points_xy, dtype=np.float64)
        if len(pts) == 1:
            pts = np.vstack([pts, pts])
        radius = stroke.width_px / 2.0
        (x0, y0), (x1, y1) = pts[:-1].T, pts[1:].T
        c_span = np.minimum(np.ceil(np.maximum(x0, x1) + radius) + 1, cols) - np.maximum(
            np.floor(np.minimum(x0, x1) - radius), 0)
        r_span = np.minimum(np.ceil(np.maximum(y0, y1) + radius) + 1, rows) - np.maximum(
            np.floor(np.minimum(y0, y1) - radius), 0)
        work += rows * cols + float((np.clip(c_span, 0, None) * np.clip(r_span, 0, None)).sum())
    return work


def check_edit_budget(batches: list[list[Stroke]], shape: tuple[int, int]) -> None:
    """Refuse an edit history that would take too long to replay (:mod:`app.analysis.limits`).

    Raises
    ------
    SaemiInputError
        Naming the limit: saves, points replayed, or pixel visits of the whole replay.
    """
    if len(batches) > MAX_SAVES:
        raise SaemiInputError(
            f"The edit history holds {len(batches)} saves, above the limit of {MAX_SAVES}; "
            "download the results, then start again from the new analysis."
        )
    points = sum(len(stroke.points_xy) for batch in batches for stroke in batch)
    if points > MAX_REPLAYED_POINTS:
        raise SaemiInputError(
            f"The edits hold {points} stroke points in all, above the limit of {MAX_REPLAYED_POINTS}; "
            "please undo some, or use fewer, shorter strokes."
        )
    work = sum(edit_work_px(batch, shape) for batch in batches)
    if work > MAX_EDIT_WORK_PX:
        raise SaemiInputError(
            f"Replaying these edits would visit {work:.3g} pixels, above the limit of {MAX_EDIT_WORK_PX:.0e} "
            "(each stroke costs one pass over the image); please undo some, or use fewer strokes."
        )
