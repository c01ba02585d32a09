"""A learned choice of the scale the U-Net segments at: ``python -m model.scale_select``.

The segmenter runs the network on a pyramid of the image, half an octave apart, and summarises
every pass (:class:`PassSummary`): the mean height of the centre-map peaks, the particle diameters
it sees, how much of the frame is foreground, and so on. :func:`pass_features` turns the pyramid
into one row of numbers per pass, including comparisons with the neighbouring passes, and a
scorer rates each pass: gradient-boosted trees since v3.2.0 (:func:`fit_tree_selector`, stored as
plain numbers in ``scale_selector.json``, which ``config.json`` names under
``input_scale.selector_file``), a logistic one in v3.1.0 (:func:`fit_selector`); the best-rated
pass is the one segmented. The scorer is trained on images with known particle sizes, where a
pass is a positive example when it shows the median particle within half an octave of the trained
diameter (:func:`good_pass`). This replaces a hand-made rule (the most confident pass), which
small thumbnails fooled: there, clusters and texture look like confident particles. Cellpose
also learns its size estimate (a regression from the network's style vector); a regression from
this network's bottleneck features was tried here and was less accurate than the pyramid
summaries (see the model card).

Running the module collects the pyramids of the EMPS training split and of generated images, fits
the scorer and writes it beside a model folder's ``config.json``. Scoring is pure numpy; fitting the
trees uses scikit-learn.
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
    """The scorer's logit per row of ``features`` (higher: more likely the right scale).

    Two kinds of scorer are read: ``"boosted_trees"`` (:func:`fit_tree_selector`, shipped since
    v3.2.0) and the logistic one of v3.1.0 (:func:`fit_selector`; a selector without ``kind``).
    """
    if tuple(selector["features"]) != FEATURE_NAMES:
        raise ValueError("The scale selector in config.json was fitted on other features; refit it with "
                         "python -m model.scale_select.")
    if selector.get("kind", "logistic") == "boosted_trees":
        return _tree_scores(selector, features)
    z = (features - np.asarray(selector["mean"])) / np.asarray(selector["std"])
    return z @ np.asarray(selector["weights"]) + float(selector["bias"])


def _tree_scores(selector: dict, features: np.ndarray) -> np.ndarray:
    """Sum of the trees' leaf values (``init`` plus ``learning_rate`` times each tree's leaf).

    All trees are walked at once, one level per step. Features are compared at 32-bit precision,
    as scikit-learn's trees compare them, so the scores equal the fitted model's
    ``decision_function``.
    """
    trees = selector["trees"]
    width = max(len(tree["left"]) for tree in trees)

    def stacked(key: str, fill: float, dtype) -> np.ndarray:
        return np.array([tree[key] + [fill] * (width - len(tree[key])) for tree in trees], dtype=dtype)

    feature, left, right = (stacked(k, -1, np.int64) for k in ("feature", "left", "right"))
    threshold, value = stacked("threshold", 0.0, np.float64), stacked("value", 0.0, np.float64)
    x = np.asarray(features, dtype=np.float32).astype(np.float64)
    tree_ids = np.arange(len(trees))
    node = np.zeros((len(x), len(trees)), dtype=np.int64)  # every row starts at every tree's root
    while True:
        inner = left[tree_ids, node] >= 0
        if not inner.any():
            break
        seen = np.take_along_axis(x, np.maximum(feature[tree_ids, node], 0), axis=1)
        goes_left = seen <= threshold[tree_ids, node]
        node = np.where(inner, np.where(goes_left, left[tree_ids, node], right[tree_ids, node]), node)
    return float(selector["init"]) + float(selector["learning_rate"]) * value[tree_ids, node].sum(axis=1)


def good_pass(scale: float, true_diameter_px: float, target_px: float) -> bool:
    """Whether a pass at ``scale`` shows particles of ``true_diameter_px`` (image pixels) within
    half an octave of ``target_px``: the training label of the scorer."""
    return abs(math.log(scale * true_diameter_px / target_px)) < math.log(PASS_STEP)


def _examples(features: list[np.ndarray], labels: list[np.ndarray], image_weights: list[float] | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pass of every image as one example: features, 0/1 labels and the image's weight (default 1)."""
    weights = np.concatenate([np.full(len(f), 1.0 if image_weights is None else image_weights[i])
                              for i, f in enumerate(features)])
    return np.concatenate(features), np.concatenate(labels).astype(np.float64), weights


def fit_selector(features: list[np.ndarray], labels: list[np.ndarray], l2: float = 1e-3,
                 image_weights: list[float] | None = None, iterations: int = 50) -> dict:
    """Fit an L2-regularised logistic scorer (Newton's method) on standardised features.

    ``features`` and ``labels`` hold one array per image (rows: passes); every pass of every image
    is one example, weighted by its image's entry of ``image_weights`` (default 1). ``l2`` is the
    penalty per unit of weight on the standardised coefficients.
    """
    x, y, weights = _examples(features, labels, image_weights)
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


