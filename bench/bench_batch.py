"""Images per second of a batch on a local Dask cluster with 1 and with 2 worker processes.

    python bench/bench_batch.py [--images 40] [--segmenter unet] [--runs 3]

The images are generated 1024 x 768 SEM/TEM images (seeds 9000...). Each run analyses the whole batch on a
cluster whose workers have already loaded the model (the worker plugin does that at start-up, and the
cluster's start is not timed). Prints the median rate of the runs, the speed-up of two workers over one,
each worker's resident memory after the batch, and checks that no image was analysed twice.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from app.analysis.pipeline import AnalysisParams  # noqa: E402
from app.batch import ImageJob, LoadSegmenter, batch_client, run_batch  # noqa: E402
from app.engine import default_segmenter_name  # noqa: E402
from model.synthetic import generate_sample  # noqa: E402


def _jobs(n: int) -> list[ImageJob]:
    jobs = []
    for k in range(n):
        sample = generate_sample(9000 + k, 768, 1024, modality=("sem", "tem")[k % 2])
        buffer = io.BytesIO()
        Image.fromarray(sample.image).save(buffer, format="PNG")
        jobs.append(ImageJob(k, f"bench_{k}.png", buffer.getvalue()))
    return jobs


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--segmenter", default=default_segmenter_name())
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    jobs = _jobs(args.images)
    params = AnalysisParams(segmenter=args.segmenter)
    rates = {}
    for workers in (1, 2):
        with batch_client(workers=workers) as client:
            client.register_plugin(LoadSegmenter(params))  # loaded before the clock starts
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                outcomes = list(run_batch(jobs, params, client=client))
                times.append(time.perf_counter() - start)
                indices = sorted(o.index for o in outcomes)
                assert indices == list(range(len(jobs))), "an image was lost or analysed twice"
                assert not [o for o in outcomes if o.error], [o.error for o in outcomes if o.error]
            memory = client.run(_rss_mib)
        rates[workers] = len(jobs) / statistics.median(times)
        print(f"{workers} worker(s): {rates[workers]:.3f} images/s (median of {args.runs} runs of {len(jobs)} "
              f"images); resident memory per worker: {', '.join(f'{m:.0f} MiB' for m in memory.values())}")
    print(f"segmenter {args.segmenter}; speed-up with 2 workers: {rates[2] / rates[1]:.3f}x (goal >= 1.8x); "
          "no image analysed twice")


if __name__ == "__main__":
    main()
