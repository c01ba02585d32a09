"""Find the burned-in scale bar, measure it in pixels and read its label with Tesseract OCR.

The bar is a long, thin horizontal mark of one intensity (bright on a dark bar or dark on a bright
one): a solid bar, a line with end ticks, or two dashes around its label ("−200 nm−"); a bar
that its label touches (even a thick one that a single tail of a letter reaches) is split from
the letters. Closed frames and the table lines of a data bar are not bars. A bar paler than the
particles, found only at a fainter threshold (:data:`FAINT_LEVEL`), is used only when its label
is read and applied. Its label is a line of text next to it, looked for among the marks of the
searched rows and again among those around the bar alone (thresholded halfway between the bar's
ink and its surroundings). Each label is read as cropped and again with everything but its own
glyphs painted over (the bar, particles, other words), at several sizes, sharp and then slightly
smoothed.

A reading is applied only when Tesseract's text parses cleanly as one number and one length unit
(with the usual confusions mapped: µ read as u, p or a; the m of nm split in two, as in "nin";
O read as 0; l read as 1; one speck read between number and unit), the value is a round
scale-bar value and Tesseract's word confidence reaches :data:`MIN_OCR_CONFIDENCE` (or
:data:`MIN_AGREED_CONFIDENCE` when two different pages, other sizes, the cleaned crop or a
smoothed one, read the same length).
Anything else is kept as a suggestion for the user to confirm, never applied. OCR is optional:
without Tesseract the bar is still measured and the user is asked for the label.

Tesseract runs in this process through ``tesserocr`` when it and Tesseract's language data are
installed: the engine is loaded once per process (about 60 ms) and a label then takes a few ms.
Otherwise each reading starts the ``tesseract`` program through ``pytesseract`` (about 90 ms of
CPU each; a few readings per image, up to two dozen per label that is hard to read), which in
a batch cost two workers on two cores about a tenth of their speed.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu

from app.analysis.calibration import NO_CALIBRATION, Calibration, ScaleBarEvidence, parse_length
from app.analysis.databar import DataBar

logger = logging.getLogger(__name__)

#: Without a data bar, the bar is searched in this bottom fraction of the image.
SEARCH_FRACTION = 0.3
#: Smallest bar length in pixels.
MIN_LENGTH_PX = 15
#: A bar is at least this many times longer than it is thick.
MIN_ELONGATION = 4.0
#: Smallest intensity difference between the bar and its surroundings.
MIN_CONTRAST = 0.2
#: Label crops are enlarged to these heights in pixels before OCR, tried in turn (Tesseract reads
#: text of 30-40 px cap height best; much larger text makes it see extra digits).
OCR_CROP_HEIGHTS_PX = (48, 36, 64)
#: Pages of a text line read before giving up on it when none showed a digit.
NO_DIGIT_PAGES = 8
#: Blur (Gaussian sigma, in original pixels) of the smoothed pages read after the sharp ones.
SMOOTHING_PX = 0.5
#: Leading digits of the values that scale bars show (1, 2, 2.5, 3, 4, 5 times a power of ten).
ROUND_MANTISSAS = (1.0, 2.0, 2.5, 3.0, 4.0, 5.0)
#: Largest enlargement of a label crop.
OCR_MAX_UPSCALE = 8.0
#: Plausible pixel sizes for electron micrographs, in nm (HRTEM to low-magnification SEM).
PLAUSIBLE_NM_PER_PX = (0.005, 2.0e4)
#: Smallest bar split from a label that touches it.
MIN_TOUCHING_LENGTH_PX = 2 * MIN_LENGTH_PX
#: Smallest Tesseract word confidence (0-100) at which a clean label is applied without asking.
MIN_OCR_CONFIDENCE = 60.0
#: Smallest confidence at which a clean label is applied when two different pages read the same
#: length. A hard label is now read on up to about two dozen pages, which makes a chance agreement
#: likelier, so the floor is 35 (it was 20); the agreed readings on the real-image benchmark are at 38-57.
MIN_AGREED_CONFIDENCE = 35.0
#: Bar-shaped marks, and text lines next to each, whose labels are read before giving up.
MAX_BARS_TRIED = 4
MAX_LABELS_PER_BAR = 2
#: A second, fainter threshold (this fraction of the strongest contrast, against a half for the
#: first) finds bars paler than the particles; a bar found only there is used only for a label
#: read and applied next to it.
FAINT_LEVEL = 0.3
#: Text lines lower than this are not labels (specks of noise, a lone dot).
MIN_TEXT_HEIGHT_PX = 5
#: Marks lower than this fraction of a text line's height join it only between its letters.
SMALL_MARK_FRACTION = 0.35
#: Vertical strokes at a line's ends taller than this fraction of the searched rows make it the
#: frame of a data bar's table, not a scale bar with end ticks.
MAX_TICK_FRACTION = 0.5


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
        ``length_nm / length_px``, or None unless the label was read cleanly and confidently.
    ocr_confidence : float or None
        Tesseract's confidence (0-100, the lowest of the label's words), None without a reading.
    suggestion : str or None
        A reading that was not applied (not clean, not round or not confident), written as a
        length (``"200 µm"``) for the user to confirm; None when the label was applied or unread.
    style : str
        ``"solid"``, ``"ticks"`` (a line with end ticks), ``"dashes"`` (two dashes around the label)
        or ``"touching"`` (a solid bar that its label touches, split from it).
    n_candidates : int
        How many bar-shaped marks were found; the one returned has the label that reads best.
    """

    x0: int
    x1: int
    y: int
    length_px: int
    label_text: str | None
    length_nm: float | None
    nm_per_px: float | None
    ocr_confidence: float | None = None
    suggestion: str | None = None
    style: str = "solid"
    n_candidates: int = 1

    def evidence(self) -> ScaleBarEvidence:
        """What was measured and read, for the overlay and the provenance."""
        return ScaleBarEvidence(self.x0, self.x1, self.y, self.label_text or "", self.ocr_confidence)