def fit_tree_selector(features: list[np.ndarray], labels: list[np.ndarray],
                      image_weights: list[float] | None = None, n_trees: int = 300, depth: int = 3,
                      learning_rate: float = 0.05, min_leaf: int = 20, seed: int = 0) -> dict:
    """Fit gradient-boosted trees (scikit-learn, log-loss) and export them as plain numbers.

    Arguments as for :func:`fit_selector`. The result holds every tree's node arrays (``feature``,
    ``threshold``, ``left``, ``right``, ``value``; ``left`` is -1 at a leaf), so it is stored as
    JSON and scored by :func:`selector_scores` without scikit-learn and without pickle.
    """
    from sklearn.ensemble import GradientBoostingClassifier

    x, y, weights = _examples(features, labels, image_weights)
    model = GradientBoostingClassifier(n_estimators=n_trees, max_depth=depth, learning_rate=learning_rate,
                                       min_samples_leaf=min_leaf, random_state=seed)
    model.fit(x, y, sample_weight=weights)
    trees = []
    for estimator in model.estimators_[:, 0]:
        t = estimator.tree_
        trees.append({"feature": t.feature.tolist(), "threshold": t.threshold.tolist(),
                      "left": t.children_left.tolist(), "right": t.children_right.tolist(),
                      "value": t.value[:, 0, 0].tolist()})
    selector = {"kind": "boosted_trees", "features": list(FEATURE_NAMES), "init": 0.0,
                "learning_rate": learning_rate, "trees": trees,
                "settings": {"n_trees": n_trees, "depth": depth, "min_leaf": min_leaf, "seed": seed}}
    # The model's constant start (the log-odds of the weighted prior) is read off its scores.
    selector["init"] = float(model.decision_function(x[:1])[0] - _tree_scores(selector, x[:1])[0])
    return selector


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


def write_selector(selector: dict, path: Path) -> None:
    """Write ``selector`` as JSON, one tree per line (the file the config's ``selector_file`` names)."""
    head = {key: value for key, value in selector.items() if key != "trees"}
    text = json.dumps(head, indent=1)
    if "trees" in selector:
        text = (text[:-2] + ',\n "trees": [\n  ' + ",\n  ".join(json.dumps(t) for t in selector["trees"])
                + "\n ]\n}")
    path.write_text(text + "\n")


def main(argv: list[str] | None = None) -> int:
    """Fit the scorer on the EMPS training split and generated images; write it beside config.json."""
    from tqdm import tqdm

    from model.data import read_split
    from model.segmenter import CONFIG_NAME, SELECTOR_NAME, UNetSegmenter, default_model_dir

    parser = argparse.ArgumentParser(prog="python -m model.scale_select", description=main.__doc__)
    parser.add_argument("--model-dir", type=Path, default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--synthetic-seeds", default="5000:5090",
                        help="generated training images, seeds START:STOP (never the validation seeds 1000-1019)")
    parser.add_argument("--synthetic-size", type=int, default=512)
    parser.add_argument("--kind", choices=["trees", "logistic"], default="trees",
                        help="gradient-boosted trees (default, shipped since v3.2.0) or v3.1.0's logistic scorer")
    parser.add_argument("--l2", type=float, default=3e-3, help="penalty of the logistic scorer")
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
    if args.kind == "trees":
        selector = fit_tree_selector(features, labels, image_weights=image_weights)
        option = ""
    else:
        selector = fit_selector(features, labels, l2=args.l2, image_weights=image_weights)
        option = f" --kind logistic --l2 {args.l2}"
    selector["fitted_on"] = (f"EMPS train split ({n_emps} images) and generated seeds {start}-{stop - 1} "
                             f"at {args.synthetic_size} px, each source with the same total weight: "
                             f"python -m model.scale_select --synthetic-seeds {start}:{stop}{option}")
    write_selector(selector, model_dir / SELECTOR_NAME)
    path = model_dir / CONFIG_NAME
    config = json.loads(path.read_text())
    config["input_scale"].pop("selector", None)
    config["input_scale"]["selector_file"] = SELECTOR_NAME
    path.write_text(json.dumps(config, indent=2) + "\n")
    chosen_good = [lab[int(np.argmax(selector_scores(selector, f)))] for f, lab in zip(features, labels)]
    print(f"Scorer written to {model_dir / SELECTOR_NAME}; on its own training images it picks a good pass "
          f"for {np.mean(chosen_good):.1%} of them.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
