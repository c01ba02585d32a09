"""Size bias of the U-Net by particle size, polarity and blur: ``python bench/bench_size_bias.py``.

The model card's boundary convention puts a particle's edge at the half-maximum between the
particle and its local background; the generator's labels, the shapes before blur, follow it. For
each particle ECD (4, 6, 8, 12, 16, 32, 64 px), polarity (SEM: bright particles, TEM: dark ones)
and blur (Gaussian point-spread sigma 0.7 and 1.5 px), the bench generates images of isolated
round particles of that one size (``sigma_log`` 0, fixed seeds, several images per cell so the
appearance draws vary, at least ``--min-particles`` particles that do not touch the frame),
segments them with the shipped model (:class:`model.segmenter.UNetSegmenter`) at every
octave (``auto``) and with the true diameter given (``given``), matches predictions to the
truth (IoU >= 0.5, :func:`model.metrics.matched_ecd_px`) and prints per cell the bias, the median
of (predicted - true) ECD in px, and the recall. Goal (issue 19): |bias| <= 0.3 px in every cell.

``--refine`` also prints the tables after :func:`model.postprocess.refine_outlines` (the outline
redrawn at the half-maximum against the image) and times that step on a 1024x768 image with some
hundreds of particles. TensorFlow is limited to 2 threads.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from model.metrics import matched_ecd_px, size_bias_px  # noqa: E402
from model.postprocess import refine_outlines  # noqa: E402
from model.segmenter import UNetSegmenter  # noqa: E402
from model.synthetic import generate_sample  # noqa: E402

SIZES_PX = (4, 6, 8, 12, 16, 32, 64)
MODALITIES = ("sem", "tem")
BLURS_PX = (0.7, 1.5)
MODES = ("auto", "given")
COVERAGE = 0.12
"""Fraction of the image the requested particles would cover."""


def cell_images(ecd_px: int, modality: str, blur_px: float, min_particles: int, max_images: int):
    """Generated samples of one cell, added until ``min_particles`` particles clear of the frame."""
    side_px = int(np.clip(12 * ecd_px, 128, 768))
    n_particles = max(6, round(COVERAGE * side_px**2 / (math.pi / 4 * ecd_px**2)))
    samples, counted = [], 0
    for k in range(max_images):
        seed = 190_000 + 1000 * ecd_px + 100 * MODALITIES.index(modality) + 10 * BLURS_PX.index(blur_px) + k
        sample = generate_sample(seed, side_px, side_px, modality=modality, shape="round", arrangement="isolated",
                                 n_particles=n_particles, median_diameter_px=float(ecd_px), sigma_log=0.0,
                                 data_bar=False, scale_bar=False, letters=False, blur_sigma_px=blur_px)
        samples.append(sample)
        counted += int((~sample.touches_border).sum())
        if counted >= min_particles and k >= 2:  # at least three images: three appearance draws
            break
    return samples


def refine_timing_ms(runs: int) -> tuple[float, int]:
    """Median time of :func:`refine_outlines` on a 1024x768 image of 16 px particles, and their number."""
    sample = generate_sample(7, 768, 1024, modality="sem", shape="round", arrangement="isolated", n_particles=400,
                             median_diameter_px=16.0, sigma_log=0.2, data_bar=False, scale_bar=False, letters=False)
    gray = sample.image.astype(np.float32) / 255.0
    labels = sample.labels.astype(np.int32)
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        refine_outlines(gray, labels)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[1:]), int(labels.max())


def print_table(rows: list[dict], refined: bool) -> None:
    title = "after refine_outlines" if refined else "network outlines"
    print(f"\nbias = median(ECD_pred - ECD_true) px (recall), {title}")
    print(f"{'polarity':8} {'sigma':>5} {'mode':6} " + " ".join(f"{f'{s} px':>13}" for s in SIZES_PX))
    for modality in MODALITIES:
        for blur_px in BLURS_PX:
            for mode in MODES:
                cells = {r["ecd_px"]: r for r in rows if (r["modality"], r["blur_sigma_px"], r["mode"], r["refined"])
                         == (modality, blur_px, mode, refined)}
                if not cells:
                    continue
                text = [f"{cells[s]['bias_px']:+6.2f} ({cells[s]['recall']:.2f})" if s in cells else f"{'-':>13}"
                        for s in SIZES_PX]
                print(f"{modality:8} {blur_px:5.1f} {mode:6} " + " ".join(f"{t:>13}" for t in text))
    worst = max((abs(r["bias_px"]) for r in rows if r["refined"] == refined and not math.isnan(r["bias_px"])),
                default=float("nan"))
    print(f"largest |bias| {worst:.2f} px (goal <= 0.3 px)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 4, 16 and 64 px, 20 particles per cell")
    parser.add_argument("--min-particles", type=int, default=None, help="particles per cell (default 40; quick 20)")
    parser.add_argument("--refine", action="store_true", help="also measure after model.postprocess.refine_outlines")
    parser.add_argument("--csv", type=Path, default=None, help="write one row per cell to this file")
    parser.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes_px = (4, 16, 64) if args.quick else SIZES_PX
    min_particles = args.min_particles or (20 if args.quick else 40)

    segmenters = {"auto": UNetSegmenter(args.model_dir)}
    rows = []
    started = time.perf_counter()
    for ecd_px in sizes_px:
        segmenters["given"] = UNetSegmenter(args.model_dir, diameter_px=float(ecd_px))
        for modality in MODALITIES:
            for blur_px in BLURS_PX:
                samples = cell_images(ecd_px, modality, blur_px, min_particles, max_images=40)
                pairs = {(mode, refined): ([], []) for mode in MODES for refined in (False, True)}
                for sample in samples:
                    gray = sample.image.astype(np.float32) / 255.0
                    true_ids = np.flatnonzero(~sample.touches_border) + 1
                    for mode in MODES:
                        predicted = segmenters[mode].segment(gray)
                        versions = [(False, predicted)]
                        if args.refine:
                            versions.append((True, refine_outlines(gray, predicted)))
                        for refined, labels in versions:
                            true_ecd_px, pred_ecd_px = matched_ecd_px(sample.labels, labels, true_ids)
                            pairs[mode, refined][0].append(true_ecd_px)
                            pairs[mode, refined][1].append(pred_ecd_px)
                for (mode, refined), (true_parts, pred_parts) in pairs.items():
                    if not true_parts:
                        continue
                    true_ecd_px = np.concatenate(true_parts)
                    result = size_bias_px(true_ecd_px, np.concatenate(pred_parts))
                    rows.append({"ecd_px": ecd_px, "modality": modality, "blur_sigma_px": blur_px, "mode": mode,
                                 "refined": refined, "n_images": len(samples),
                                 "true_ecd_median_px": float(np.median(true_ecd_px)), **result})
                print(f"  {ecd_px} px {modality} sigma {blur_px}: {len(samples)} images, "
                      f"{rows[-1]['n_true']} particles ({time.perf_counter() - started:.0f} s)", flush=True)

    print_table(rows, refined=False)
    if args.refine:
        print_table(rows, refined=True)
        refine_ms, n_particles = refine_timing_ms(runs=3)
        print(f"\nrefine_outlines on 1024x768 with {n_particles} particles: median {refine_ms:.0f} ms over 3 runs")
    print(f"model: {segmenters['auto'].model_dir}, version {segmenters['auto'].version}; "
          f"total {time.perf_counter() - started:.0f} s")
    if args.csv is not None:
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {len(rows)} rows to {args.csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
