"""Command line: ``python -m app analyze|evaluate|train ...``.

``analyze`` runs the same pipeline as the web app on a batch of images; ``evaluate`` and ``train`` hand
over to :mod:`model.evaluate` and :mod:`model.train`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from app import config
from app.analysis.encoding import labels_to_png_bytes
from app.analysis.errors import SaemiInputError
from app.analysis.pipeline import EDGE_MODES, AnalysisParams
from app.analysis.report import particles_csv, summary_csv
from app.engine import analyze_file, default_segmenter_name, get_segmenter
from model.config import ModelLoadError
from model.registry import SEGMENTER_NAMES

SIDECAR_SUFFIXES = (".txt", ".TXT")
logger = logging.getLogger("app.cli")


def _analyze_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="segment and measure images, writing labels and CSVs")
    p.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, TIFF, BMP)")
    p.add_argument("--out", required=True, type=Path, help="output folder (created if needed)")
    p.add_argument("--segmenter", choices=SEGMENTER_NAMES, default=None,
                   help="segmenter (default: unet when its weights ship, else classical)")
    p.add_argument("--min-area", type=int, default=config.DEFAULT_MIN_AREA_PX, dest="min_area_px",
                   help="drop particles smaller than this many pixels (default %(default)s)")
    p.add_argument("--no-split", action="store_true", help="do not split touching particles")
    p.add_argument("--nm-per-px", type=float, default=None, help="pixel size in nm, overriding metadata")
    p.add_argument("--edge", choices=EDGE_MODES, default="exclude", dest="edge_mode",
                   help="edge particles in the statistics (default %(default)s)")
    p.add_argument("--data-bar", default="auto", help="'auto', 'off' or rows 'y0:y1' to exclude")
    p.add_argument("--scale-bar-label", default=None, help="scale bar label, e.g. '500 nm', if OCR fails")
    p.add_argument("--diameter-px", type=float, default=None, metavar="FLOAT",
                   help="typical particle diameter in pixels for the U-Net (default: estimated automatically)")
    p.add_argument("--views", type=int, default=None, metavar="N",
                   help="views of each image the U-Net averages, 1 to 4: each adds one network pass; "
                        "2 was slightly more accurate on the validation images (default: the model's, 1)")


def _read_sidecar(image_path: Path) -> str | None:
    for suffix in SIDECAR_SUFFIXES:
        candidate = image_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate.read_text(errors="replace")
    return None


def run_analyze(args: argparse.Namespace) -> int:
    """Analyse every image; one stderr line per failure; non-zero exit if any failed."""
    try:
        params = AnalysisParams(
            segmenter=args.segmenter or default_segmenter_name(),
            split_touching=not args.no_split,
            min_area_px=args.min_area_px,
            edge_mode=args.edge_mode,
            nm_per_px=args.nm_per_px,
            data_bar=args.data_bar,
            scale_bar_label=args.scale_bar_label,
            diameter_px=args.diameter_px,
            views=args.views,
        )
        get_segmenter(params.segmenter, params.diameter_px, params.views)  # bad settings stop here, once
    except (SaemiInputError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows, failures, stems = [], 0, set()
    for path in tqdm(args.images, desc="Analysing", unit="image", disable=None):
        if path.stem in stems:
            failures += 1
            print(f"{path}: skipped, another input is also named '{path.stem}' and its results would be "
                  "overwritten; rename one of them.", file=sys.stderr)
            continue
        stems.add(path.stem)
        try:
            result = analyze_file(path.read_bytes(), path.name, params, sidecar_text=_read_sidecar(path))
            (args.out / f"{path.stem}_labels.png").write_bytes(labels_to_png_bytes(result.label_image))
            (args.out / f"{path.stem}_particles.csv").write_text(
                particles_csv(result.particles, result.provenance()), encoding="utf-8")
            rows.append(result.summary())
            for note in result.notes:
                tqdm.write(f"{path.name}: {note}")
        except OSError as exc:
            failures += 1
            print(f"{path}: cannot read the file ({exc.strerror or exc}).", file=sys.stderr)
        except (SaemiInputError, ModelLoadError) as exc:
            failures += 1
            print(f"{path}: {exc}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - one bad file must not stop the batch; logged in full
            failures += 1
            logger.exception("Unexpected failure on %s", path)
            print(f"{path}: SAEMI failed on this file unexpectedly; the details are in the log above.",
                  file=sys.stderr)
    if rows:
        (args.out / "summary.csv").write_text(summary_csv(rows), encoding="utf-8")
    print(f"Analysed {len(rows)} of {len(args.images)} images; results in {args.out}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m app``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        # Before any logging set-up here: training configures its own, at INFO, for its progress lines.
        from model.train import main as train_main

        return train_main(argv[1:])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] == "evaluate":
        from model.evaluate import main as evaluate_main

        return evaluate_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m app", description="SAEMI particle-size analysis")
    sub = parser.add_subparsers(dest="command", required=True)
    _analyze_parser(sub)
    sub.add_parser("train", help="train the U-Net (see python -m app train --help)")
    sub.add_parser("evaluate", help="score segmenters against masks (see python -m app evaluate --help)")
    args = parser.parse_args(argv)
    return run_analyze(args)