#: Where Debian and other distributions install Tesseract's language data (``TESSDATA_PREFIX`` first).
_TESSDATA_DIRS = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata",
                  "/usr/share/tessdata", "/usr/local/share/tessdata")


@functools.lru_cache(maxsize=1)
def _tessdata_dir() -> str | None:
    """The folder holding ``eng.traineddata`` for the in-process engine, or None."""
    candidates = [os.environ.get("TESSDATA_PREFIX", ""), *_TESSDATA_DIRS]
    for folder in candidates:
        if folder and (Path(folder) / "eng.traineddata").is_file():
            return folder.rstrip("/") + "/"
    return None


@functools.lru_cache(maxsize=1)
def _in_process_ocr() -> bool:
    """Tell whether ``tesserocr`` can load the English model here."""
    try:
        import tesserocr
    except ImportError:
        return False
    folder = _tessdata_dir()
    if folder is None:
        return False
    try:
        with tesserocr.PyTessBaseAPI(path=folder, lang="eng"):
            return True
    except RuntimeError:
        logger.warning("tesserocr could not load Tesseract's English data from %s", folder)
        return False


#: Loaded engines by page-segmentation mode, each with the lock that serialises its use (an
#: engine is not thread-safe; a reading holds it for a few ms). Calibration runs in a fresh
#: thread per image, so per-thread engines would be loaded again for every image.
_ENGINES: dict[int, tuple[threading.Lock, object]] = {}
_ENGINES_LOCK = threading.Lock()


def _engine(psm: int) -> tuple[threading.Lock, object]:
    with _ENGINES_LOCK:
        entry = _ENGINES.get(psm)
        if entry is None:
            import tesserocr

            entry = (threading.Lock(), tesserocr.PyTessBaseAPI(path=_tessdata_dir(), lang="eng", psm=psm))
            _ENGINES[psm] = entry
        return entry


@functools.lru_cache(maxsize=1)
def tesseract_available() -> bool:
    """Tell whether Tesseract OCR can be used: in this process (``tesserocr``) or as a program
    (``pytesseract`` and ``tesseract``).

    Returns
    -------
    bool
        True when OCR can run.
    """
    if _in_process_ocr():
        return True
    try:
        import pytesseract
    except ImportError:
        return False
    # Tesseract's OpenMP threads spin while they wait. On a label or a data bar they gain nothing,
    # and beside the segmenter (or another batch worker) they tripled the CPU time of reading a
    # generated image's calibration (1.1 s against 0.4 s). The subprocesses inherit this; a value
    # set by the deployment wins.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    try:
        pytesseract.get_tesseract_version()
    except (pytesseract.TesseractNotFoundError, OSError):
        return False
    return True


def _recognise(page: Image.Image, psm: int) -> list[tuple[str, float]]:
    """Words and confidences (0-100) Tesseract reads on ``page`` in page-segmentation mode ``psm``."""
    if _in_process_ocr():
        import tesserocr

        lock, api = _engine(psm)
        level = tesserocr.RIL.WORD
        words = []
        with lock:
            api.SetImage(page)
            api.Recognize()
            iterator = api.GetIterator()
            for word in [] if iterator is None else tesserocr.iterate_level(iterator, level):
                try:
                    text = word.GetUTF8Text(level)
                except RuntimeError:  # an element without text (nothing recognised there)
                    continue
                if text:
                    words.append((text, round(float(word.Confidence(level)), 1)))
            api.Clear()
        return words
    import pytesseract

    data = pytesseract.image_to_data(page, config=f"--psm {psm}", output_type=pytesseract.Output.DICT)
    return [(word, float(conf)) for word, conf in zip(data["text"], data["conf"], strict=True)]


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


@dataclass(frozen=True)
class _Candidate:
    """A bar-shaped mark: its box in the searched rows, its component label(s) and its style."""

    box: _Box
    indices: tuple[int, ...]
    style: str

    @property
    def length_px(self) -> int:
        return self.box.c1 - self.box.c0


def _classify(component: np.ndarray, n_rows: int) -> str | None:
    """``"solid"``, ``"lettered"`` (a solid bar with a letter touching it from one side) or
    ``"ticks"`` for a bar-shaped component, None for anything else.

    ``component`` is the boolean mask inside the component's box; ``n_rows`` the searched height.
    """
    height, width = component.shape
    full_rows = np.flatnonzero(component.sum(axis=1) >= 0.9 * width)
    if full_rows.size == 0 or width < MIN_ELONGATION * full_rows.size:
        return None
    if full_rows[-1] - full_rows[0] + 1 != full_rows.size:
        return None  # two separate full-width edges: a frame or a box, not a bar
    if full_rows.size * width < 0.5 * component.sum():
        return None  # mostly something other than a bar: a grid, a blob
    if height == full_rows.size:
        return "solid"
    extra = component.copy()
    extra[full_rows] = False
    end_px = max(3, 2 * full_rows.size)
    columns = np.flatnonzero(extra.any(axis=0))
    at_ends = (columns < end_px) | (columns >= width - end_px)
    if not at_ends.all():
        return "lettered"  # a letter touching the bar from one side
    if height > max(MAX_TICK_FRACTION * n_rows, 3 * full_rows.size + 2) and height > 0.2 * width:
        return None  # long verticals at both ends: the cell of a data bar's table
    return "ticks"


