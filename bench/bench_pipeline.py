"""Server-side latency of the two interactive paths, on a generated 1024 x 768 SEM image.

1. Upload: data-URL bytes -> decode -> calibration/data bar -> segmentation -> measurement -> store
   payloads -> histogram figure + statistics (what the upload callbacks do, without the network).
2. Stroke: one canvas save -> edit history -> replay on the labels -> re-measure -> histogram and
   statistics (the results callback). The overlay and the canvas image are redrawn by their own
   callbacks afterwards; their time is printed separately.

Goals on 2 cores: upload at most 1.0 s, stroke at most 150 ms. Prints medians over repeated runs.

    .venv/bin/python bench/bench_pipeline.py [--segmenter unet|classical] [--runs 7]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from app.analysis.strokes import TOOL_COLOURS  # noqa: E402
from app.analysis.view import ViewOptions  # noqa: E402
from app.engine import default_segmenter_name, get_segmenter  # noqa: E402
from app.session.display import canvas_image, histogram_outputs, overlay  # noqa: E402
from app.session.edits import apply_canvas  # noqa: E402
from app.session.results import compute_results  # noqa: E402
from app.session.start import PageSettings, start_from_upload  # noqa: E402
from model.synthetic import generate_sample  # noqa: E402


def _timed(func, runs: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(runs):
        start = time.perf_counter()
        value = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segmenter", default=default_segmenter_name())
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    sample = generate_sample(11, 768, 1024, modality="sem", arrangement="touching", data_bar=True)
    buffer = io.BytesIO()
    Image.fromarray(sample.image).save(buffer, format="PNG")
    contents = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    settings = PageSettings(segmenter=args.segmenter, split_touching=True, min_area_px=10)
    view = ViewOptions()

    segmenter = get_segmenter(args.segmenter)
    start = time.perf_counter()
    if hasattr(segmenter, "warm_up"):
        segmenter.warm_up()
    start_from_upload(contents, "bench.png", settings)  # loads the model once per process
    first = time.perf_counter() - start

    def upload():
        stores = start_from_upload(contents, "bench.png", settings)
        results = compute_results(stores.analysis, stores.gray, stores.edits, None)
        histogram_outputs(results, stores.analysis, view)
        return stores

    upload_s, stores = _timed(upload, args.runs)
    analysis, gray = stores.analysis, stores.gray
    n_particles = len(analysis.particles())

    canvas_width = 800
    scale = canvas_width / 1024
    stroke = {"objects": [{"type": "image", "scaleX": scale},
                          {"type": "path", "stroke": TOOL_COLOURS["draw"], "strokeWidth": 6,
                           "path": [["M", 40 * scale, 40 * scale], ["L", 90 * scale, 60 * scale]]}]}
    json_data = json.dumps(stroke)

    def stroke_path():
        edits = apply_canvas(stores.edits, analysis, json_data, canvas_width)
        results = compute_results(analysis, gray, edits, None)
        histogram_outputs(results, analysis, view)
        return results

    def redraw_images(results):
        overlay(results, gray, 0.5, "outline", analysis)
        canvas_image(results, "bw")

    stroke_s, results = _timed(stroke_path, args.runs)
    redraw_s, _ = _timed(lambda: redraw_images(results), args.runs)
    print(f"segmenter: {args.segmenter}; image 1024 x 768; {n_particles} particles; runs: {args.runs}")
    print(f"first request (includes model load): {first:.3f} s")
    print(f"upload -> histogram, median: {upload_s:.3f} s   (goal <= 1.0 s)")
    print(f"stroke -> results,   median: {stroke_s * 1000:.0f} ms  (goal <= 150 ms; labels, table, "
          "histogram, statistics)")
    print(f"then overlay + canvas image redraw, median: {redraw_s * 1000:.0f} ms (separate callbacks)")


if __name__ == "__main__":
    main()
