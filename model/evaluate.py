"""Score segmenters against ground truth: ``python -m model.evaluate`` (or ``python -m app evaluate``).

Either a folder pair (``--images DIR --masks DIR``, files matched by stem) or a generated synthetic
set (``--synthetic N --seed S``). Every metric of :mod:`model.metrics` is printed per image and on
average for each segmenter (by default the U-Net and the classical segmenter side by side), with
particles under 10 px of area ignored on both sides.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from app.analysis.errors import SaemiInputError
from app.analysis.imageio import decode_image
from model.config import ModelLoadError
from model.metrics import MIN_AREA_PX, score_image
from model.preprocess import median_diameter_px
from model.registry import make_segmenter
from model.segmenter import UNetSegmenter

METRICS = ("dice", "obj_f1", "count_err", "ecd_err")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


#: Seeds of the synthetic validation set (512 px, both modalities); never used for fitting.
SYNTHETIC_VALIDATION_SEEDS = range(1000, 1020)


def folder_cases(images_dir: Path, masks_dir: Path, names: list[str] | None = None,
                 limit: int | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(name, gray, labels)`` for images in ``images_dir`` that have a mask of the same stem."""
    images = {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    masks = {p.stem: p for p in sorted(masks_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    selected = [n for n in (names if names is not None else sorted(images)) if n in images and n in masks]
    for name in selected[:limit]:
        gray = decode_image(images[name].read_bytes(), images[name].name).gray
        with Image.open(masks[name]) as mask:
            labels = np.asarray(mask, dtype=np.int32)
        yield name, gray, labels


def synthetic_cases(n_images: int, seed: int, size_px: int = 512) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``n_images`` generated samples (seeds ``seed`` .. ``seed + n - 1``, both modalities)."""
    from model.synthetic import generate_sample

    for k in range(n_images):
        sample = generate_sample(seed + k, height=size_px, width=size_px, modality=None)
        yield f"synthetic_{seed + k}", sample.image.astype(np.float32) / 255.0, sample.labels.astype(np.int32)


def get_segmenters(names: list[str], model_dir: Path | None, views: int | None = None) -> dict[str, object]:
    """Segmenters by name (:func:`model.registry.make_segmenter`); ``model_dir`` is the U-Net's folder
    (None: the shipped model) and ``views`` its number of averaged views (None: its config's)."""
    return {name: make_segmenter(name, views=views, model_dir=model_dir) for name in names}


def evaluate(cases, segmenters: dict[str, object], min_area_px: int = MIN_AREA_PX,
             out=None, true_diameter: bool = False) -> list[dict]:
    """Segment every case with every segmenter, print one line per image; return the score rows.

    ``out`` is the stream printed to (default: standard output). With ``true_diameter`` the U-Net
    is given each image's true median particle diameter, and looks once at its scale instead of at every
    octave (a diagnostic). Each row's ``noted`` is 1 when the segmenter added a note for the user, else 0.
    """
    out = sys.stdout if out is None else out
    rows = []
    header = f"{'image':<22}" + "".join(f"{s + ':' + m:>20}" for s in segmenters for m in METRICS)
    print(header, file=out)
    for name, gray, labels in cases:
        line = f"{name:<22}"
        for seg_name, segmenter in segmenters.items():
            if true_diameter and isinstance(segmenter, UNetSegmenter):
                segmenter = UNetSegmenter(segmenter.model_dir, diameter_px=median_diameter_px(labels),
                                          views=segmenter.views)
            notes = []
            started = time.perf_counter()
            predicted = segmenter.segment(gray, notes=notes)
            seconds = time.perf_counter() - started
            scores = score_image(labels, predicted, min_area_px)
            rows.append({"image": name, "segmenter": seg_name, "seconds": seconds, **scores, "noted": int(bool(notes))})
            line += "".join(f"{scores[m]:>20.3f}" for m in METRICS)
        print(line, file=out, flush=True)
    return rows


def _by_segmenter(rows: list[dict]) -> dict[str, list[dict]]:
    """The score rows grouped by segmenter name, in the order the segmenters first appear."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["segmenter"], []).append(row)
    return groups


def summarize(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean of every metric (and the image count) per segmenter."""
    summary = {}
    for seg_name, mine in _by_segmenter(rows).items():
        summary[seg_name] = {m: float(np.mean([r[m] for r in mine])) for m in (*METRICS, "seconds")}
        summary[seg_name]["n_images"] = len(mine)
    return summary


def noted_lines(rows: list[dict]) -> list[str]:
    """One line per segmenter that added notes: its mean scores on the noted and the other images."""
    lines = []
    for seg_name, mine in _by_segmenter(rows).items():
        noted = [r for r in mine if r.get("noted")]
        if not noted:
            continue
        others = [r for r in mine if not r.get("noted")]
        groups = []
        for label, group in ((f"{len(noted)} noted", noted), (f"{len(others)} others", others)):
            if group:
                means = "  ".join(f"{m}={np.mean([r[m] for r in group]):.3f}" for m in ("obj_f1", "ecd_err"))
                groups.append(f"{label}: {means}")
        lines.append(f"  {seg_name:<10}images with a note for the user vs the rest: "
                     + "; ".join(groups))
    return lines


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="evaluate", description="Score segmenters against ground-truth masks.")
    parser.add_argument("--images", type=Path, help="folder of images")
    parser.add_argument("--masks", type=Path, help="folder of instance masks (same file stems)")
    parser.add_argument("--names", type=Path, help="text file listing the image stems to use, one per line")
    parser.add_argument("--limit", type=int, default=None, help="score at most N images")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N", help="score N generated images instead")
    parser.add_argument("--seed", type=int, default=SYNTHETIC_VALIDATION_SEEDS.start,
                        help="first seed of the synthetic set")
    parser.add_argument("--size", type=int, default=512, help="side of the synthetic images in pixels")
    parser.add_argument("--segmenter", action="append", default=None,
                        help="segmenter name (repeatable); default: unet and classical")
    parser.add_argument("--model-dir", type=Path, default=None, help="U-Net folder (default: the shipped model)")
    parser.add_argument("--csv", type=Path, default=None, help="also write the per-image scores here")
    parser.add_argument("--true-diameter", action="store_true",
                        help="diagnostic: give the U-Net each image's true median particle diameter")
    parser.add_argument("--views", type=int, default=None, metavar="N",
                        help="views of each image the U-Net averages, 1 to 4 (default: the model's)")
    args = parser.parse_args(argv)
    if not args.synthetic and (args.images is None or args.masks is None):
        parser.error("give --images and --masks, or --synthetic N")
    return args


def main(argv: list[str]) -> int:
    """Run the evaluation; returns the process exit status."""
    args = parse_args(argv)
    try:
        segmenters = get_segmenters(args.segmenter or ["unet", "classical"], args.model_dir, args.views)
        if args.synthetic:
            cases = synthetic_cases(args.synthetic, args.seed, args.size)
        else:
            names = None
            if args.names is not None:
                names = [n.strip() for n in args.names.read_text().splitlines() if n.strip()]
            cases = folder_cases(args.images, args.masks, names, args.limit)
        rows = evaluate(cases, segmenters, true_diameter=args.true_diameter)
    except (ModelLoadError, SaemiInputError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not rows:
        print("error: no image with a matching mask was found.", file=sys.stderr)
        return 1
    summary = summarize(rows)
    n_images = next(iter(summary.values()))["n_images"]
    print(f"\nmean over {n_images} images (particles under {MIN_AREA_PX} px ignored):")
    for seg_name, means in summary.items():
        print(f"  {seg_name:<10}" + "  ".join(f"{m}={means[m]:.3f}" for m in (*METRICS, "seconds")))
    for line in noted_lines(rows):
        print(line)
    if args.csv is not None:
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
