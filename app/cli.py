"""Command line: ``python -m app analyze|evaluate|train ...``.

``analyze`` runs the same pipeline as the web app on a batch of images; ``evaluate`` and ``train`` hand
over to :mod:`model.evaluate` and :mod:`model.train`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
from pathlib import Path

from tqdm import tqdm

from app import config
from app.analysis.errors import SaemiInputError
from app.analysis.pipeline import EDGE_MODES, AnalysisParams
from app.analysis.report import particles_csv
from app.analysis.samples import ImageRecord, batch_provenance, sample_report, sample_tables
from app.batch import ImageJob, ImageOutcome, batch_client, run_batch, sample_of
from app.engine import default_segmenter_name, get_segmenter
from model.config import ModelLoadError
from model.loading import check_model_folder
from model.registry import SEGMENTER_NAMES

SIDECAR_SUFFIXES = (".txt", ".TXT")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
logger = logging.getLogger("app.cli")


def _analyze_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="segment and measure images, pool them into samples, write labels and CSVs")
    p.add_argument("images", nargs="+", type=Path,
                   help="image files (PNG, JPEG, TIFF, BMP) or folders of them")
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
                   help="typical particle diameter in pixels: the U-Net looks once, at its scale "
                        "(default: at every octave)")
    p.add_argument("--views", type=int, default=None, metavar="N",
                   help="views of each image the U-Net averages, 1 to 4: each adds one network pass; "
                        "2 was slightly more accurate on the validation images (default: the model's, 1)")
    p.add_argument("--model-dir", type=Path, default=None, metavar="DIR",
                   help="U-Net model folder, e.g. one made by python -m app finetune (default: the shipped model)")
    p.add_argument("--sample-by", default=None, metavar="REGEX",
                   help="group the images into samples: the first group of REGEX, searched in each file name "
                        "without its extension, names the sample (e.g. '(.*)_[^_]*$'; default: one sample)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on the Dask cluster of this scheduler (tcp://host:8786; default $SAEMI_SCHEDULER, "
                        "else a local cluster)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes of the local cluster (default: one per core; 0: analyse here, one image "
                        "after the other)")


def _read_sidecar(image_path: Path) -> str | None:
    for suffix in SIDECAR_SUFFIXES:
        candidate = image_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate.read_text(errors="replace")
    return None


def _image_paths(inputs: list[Path]) -> list[Path]:
    """The image files named, with each folder replaced by its image files (sorted by name)."""
    paths = []
    for item in inputs:
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(item)
    return paths


def _params(args: argparse.Namespace) -> AnalysisParams:
    return AnalysisParams(
        segmenter=args.segmenter or default_segmenter_name(),
        split_touching=not args.no_split,
        min_area_px=args.min_area_px,
        edge_mode=args.edge_mode,
        nm_per_px=args.nm_per_px,
        data_bar=args.data_bar,
        scale_bar_label=args.scale_bar_label,
        diameter_px=args.diameter_px,
        views=args.views,
        model_dir=str(args.model_dir) if args.model_dir else None,
    )


def _jobs(paths: list[Path], pattern: str | None) -> tuple[list[ImageJob], dict[int, str], list[str]]:
    """The images to analyse, each one's sample (by job index), and one error line per refused input."""
    jobs, samples, errors, stems = [], {}, [], set()
    for path in paths:
        if path.stem in stems:
            errors.append(f"{path}: skipped, another input is also named '{path.stem}' and its results would be "
                          "overwritten; rename one of them.")
            continue
        try:
            sample = sample_of(path.name, pattern)
            job = ImageJob(len(jobs), path.name, path.read_bytes(), _read_sidecar(path))
        except SaemiInputError as exc:
            errors.append(f"{path}: {exc}")
            continue
        except OSError as exc:
            errors.append(f"{path}: cannot read the file ({exc.strerror or exc}).")
            continue
        stems.add(path.stem)
        samples[job.index] = sample
        jobs.append(job)
    return jobs, samples, errors


