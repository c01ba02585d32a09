"""Pooled sample statistics and the comparison of two samples, against direct computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from app.analysis.compare import compare_samples, compare_two, pool_sizes, sample_stats
from app.analysis.errors import SaemiInputError


def _lognormal(seed: int, median: float, n: int = 1500, sigma: float = 0.25) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(median), sigma, n)


def test_sample_statistics_equal_direct_computations():
    sizes = _lognormal(1, 40.0, n=301)
    s = sample_stats("A", sizes, n_boot=400, seed=3)
    assert s.count == 301
    assert s.d50 == pytest.approx(np.median(sizes))
    assert (s.d10, s.d90) == pytest.approx(tuple(np.quantile(sizes, [0.1, 0.9], method="hazen")))
    assert s.geo_mean == pytest.approx(np.exp(np.log(sizes).mean()))
    assert s.gsd == pytest.approx(np.exp(np.log(sizes).std(ddof=1)))
    # The interval is the 2.5th-97.5th percentile of the statistic over resamples drawn as here.
    rng = np.random.default_rng(3)
    resamples = sizes[rng.integers(0, sizes.size, size=(400, sizes.size))]
    direct = np.percentile(np.median(resamples, axis=1), [2.5, 97.5])
    assert s.d50_ci95 == pytest.approx(tuple(direct))
    assert s.d50_ci95[0] < s.d50 < s.d50_ci95[1]
    assert s.note == ""


def test_small_or_empty_samples_say_so():
    assert "unreliable" in sample_stats("few", [10.0, 12.0, 14.0], n_boot=50).note
    empty = sample_stats("none", [0.0, np.nan, -3.0])
    assert empty.count == 0 and np.isnan(empty.d50)


def test_truly_different_samples_are_told_apart():
    a, b = _lognormal(2, 40.0), _lognormal(3, 48.0)  # B's median is 20% larger
    c = compare_two("A", a, "B", b, n_boot=500, seed=1)
    assert c.d50_ratio == pytest.approx(np.median(b) / np.median(a))
    low, high = c.d50_ratio_ci95
    assert 1.0 < low < c.d50_ratio < high and c.d50_ratio == pytest.approx(1.2, abs=0.05)
    direct = scipy_stats.ks_2samp(a, b)
    assert (c.ks_statistic, c.ks_pvalue) == pytest.approx((direct.statistic, direct.pvalue))
    assert c.ks_pvalue < 1e-6 and c.ad_pvalue <= 0.001
    assert c.sentence.startswith("The D50 of B is 2") and "larger than that of A" in c.sentence
    assert "the size distributions differ" in c.sentence


def test_samples_from_one_distribution_are_not_told_apart():
    a, b = _lognormal(4, 40.0), _lognormal(5, 40.0)
    c = compare_two("A", a, "B", b, n_boot=500, seed=1)
    low, high = c.d50_ratio_ci95
    assert low < 1.0 < high
    assert c.ks_pvalue > 0.05
    assert "no difference between the size distributions was detected" in c.sentence


def test_every_pair_is_compared_once_in_order():
    samples = {"A": _lognormal(6, 30.0, 200), "B": _lognormal(7, 33.0, 200), "C": _lognormal(8, 36.0, 200)}
    pairs = [(c.name_a, c.name_b) for c in compare_samples(samples, n_boot=100)]
    assert pairs == [("A", "B"), ("A", "C"), ("B", "C")]


def test_sizes_are_pooled_in_nm_and_never_mixed_with_px():
    one = pd.DataFrame({"ecd_px": [10.0, 20.0], "ecd_nm": [25.0, 50.0]})
    two = pd.DataFrame({"ecd_px": [4.0], "ecd_nm": [20.0]})
    sizes, unit = pool_sizes([one, two], [True, True])
    assert unit == "nm" and sizes.tolist() == [25.0, 50.0, 20.0]
    sizes, unit = pool_sizes([one[["ecd_px"]], two[["ecd_px"]]], [False, False])
    assert unit == "px" and sizes.tolist() == [10.0, 20.0, 4.0]
    with pytest.raises(SaemiInputError, match="cannot be pooled"):
        pool_sizes([one, two[["ecd_px"]]], [True, False])
