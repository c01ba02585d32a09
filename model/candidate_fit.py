"""Fit the octave method's candidate scorer (:func:`model.multiscale.fuse_by_confidence`):
``python -m model.candidate_fit --model-dir DIR``.

Every instance of every octave pass of a training image is one example: positive when it matches a true
particle with an IoU of at least :data:`MATCH_IOU` (compared at the pass's resolution, the true labels
resized to it). The images are the EMPS training split, generated images of the validation kind (other
seeds) and generated images of the size cases of issue #19 (:data:`model.synthetic.SIZE_CASES`, other
seeds than the benchmark's). The scorer is fitted with scikit-learn's gradient boosting, stored as plain
numbers (:mod:`model.trees`) beside the model's ``config.json``, and named there by
``input_scale.scorer_file``. It belongs to the weights it was fitted with: refit it after training.
A fine-tune refits it within its time budget (:func:`refit_for_user`), on the user's images and as many
original images as the time allows.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.config import (
    CANDIDATE_SCORER_KIND,
    CONFIG_NAME,
    SCORER_NAME,
    default_model_dir,
    name_scorer_file,
    read_config,
)
from model.data import EMPS_FOLDER, LabelledImage, available_train_names, data_root, load_pair, read_split
from model.evaluate import SYNTHETIC_VALIDATION_SEEDS, synthetic_cases
from model.loading import ShippedModel, load_keras_model
from model.multiscale import (
    CANDIDATE_FEATURES,
    OctavePass,
    candidate_features,
    measure_candidates,
    nearest_ids,
    pair_counts,
)
from model.segmenter import UNetSegmenter
from model.synthetic import MODALITIES, SIZE_CASE_BENCH_SEEDS, SIZE_CASES, size_case_samples
from model.trees import fit_boosted_trees, write_trees

#: A candidate is a positive example when its best IoU with a true particle is at least this.
MATCH_IOU = 0.5
#: Benchmark seeds (bench/bench_real_sizes.py) and synthetic validation seeds: never trained on.
HELD_OUT_SEEDS = (SYNTHETIC_VALIDATION_SEEDS, SIZE_CASE_BENCH_SEEDS)
#: In the refit after a fine-tune (:func:`refit_for_user`), each of the user's images weighs as much as
#: this many original images.
USER_IMAGE_WEIGHT = 20.0
#: A candidate of a user's image is an example when at least this share of it lies in the supervised region.
SUPERVISED_SHARE = 0.5
#: Share of the refit's time spent on the original images' passes; the rest is for the trees.
REFIT_COLLECT_SHARE = 0.75
#: First seed of the generated images a refit draws on (outside :data:`HELD_OUT_SEEDS`).
REFIT_SYNTHETIC_SEED = 5000
#: Trees and learning rate of the refit's scorer: half the trees of a full fit, each step twice as long.
REFIT_TREES = 150
REFIT_LEARNING_RATE = 0.1


def best_iou(passes: list[OctavePass], meta: list[tuple[int, int]], truth: np.ndarray) -> np.ndarray:
    """Per ``(pass, id)`` of ``meta``: the best IoU of that instance with a particle of ``truth`` (full-resolution
    labels), compared at the pass's resolution."""
    best = []
    for one in passes:
        labels = np.asarray(one.labels, np.int32)
        true = nearest_ids(truth, labels.shape)
        n, n_true = int(labels.max()), int(true.max())
        iou = np.zeros(n + 1)
        ids, true_ids, overlap = pair_counts(labels, true)
        if overlap.size:
            area = np.bincount(labels.ravel(), minlength=n + 1)
            true_area = np.bincount(true.ravel(), minlength=n_true + 1)
            np.maximum.at(iou, ids, overlap / (area[ids] + true_area[true_ids] - overlap))
        best.append(iou)
    return np.array([best[k][i] for k, i in meta])


def supervised_share(passes: list[OctavePass], meta: list[tuple[int, int]], supervised: np.ndarray) -> np.ndarray:
    """Per ``(pass, id)`` of ``meta``: the share of that instance's pixels in ``supervised`` (full-resolution
    bool), compared at the pass's resolution."""
    shares = []
    for one in passes:
        labels = np.asarray(one.labels, np.int32)
        inside = nearest_ids(np.asarray(supervised, np.int32), labels.shape) > 0
        n = int(labels.max())
        area = np.bincount(labels.ravel(), minlength=n + 1)
        shares.append(np.bincount(labels.ravel(), weights=inside.ravel(), minlength=n + 1) / np.maximum(area, 1))
    return np.array([shares[k][i] for k, i in meta])