def _bar_candidates(mask: np.ndarray) -> tuple[list[_Candidate], np.ndarray, list[_Box]]:
    """Bar-shaped marks in ``mask`` (dashes around a label joined into one), the component
    labels and the boxes of all components.

    A bar that a letter of its label touches (a component :func:`_classify` calls
    ``"lettered"``, or none of its styles) is split from the letters where
    :func:`_split_touching_label` can, so that they are read with the label rather than painted
    over as part of the bar; a lettered bar that cannot be split stays ``"solid"``."""
    # Only components holding a horizontal run of MIN_LENGTH_PX pixels can be bars; finding
    # them first keeps noisy regions with many small components fast.
    long_runs = ndimage.binary_opening(mask, structure=np.ones((1, MIN_LENGTH_PX), bool))
    if not long_runs.any():
        return [], np.zeros(mask.shape, np.int32), []
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
        style = _classify(labels[box.r0 : box.r1, box.c0 : box.c1] == index, mask.shape[0])
        if style is None:
            candidates += _split_touching_label(int(index), labels, boxes, long_runs)
        elif style == "lettered":
            # The letter is split off when it can be, so that it is read with its label rather
            # than painted over as part of the bar; otherwise the bar keeps it.
            split = _split_touching_label(int(index), labels, boxes, long_runs)
            candidates += split or [_Candidate(box, (int(index),), "solid")]
        else:
            candidates.append(_Candidate(box, (int(index),), style))
    return candidates + _dash_pairs(candidates, boxes), labels, boxes


def _split_touching_label(
    index: int, labels: np.ndarray, boxes: list[_Box], long_runs: np.ndarray
) -> list[_Candidate]:
    """A bar whose label touches it, split from the label (style ``"touching"``).

    The bar is the component's horizontal runs of :data:`MIN_LENGTH_PX` pixels or more on the
    rows around the longest one, when they form one straight-ended rectangle at least
    :data:`MIN_TOUCHING_LENGTH_PX` long; the rest of the component (the letters) must lie within
    its columns, mostly (four fifths) on one side of it (a descender may cross it), and be no
    taller than the bar is long. The bar and the pieces of the rest then become components of
    their own (``labels`` and ``boxes`` are updated); otherwise nothing is changed and no
    candidate is returned.
    """
    box = boxes[index - 1]
    component = labels[box.r0 : box.r1, box.c0 : box.c1] == index
    body = component & long_runs[box.r0 : box.r1, box.c0 : box.c1]
    # The bar's rows: the block of rows around the longest run whose runs are nearly as long
    # (a letter's serif or foot may hold a shorter run of its own).
    run_widths = body.sum(axis=1)
    longest = int(run_widths.argmax())
    wide = run_widths >= 0.9 * run_widths[longest]
    first, last = longest, longest
    while first > 0 and wide[first - 1]:
        first -= 1
    while last < wide.size - 1 and wide[last + 1]:
        last += 1
    body[:first] = False
    body[last + 1 :] = False
    rows = np.arange(first, last + 1)
    columns = np.flatnonzero(body.any(axis=0))
    width = int(columns[-1] - columns[0] + 1)
    if (width < MIN_TOUCHING_LENGTH_PX or width < MIN_ELONGATION * rows.size
            or body[rows].sum(axis=1).min() < 0.95 * width):
        return []  # not one rectangle: the rim of a particle, a blob
    rest = component & ~body
    rest_rows = np.flatnonzero(rest.any(axis=1))
    rest_columns = np.flatnonzero(rest.any(axis=0))
    if rest_rows.size == 0 or rest_columns[0] < columns[0] or rest_columns[-1] > columns[-1]:
        return []  # wider than the "bar": a run through a word or a blob
    if rest_rows[-1] - rest_rows[0] + 1 > width:
        return []
    above = rest[: rows[0]].sum()
    below = rest[rows[-1] + 1 :].sum()
    if max(above, below) < 0.8 * rest.sum():
        return []  # beside the bar on its own rows, or as much above as below
    view = labels[box.r0 : box.r1, box.c0 : box.c1]
    bar_index = len(boxes) + 1
    view[body] = bar_index
    bar_box = _Box(box.r0 + int(rows[0]), box.r0 + int(rows[-1]) + 1,
                   box.c0 + int(columns[0]), box.c0 + int(columns[-1]) + 1)
    boxes.append(bar_box)
    pieces, _ = ndimage.label(rest)
    for piece, found in enumerate(ndimage.find_objects(pieces), start=1):
        view[pieces == piece] = len(boxes) + 1
        boxes.append(_Box(box.r0 + found[0].start, box.r0 + found[0].stop,
                          box.c0 + found[1].start, box.c0 + found[1].stop))
    boxes[index - 1] = _Box(0, 0, 0, 0)  # split into the bar and the letters
    return [_Candidate(bar_box, (bar_index,), "touching")]


