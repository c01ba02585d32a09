"""Calibration from burned-in scale bars on real figures: the hand-measured table against SAEMI.

``bench/scalebar_truth.csv`` lists images of the EMPS training set (``emps_train``) whose scale bar
was measured by hand: the label as printed, its length in nm, the bar's length in pixels (counted on
a thresholded row of the image) and the resulting nm/px. The images themselves are not part of the
project; they are read from ``../shared/datasets/emps_train/images`` beside the repository, and the
benchmark says so and stops when they are absent.

Each image goes through the analysis' own calibration steps (data bar, scale bar and its OCR, the
data bar's field width; :func:`app.analysis.pipeline.decide_calibration`) and is counted as
calibrated within 3% of the truth, uncalibrated, off by more than 3% (with or without a warning),
or aborted. Goals: at least 85% within 3%, none more than 10% off without a warning, none aborted.

    .venv/bin/python bench/bench_scalebar.py [--images DIR] [--verbose]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.analysis.imageio import decode_image  # noqa: E402
from app.analysis.pipeline import AnalysisParams, decide_calibration, decide_data_bar  # noqa: E402
from app.analysis.scalebar import tesseract_available  # noqa: E402

TRUTH = ROOT / "bench" / "scalebar_truth.csv"
IMAGES = ROOT.parent / "shared" / "datasets" / "emps_train" / "images"
WITHIN = 0.03
WRONG = 0.10


def _outcome(nm_per_px: float | None, truth: float, warning: str) -> str:
    if nm_per_px is None:
        return "uncalibrated"
    error = abs(nm_per_px - truth) / truth
    if error <= WITHIN:
        return "within 3%"
    if error <= WRONG:
        return "off 3-10%" + (" (warned)" if warning else "")
    return "off >10% (warned)" if warning else "off >10% SILENT"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--verbose", action="store_true", help="print each image's calibration sentences")
    args = parser.parse_args()
    if not args.images.is_dir():
        print(f"Skipped: the emps_train images are not at {args.images} (they are never copied into the project).")
        return 0
    print(f"Tesseract available: {tesseract_available()}")
    rows = list(csv.DictReader(TRUTH.open(encoding="utf-8")))
    counts: dict[str, int] = {}
    start = time.perf_counter()
    print(f"{'image':<12} {'label':<8} {'truth':>8} {'found':>8} {'error':>7}  outcome / source")
    for row in rows:
        path = args.images / f"{row['image']}.png"
        truth = float(row["nm_per_px"])
        try:
            decoded = decode_image(path.read_bytes(), path.name)
            params = AnalysisParams()
            data_bar = decide_data_bar(decoded, params.data_bar)
            calibration, _, _ = decide_calibration(decoded, params, data_bar)
        except Exception as exc:  # noqa: BLE001 - an abort is what this benchmark counts
            outcome, found, error, source = "aborted", "", "", f"{type(exc).__name__}: {exc}"
        else:
            outcome = _outcome(calibration.nm_per_px, truth, calibration.warning)
            found = "" if calibration.nm_per_px is None else f"{calibration.nm_per_px:.4g}"
            error = "" if calibration.nm_per_px is None else f"{(calibration.nm_per_px - truth) / truth:+.1%}"
            evidence = calibration.scale_bar
            read = "" if evidence is None else f" read {evidence.label_text!r} ({evidence.ocr_confidence})"
            source = f"{calibration.source}{read}"
        counts[outcome] = counts.get(outcome, 0) + 1
        print(f"{row['image']:<12} {row['label']:<8} {truth:>8.4g} {found:>8} {error:>7}  {outcome} / {source}")
        if args.verbose and outcome != "aborted" and calibration.warning:
            print(f"{'':<12} warning: {calibration.warning}")
    n = len(rows)
    silent = counts.get("off >10% SILENT", 0)
    wrong_unwarned = sum(v for k, v in counts.items() if k.startswith("off") and "warned" not in k)
    print()
    print(f"{n} images, {time.perf_counter() - start:.0f} s")
    within, uncalibrated = counts.get("within 3%", 0), counts.get("uncalibrated", 0)
    print(f"calibrated within 3% of the truth: {within}/{n} = {within / n:.1%}")
    print(f"left uncalibrated:                 {uncalibrated}/{n} = {uncalibrated / n:.1%}")
    print(f"wrong (>3%) without a warning:     {wrong_unwarned}/{n} = {wrong_unwarned / n:.1%}")
    print(f"  of which more than 10% wrong:    {silent}/{n}")
    print(f"aborted:                           {counts.get('aborted', 0)}/{n}")
    print("all outcomes:", dict(sorted(counts.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
