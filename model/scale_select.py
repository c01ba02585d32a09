"""A learned choice of the scale the U-Net segments at: ``python -m model.scale_select``.

The segmenter runs the network on a pyramid of the image, half an octave apart, and summarises
every pass (:class:`PassSummary`): the mean height of the centre-map peaks, the particle diameters
it sees, how much of the frame is foreground, and so on. :func:`pass_features` turns the pyramid
into one row of numbers per pass, including comparisons with the neighbouring passes, and a
logistic scorer (:func:`fit_selector`, stored in ``config.json`` under ``input_scale.selector``)
rates each pass; the best-rated pass is the one segmented. The scorer is trained on images with
known particle sizes, where a pass is a positive example when it shows the median particle within
half an octave of the trained diameter (:func:`good_pass`). This replaces a hand-made rule (the most
confident pass), which small thumbnails fooled: there, clusters and texture look like confident
particles. Cellpose also learns its size estimate (a regression from the network's style vector);
a regression from this network's bottleneck features was tried here and was less accurate than
the pyramid summaries (see the model card).

Running the module collects the pyramids of the EMPS training split and of generated images, fits
the scorer and writes it into a model folder's ``config.json``. Pure numpy apart from the network.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    from model.preprocess import median_diameter_px

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
    """The scorer's logit per row of ``features`` (higher: more likely the right scale)."""
    if tuple(selector["features"]) != FEATURE_NAMES:
        raise ValueError("The scale selector in config.json was fitted on other features; refit it with "
                         "python -m model.scale_select.")
    z = (features - np.asarray(selector["mean"])) / np.asarray(selector["std"])
    return z @ np.asarray(selector["weights"]) + float(selector["bias"])


def good_pass(scale: float, true_diameter_px: float, target_px: float) -> bool:
    """Whether a pass at ``scale`` shows particles of ``true_diameter_px`` (image pixels) within
    half an octave of ``target_px``: the training label of the scorer."""
    return abs(math.log(scale * true_diameter_px / target_px)) < math.log(PASS_STEP)


def fit_selector(features: list[np.ndarray], labels: list[np.ndarray], l2: float = 1e-3,
                 image_weights: list[float] | None = None, iterations: int = 50) -> dict:
    """Fit an L2-regularised logistic scorer (Newton's method) on standardised features.

    ``features`` and ``labels`` hold one array per image (rows: passes); every pass of every image
    is one example, weighted by its image's entry of ``image_weights`` (default 1). ``l2`` is the
    penalty per unit of weight on the standardised coefficients.
    """
    x = np.concatenate(features)
    y = np.concatenate(labels).astype(np.float64)
    weights = np.concatenate([np.full(len(f), 1.0 if image_weights is None else image_weights[i])
                              for i, f in enumerate(features)])
    mean = np.average(x, axis=0, weights=weights)
    std = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=weights)) + 1e-6
    z = np.c_[(x - mean) / std, np.ones(len(x))]
    w = np.zeros(z.shape[1])
    penalty = l2 * weights.sum() * np.eye(len(w))
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        hessian = z.T @ (z * (weights * p * (1.0 - p))[:, None]) + penalty
        step = np.linalg.solve(hessian, z.T @ (weights * (p - y)) + penalty @ w)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"features": list(FEATURE_NAMES), "mean": mean.round(8).tolist(), "std": std.round(8).tolist(),
            "weights": w[:-1].round(8).tolist(), "bias": round(float(w[-1]), 8), "l2": l2}


def pyramid_scales(shape: tuple[int, int], start_scale: float, min_side_px: int) -> list[float]:
    """Pass scales, largest first: ``start_scale`` divided by ``PASS_STEP`` again and again while the
    shorter side of the image of ``shape`` stays at least ``min_side_px`` (the first is always kept)."""
    from model.preprocess import scaled_shape

    scales = [start_scale]
    while min(scaled_shape(shape, scales[-1] / PASS_STEP)) >= min_side_px:
        scales.append(scales[-1] / PASS_STEP)
    return scales


# --- fitting from the command line -------------------------------------------------------------


def _cases(names: list[str], synthetic_seeds: range | list, synthetic_size_px: int
           ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    from model.data import EMPS_FOLDER, data_root, load_pair
    from model.evaluate import synthetic_cases

    root = data_root()
    for name in names:
        yield (name, *load_pair(root, EMPS_FOLDER, name))
    if len(synthetic_seeds):
        yield from synthetic_cases(len(synthetic_seeds), synthetic_seeds.start, synthetic_size_px)


def collect(segmenter, cases, progress: Callable[[], object] | None = None
            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Features (all passes, magnified ones included) and labels per case ``(name, gray, labels)``."""
    from model.preprocess import median_diameter_px

    target_px = segmenter.load().config["input_scale"]["target_diameter_px"]
    features, labels = [], []
    for _, gray, truth in cases:
        true_px = median_diameter_px(truth)
        if true_px is None:
            continue
        passes = [summary for summary, _, _ in segmenter.pyramid(gray, magnify=True)]
        features.append(pass_features(passes, target_px))
        labels.append(np.array([good_pass(p.scale, true_px, target_px) for p in passes], dtype=np.float64))
        if progress is not None:
            progress()
    return features, labels


def main(argv: list[str] | None = None) -> int:
    """Fit the scorer on the EMPS training split and generated images; write it into config.json."""
    from tqdm import tqdm

    from model.data import read_split
    from model.segmenter import CONFIG_NAME, UNetSegmenter, default_model_dir

    parser = argparse.ArgumentParser(prog="python -m model.scale_select", description=main.__doc__)
    parser.add_argument("--model-dir", type=Path, default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--synthetic-seeds", default="5000:5090",
                        help="generated training images, seeds START:STOP (never the validation seeds 1000-1019)")
    parser.add_argument("--synthetic-size", type=int, default=512)
    parser.add_argument("--l2", type=float, default=3e-3)
    args = parser.parse_args(argv)
    start, stop = (int(v) for v in args.synthetic_seeds.split(":"))
    if start < 1020 and stop > 1000:
        parser.error("the synthetic validation seeds 1000-1019 must not be used for fitting")
    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    segmenter = UNetSegmenter(model_dir)
    names = read_split("train")
    with tqdm(total=len(names) + stop - start, desc="pyramids", unit="image") as bar:
        features, labels = collect(segmenter, _cases(names, [], 0), progress=bar.update)
        n_emps = len(features)
        more = collect(segmenter, _cases([], range(start, stop), args.synthetic_size), progress=bar.update)
    features, labels = features + more[0], labels + more[1]
    # Each source weighs the same in total, so the scorer serves real and generated images alike.
    n_generated = len(features) - n_emps
    image_weights = [1.0] * n_emps + [n_emps / max(n_generated, 1)] * n_generated
    selector = fit_selector(features, labels, l2=args.l2, image_weights=image_weights)
    selector["fitted_on"] = (f"EMPS train split ({n_emps} images) and generated seeds {start}-{stop - 1} "
                             f"at {args.synthetic_size} px, each source with the same total weight: "
                             "python -m model.scale_select "
                             f"--synthetic-seeds {start}:{stop} --l2 {args.l2}")
    path = model_dir / CONFIG_NAME
    config = json.loads(path.read_text())
    config["input_scale"]["selector"] = selector
    path.write_text(json.dumps(config, indent=2) + "\n")
    chosen_good = [lab[int(np.argmax(selector_scores(selector, f)))] for f, lab in zip(features, labels)]
    print(f"Scorer written to {path}; on its own training images it picks a good pass for "
          f"{np.mean(chosen_good):.1%} of them.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