def _dash_pairs(candidates: list[_Candidate], boxes: list[_Box]) -> list[_Candidate]:
    """Two solid dashes on one row with a label between them ("−200 nm−"), as one bar."""
    pairs = []
    for left in candidates:
        for right in candidates:
            a, b = left.box, right.box
            gap = b.c0 - a.c1
            if (
                left.style != "solid" or right.style != "solid" or gap <= 0
                or abs(a.center_row - b.center_row) > 1.5 or abs(a.height - b.height) > 2
                or gap > 2 * (left.length_px + right.length_px)
            ):
                continue
            between = [
                box for box in boxes
                if a.c1 <= box.c0 and box.c1 <= b.c0 and box.r0 <= a.center_row + 2 * a.height + 2
                and box.r1 >= a.center_row - 2 * a.height - 2 and box.height >= 3
            ]
            if len(between) >= 2:  # a number and a unit
                merged = _Box(min(a.r0, b.r0), max(a.r1, b.r1), a.c0, b.c1)
                pairs.append(_Candidate(merged, left.indices + right.indices, "dashes"))
    return pairs


def _label_boxes(bar: _Candidate, labels: np.ndarray, boxes: list[_Box]) -> list[_Box]:
    """Bounding boxes of the text lines next to the bar (above, below, beside or between its
    dashes), nearest first, at most :data:`MAX_LABELS_PER_BAR`."""
    box_of_bar = bar.box
    length = bar.length_px
    reach = 0.6 * length + 20
    glyphs = [
        box
        for index, box in enumerate(boxes, start=1)
        if index not in bar.indices
        and 3 <= box.height <= max(60, length)
        and box.c1 > box_of_bar.c0 - reach
        and box.c0 < box_of_bar.c1 + reach
        and not (box.c0 <= box_of_bar.c0 and box.c1 >= box_of_bar.c1)  # a frame around the bar
    ]

    def gap(box: _Box) -> float:
        dy = max(box_of_bar.r0 - box.r1, box.r0 - box_of_bar.r1, 0)
        dx = max(box_of_bar.c0 - box.c1, box.c0 - box_of_bar.c1, 0)
        return float(np.hypot(dx, dy))

    lines: list[_Box] = []
    for seed in sorted((box for box in glyphs if gap(box) <= reach), key=gap):
        if any(_inside(seed, line) for line in lines):
            continue
        line = _grow_line(seed, glyphs)
        if line.height < MIN_TEXT_HEIGHT_PX:
            continue  # a speck of noise, or a dot on its own
        if sum(_inside(box, line) for box in glyphs) < 2:
            continue  # one mark alone (a particle beside a bar-shaped one) is no label: a number and a unit
        lines.append(line)
        if len(lines) == MAX_LABELS_PER_BAR:
            break
    return lines


def _label_lines(
    region: np.ndarray, bar: _Candidate, labels: np.ndarray, boxes: list[_Box], sign: float
) -> list[tuple[_Candidate, np.ndarray, list[_Box], _Box]]:
    """The text lines next to a bar, each with the bar, component labels and boxes it was found in.

    First the lines among the marks of the whole searched region (thresholded halfway to its
    extreme); then those found again around the bar alone, thresholded halfway between the bar's
    ink and the median there (:func:`_local_marks`). Text fainter than the bar, on a panel of its
    own or on a noisy background breaks into pieces at the first threshold and not at the second.
    """
    lines = [(bar, labels, boxes, line) for line in _label_boxes(bar, labels, boxes)]
    local = _local_marks(region, bar, labels, sign)
    if local is not None:
        local_bar, local_labels, local_boxes = local
        seen = {line for _, _, _, line in lines}
        lines += [
            (local_bar, local_labels, local_boxes, line)
            for line in _label_boxes(local_bar, local_labels, local_boxes)
            if line not in seen
        ]
    return lines


def _local_marks(
    region: np.ndarray, bar: _Candidate, labels: np.ndarray, sign: float
) -> tuple[_Candidate, np.ndarray, list[_Box]] | None:
    """The marks around a bar, thresholded halfway between the bar's ink and the median around it:
    the bar as found there, the component labels (zero outside the window) and their boxes."""
    reach = int(0.6 * bar.length_px + 20)
    box = bar.box
    rows = slice(max(0, box.r0 - reach), box.r1 + reach)
    cols = slice(max(0, box.c0 - reach), box.c1 + reach)
    bar_pixels = np.isin(labels[box.r0 : box.r1, box.c0 : box.c1], bar.indices)
    ink = float(np.median(region[box.r0 : box.r1, box.c0 : box.c1][bar_pixels]))
    threshold = 0.5 * (ink + float(np.median(region[rows, cols])))
    mask = np.zeros(region.shape, bool)
    mask[rows, cols] = sign * (region[rows, cols] - threshold) > 0
    local_labels, _ = ndimage.label(mask)
    indices = np.unique(local_labels[box.r0 : box.r1, box.c0 : box.c1][bar_pixels])
    indices = tuple(int(index) for index in indices if index > 0)
    if not indices:
        return None
    local_boxes = [
        _Box(s[0].start, s[0].stop, s[1].start, s[1].stop) for s in ndimage.find_objects(local_labels)
    ]
    return _Candidate(box, indices, bar.style), local_labels, local_boxes


def _inside(box: _Box, line: _Box) -> bool:
    return line.c0 <= box.c0 and box.c1 <= line.c1 and line.r0 <= box.r0 and box.r1 <= line.r1