def candidate_examples(segmenter: UNetSegmenter, gray: np.ndarray, truth: np.ndarray,
                       supervised: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The candidate features of one image's octave passes and each candidate's best IoU with ``truth``;
    with ``supervised`` (bool), only the candidates at least :data:`SUPERVISED_SHARE` inside it."""
    passes = sorted(segmenter.octave_passes(gray), key=lambda one: -one.scale)
    x, meta = candidate_features(passes, [measure_candidates(one) for one in passes])
    iou = best_iou(passes, meta, np.asarray(truth, np.int32))
    if supervised is not None:
        keep = supervised_share(passes, meta, supervised) >= SUPERVISED_SHARE
        x, iou = x[keep], iou[keep]
    return x, iou


def collect(segmenter: UNetSegmenter, cases: Iterator[tuple[str, np.ndarray, np.ndarray]],
            progress: Callable[[], object] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Candidate features and best IoUs, one array each per case ``(name, gray, labels)``."""
    features, ious = [], []
    for _, gray, truth in cases:
        x, iou = candidate_examples(segmenter, gray, truth)
        features.append(x)
        ious.append(iou)
        if progress is not None:
            progress()
    return features, ious


def fit_candidate_scorer(features: list[np.ndarray], ious: list[np.ndarray], n_trees: int = 300, depth: int = 4,
                         learning_rate: float = 0.05, min_leaf: int = 20, seed: int = 0,
                         image_weights: list[float] | None = None) -> dict:
    """Gradient-boosted trees (log-loss) on every candidate of every image, exported as plain numbers.

    An image's candidates weigh 1/sqrt(their count) each, so that an image of 1000 tiny particles
    counts more than one of three large ones, but not 300 times more; ``image_weights`` (one per image,
    default 1) multiplies that.
    """
    x = np.concatenate(features)
    y = (np.concatenate(ious) >= MATCH_IOU).astype(int)
    image_weights = [1.0] * len(features) if image_weights is None else image_weights
    weights = np.concatenate([np.full(len(f), w / np.sqrt(max(len(f), 1))) for f, w in zip(features, image_weights)])
    fitted = fit_boosted_trees(x, y, weights, n_trees=n_trees, depth=depth, learning_rate=learning_rate,
                               min_leaf=min_leaf, seed=seed)
    scorer = {"kind": CANDIDATE_SCORER_KIND, "features": list(CANDIDATE_FEATURES), **fitted,
              "settings": {"n_trees": n_trees, "depth": depth, "min_leaf": min_leaf, "seed": seed,
                           "match_iou": MATCH_IOU}}
    return scorer


def _original_cases(seed: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """The original training images without end: the EMPS training split (when the data folder has it) in
    an order drawn with ``seed``, four EMPS images to one generated 512 px image, then generated ones only."""
    root = data_root()
    names = available_train_names(root)
    emps = iter([names[i] for i in np.random.default_rng(seed).permutation(len(names))])
    seeds = itertools.count(REFIT_SYNTHETIC_SEED)
    for k in itertools.count():
        name = next(emps, None) if k % 5 != 4 else None
        if name is not None:
            yield (name, *load_pair(root, EMPS_FOLDER, name))
        else:
            yield next(synthetic_cases(1, next(seeds), 512))


def refit_for_user(model_dir: Path, images: list[LabelledImage], budget_s: float, *, seed: int = 0,
                   n_trees: int = REFIT_TREES, tick: Callable[[], object] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> str:
    """Refit the candidate scorer of the model in ``model_dir`` (just fine-tuned) with the user's
    ``images`` among its training images, within about ``budget_s`` seconds; write it there and say what
    was done, for the provenance (with examples of one kind only, the scorer there is kept).

    The scorer belongs to the weights it was fitted with, so a tuned network needs its own. The user's
    images count with :data:`USER_IMAGE_WEIGHT`, and only their candidates that lie mostly in the supervised
    region. Original images (:func:`_original_cases`) are added until :data:`REFIT_COLLECT_SHARE` of the
    budget is spent; ``tick()`` is called after every image. A true ``should_stop()``, asked after every
    image, ends the refit and keeps the scorer there.
    """
    start = time.monotonic()
    config = read_config(model_dir)  # the tuned network, loaded here and not kept in the per-process cache
    network = ShippedModel(load_keras_model(Path(model_dir) / config.weights), config)
    segmenter = UNetSegmenter(model_dir, network=network)
    originals = _original_cases(seed)
    users = iter(images)
    features, ious, weights = [], [], []
    while len(weights) < len(images) or time.monotonic() - start < REFIT_COLLECT_SHARE * budget_s:
        if should_stop is not None and should_stop():
            return "the base model's scorer, kept: its refit was stopped"
        image = next(users, None)
        if image is None:
            image = LabelledImage(*next(originals))
        x, iou = candidate_examples(segmenter, image.gray, image.labels, image.supervised)
        features.append(x)
        ious.append(iou)
        weights.append(USER_IMAGE_WEIGHT if len(weights) < len(images) else 1.0)
        if tick is not None:
            tick()
    n_original = len(weights) - len(images)
    labels = np.concatenate(ious) >= MATCH_IOU if features else np.zeros(0, bool)
    if labels.all() or not labels.any():
        return (f"the base model's scorer, kept: the {len(images)} user images and {n_original} original images "
                "gave no particle or nothing but particles to learn from")
    scorer = fit_candidate_scorer(features, ious, n_trees=n_trees, learning_rate=REFIT_LEARNING_RATE, seed=seed,
                                  image_weights=weights)
    scorer["fitted_on"] = (f"refitted after a fine-tune on {len(images)} user images (each weighing "
                           f"{USER_IMAGE_WEIGHT:g}) and {n_original} original images, in "
                           f"{time.monotonic() - start:.0f} s")
    write_trees(scorer, Path(model_dir) / SCORER_NAME)
    name_scorer_file(model_dir, SCORER_NAME)
    return scorer["fitted_on"]


def _size_cases(repeats: int, first_seed: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    for r in range(repeats):
        for case, modality, sample in size_case_samples(first_seed + 100 * r):
            yield f"{case}_{modality}_{sample.params['seed']}", sample.image.astype(np.float32) / 255.0, sample.labels


def _held_out(seeds: range) -> bool:
    return any(seeds.start < held.stop and held.start < seeds.stop for held in HELD_OUT_SEEDS)


def main(argv: list[str] | None = None) -> int:
    """Fit a model's candidate scorer; write it beside its config.json."""
    parser = argparse.ArgumentParser(prog="python -m model.candidate_fit", description=main.__doc__)
    parser.add_argument("--model-dir", type=Path, default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--synthetic-seeds", default="5000:5060",
                        help="generated 512 px training images, seeds START:STOP")
    parser.add_argument("--size-case-seed", type=int, default=3000,
                        help="first seed of the generated size-case images (1024x768)")
    parser.add_argument("--size-case-repeats", type=int, default=2,
                        help="images per size case and modality")
    args = parser.parse_args(argv)
    start, stop = (int(v) for v in args.synthetic_seeds.split(":"))
    size_seeds = range(args.size_case_seed, args.size_case_seed + 100 * args.size_case_repeats)
    if _held_out(range(start, stop)) or _held_out(size_seeds):
        parser.error("the synthetic validation seeds 1000-1019 and the benchmark's 1900-1939 must not be used")
    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    segmenter = UNetSegmenter(model_dir)
    names = read_split("train")
    root = data_root()
    n_size = args.size_case_repeats * len(SIZE_CASES) * len(MODALITIES)
    with tqdm(total=len(names) + stop - start + n_size, desc="octave passes", unit="image") as bar:
        features, ious = collect(segmenter, ((name, *load_pair(root, EMPS_FOLDER, name)) for name in names),
                                 progress=bar.update)
        more = collect(segmenter, synthetic_cases(stop - start, start, 512), progress=bar.update)
        sizes = collect(segmenter, _size_cases(args.size_case_repeats, args.size_case_seed), progress=bar.update)
    features, ious = features + more[0] + sizes[0], ious + more[1] + sizes[1]
    print(f"Fitting on {sum(len(f) for f in features)} candidates of {len(features)} images ...")
    scorer = fit_candidate_scorer(features, ious)
    scorer["fitted_on"] = (f"EMPS train split ({len(names)} images), generated seeds {start}-{stop - 1} at 512 px "
                           f"and {n_size} size-case images from seed {args.size_case_seed}: python -m "
                           f"model.candidate_fit --synthetic-seeds {start}:{stop} --size-case-seed "
                           f"{args.size_case_seed} --size-case-repeats {args.size_case_repeats}")
    write_trees(scorer, model_dir / SCORER_NAME)
    name_scorer_file(model_dir, SCORER_NAME)
    print(f"Scorer written to {model_dir / SCORER_NAME} and named in {model_dir / CONFIG_NAME}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
