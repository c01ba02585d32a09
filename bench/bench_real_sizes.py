"""Speed and accuracy over every particle size: ``python bench/bench_real_sizes.py``.

A fixed set of eight generated 1024x768 images (issue 19), SEM and TEM for each size case:

- tiny: 800 round particles, diameters log-uniform 4-8 px, isolated;
- medium: mixed shapes 16-40 px, touching;
- large: round 80-200 px, touching;
- polydisperse: round 8-150 px (a 19x range), touching, 150 requested.

All have a Gaussian point-spread function of 1.0 px and no data bar, scale bar or panel letter, so
the whole frame is scored and the upload path measures in pixels (no calibration is needed for
timing). Per image it prints

- ``segment``: :meth:`model.segmenter.UNetSegmenter.segment`, median of ``--runs`` after one warm-up;
- ``upload``: upload -> histogram, the path ``bench/bench_pipeline.py`` times (PNG data URL ->
  decode -> segment -> measure -> stores -> histogram and statistics), median of ``--runs``;
- ``obj_f1`` and ``ecd_err`` (error of the mean ECD) of :func:`model.metrics.score_image`
  (IoU >= 0.5, one to one; particles under 10 px dropped on both sides);
- recall in each third of the true particles ranked by ECD (:func:`model.metrics.recall_by_size`);
- the median of ``(ECD_pred - ECD_true) / ECD_true`` over matched particles, signed and absolute
  (:func:`model.metrics.matched_ecd_errors`).

Then per case (recall pooled over the case's images, ECD errors pooled) and over the whole set,
and the network's cost: FLOPs per megapixel of network input counted from its convolution layers
(``2 k^2 c_in c_out`` per output pixel, at each layer's resolution), one pass over a 1024x768
image at scale 1, and that rate as a fraction of numpy's float32 matrix-multiply rate measured here.

Goals on 2 cores (issue 19): upload <= 1.0 s median and <= 2.0 s max; polydisperse obj_f1 >= 0.90
with recall of the smallest third >= 0.85; tiny median |ECD error| <= 5 %. TensorFlow uses 2 threads.

    .venv/bin/python bench/bench_real_sizes.py [--runs 3] [--quick] [--model-dir DIR] [--csv FILE]
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from model.config import BACKENDS, MODEL_DIR_ENV, default_model_dir  # noqa: E402
from model.metrics import matched_ecd_errors, recall_by_size, score_image  # noqa: E402
from model.synthetic import SIZE_CASE_BENCH_SEEDS, SIZE_CASES, size_case_samples  # noqa: E402

#: Seed of the SEM image of case ``k`` (in the order of SIZE_CASES); the TEM image uses the next one.
FIRST_SEED = SIZE_CASE_BENCH_SEEDS.start
HEIGHT_PX, WIDTH_PX = 768, 1024
N_THIRDS = 3


def generate_set() -> list[tuple[str, str, object]]:
    """The fixed benchmark images: ``(case, modality, SyntheticSample)``."""
    return list(size_case_samples(FIRST_SEED, HEIGHT_PX, WIDTH_PX))


def median_seconds(fn, runs: int, *args) -> float:
    """Median wall time of ``runs`` calls of ``fn(*args)``."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def png_data_url(image: np.ndarray) -> str:
    """The image as the browser uploads it: a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def derived_model_dir(base: Path, backend: str) -> Path:
    """A temporary model folder: ``base``'s files, with the config's backend replaced.

    The app's upload path builds its own segmenter from the model folder, so options reach it only
    through a config.
    """
    folder = Path(tempfile.mkdtemp(prefix="saemi-bench-model-"))
    config = json.loads((base / "config.json").read_text())
    config["inference_backend"] = backend
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    for path in base.iterdir():
        if path.name != "config.json" and path.is_file():
            (folder / path.name).symlink_to(path.resolve())
    return folder


def upload_path():
    """``upload(contents)``: upload -> histogram as ``bench/bench_pipeline.py`` times it (U-Net)."""
    from app.analysis.view import ViewOptions
    from app.session.display import histogram_outputs
    from app.session.results import compute_results
    from app.session.start import PageSettings, start_from_upload

    settings = PageSettings(segmenter="unet", split_touching=True, min_area_px=10)
    view = ViewOptions()

    def upload(contents: str) -> None:
        stores = start_from_upload(contents, "bench.png", settings)
        results = compute_results(stores.analysis, stores.gray, stores.edits, None)
        histogram_outputs(results, stores.analysis, view)

    return upload


def conv_flops_per_px(model) -> float:
    """FLOPs per input pixel of the network's convolutions: ``2 k_h k_w c_in c_out`` per output pixel.

    Each layer's resolution relative to the input is read from its output on a 64x64 probe.
    Batch normalisation, activations, pooling and up-sampling are not counted.
    """
    import keras

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    probe = keras.Model(model.inputs, [layer.output for layer in convs])
    side = 64
    outputs = probe.predict(np.zeros((1, side, side, model.input_shape[-1]), np.float32), verbose=0)
    if not isinstance(outputs, list):
        outputs = [outputs]
    flops = 0.0
    for layer, output in zip(convs, outputs):
        k_h, k_w, c_in, c_out = layer.kernel.shape
        flops += 2.0 * k_h * k_w * c_in * c_out * output.shape[1] * output.shape[2] / side**2
    return flops


def matmul_gflops(runs: int, n: int = 2048) -> float:
    """numpy float32 matrix-multiply rate in GFLOP/s (``2 n^3`` per product), median of ``runs``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    return 2.0 * n**3 / median_seconds(lambda: a @ b, runs) / 1e9


