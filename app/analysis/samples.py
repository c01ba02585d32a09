"""A batch's images grouped into samples: the pooled particle table, per-sample statistics, comparisons
and quality flags (the numbers behind ``pooled_particles.csv`` and ``samples.csv``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from app.analysis import stats
from app.analysis.compare import compare_samples, pool_sizes, sample_stats
from app.analysis.errors import SaemiInputError
from app.analysis.quality import ImageMeasures, sample_flags
from app.analysis.report import particles_csv, summary_csv
from app.analysis.view import HistogramView, ViewOptions, nice_bin_width, quantity_column, view_results


@dataclass(frozen=True)
class ImageRecord:
    """One analysed image of a batch, as the sample statistics need it."""

    name: str
    sample: str
    particles: pd.DataFrame
    nm_per_px: float | None
    shape: tuple[int, int]
    frame: tuple[int, int]
    measures: ImageMeasures
    excluded: bool = False
    #: The particle classes of the ``class`` column, in the order the user named them (empty without classes).
    classes: tuple[str, ...] = ()


def samples_in_order(records: Sequence[ImageRecord]) -> list[str]:
    """The sample names, in the order their first image appears."""
    return list(dict.fromkeys(record.sample for record in records))


def pooled_table(records: Sequence[ImageRecord]) -> pd.DataFrame:
    """Every particle of every image (excluded images left out), with ``sample`` and ``image`` first."""
    parts = [record.particles.assign(sample=record.sample, image=record.name)
             for record in records if not record.excluded and len(record.particles)]
    if not parts:
        return pd.DataFrame(columns=["sample", "image"])
    table = pd.concat(parts, ignore_index=True)
    return table[["sample", "image", *[c for c in table.columns if c not in ("sample", "image")]]]


def _in_statistics(record: ImageRecord, edge_mode: str) -> pd.DataFrame:
    # Pooled statistics count particles; the Miles-Lantuejoul weights belong to one frame, so there
    # edge particles are left out, as with "exclude".
    mode = "exclude" if edge_mode == "miles-lantuejoul" else edge_mode
    selected, _ = stats.edge_selection(record.particles, mode, image_shape=record.shape, frame=record.frame)
    return selected


@dataclass(frozen=True)
class PooledSizes:
    """Each sample's ECDs pooled over its images (in ``units[name]``), or the sentence why they could not be."""

    sizes: dict[str, np.ndarray]
    units: dict[str, str]
    problems: dict[str, str]
    n_images: dict[str, int]


def pooled_sizes(records: Sequence[ImageRecord], *, edge_mode: str = "exclude") -> PooledSizes:
    """The ECDs of each sample's particles in the statistics (excluded images left out), in nm when every image
    of the sample is calibrated, else in px (a sample mixing both gets a sentence instead, see
    :func:`app.analysis.compare.pool_sizes`)."""
    pooled = PooledSizes({}, {}, {}, {})
    for name in samples_in_order(records):
        members = [r for r in records if r.sample == name and not r.excluded]
        pooled.n_images[name] = len(members)
        try:
            values, unit = pool_sizes([_in_statistics(r, edge_mode) for r in members],
                                      [r.nm_per_px is not None for r in members])
        except SaemiInputError as exc:  # calibrated and uncalibrated images: no pooled sizes
            pooled.problems[name] = str(exc)
            continue
        pooled.sizes[name], pooled.units[name] = values, unit
    return pooled