def run_analyze(args: argparse.Namespace) -> int:
    """Analyse every image and pool them into samples; one stderr line per failure; non-zero exit if any failed."""
    try:
        params = _params(args)
        get_segmenter(params.segmenter, params.diameter_px, params.views, params.model_dir)  # bad settings stop here
        if params.model_dir and params.segmenter == "unet":
            check_model_folder(params.model_dir)
        if args.sample_by:
            re.compile(args.sample_by)
    except re.error as exc:
        print(f"error: the sample pattern {args.sample_by!r} is not a valid regular expression ({exc}).",
              file=sys.stderr)
        return 2
    except (SaemiInputError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = _image_paths(args.images)
    jobs, samples, errors = _jobs(paths, args.sample_by)
    for line in errors:
        print(line, file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    outcomes: dict[int, ImageOutcome] = {}
    use_cluster = args.scheduler is not None or (args.workers != 0 and len(jobs) > 1)
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(batch_client(args.scheduler, workers=args.workers)) if use_cluster else None
        for outcome in tqdm(run_batch(jobs, params, client=client), total=len(jobs), desc="Analysing",
                            unit="image", disable=None):
            outcomes[outcome.index] = outcome
            _write_image(args.out, outcome)
    failed = [o for o in outcomes.values() if o.error]
    for outcome in sorted(failed, key=lambda o: o.index):
        print(f"{paths_by_name(paths, outcome.name)}: {outcome.error}", file=sys.stderr)
    done = [outcomes[index] for index in sorted(outcomes) if not outcomes[index].error]
    if done:
        _write_tables(args.out, done, samples, params)
    print(f"Analysed {len(done)} of {len(paths)} images; results in {args.out}")
    return 1 if errors or failed else 0


def paths_by_name(paths: list[Path], name: str) -> Path | str:
    """The input path whose file name is ``name`` (for error lines), else the name."""
    return next((path for path in paths if path.name == name), name)


def _write_image(out: Path, outcome: ImageOutcome) -> None:
    if outcome.error:
        return
    stem = Path(outcome.name).stem
    (out / f"{stem}_labels.png").write_bytes(outcome.labels_png)
    (out / f"{stem}_particles.csv").write_text(particles_csv(outcome.particles, outcome.provenance),
                                               encoding="utf-8")
    for note in outcome.notes:
        tqdm.write(f"{outcome.name}: {note}")


def _write_tables(out: Path, done: list[ImageOutcome], samples: dict[int, str], params: AnalysisParams) -> None:
    """``summary.csv``, ``pooled_particles.csv`` and ``samples.csv`` (:func:`app.analysis.samples.sample_tables`)."""
    records = [ImageRecord(o.name, samples[o.index], o.particles, o.summary.get("nm_per_px"), o.shape, o.frame,
                           o.measures) for o in done]
    provenance = batch_provenance(done[0].provenance, [o.name for o in done])
    report = sample_report(records, edge_mode=params.edge_mode)
    tables = sample_tables(records, [o.summary for o in done], provenance, edge_mode=params.edge_mode, report=report)
    for name, text in tables.items():
        (out / name).write_text(text, encoding="utf-8")
    for row in report[1]:
        tqdm.write(row["summary"])


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m app``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        # Before any logging set-up here: training configures its own, at INFO, for its progress lines.
        from model.train import main as train_main

        return train_main(argv[1:])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] == "finetune":
        from model.finetune import main as finetune_main

        return finetune_main(argv[1:])
    if argv and argv[0] == "evaluate":
        from model.evaluate import main as evaluate_main

        return evaluate_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m app", description="SAEMI particle-size analysis")
    sub = parser.add_subparsers(dest="command", required=True)
    _analyze_parser(sub)
    sub.add_parser("train", help="train the U-Net (see python -m app train --help)")
    sub.add_parser("finetune", help="fine-tune the U-Net on your images and masks (see python -m app finetune --help)")
    sub.add_parser("evaluate", help="score segmenters against masks (see python -m app evaluate --help)")
    args = parser.parse_args(argv)
    return run_analyze(args)