def _grow_line(seed: _Box, glyphs: list[_Box]) -> _Box:
    """The text line through ``seed``: glyphs on its row, each within a letter height of the next
    (marks much smaller than the line's letters only between them)."""
    line = _Box(seed.r0, seed.r1, seed.c0, seed.c1)
    grown = True
    while grown:
        grown = False
        for box in glyphs:
            same_line = abs(box.center_row - line.center_row) <= 0.5 * line.height + 2
            close = box.c0 <= line.c1 + 1.5 * line.height and box.c1 >= line.c0 - 1.5 * line.height
            # Marks much smaller than the letters join only between them (a decimal point), so
            # that specks of noise beside a label do not stretch its line.
            small = box.height < SMALL_MARK_FRACTION * line.height and not (
                line.c0 <= box.c0 and box.c1 <= line.c1
            )
            if same_line and close and not small and not _inside(box, line):
                line = _Box(
                    min(line.r0, box.r0), max(line.r1, box.r1),
                    min(line.c0, box.c0), max(line.c1, box.c1),
                )
                grown = True
    return line


def _cleaned_crop(
    region: np.ndarray, labels: np.ndarray, boxes: list[_Box], line: _Box, margin: int,
    bar_indices: tuple[int, ...],
) -> np.ndarray | None:
    """The label crop with only the glyphs of its text line kept: every other mark reaching into
    the crop (the bar, a particle, the edge of a frame, a neighbouring word) is painted over with
    the crop's background. None when nothing would change."""
    r0, c0 = max(0, line.r0 - margin), max(0, line.c0 - margin)
    r1, c1 = line.r1 + margin, line.c1 + margin
    crop_labels = labels[r0:r1, c0:c1]
    present = np.unique(crop_labels)
    present = present[present > 0]
    kept = [
        index for index in present
        if index not in bar_indices and _inside(boxes[index - 1], line)
    ]
    if not kept:
        return None
    glyphs = np.isin(crop_labels, kept)
    others = (crop_labels > 0) & ~glyphs
    if not others.any():
        return None
    crop = region[r0:r1, c0:c1]
    unmarked = crop[crop_labels == 0]
    background = float(np.median(unmarked)) if unmarked.size else float(np.median(crop))
    # The glyphs' anti-aliased rims stay; only pixels well away from them are painted over.
    keep = ndimage.binary_dilation(glyphs, iterations=2)
    return np.where(keep, crop, background).astype(np.float32)


def _ocr_scale(height: int, target_height_px: int, reduce: bool = False) -> float:
    """The scale taking a crop ``height`` rows high towards ``target_height_px``: an enlargement
    of at most :data:`OCR_MAX_UPSCALE`, and a reduction only when ``reduce`` is set."""
    scale = min(target_height_px / height, OCR_MAX_UPSCALE)
    return round(scale if reduce else max(1.0, scale), 3)


def _ocr_page(
    crop: np.ndarray, bright_text: bool, scale: float, smooth: bool = False
) -> Image.Image | None:
    """A crop resized by ``scale`` and binarised to black text on white; with ``smooth``, blurred
    over about half an original pixel first, which evens out noisy or jagged strokes."""
    height, width = crop.shape
    image = Image.fromarray(np.clip(crop * 255.0, 0, 255).astype(np.uint8))
    image = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BICUBIC)
    upscaled = np.asarray(image, dtype=np.float32)
    if upscaled.max() - upscaled.min() < 1.0:
        return None
    if smooth:
        upscaled = ndimage.gaussian_filter(upscaled, SMOOTHING_PX * max(scale, 1.0))
    threshold = threshold_otsu(upscaled)
    ink = upscaled > threshold if bright_text else upscaled <= threshold
    page = np.where(ink, 0, 255).astype(np.uint8)
    return Image.fromarray(np.pad(page, 20, constant_values=255))


def _ocr_words(
    crop: np.ndarray, bright_text: bool, scale: float, *, psm: int = 7, smooth: bool = False
) -> list[tuple[str, float]]:
    """Words Tesseract reads in a crop resized by ``scale`` (and smoothed, see :func:`_ocr_page`),
    each with its confidence (0-100)."""
    page = _ocr_page(crop, bright_text, scale, smooth)
    if page is None:
        return []
    try:
        words = _recognise(page, psm)
    except Exception:  # noqa: BLE001 - an OCR failure leaves the label unread, never stops the analysis
        logger.warning("Tesseract failed on a scale-bar label", exc_info=True)
        return []
    return [(word.strip(), conf) for word, conf in words if word.strip() and conf >= 0]


def _ocr(
    crop: np.ndarray, bright_text: bool, scale: float, smooth: bool = False
) -> tuple[str, float] | None:
    """One line of text in a crop resized by ``scale`` (and smoothed, see :func:`_ocr_page`) and
    Tesseract's confidence in it (its least sure word)."""
    words = _ocr_words(crop, bright_text, scale, smooth=smooth)
    if not words:
        return None
    return " ".join(word for word, _ in words), min(conf for _, conf in words)


