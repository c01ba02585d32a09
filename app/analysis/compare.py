"""Samples: particles pooled over several images, and samples compared with each other.

A sample's statistics (:func:`sample_stats`) are the count, D10, D50, D90, geometric mean and geometric
standard deviation (GSD) of its particle sizes, each with a bootstrap 95% confidence interval
(percentiles of the statistic over resamples of the particles). Two samples are compared
(:func:`compare_two`) with the Kolmogorov–Smirnov and the k-sample Anderson–Darling tests of
``scipy.stats``, and with the ratio of their D50s and its bootstrap 95% CI, put into one sentence.

Quantiles use the midpoint rule (``method="hazen"``), as everywhere in :mod:`app.analysis.stats`.
Sizes are pooled only in one unit: :func:`pool_sizes` takes nm when every image is calibrated and
refuses to mix nm and px.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _scipy_stats

from app.analysis.errors import SaemiInputError

#: Resamples of every bootstrap confidence interval.
N_BOOT = 1000
#: Resamples are drawn in chunks of about this many (resample, particle) cells.
_CHUNK_CELLS = 2_000_000
#: Below this many particles a sample's intervals are flagged as unreliable.
MIN_COUNT = 30


def _quantiles(resamples: np.ndarray, q: Sequence[float]) -> np.ndarray:
    return np.quantile(resamples, q, axis=-1, method="hazen")


def _statistics(values: np.ndarray) -> np.ndarray:
    """D10, D50, D90, geometric mean and GSD of each row of ``values`` (shape (..., n))."""
    d10, d50, d90 = _quantiles(values, (0.1, 0.5, 0.9))
    logs = np.log(values)
    geo_mean = np.exp(logs.mean(axis=-1))
    n = values.shape[-1]
    gsd = np.exp(logs.std(axis=-1, ddof=1)) if n > 1 else np.full(geo_mean.shape, np.nan)
    return np.stack([d10, d50, d90, geo_mean, gsd], axis=-1)


def _bootstrap(values: np.ndarray, n_boot: int, rng: np.random.Generator, func) -> np.ndarray:
    """``func`` of ``n_boot`` resamples (with replacement) of ``values``, stacked along the first axis."""
    chunk = max(1, _CHUNK_CELLS // max(values.size, 1))
    parts = []
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        parts.append(func(values[rng.integers(0, values.size, size=(rows, values.size))]))
    return np.concatenate(parts, axis=0)


def _clean(values) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    return values[np.isfinite(values) & (values > 0)]


@dataclass(frozen=True)
class SampleStats:
    """Size statistics of one sample; each ``*_ci95`` is a (low, high) bootstrap interval."""

    name: str
    count: int
    d10: float
    d50: float
    d90: float
    geo_mean: float
    gsd: float
    d10_ci95: tuple[float, float]
    d50_ci95: tuple[float, float]
    d90_ci95: tuple[float, float]
    geo_mean_ci95: tuple[float, float]
    gsd_ci95: tuple[float, float]

    @property
    def note(self) -> str:
        """A sentence when the count is too small for the intervals to be trusted, else ''."""
        if self.count < MIN_COUNT:
            return f"Only {self.count} particles: the confidence intervals are unreliable below {MIN_COUNT}."
        return ""

    def row(self, unit: str) -> dict[str, object]:
        """A flat table row, sizes suffixed with ``unit`` (``"nm"`` or ``"px"``)."""
        row: dict[str, object] = {"sample": self.name, "n_particles": self.count}
        for key in ("d10", "d50", "d90", "geo_mean"):
            row[f"{key}_{unit}"] = getattr(self, key)
            low, high = getattr(self, f"{key}_ci95")
            row[f"{key}_{unit}_ci95_low"], row[f"{key}_{unit}_ci95_high"] = low, high
        row["gsd"] = self.gsd
        row["gsd_ci95_low"], row["gsd_ci95_high"] = self.gsd_ci95
        row["note"] = self.note
        return row


def sample_stats(name: str, sizes, *, n_boot: int = N_BOOT, seed: int = 0) -> SampleStats:
    """Statistics of one sample's particle sizes (non-positive and non-finite values are left out).

    Examples
    --------
    >>> s = sample_stats("A", [10.0, 20.0, 30.0, 40.0], n_boot=200)
    >>> s.count, s.d50
    (4, 25.0)
    """
    values = _clean(sizes)
    nan2 = (math.nan, math.nan)
    if values.size == 0:
        return SampleStats(name, 0, *(math.nan,) * 5, *(nan2,) * 5)
    point = _statistics(values)
    boots = _bootstrap(values, n_boot, np.random.default_rng(seed), _statistics)
    low, high = np.nanpercentile(boots, [2.5, 97.5], axis=0) if values.size > 1 else (point, point)
    cis = [(float(a), float(b)) for a, b in zip(low, high)]
    return SampleStats(name, int(values.size), *(float(v) for v in point), *cis)


@dataclass(frozen=True)
class Comparison:
    """Two samples compared: tests of their size distributions and the ratio of their D50s (B / A)."""

    name_a: str
    name_b: str
    ks_statistic: float
    ks_pvalue: float
    ad_statistic: float
    ad_pvalue: float
    d50_ratio: float
    d50_ratio_ci95: tuple[float, float]

    @property
    def sentence(self) -> str:
        """The comparison in plain words."""
        if not np.isfinite(self.d50_ratio):
            return f"{self.name_a} and {self.name_b} cannot be compared: one of them has no particles."
        change = 100.0 * (self.d50_ratio - 1.0)
        low, high = (100.0 * (v - 1.0) for v in self.d50_ratio_ci95)
        word = "larger" if change >= 0 else "smaller"
        verdict = ("the size distributions differ" if self.ks_pvalue < 0.05
                   else "no difference between the size distributions was detected")
        return (f"The D50 of {self.name_b} is {abs(change):.0f}% {word} than that of {self.name_a} "
                f"(95% CI {low:+.0f}% to {high:+.0f}%); {verdict} "
                f"(Kolmogorov–Smirnov p = {self.ks_pvalue:.2g}).")

    def row(self) -> dict[str, object]:
        return {"sample_a": self.name_a, "sample_b": self.name_b, "d50_ratio_b_over_a": self.d50_ratio,
                "d50_ratio_ci95_low": self.d50_ratio_ci95[0], "d50_ratio_ci95_high": self.d50_ratio_ci95[1],
                "ks_statistic": self.ks_statistic, "ks_pvalue": self.ks_pvalue,
                "anderson_darling_statistic": self.ad_statistic, "anderson_darling_pvalue": self.ad_pvalue,
                "summary": self.sentence}


def compare_two(name_a: str, sizes_a, name_b: str, sizes_b, *, n_boot: int = N_BOOT, seed: int = 0) -> Comparison:
    """Compare sample B with sample A.

    The Anderson–Darling p-value is scipy's interpolation in its table of critical values
    (``anderson_ksamp``), which stops at 0.001 and 0.25: a p of 0.001 means "0.001 or less".
    """
    a, b = _clean(sizes_a), _clean(sizes_b)
    if a.size < 2 or b.size < 2:
        nan = math.nan
        return Comparison(name_a, name_b, nan, nan, nan, nan, nan, (nan, nan))
    ks = _scipy_stats.ks_2samp(a, b)
    ad = _scipy_stats.anderson_ksamp([a, b], variant="midrank")  # p from scipy's table, within 0.001-0.25
    rng = np.random.default_rng(seed)

    def medians(resamples: np.ndarray) -> np.ndarray:
        return _quantiles(resamples, (0.5,))[0]

    ratios = _bootstrap(b, n_boot, rng, medians) / _bootstrap(a, n_boot, rng, medians)
    ratio = float(_quantiles(b, (0.5,))[0] / _quantiles(a, (0.5,))[0])
    low, high = np.percentile(ratios, [2.5, 97.5])
    return Comparison(name_a, name_b, float(ks.statistic), float(ks.pvalue), float(ad.statistic),
                      float(ad.pvalue), ratio, (float(low), float(high)))


def compare_samples(samples: Mapping[str, np.ndarray], *, n_boot: int = N_BOOT, seed: int = 0) -> list[Comparison]:
    """Every pair of samples, in the order given (B compared with A for A listed before B)."""
    return [compare_two(a, samples[a], b, samples[b], n_boot=n_boot, seed=seed)
            for a, b in itertools.combinations(samples, 2)]


def pool_sizes(tables: Sequence[pd.DataFrame], calibrated: Sequence[bool],
               column: str = "ecd") -> tuple[np.ndarray, str]:
    """One sample's sizes pooled over its images, and their unit.

    Parameters
    ----------
    tables : sequence of DataFrame
        Per-image particle tables (:func:`app.analysis.measure.measure_particles`), already
        restricted to the particles in the statistics.
    calibrated : sequence of bool
        Whether each image has a pixel size (its table then holds ``<column>_nm``).
    column : str
        The size, without unit (``"ecd"``, ``"feret_max"``, ...).

    Raises
    ------
    SaemiInputError
        When calibrated and uncalibrated images are mixed: sizes in nm and in px cannot be pooled.
    """
    if len(tables) != len(calibrated):
        raise ValueError("one calibration flag per table is needed")
    if any(calibrated) and not all(calibrated):
        raise SaemiInputError("Some images of this sample have a pixel size and others do not; sizes in nm "
                              "and in px cannot be pooled. Calibrate every image or exclude the others.")
    unit = "nm" if tables and all(calibrated) else "px"
    parts = [table[f"{column}_{unit}"].to_numpy(dtype=float) for table in tables if len(table)]
    return (np.concatenate(parts) if parts else np.zeros(0)), unit
