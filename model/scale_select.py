"""The scorer that chooses the scale the U-Net segments at.

The segmenter runs the network on a pyramid of the image, half an octave apart, and summarises
every pass (:class:`PassSummary`): the mean height of the centre-map peaks, the particle diameters
it sees, how much of the frame is foreground, and so on. :func:`pass_features` turns the pyramid
into one row of numbers per pass, including comparisons with the neighbouring passes, and a
scorer rates each pass (:func:`selector_scores`): gradient-boosted trees stored as plain numbers
in ``scale_selector.json`` (which ``config.json`` names under ``input_scale.selector_file``), or a
logistic scorer. The best-rated pass is the one segmented. Scoring is pure numpy; the scorer is
fitted by :mod:`model.scale_fit`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.preprocess import median_diameter_px, scaled_shape
from model.trees import boosted_tree_logits

#: Names of the columns of :func:`pass_features` (stored with the scorer and checked on load).
FEATURE_NAMES = (
    "peak", "log_diameter_aw", "log_diameter_median", "foreground_fraction", "log1p_count",
    "centre_max", "log_scale_vs_start", "log_min_side", "peak_of_larger_pass", "peak_of_smaller_pass",
    "log_diameter_ratio_to_larger", "log_diameter_ratio_to_smaller", "peak_below_best", "no_particles",
    "peak_x_log_diameter", "log_diameter_squared", "peak_squared", "log_scale_x_peak", "log_min_side_x_peak",
)
#: Passes are this factor apart (half an octave).
PASS_STEP = math.sqrt(2.0)


@dataclass(frozen=True)
class PassSummary:
    """What one pyramid pass showed.

    ``scale`` is the pass's scale factor, ``start_scale`` that of the pyramid's reference pass
    (longest side ``estimate_max_side_px``); diameters are in the pass's pixels (0 when it found no
    particle of at least 4 px), ``min_side_px`` is the pass's shorter side.
    """

    scale: float
    start_scale: float
    mean_peak: float
    diameter_aw_px: float
    diameter_median_px: float
    foreground_fraction: float
    count: int
    centre_max: float
    min_side_px: int


def mean_peak(centre: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the instances of ``labels`` of the highest centre-map value inside each."""
    inside = labels > 0
    peaks = np.zeros(int(labels.max()) + 1, dtype=np.float32)
    np.maximum.at(peaks, labels[inside], centre[inside])
    return float(peaks[1:].mean()) if peaks.size > 1 else 0.0


def summarize_pass(maps: np.ndarray, labels: np.ndarray, scale: float, start_scale: float,
                   foreground_threshold: float = 0.5) -> PassSummary:
    """Summary of one pass from its network ``maps`` (rows, cols, 2) and their instance ``labels``."""
    return PassSummary(
        scale=float(scale), start_scale=float(start_scale), mean_peak=mean_peak(maps[..., 1], labels),
        diameter_aw_px=median_diameter_px(labels, min_area_px=4, area_weighted=True) or 0.0,
        diameter_median_px=median_diameter_px(labels, min_area_px=4) or 0.0,
        foreground_fraction=float((maps[..., 0] > foreground_threshold).mean()),
        count=int(labels.max()), centre_max=float(maps[..., 1].max()), min_side_px=int(min(labels.shape)))


def pass_features(passes: list[PassSummary], target_px: float) -> np.ndarray:
    """One row of :data:`FEATURE_NAMES` per pass; ``passes`` must be ordered by decreasing scale.

    Diameters enter as logarithms relative to ``target_px`` (the trained particle diameter), so
    0 means "particles appear at the trained size".
    """
    def log_d(d: float) -> float:
        return math.log(max(d, 1.0) / target_px)

    best_peak = max(p.mean_peak for p in passes)
    rows = []
    for i, p in enumerate(passes):
        larger = passes[i - 1] if i > 0 else p
        smaller = passes[i + 1] if i + 1 < len(passes) else p
        peak, ld = p.mean_peak, log_d(p.diameter_aw_px)
        log_scale, log_side = math.log(p.scale / p.start_scale), math.log(p.min_side_px)
        rows.append([peak, ld, log_d(p.diameter_median_px), p.foreground_fraction, math.log1p(p.count),
                     p.centre_max, log_scale, log_side, larger.mean_peak, smaller.mean_peak,
                     log_d(larger.diameter_aw_px) - ld, ld - log_d(smaller.diameter_aw_px),
                     peak - best_peak, float(p.diameter_aw_px == 0.0),
                     peak * ld, ld * ld, peak * peak, log_scale * peak, log_side * peak])
    return np.asarray(rows, dtype=np.float64)


def selector_scores(selector: dict, features: np.ndarray) -> np.ndarray:
    """The scorer's logit per row of ``features`` (higher: more likely the right scale).

    Two kinds of scorer are read: ``"boosted_trees"`` (:func:`model.scale_fit.fit_tree_selector`, the
    shipped kind) and the logistic one (:func:`model.scale_fit.fit_selector`; a selector without ``kind``).
    """
    if tuple(selector["features"]) != FEATURE_NAMES:
        raise ValueError("The scale selector in config.json was fitted on other features; refit it with "
                         "python -m model.scale_fit.")
    if selector.get("kind", "logistic") == "boosted_trees":
        return boosted_tree_logits(selector, features)
    z = (features - np.asarray(selector["mean"])) / np.asarray(selector["std"])
    return z @ np.asarray(selector["weights"]) + float(selector["bias"])


def pyramid_scales(shape: tuple[int, int], start_scale: float, min_side_px: int) -> list[float]:
    """Pass scales, largest first: ``start_scale`` divided by ``PASS_STEP`` again and again while the
    shorter side of the image of ``shape`` stays at least ``min_side_px`` (the first is always kept)."""
    scales = [start_scale]
    while min(scaled_shape(shape, scales[-1] / PASS_STEP)) >= min_side_px:
        scales.append(scales[-1] / PASS_STEP)
    return scales
