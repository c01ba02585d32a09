"""Fit the scale scorer of :mod:`model.scale_select`: ``python -m model.scale_fit``.

The scorer is trained on images with known particle sizes, where a pass of the pyramid is a positive
example when it shows the median particle within half an octave of the trained diameter
(:func:`good_pass`). Running the module collects the pyramids of the EMPS training split and of
generated images, fits the scorer (gradient-boosted trees with scikit-learn, or a logistic scorer)
and writes it beside a model folder's ``config.json``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.config import SELECTOR_NAME, default_model_dir, name_scorer_file
from model.data import EMPS_FOLDER, data_root, load_pair, read_split
from model.evaluate import SYNTHETIC_VALIDATION_SEEDS, synthetic_cases
from model.preprocess import median_diameter_px
from model.scale_select import FEATURE_NAMES, PASS_STEP, pass_features, selector_scores
from model.segmenter import UNetSegmenter
from model.trees import fit_boosted_trees, write_trees


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
    x, y, weights = _examples(features, labels, image_weights)
    fitted = fit_boosted_trees(x, y, weights, n_trees=n_trees, depth=depth, learning_rate=learning_rate,
                               min_leaf=min_leaf, seed=seed)
    selector = {"kind": "boosted_trees", "features": list(FEATURE_NAMES), **fitted,
                "settings": {"n_trees": n_trees, "depth": depth, "min_leaf": min_leaf, "seed": seed}}
    return selector


def _cases(names: list[str], synthetic_seeds: range | list, synthetic_size_px: int
           ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    root = data_root()
    for name in names:
        yield (name, *load_pair(root, EMPS_FOLDER, name))
    if len(synthetic_seeds):
        yield from synthetic_cases(len(synthetic_seeds), synthetic_seeds.start, synthetic_size_px)


def collect(segmenter, cases, progress: Callable[[], object] | None = None
            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Features (all passes, magnified ones included) and labels per case ``(name, gray, labels)``."""
    target_px = segmenter.load().config.input_scale.target_diameter_px
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
    """Fit the scorer on the EMPS training split and generated images; write it beside config.json."""
    parser = argparse.ArgumentParser(prog="python -m model.scale_fit", description=main.__doc__)
    parser.add_argument("--model-dir", type=Path, default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--synthetic-seeds", default="5000:5090",
                        help="generated training images, seeds START:STOP (never the validation seeds 1000-1019)")
    parser.add_argument("--synthetic-size", type=int, default=512)
    parser.add_argument("--kind", choices=["trees", "logistic"], default="trees",
                        help="gradient-boosted trees (default, the shipped kind) or a logistic scorer")
    parser.add_argument("--l2", type=float, default=3e-3, help="penalty of the logistic scorer")
    args = parser.parse_args(argv)
    start, stop = (int(v) for v in args.synthetic_seeds.split(":"))
    if start < SYNTHETIC_VALIDATION_SEEDS.stop and stop > SYNTHETIC_VALIDATION_SEEDS.start:
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
                             f"python -m model.scale_fit --synthetic-seeds {start}:{stop}{option}")
    write_trees(selector, model_dir / SELECTOR_NAME)
    name_scorer_file(model_dir, SELECTOR_NAME)
    chosen_good = [lab[int(np.argmax(selector_scores(selector, f)))] for f, lab in zip(features, labels)]
    print(f"Scorer written to {model_dir / SELECTOR_NAME}; on its own training images it picks a good pass "
          f"for {np.mean(chosen_good):.1%} of them.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
