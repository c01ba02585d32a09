"""Peak memory and time of the U-Net segmenter on a very large image: ``python bench/bench_memory.py``.

The image (default 8192 x 8192) is a generated 1024 x 1024 SEM sample repeated in a grid, so its
particles are realistic and their size is known. The whole segmenter runs once (the octave passes
with their tiled inference, the fusion, the small outlines redrawn), with tqdm showing the progress.
Printed: wall time, the peak resident memory of the process (``ru_maxrss``) before and after, and the
memory the image itself takes as float32, so the overhead of inference can be read off. Tiles are at most
``tile_px`` (model/config.json) on a side, so the network's own memory does not grow with the image,
and the steps around it work a band of rows at a time. Goal: at most 2 GB (2048 MiB) after.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from model.segmenter import UNetSegmenter  # noqa: E402
from model.synthetic import generate_sample  # noqa: E402


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side-px", type=int, default=8192, help="image side (a multiple of 1024)")
    parser.add_argument("--median-diameter-px", type=float, default=30.0)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--views", type=int, default=None,
                        help="views the U-Net averages in each pass (default: the model's)")
    args = parser.parse_args(argv)

    block = generate_sample(5, height=1024, width=1024, modality="sem", data_bar=False,
                            median_diameter_px=args.median_diameter_px)
    repeats = args.side_px // 1024
    gray = np.tile(block.image.astype(np.float32) / 255.0, (repeats, repeats))
    segmenter = UNetSegmenter(args.model_dir, views=args.views)
    segmenter.segment(np.ascontiguousarray(gray[:512, :512]))  # load and trace outside the measurement
    before_mib = peak_rss_mib()
    with tqdm(total=100, unit="%", desc=f"{gray.shape[1]}x{gray.shape[0]}") as bar:
        def progress(fraction: float, message: str) -> None:
            bar.set_postfix_str(message)
            bar.update(round(100 * fraction) - bar.n)

        started = time.perf_counter()
        labels = segmenter.segment(gray, progress=progress)
        seconds = time.perf_counter() - started
    print(f"image {gray.shape[1]}x{gray.shape[0]} ({gray.size / 1e6:.0f} Mpx, float32 {gray.nbytes / 2**20:.0f} MiB); "
          f"{labels.max()} particles ({block.labels.max()} per 1024 px block, x{repeats * repeats})")
    print(f"segment: {seconds:.1f} s; peak RSS {before_mib:.0f} MiB before, {peak_rss_mib():.0f} MiB after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
