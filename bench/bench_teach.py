"""Fine-tuning on a style the shipped model handles badly (issue #23): ``python bench/bench_teach.py``.

Writes the halo style's two training images and ten evaluation images (:func:`model.synthetic.halo_sample`:
TEM particles with a dark ring just outside their edge) into a temporary folder, scores the base model on
the ten and on the EMPS validation list, tunes a copy on the two for ``--minutes`` exactly as
``python -m app finetune`` does (:func:`model.finetune.finetune`, the candidate scorer refitted in the last
half), scores the tuned model the same way, and prints both with the issue's goals: style obj_f1 up by at
least 0.15, the style's median ECD error (the median over its images of the relative error of the mean ECD)
under 0.05, and no more than 0.02 obj_f1 lost on EMPS validation. TensorFlow is limited to 2 threads.
"""

from __future__ import annotations

import argparse
import os
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

from model.config import default_model_dir  # noqa: E402
from model.data import EMPS_FOLDER, data_root, read_split  # noqa: E402
from model.evaluate import folder_cases  # noqa: E402
from model.finetune import finetune  # noqa: E402
from model.metrics import score_image  # noqa: E402
from model.segmenter import UNetSegmenter  # noqa: E402
from model.synthetic import HALO_EVAL_SEEDS, HALO_TRAIN_SEEDS, halo_sample  # noqa: E402


def write_style(folder: Path, seeds) -> Path:
    """The halo images of ``seeds`` as ``images/`` and ``masks/`` (16-bit instance labels) under ``folder``."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        image, labels = halo_sample(seed)
        Image.fromarray(image).save(folder / "images" / f"halo{seed}.png")
        Image.fromarray(labels.astype(np.uint16)).save(folder / "masks" / f"halo{seed}.png")
    return folder


def scores(model_dir: Path, cases) -> dict[str, float]:
    """Mean obj_f1, median and mean ecd_err of the U-Net of ``model_dir`` on ``cases``."""
    segmenter = UNetSegmenter(model_dir)
    rows = [score_image(labels, segmenter.segment(gray)) for _, gray, labels in cases]
    return {"obj_f1": float(np.mean([r["obj_f1"] for r in rows])),
            "ecd_err_median": float(np.median([r["ecd_err"] for r in rows])),
            "ecd_err_mean": float(np.mean([r["ecd_err"] for r in rows]))}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="the tune's time budget (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-dir", type=Path, default=None, help="the base model (default: the shipped one)")
    parser.add_argument("--no-emps", action="store_true", help="skip the EMPS validation list")
    args = parser.parse_args(argv)
    base_dir = args.model_dir or default_model_dir()
    with tempfile.TemporaryDirectory(prefix="saemi-bench-teach-") as tmp:
        tmp = Path(tmp)
        train = write_style(tmp / "train", HALO_TRAIN_SEEDS)
        evaluation = write_style(tmp / "eval", HALO_EVAL_SEEDS)
        style = list(folder_cases(evaluation / "images", evaluation / "masks"))
        emps = None
        if not args.no_emps:
            root = data_root()
            emps = list(folder_cases(root / EMPS_FOLDER / "images", root / EMPS_FOLDER / "masks", read_split("val")))
        started = time.perf_counter()
        result = finetune(base_dir, train / "images", train / "masks", tmp / "tuned", minutes=args.minutes,
                          seed=args.seed)
        tune_s = time.perf_counter() - started
        print(f"tune: {result.steps} steps in {tune_s:.0f} s (budget {args.minutes:g} min), version {result.version}")
        rows = {"base": base_dir, "tuned": tmp / "tuned"}
        found = {name: (scores(folder, style), scores(folder, emps) if emps else None) for name, folder in rows.items()}
    for name, (on_style, on_emps) in found.items():
        line = (f"{name:>5}: halo style ({len(HALO_EVAL_SEEDS)} images) obj_f1 {on_style['obj_f1']:.3f}, ECD error "
                f"median {on_style['ecd_err_median']:.3f} mean {on_style['ecd_err_mean']:.3f}")
        if on_emps:
            line += f" | EMPS validation obj_f1 {on_emps['obj_f1']:.3f}, ecd_err {on_emps['ecd_err_mean']:.3f}"
        print(line)
    (base_style, base_emps), (tuned_style, tuned_emps) = found["base"], found["tuned"]
    print(f"goals: style obj_f1 +{tuned_style['obj_f1'] - base_style['obj_f1']:.3f} (>= +0.15); median ECD error "
          f"{tuned_style['ecd_err_median']:.3f} (< 0.05)"
          + (f"; EMPS obj_f1 {tuned_emps['obj_f1'] - base_emps['obj_f1']:+.3f} (>= -0.02)" if base_emps else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
