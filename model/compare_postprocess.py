"""Compare post-processing choices on the same network outputs: ``python -m model.compare_postprocess``.

For each image the U-Net maps are computed once, at the scale that brings the image's true median particle
to the trained size (as with a diameter typed by the user), then turned into instances by several
methods; the mean metrics of each method are printed. Images without a true particle are skipped. Used to pick
the post-processing and its thresholds (on training images) and to report the alternatives (on the
validation list) in the model card.

Methods
-------
- ``centre@F/C``: marker-controlled watershed on the centre map (the shipped method), foreground
  threshold F, centre threshold C;
- ``components``: connected components of the thresholded foreground (no splitting);
- ``distance``: watershed on the distance transform of the foreground with h-maxima markers
  (what the classical segmenter does, on the network's foreground);
- ``upsampling=K/C``: the shipped method with the watershed at K times the network's resolution
  (capped at the image's) and centre threshold C, the instances then carried to full resolution
  (:meth:`model.segmenter.UNetSegmenter.instances`); ``K=full`` is the image's resolution.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from model.evaluate import folder_cases, synthetic_cases
from model.metrics import score_image
from model.postprocess import maps_to_instances
from model.preprocess import median_diameter_px
from model.segmenter import UNetSegmenter

METRICS = ("dice", "obj_f1", "count_err", "ecd_err")


def distance_watershed(foreground: np.ndarray, threshold: float = 0.5, h_px: float = 2.0) -> np.ndarray:
    """Split the thresholded foreground by a watershed on its distance transform (h-maxima markers)."""
    mask = foreground > threshold
    distance = ndimage.distance_transform_edt(mask)
    markers, _ = ndimage.label(h_maxima(distance, h_px))
    return watershed(-distance, markers, mask=mask).astype(np.int32)


FOREGROUND_THRESHOLDS = (0.4, 0.5, 0.6)
CENTRE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def methods_for(maps: np.ndarray, scale: float, foreground_thresholds: Sequence[float] = FOREGROUND_THRESHOLDS,
                centre_thresholds: Sequence[float] = CENTRE_THRESHOLDS) -> dict[str, np.ndarray]:
    """Instances from ``maps`` by every compared method (areas scaled as in the segmenter)."""
    fg, centre = maps[..., 0], maps[..., 1]
    min_marker = max(1, int(round(4 / scale ** 2)))
    results = {}
    for f_thr in foreground_thresholds:
        for c_thr in centre_thresholds:
            results[f"centre@{f_thr}/{c_thr}"] = maps_to_instances(
                fg, centre, foreground_threshold=f_thr, centre_threshold=c_thr,
                min_marker_area_px=min_marker, min_area_px=min_marker)
    results["components"] = ndimage.label(fg > 0.5)[0]
    results["distance"] = distance_watershed(fg, h_px=max(1.0, 2.0 / scale))
    return results


def thresholds(text: str) -> tuple[float, ...]:
    """Parse a comma-separated list of thresholds, each in (0, 1)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not all(0.0 < value < 1.0 for value in values):
        raise argparse.ArgumentTypeError(f"thresholds must lie between 0 and 1, got {text!r}")
    return values


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Compare post-processing methods on U-Net outputs.")
    parser.add_argument("--images", type=Path)
    parser.add_argument("--masks", type=Path)
    parser.add_argument("--names", type=Path)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--synthetic", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--foreground-thresholds", type=thresholds, default=FOREGROUND_THRESHOLDS,
                        metavar="F,F,...", help="foreground thresholds of the centre@F/C grid")
    parser.add_argument("--centre-thresholds", type=thresholds, default=CENTRE_THRESHOLDS,
                        metavar="C,C,...", help="centre thresholds of the centre@F/C grid")
    args = parser.parse_args(argv)
    if args.synthetic:
        cases = synthetic_cases(args.synthetic, args.seed)
    else:
        names = [n.strip() for n in args.names.read_text().splitlines() if n.strip()] if args.names else None
        cases = folder_cases(args.images, args.masks, names, args.limit)
    scores: dict[str, list[dict]] = {}
    for name, gray, labels in cases:
        true_diameter_px = median_diameter_px(labels)
        if true_diameter_px is None:
            continue
        segmenter = UNetSegmenter(args.model_dir, diameter_px=true_diameter_px)
        net_maps, scale = segmenter.network_maps(gray)
        maps = segmenter.resize_maps(net_maps, gray.shape)
        results = methods_for(maps, scale, args.foreground_thresholds, args.centre_thresholds)
        for upsampling in (1.0, 2.0, math.inf):
            for c_thr in (0.4, 0.5, 0.6):
                key = f"upsampling={'full' if upsampling == math.inf else upsampling}/{c_thr}"
                results[key] = segmenter.instances(
                    net_maps, scale, gray.shape,
                    thresholds={"postprocess_upsampling": upsampling, "centre": c_thr})
        print(f"{name}: scale {scale:.2f}", flush=True)
        for method, predicted in results.items():
            scores.setdefault(method, []).append(score_image(labels, predicted))
    for method, rows in scores.items():
        print(f"{method:<22} n={len(rows):<4}" + "  ".join(f"{m}={np.mean([r[m] for r in rows]):.3f}"
                                                       for m in METRICS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
