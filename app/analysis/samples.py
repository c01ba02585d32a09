"""A batch's images grouped into samples: the pooled particle table, per-sample statistics, comparisons
and quality flags (the numbers behind ``pooled_particles.csv`` and ``samples.csv``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from app.analysis import stats
from app.analysis.compare import compare_samples, pool_sizes, sample_stats
from app.analysis.errors import SaemiInputError
from app.analysis.quality import ImageMeasures, sample_flags


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


def sample_report(records: Sequence[ImageRecord], *, edge_mode: str = "exclude", n_boot: int = 1000,
                  seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Per-sample rows (count, D10/D50/D90, geometric mean and GSD with 95% CIs, unit, images) and one
    row per pair of samples (D50 ratio with its CI, Kolmogorov–Smirnov and Anderson–Darling tests).

    Sizes are the ECD, pooled in nm when every image of the sample is calibrated, else in px (a sample
    mixing both is refused, see :func:`app.analysis.compare.pool_sizes`). Comparisons are made only
    between samples in the same unit.
    """
    sample_rows, sizes, units = [], {}, {}
    for name in samples_in_order(records):
        members = [r for r in records if r.sample == name and not r.excluded]
        try:
            values, unit = pool_sizes([_in_statistics(r, edge_mode) for r in members],
                                      [r.nm_per_px is not None for r in members])
        except SaemiInputError as exc:  # calibrated and uncalibrated images: no pooled sizes
            sample_rows.append({"sample": name, "n_particles": 0, "unit": "", "n_images": len(members),
                                "note": str(exc)})
            continue
        row = sample_stats(name, values, n_boot=n_boot, seed=seed).row(unit)
        sample_rows.append({**row, "unit": unit, "n_images": len(members)})
        sizes[name], units[name] = values, unit
    by_unit: dict[str, dict] = {}
    for name, values in sizes.items():
        by_unit.setdefault(units[name], {})[name] = values
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