def score(true_labels: np.ndarray, pred_labels: np.ndarray) -> dict:
    """obj_f1, mean-ECD error, counts, recall per size third and matched ECD errors of one image."""
    scores = score_image(true_labels, pred_labels)
    thirds = recall_by_size(true_labels, pred_labels, n_groups=N_THIRDS)
    errors = matched_ecd_errors(true_labels, pred_labels)
    return {**scores, "thirds": thirds, "errors": errors}


def _median(values) -> float:
    values = list(values)
    return float(np.median(values)) if len(values) else float("nan")


def _pooled_recall(rows: list[dict], k: int) -> float:
    n_true = sum(row["thirds"][k]["n_true"] for row in rows)
    hits = sum(row["thirds"][k]["recall"] * row["thirds"][k]["n_true"] for row in rows if row["thirds"][k]["n_true"])
    return hits / n_true if n_true else float("nan")


def _recall_text(values: list[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per image (after one warm-up)")
    parser.add_argument("--quick", action="store_true", help="one timed run per image and a shorter peak measurement")
    parser.add_argument("--model-dir", type=Path, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--csv", type=Path, default=None, help="write one row per image to this file")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="run the network this way (default: the model config's inference_backend)")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else max(1, args.runs)
    if args.backend:
        args.model_dir = derived_model_dir(args.model_dir or default_model_dir(), args.backend)
    if args.model_dir is not None:
        os.environ[MODEL_DIR_ENV] = str(args.model_dir.resolve())  # the upload path reads it

    from model.inference import predict_tiled
    from model.preprocess import normalize_percentile
    from model.segmenter import UNetSegmenter

    segmenter = UNetSegmenter(args.model_dir)
    shipped = segmenter.warm_up()
    upload = upload_path()
    images = generate_set()
    upload(png_data_url(images[0][2].image))  # first request: the app's segmenter and imports

    rows = []
    header = (f"{'case':<13}{'mod':<4}{'n_true':>7}{'n_pred':>7}{'segment s':>10}{'upload s':>9}{'obj_f1':>7}"
              f"{'ecd_err':>8}  {'recall by third (small/mid/large)':<34}{'dECD med':>9}{'|dECD| med':>11}")
    print(f"U-Net {segmenter.version} ({segmenter.model_dir}); {len(images)} images {WIDTH_PX}x{HEIGHT_PX}; "
          f"{runs} timed run(s) each")
    print(header)
    for case, modality, sample in images:
        gray = sample.image.astype(np.float32) / 255.0
        labels = segmenter.segment(gray)  # warm-up, and the labels scored
        segment_s = median_seconds(segmenter.segment, runs, gray)
        contents = png_data_url(sample.image)
        upload_s = median_seconds(upload, runs, contents)
        row = {"case": case, "modality": modality, "seed": sample.params["seed"],
               "segment_s": segment_s, "upload_s": upload_s, **score(sample.labels, labels)}
        rows.append(row)
        errors = row["errors"]
        print(f"{case:<13}{modality:<4}{row['n_true']:>7}{row['n_pred']:>7}{segment_s:>10.3f}{upload_s:>9.3f}"
              f"{row['obj_f1']:>7.3f}{row['ecd_err']:>8.3f}  "
              f"{_recall_text([g['recall'] for g in row['thirds']]):<34}"
              f"{_median(errors):>+9.3f}{_median(np.abs(errors)):>11.3f}", flush=True)

    print("\nper case (segment and upload: median / max of its images; recall and ECD errors pooled)")
    print(f"{'case':<13}{'segment s':>14}{'upload s':>14}{'obj_f1':>8}  {'recall by third':<20}"
          f"{'dECD med':>9}{'|dECD| med':>11}")
    for case in SIZE_CASES:
        mine = [row for row in rows if row["case"] == case]
        seg = [row["segment_s"] for row in mine]
        upl = [row["upload_s"] for row in mine]
        errors = np.concatenate([row["errors"] for row in mine])
        print(f"{case:<13}{_median(seg):>7.3f} / {max(seg):.3f}{_median(upl):>7.3f} / {max(upl):.3f}"
              f"{_median(row['obj_f1'] for row in mine):>8.3f}  "
              f"{_recall_text([_pooled_recall(mine, k) for k in range(N_THIRDS)]):<20}"
              f"{_median(errors):>+9.3f}{_median(np.abs(errors)):>11.3f}")
    seg = [row["segment_s"] for row in rows]
    upl = [row["upload_s"] for row in rows]
    print(f"all images: segment median {_median(seg):.3f} s, max {max(seg):.3f} s; "
          f"upload -> histogram median {_median(upl):.3f} s, max {max(upl):.3f} s (goal <= 1.0 s, <= 2.0 s)")

    cfg = shipped.config
    flops_per_px = conv_flops_per_px(shipped.model)
    image = normalize_percentile(images[0][2].image.astype(np.float32) / 255.0, *cfg.normalisation.percentiles)

    def network() -> None:
        predict_tiled(segmenter.network(shipped), image, tile=cfg.tile_px, overlap=cfg.overlap_px,
                      batch_size=cfg.batch_size)

    network()
    network_s = median_seconds(network, runs)
    achieved_gflops = flops_per_px * image.size / network_s / 1e9
    peak_gflops = matmul_gflops(3 if args.quick else 7)
    print(f"\nnetwork: {flops_per_px * 1e6 / 1e9:.2f} GFLOP per megapixel of input (convolutions); one pass over "
          f"{WIDTH_PX}x{HEIGHT_PX} at scale 1: median {network_s:.3f} s = {achieved_gflops:.1f} GFLOP/s")
    print(f"numpy float32 matmul (2048^2): {peak_gflops:.1f} GFLOP/s; the network reaches "
          f"{100 * achieved_gflops / peak_gflops:.0f} % of it")

    if args.csv is not None:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["case", "modality", "seed", "n_true", "n_pred", "segment_s", "upload_s", "obj_f1",
                             "ecd_err"] + [f"recall_third_{k + 1}" for k in range(N_THIRDS)]
                            + ["ecd_error_median", "abs_ecd_error_median", "n_matched"])
            for row in rows:
                writer.writerow([row["case"], row["modality"], row["seed"], row["n_true"], row["n_pred"],
                                 f"{row['segment_s']:.4f}", f"{row['upload_s']:.4f}", f"{row['obj_f1']:.4f}",
                                 f"{row['ecd_err']:.4f}"]
                                + [f"{group['recall']:.4f}" for group in row["thirds"]]
                                + [f"{_median(row['errors']):.4f}", f"{_median(np.abs(row['errors'])):.4f}",
                                   row["errors"].size])
        print(f"per-image rows written to {args.csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