#: Characters OCR puts in place of digits: O read as 0; l, I or | read as 1.
_DIGIT_FIXES = str.maketrans("OoIiLl|", "0011111")
#: The micro sign as OCR reads it before an ``m`` (µ, μ, u, p, a, and k or h: kilometres and
#: hectometres never label a micrograph).
_MICRO_READINGS = ("µm", "μm", "um", "pm", "am", "km", "hm")
#: The ``m`` of ``nm`` as OCR splits it into two narrower glyphs (``rn``, ``in``, ``nt``, ...) or
#: reads its last stroke as a trademark sign. Only ``nm`` starts with ``n``, so after an ``n``
#: these can mean nothing else.
_SPLIT_M_READINGS = ("rn", "in", "ni", "nn", "nt", "tr", "im", "™")
_CLEAN_LABEL_RE = re.compile(
    r"(?P<number>[0-9OoIl|]+(?:[.,][0-9Oo]+)?)[-.:]?\s?(?P<unit>[a-zµμ]{1,2}|n[a-z™]{1,2})", re.IGNORECASE
)


def parse_label(text: str) -> tuple[float, str] | None:
    """Read an OCR'd scale-bar label as one number and one length unit, or not at all.

    The whole text, once the dashes or bars that some scale bars draw around their label are
    stripped, must be a number and a unit, with at most a space and one speck read as ``-``,
    ``.`` or ``:`` between them (``"100.nm"``: noise between the number and the unit). The usual
    OCR confusions are mapped, and nothing else: the micro sign read as ``u``, ``p``, ``a``,
    ``k`` or ``h``; the ``m`` of ``nm`` split into two glyphs (``nrn``, ``nin``, ``nnt``, ...);
    ``O`` read as 0; ``l``, ``I``, ``i`` or ``|`` read as 1. A number with a leading zero
    (``"00"``, ``"050"``) or of zero is not a scale-bar value. ``mm`` and a lone ``m`` are not
    read: they may be millimetres, micrometres or a misread ``nm``.

    Parameters
    ----------
    text : str
        The OCR output, such as ``"500 nm"`` or ``"1 pm"``.

    Returns
    -------
    (float, str) or None
        The length in nanometres and the label as it would be typed (``"1 µm"``), or None when
        the text is not cleanly one length.

    Examples
    --------
    >>> parse_label("l00 nm")
    (100.0, '100 nm')
    >>> parse_label("2pm")
    (2000.0, '2 µm')
    >>> parse_label("00 nm") is None
    True
    """
    stripped = text.strip().strip("-—–_=|~ ").strip()
    match = _CLEAN_LABEL_RE.fullmatch(stripped)
    if match is None:
        return None
    number = match.group("number").translate(_DIGIT_FIXES).replace(",", ".")
    integer = number.split(".")[0]
    if len(integer) > 1 and integer.startswith("0"):
        return None
    value = float(number)
    unit = match.group("unit").lower()
    if value <= 0:
        return None
    if unit == "nm" or (unit[:1] == "n" and unit[1:] in _SPLIT_M_READINGS):
        return value, f"{value:g} nm"
    if unit in _MICRO_READINGS:
        return value * 1.0e3, f"{value:g} µm"
    return None


def interpret_label(text: str, length_px: int) -> float | None:
    """Turn an OCR reading of a scale-bar label into a length in nanometres, if it is clean.

    The text must parse with :func:`parse_label`. Scale bars labelled in picometres are
    practically unknown in electron microscopy, so ``pm`` is read as µm, and kept as picometres
    only when µm would give an implausible pixel size.

    Parameters
    ----------
    text : str
        The OCR output, such as ``"500 nm"`` or ``"1 pm"``.
    length_px : int
        Length of the bar in pixels, to judge plausibility.

    Returns
    -------
    float or None
        The length in nanometres, or None when the text is not one clean, plausible length.

    Examples
    --------
    >>> interpret_label("2 pm", 200)
    2000.0
    >>> interpret_label("l00 nm", 100)
    100.0
    >>> interpret_label("00 nm", 100) is None
    True
    """
    parsed = parse_label(text)
    if parsed is None:
        return None
    length_nm = parsed[0]
    readings = [length_nm]
    if text.replace(" ", "").lower().endswith("pm"):
        readings.append(length_nm * 1.0e-6)
    for reading in readings:
        if PLAUSIBLE_NM_PER_PX[0] <= reading / length_px <= PLAUSIBLE_NM_PER_PX[1]:
            return reading
    return None


def _is_round(length_nm: float) -> bool:
    """Tell whether a length has one of the leading digits that scale bars use."""
    mantissa = length_nm / 10.0 ** np.floor(np.log10(length_nm))
    return any(abs(mantissa - round_value) < 1e-6 for round_value in ROUND_MANTISSAS)


@dataclass(frozen=True)
class _Reading:
    """One OCR reading of a label: text, confidence, parsed length and whether it may be applied."""

    text: str
    confidence: float
    length_nm: float | None
    accepted: bool

    @property
    def rank(self) -> tuple[bool, bool, float]:
        """Better readings sort higher: accepted, then parsed, then confident."""
        return (self.accepted, self.length_nm is not None, self.confidence)


