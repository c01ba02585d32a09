"""Time the U-Net segmenter on a 1024x768 image: ``python bench/bench_inference.py``.

Prints the median over ``--runs`` runs (after one warm-up) of
- ``segment``: :meth:`model.segmenter.UNetSegmenter.segment`, everything included (normalisation,
  the octave passes with their tiled inference and watersheds, the fusion, the small outlines redrawn);
- ``network``: the network alone, one tiled pass over the image at full resolution (the largest of the
  octave passes, about 3/4 of their cost).
Goal on 2 CPU cores (issue 3): model inference at most 0.6 s, so that upload to histogram stays
within 1.0 s (``bench/bench_pipeline.py`` times that path). Both figures are compared with it.
TensorFlow is limited to 2 threads.
"""

from __future__ import annotations

import argparse
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

from model.config import BACKENDS  # noqa: E402
from model.inference import predict_tiled  # noqa: E402
from model.preprocess import normalize_percentile, resize_float, scaled_shape  # noqa: E402
from model.segmenter import UNetSegmenter  # noqa: E402
from model.synthetic import generate_sample  # noqa: E402


def median_seconds(fn, runs: int) -> float:
    fn()  # warm-up: loading, tracing
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--median-diameter-px", type=float, default=30.0,
                        help="median particle diameter of the generated image")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--views", type=int, default=2,
                        help="also time segment with this many averaged views (the opt-in; 1 skips it)")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="how the network runs (default: the model config's inference_backend)")
    args = parser.parse_args(argv)

    sample = generate_sample(args.seed, height=768, width=1024, median_diameter_px=args.median_diameter_px)
    gray = sample.image.astype(np.float32) / 255.0
    segmenter = UNetSegmenter(args.model_dir, backend=args.backend)
    shipped = segmenter.load()
    network = segmenter.network(shipped)
    cfg = shipped.config
    _, scale = segmenter.predict_maps(gray)
    labels = segmenter.segment(gray)
    normalised = normalize_percentile(gray, *cfg.normalisation.percentiles)
    scaled = resize_float(normalised, scaled_shape(normalised.shape, scale))

    t_segment = median_seconds(lambda: segmenter.segment(gray), args.runs)
    t_network = median_seconds(lambda: predict_tiled(network, scaled, tile=cfg.tile_px,
                                                     overlap=cfg.overlap_px, batch_size=cfg.batch_size),
                               args.runs)
    print(f"image 1024x768, {labels.max()} particles found ({sample.labels.max()} drawn)")
    print(f"segment (all included): median {t_segment:.3f} s over {args.runs} runs (goal <= 0.6 s)")
    print(f"network alone, one pass at full resolution ({scaled.shape[1]}x{scaled.shape[0]} px): "
          f"median {t_network:.3f} s over {args.runs} runs")
    if args.views > 1:
        with_views = UNetSegmenter(args.model_dir, views=args.views, backend=args.backend)
        with_views.segment(gray)
        t_views = median_seconds(lambda: with_views.segment(gray), args.runs)
        print(f"segment with {args.views} views (opt-in, --views): median {t_views:.3f} s over {args.runs} runs")
    print(f"model: {segmenter.model_dir}, version {segmenter.version}, "
          f"backend {segmenter.backend or cfg.inference_backend}, "
          f"{shipped.model.count_params()} parameters, filters {cfg.architecture.filters}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