def sample_report(records: Sequence[ImageRecord], *, edge_mode: str = "exclude", n_boot: int = 1000,
                  seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Per-sample rows (count, D10/D50/D90, geometric mean and GSD with 95% CIs, unit, images) and one
    row per pair of samples (D50 ratio with its CI, Kolmogorov–Smirnov and Anderson–Darling tests).

    Sizes are the ECD, pooled as :func:`pooled_sizes` says. Comparisons are made only between samples in
    the same unit.
    """
    pooled = pooled_sizes(records, edge_mode=edge_mode)
    sample_rows = []
    for name, n_images in pooled.n_images.items():
        if name in pooled.problems:
            sample_rows.append({"sample": name, "n_particles": 0, "unit": "", "n_images": n_images,
                                "note": pooled.problems[name]})
            continue
        unit = pooled.units[name]
        row = sample_stats(name, pooled.sizes[name], n_boot=n_boot, seed=seed).row(unit)
        sample_rows.append({**row, "unit": unit, "n_images": n_images})
    by_unit: dict[str, dict] = {}
    for name, values in pooled.sizes.items():
        by_unit.setdefault(pooled.units[name], {})[name] = values
    comparison_rows = [comparison.row() for group in by_unit.values()
                       for comparison in compare_samples(group, n_boot=n_boot, seed=seed)]
    return sample_rows, comparison_rows


def record_flags(records: Sequence[ImageRecord]) -> dict[str, list[str]]:
    """Each image's quality flags (by image name), judged within its sample."""
    flags: dict[str, list[str]] = {}
    for name in samples_in_order(records):
        members = [r for r in records if r.sample == name]
        for record, own in zip(members, sample_flags([r.measures for r in members])):
            flags[record.name] = own
    return flags


def batch_provenance(provenance: Mapping[str, str], image_names: Sequence[str]) -> dict[str, str]:
    """The provenance of the pooled files: software, segmenter and settings (from one image's
    provenance, the batch sharing them), and the images pooled."""
    pooled = {key: value for key, value in provenance.items()
              if key in ("software", "segmenter") or key.startswith("param_")}
    pooled["images"] = ", ".join(image_names)
    return pooled


def sample_tables(records: Sequence[ImageRecord], summaries: Sequence[Mapping[str, object]],
                  provenance: Mapping[str, str], *, edge_mode: str = "exclude",
                  report: tuple[list[dict], list[dict]] | None = None) -> dict[str, str]:
    """The pooled files of a batch, by file name: ``summary.csv`` (one row per image, with its sample,
    quality flags and whether it is excluded), ``pooled_particles.csv`` (every particle, with ``sample`` and
    ``image`` columns) and ``samples.csv`` (one row per sample, then one per pair of samples with the tests;
    with particle classes, then the same per class, see :func:`class_report`).

    Parameters
    ----------
    records : sequence of ImageRecord
        The analysed images; excluded ones are listed in the summary but left out of the pools.
    summaries : sequence of mapping
        Each image's summary row (:func:`app.analysis.pipeline.summary_row`), in the order of ``records``.
    provenance : mapping
        The ``#`` lines heading each file (:func:`batch_provenance`).
    edge_mode : str
        Edge particles in the sample statistics (see :func:`sample_report`).
    report : (sample rows, comparison rows), optional
        :func:`sample_report` of ``records`` when it was computed already.
    """
    flags = record_flags(records)
    rows = [{"sample": record.sample, **summary, "flags": " ".join(flags[record.name]), "excluded": record.excluded}
            for record, summary in zip(records, summaries)]
    sample_rows, comparison_rows = report or sample_report(records, edge_mode=edge_mode)
    class_rows, class_comparisons = class_report(records, edge_mode=edge_mode)
    table = ([{"row": "sample", **row} for row in sample_rows]
             + [{"row": "comparison", **row} for row in comparison_rows]
             + [{"row": "sample class", **row} for row in class_rows]
             + [{"row": "comparison class", **row} for row in class_comparisons])
    return {"summary.csv": summary_csv(rows, provenance),
            "pooled_particles.csv": particles_csv(pooled_table(records), provenance),
            "samples.csv": summary_csv(table, provenance)}


def pooled_view(records: Sequence[ImageRecord], view: ViewOptions) -> HistogramView:
    """The histogram and statistics of all particles of ``records`` (excluded images left out), each image's
    particles selected, filtered and weighted as the single-image view does (:func:`app.analysis.view.view_results`).

    Sizes are pooled in nm when every image is calibrated (each with its own pixel size), in px when none is.

    Raises
    ------
    SaemiInputError
        When calibrated and uncalibrated images are mixed.
    """
    members = [record for record in records if not record.excluded]
    calibrated = [record.nm_per_px is not None for record in members]
    if any(calibrated) and not all(calibrated):
        raise SaemiInputError("Some images of this sample have a pixel size and others do not; sizes in nm "
                              "and in px cannot be pooled. Calibrate every image or exclude the others.")
    views = [view_results(record.particles, calibrated=record.nm_per_px is not None, image_shape=record.shape,
                          frame=record.frame, view=replace(view, bin_width=1.0)) for record in members]
    values = np.concatenate([v.values for v in views]) if views else np.zeros(0)
    weighted = any(v.weights is not None for v in views)
    weights = (np.concatenate([v.weights if v.weights is not None else np.ones(v.values.size) for v in views])
               if weighted else None)
    removed: dict[str, int] = {}
    for v in views:
        for key, count in v.removed.items():
            removed[key] = removed.get(key, 0) + count
    bin_width = view.bin_width if view.bin_width and view.bin_width > 0 else nice_bin_width(values)
    _, label, unit = quantity_column(view.quantity, calibrated=bool(members) and all(calibrated))
    return HistogramView(values=values, weights=weights, bin_width=float(bin_width), label=label, unit=unit,
                         basis=view.basis, summary=stats.summarize(values, weights),
                         n_detected=sum(v.n_detected for v in views), n_edge=sum(v.n_edge for v in views),
                         removed=removed)


def record_classes(records: Sequence[ImageRecord], class_column: str = "class") -> list[str]:
    """The particle classes of ``records`` (whose tables have a ``class_column``): those the records name first,
    then any other in order of first appearance."""
    names = [*(name for record in records for name in record.classes),
             *(str(name) for record in records if class_column in record.particles.columns
               for name in record.particles[class_column])]
    return list(dict.fromkeys(names))


def pooled_class_views(records: Sequence[ImageRecord], view: ViewOptions, *,
                       class_column: str = "class") -> dict[str, HistogramView]:
    """One pooled view (:func:`pooled_view`) per particle class, each of the particles of that class only, all
    with the bin width of the whole pool. Images without classes count in none of them."""
    whole = pooled_view(records, view)
    fixed = replace(view, bin_width=whole.bin_width)
    classified = [record for record in records if class_column in record.particles.columns]
    return {name: pooled_view([replace(record, particles=record.particles[
        record.particles[class_column].astype(str) == name]) for record in classified], fixed)
        for name in record_classes(classified, class_column)}


#: Joins a sample's name and a class name into the name of that class's part of the sample.
CLASS_SEPARATOR = " · "


def class_records(records: Sequence[ImageRecord], class_column: str = "class") -> dict[str, list[ImageRecord]]:
    """Per particle class: the records of the images with classes, each keeping only that class's particles and
    renamed ``"<sample> · <class>"``, so that the pooled statistics and comparisons treat each class of each
    sample as a sample of its own."""
    classified = [record for record in records if class_column in record.particles.columns]
    return {name: [replace(record, sample=f"{record.sample}{CLASS_SEPARATOR}{name}",
                           particles=record.particles[record.particles[class_column].astype(str) == name])
                   for record in classified]
            for name in record_classes(classified, class_column)}


def class_report(records: Sequence[ImageRecord], *, edge_mode: str = "exclude", n_boot: int = 1000,
                 seed: int = 0) -> tuple[list[dict], list[dict]]:
    """:func:`sample_report` per particle class: one row per class of each sample, and the comparisons of
    the samples within each class (spheres of one sample against spheres of another), each with a ``class``
    entry. A sample without particles of a class gets its row (no particles) but no comparison. Empty
    without classes."""
    sample_rows, comparison_rows = [], []
    for name, members in class_records(records).items():
        rows, comparisons = sample_report(members, edge_mode=edge_mode, n_boot=n_boot, seed=seed)
        empty = {row["sample"] for row in rows if not row["n_particles"]}
        sample_rows += [{**row, "class": name} for row in rows]
        comparison_rows += [{**row, "class": name} for row in comparisons
                            if row["sample_a"] not in empty and row["sample_b"] not in empty]
    return sample_rows, comparison_rows