def _read_label(
    crop: np.ndarray, bright_text: bool, length_px: int, cleaned: np.ndarray | None = None
) -> _Reading | None:
    """OCR a label at several enlargements: the first accepted reading, else the best one.

    ``cleaned`` is the same crop with everything but the label's own glyphs painted over with
    the background (:func:`_cleaned_crop`); it is read, at the same enlargements, after ``crop``;
    then both are read again smoothed (:func:`_ocr_page`).
    A clean, plausible, round reading is accepted at :data:`MIN_OCR_CONFIDENCE`, or at
    :data:`MIN_AGREED_CONFIDENCE` when two readings of different pages give the same length (a
    crop already taller than several target heights is read once, not agreed with itself).
    """
    best = None
    lengths_seen: list[float] = []
    crops = [crop] if cleaned is None else [crop, cleaned]
    pages = [
        (which, _ocr_scale(crops[which].shape[0], height, reduce), smooth)
        for smooth in (False, True) for which in range(len(crops)) for reduce in (False, True)
        for height in OCR_CROP_HEIGHTS_PX
    ]
    digits_seen = False
    for read, (which, scale, smooth) in enumerate(dict.fromkeys(pages)):  # each distinct page once, in order
        if read == NO_DIGIT_PAGES and not digits_seen:
            break  # no page showed a digit: a mark that is no label
        ocr = _ocr(crops[which], bright_text, scale, smooth)
        if ocr is None:
            continue
        text, confidence = ocr
        digits_seen = digits_seen or any(char.isdigit() for char in text)
        length_nm = interpret_label(text, length_px)
        usable = length_nm is not None and _is_round(length_nm)
        agreed = usable and length_nm in lengths_seen and confidence >= MIN_AGREED_CONFIDENCE
        accepted = usable and (confidence >= MIN_OCR_CONFIDENCE or agreed)
        reading = _Reading(text, confidence, length_nm, accepted)
        if accepted:
            return reading
        if usable and confidence >= MIN_AGREED_CONFIDENCE:
            lengths_seen.append(length_nm)
        if best is None or reading.rank > best.rank:
            best = reading
    return best


def _overlap(a: _Box, b: _Box) -> bool:
    return a.r0 < b.r1 and b.r0 < a.r1 and a.c0 < b.c1 and b.c0 < a.c1


def _best_reading(region: np.ndarray, items: list[tuple], chosen: tuple | None) -> tuple[tuple | None, _Reading | None]:
    """The bar among ``items`` (candidate, labels, boxes, sign) whose label reads best, and that
    reading: the first accepted one, else the best; ``chosen`` and None without any reading."""
    reading = None
    for item in items:
        candidate, labels, boxes, sign = item
        for bar, line_labels, line_boxes, line in _label_lines(region, candidate, labels, boxes, sign):
            margin = max(2, line.height // 3)
            crop = region[
                max(0, line.r0 - margin) : line.r1 + margin,
                max(0, line.c0 - margin) : line.c1 + margin,
            ]
            cleaned = _cleaned_crop(region, line_labels, line_boxes, line, margin, bar.indices)
            attempt = _read_label(crop, sign > 0, candidate.length_px, cleaned)
            if attempt is not None and (reading is None or attempt.rank > reading.rank):
                chosen, reading = item, attempt
            if reading is not None and reading.accepted:
                return chosen, reading
    return chosen, reading


def find_scale_bar(gray: np.ndarray, *, search_rows: DataBar | None = None) -> ScaleBar | None:
    """Find a scale bar, measure its length and read its label.

    Every bar-shaped mark (solid bar, line with end ticks, dashes around a label) is a candidate;
    frames and table lines are not. The longest candidates are tried in turn, each with the
    text lines next to it, until a label is read cleanly and confidently (see the module notes);
    then, if none was, the marks found only at the fainter threshold :data:`FAINT_LEVEL`, which
    are kept only with a label applied.

    Parameters
    ----------
    gray : ndarray
        2-D float image in [0, 1].
    search_rows : DataBar, optional
        Rows to search (the data bar); the bottom :data:`SEARCH_FRACTION` of the image otherwise.

    Returns
    -------
    ScaleBar or None
        The bar whose label was applied; else the one with the best reading (kept as a
        suggestion) or the longest; None when no bar-shaped mark exists. ``nm_per_px`` is None
        unless a reading was accepted.
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
    found, faint = [], []
    for sign in (1.0, -1.0):
        contrast = sign * (region - background)
        peak = float(contrast.max())
        if peak < MIN_CONTRAST:
            continue
        candidates, labels, boxes = _bar_candidates(contrast > 0.5 * peak)
        found += [(candidate, labels, boxes, sign) for candidate in candidates]
        if peak * FAINT_LEVEL < MIN_CONTRAST / 2:
            continue
        faint_candidates, faint_labels, faint_boxes = _bar_candidates(contrast > FAINT_LEVEL * peak)
        faint += [
            (candidate, faint_labels, faint_boxes, sign) for candidate in faint_candidates
            if not any(_overlap(candidate.box, other.box) for other in candidates)
        ]
    found.sort(key=lambda item: item[0].length_px, reverse=True)
    faint.sort(key=lambda item: item[0].length_px, reverse=True)
    chosen, reading = (found[0] if found else None), None
    if tesseract_available():
        chosen, reading = _best_reading(region, found[:MAX_BARS_TRIED], chosen)
        if faint and (reading is None or not reading.accepted):
            faint_chosen, faint_reading = _best_reading(region, faint[:MAX_BARS_TRIED], None)
            if faint_reading is not None and faint_reading.accepted:
                chosen, reading = faint_chosen, faint_reading
    if chosen is None:
        return None
    candidate = chosen[0]
    box = candidate.box
    length_px = candidate.length_px
    y = row0 + (box.r0 + box.r1) // 2
    logger.info("Scale bar %d px (%s), label read as %r", length_px, candidate.style,
                None if reading is None else reading.text)
    if reading is None:
        return ScaleBar(box.c0, box.c1, y, length_px, None, None, None,
                        style=candidate.style, n_candidates=max(1, len(found)))
    parsed = parse_label(reading.text)
    length_nm = reading.length_nm if reading.accepted else None
    return ScaleBar(
        box.c0, box.c1, y, length_px, reading.text, length_nm,
        None if length_nm is None else length_nm / length_px,
        ocr_confidence=reading.confidence,
        suggestion=None if reading.accepted or parsed is None else parsed[1],
        style=candidate.style,
        n_candidates=max(1, len(found)),
    )


def _where(bar: ScaleBar) -> str:
    """Where the bar is and how it was chosen, for the calibration's detail."""
    where = f"columns {bar.x0}-{bar.x1}, row {bar.y}"
    if bar.n_candidates > 1:
        where += f"; chosen among {bar.n_candidates} bar-shaped marks"
    return where


def unread_label_sentence(bar: ScaleBar) -> str:
    """The sentence telling the user why the scale bar did not calibrate the image and what to do.

    Parameters
    ----------
    bar : ScaleBar
        A bar whose label was not applied (``bar.nm_per_px`` is None).

    Returns
    -------
    str
        One or two sentences naming the bar, what OCR read and how to calibrate.
    """
    found = f"A scale bar {bar.length_px} px long was found ({_where(bar)})"
    typed = "type it under Scale-bar label to use it."
    if bar.label_text is None:
        return (f"{found} but its label could not be read; type the label (for example '200 nm') "
                "or a pixel size to calibrate.")
    confidence = f"OCR confidence {bar.ocr_confidence:.0f}%"
    if bar.suggestion is not None:
        return (f"{found}. Its label looks like '{bar.suggestion}' (read as {bar.label_text!r}, "
                f"{confidence}) but was not applied; if that is right, {typed}")
    return (f"{found} but its label, read as {bar.label_text!r} ({confidence}), is not a length; "
            "type the label (for example '200 nm') or a pixel size to calibrate.")


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
        ``scalebar:user`` or ``scalebar:ocr``; when no label was typed or accepted, an
        uncalibrated result whose ``warning`` says why (:func:`unread_label_sentence`). Each
        carries the bar as ``scale_bar``.

    Raises
    ------
    SaemiInputError
        When ``user_label`` is not a length.
    """
    evidence = bar.evidence()
    if user_label is not None and user_label.strip():
        length_nm = parse_length(user_label)
        return Calibration(
            length_nm / bar.length_px,
            "scalebar:user",
            f"Scale bar of {bar.length_px} px ({_where(bar)}) labelled {user_label.strip()!r} "
            "by the user",
            scale_bar=ScaleBarEvidence(bar.x0, bar.x1, bar.y, user_label.strip(), None),
        )
    if bar.nm_per_px is not None:
        return Calibration(
            bar.nm_per_px,
            "scalebar:ocr",
            f"Scale bar of {bar.length_px} px ({_where(bar)}), label read by OCR as "
            f"{bar.label_text!r} (confidence {bar.ocr_confidence:.0f}%)",
            scale_bar=evidence,
        )
    return Calibration(None, NO_CALIBRATION.source, NO_CALIBRATION.detail,
                       warning=unread_label_sentence(bar), scale_bar=evidence)


_FIELD_WIDTH_KEY_RE = re.compile(r"(HFW|FOV|Width)[=:]?", re.IGNORECASE)


def field_width_calibration(gray: np.ndarray, data_bar: DataBar) -> Calibration | None:
    """Pixel size from the horizontal field width printed in a data bar (``HFW 2.98 µm``).

    The data bar is read by OCR as a block of text. The words after ``HFW``, ``FOV`` or
    ``Width`` (an optional ``=`` or ``:`` between) must parse cleanly as a length
    (:func:`parse_label`), each read at a confidence of at least :data:`MIN_OCR_CONFIDENCE`;
    that length over the image width is the pixel size.

    Parameters
    ----------
    gray : ndarray
        The whole image, 2-D float in [0, 1].
    data_bar : DataBar
        Its data bar.

    Returns
    -------
    Calibration or None
        ``databar:field_width``, or None without OCR or without a clean field width.
    """
    if not tesseract_available():
        return None
    strip = gray[data_bar.y0 : data_bar.y1].astype(np.float32)
    if strip.size == 0:
        return None
    for enlargement in (1, 2):
        words = _ocr_words(strip, float(np.median(strip)) < 0.5, float(enlargement), psm=6)
        calibration = _field_width_from_words(words, gray.shape[1])
        if calibration is not None:
            return calibration
    return None


def _field_width_from_words(words: list[tuple[str, float]], width_px: int) -> Calibration | None:
    """The field width after a ``HFW``/``FOV``/``Width`` word, if clean and confident, over the width."""
    for index, (word, _) in enumerate(words):
        if not _FIELD_WIDTH_KEY_RE.fullmatch(word):
            continue
        following = [w for w in words[index + 1 : index + 4] if w[0] not in ("=", ":")]
        for n_words in (1, 2):
            label_words = following[:n_words]
            text = " ".join(w for w, _ in label_words)
            parsed = parse_label(text) if label_words else None
            if parsed is None or min(c for _, c in label_words) < MIN_OCR_CONFIDENCE:
                continue
            return Calibration(
                parsed[0] / width_px,
                "databar:field_width",
                f"Field width {parsed[1]} in the data bar (read as '{word} {text}') over the "
                f"image's {width_px} px",
            )
    return None
