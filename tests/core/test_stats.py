"""Tests of the distribution statistics against direct numpy computations."""

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk
from skimage.measure import label

from app.analysis.errors import SaemiInputError
from app.analysis.measure import measure_particles
from app.analysis.stats import (
    apply_filters,
    distribution_weights,
    edge_selection,
    histogram,
    lognormal_fit,
    lognormal_pdf,
    miles_lantuejoul_weights,
    summarize,
    weighted_quantile,
)

KNOWN = np.array([12.0, 7.5, 30.0, 18.25, 9.0, 22.0, 15.5, 11.0, 41.0, 16.0, 13.0])


def midpoint_quantile(values, q, weights):
    """The documented quantile definition, written directly."""
    order = np.argsort(values)
    values, weights = np.asarray(values)[order], np.asarray(weights)[order]
    position = (np.cumsum(weights) - weights / 2) / weights.sum()
    return np.interp(q, position, values)


def test_unweighted_summary_matches_numpy():
    s = summarize(KNOWN)
    assert s["count"] == KNOWN.size
    assert s["mean"] == pytest.approx(KNOWN.mean())
    assert s["std"] == pytest.approx(KNOWN.std(ddof=1))
    assert s["cv"] == pytest.approx(KNOWN.std(ddof=1) / KNOWN.mean())
    assert s["min"] == KNOWN.min() and s["max"] == KNOWN.max()
    assert s["median"] == pytest.approx(np.median(KNOWN))
    for key, q in (("d10", 0.1), ("d50", 0.5), ("d90", 0.9)):
        assert s[key] == pytest.approx(np.quantile(KNOWN, q, method="hazen")), key
    assert s["geo_mean"] == pytest.approx(np.exp(np.log(KNOWN).mean()))
    assert s["gsd"] == pytest.approx(np.exp(np.log(KNOWN).std(ddof=1)))


def test_even_count_median_is_mean_of_middle_values():
    values = np.array([4.0, 1.0, 3.0, 10.0])
    assert summarize(values)["median"] == pytest.approx(3.5)
    assert weighted_quantile(values, 0.5) == pytest.approx(3.5)


def test_weighted_summary_matches_direct_formulas():
    weights = np.random.default_rng(3).uniform(0.2, 5.0, KNOWN.size)
    s = summarize(KNOWN, weights)
    mean = np.average(KNOWN, weights=weights)
    total = weights.sum()
    variance = np.sum(weights * (KNOWN - mean) ** 2) / (total - np.sum(weights**2) / total)
    assert s["mean"] == pytest.approx(mean)
    assert s["std"] == pytest.approx(np.sqrt(variance))
    for key, q in (("d10", 0.1), ("d50", 0.5), ("d90", 0.9)):
        assert s[key] == pytest.approx(midpoint_quantile(KNOWN, q, weights)), key
    assert s["median"] == s["d50"]
    assert s["geo_mean"] == pytest.approx(np.exp(np.average(np.log(KNOWN), weights=weights)))


def test_equal_weights_change_nothing():
    plain = summarize(KNOWN, n_boot=200)
    weighted = summarize(KNOWN, np.full(KNOWN.size, 3.0), n_boot=200)
    for key in ("mean", "std", "d10", "d50", "d90", "geo_mean", "gsd"):
        assert weighted[key] == pytest.approx(plain[key]), key


def test_weighted_quantile_matches_numpy_and_definition():
    values = np.random.default_rng(0).normal(size=57)
    qs = np.linspace(0, 1, 21)
    expected = np.quantile(values, qs, method="hazen")
    np.testing.assert_allclose(weighted_quantile(values, qs), expected)
    weights = np.random.default_rng(1).random(57)
    expected = midpoint_quantile(values, qs, weights)
    np.testing.assert_allclose(weighted_quantile(values, qs, weights), expected)
    # A heavy particle pulls the weighted median to itself.
    assert weighted_quantile([1.0, 2.0, 3.0], 0.5, [1.0, 1.0, 100.0]) > 2.9
    # Zero weights drop values entirely.
    assert weighted_quantile([1.0, 2.0, 3.0, 4.0], 0.5, [1.0, 0.0, 0.0, 1.0]) == pytest.approx(2.5)


def test_d50_of_large_lognormal_sample_is_exp_mu():
    mu, sigma = np.log(42.0), 0.35
    sample = np.random.default_rng(7).lognormal(mu, sigma, 20_000)
    s = summarize(sample, n_boot=100)
    assert s["d50"] == pytest.approx(np.exp(mu), rel=0.02)
    assert s["gsd"] == pytest.approx(np.exp(sigma), rel=0.02)
    fit_mu, fit_sigma = lognormal_fit(sample)
    assert fit_mu == pytest.approx(mu, abs=0.01)
    assert fit_sigma == pytest.approx(sigma, rel=0.02)


def test_bootstrap_intervals_bracket_and_shrink():
    rng = np.random.default_rng(5)
    small = summarize(rng.lognormal(3, 0.4, 60), seed=1)
    large = summarize(rng.lognormal(3, 0.4, 2000), seed=1)
    for s in (small, large):
        assert s["mean_ci95"][0] < s["mean"] < s["mean_ci95"][1]
        assert s["d50_ci95"][0] <= s["d50"] <= s["d50_ci95"][1]
        assert s["ci_note"] == ""
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(large["mean_ci95"]) < width(small["mean_ci95"]) / 3
    # Standard error of the mean: the 95% interval is about 3.92 standard errors wide.
    sample = rng.lognormal(3, 0.4, 400)
    expected_width = 3.92 * sample.std(ddof=1) / np.sqrt(sample.size)
    assert width(summarize(sample)["mean_ci95"]) == pytest.approx(expected_width, rel=0.15)
    assert summarize(sample, seed=4)["mean_ci95"] == summarize(sample, seed=4)["mean_ci95"]


def test_small_count_gets_a_note():
    s = summarize(KNOWN)
    assert "unreliable" in s["ci_note"] and str(KNOWN.size) in s["ci_note"]


def test_empty_and_single_inputs():
    s = summarize([])
    assert s["count"] == 0
    statistics = (
        "mean", "median", "std", "cv", "min", "max", "d10", "d50", "d90", "geo_mean", "gsd"
    )
    for key in statistics:
        assert np.isnan(s[key]), key
    assert all(np.isnan(s["mean_ci95"])) and all(np.isnan(s["d50_ci95"]))
    one = summarize([5.0])
    assert one["count"] == 1 and one["mean"] == 5.0 and np.isnan(one["std"])
    assert summarize([np.nan, 2.0, np.inf])["count"] == 1
    assert np.isnan(summarize([0.0, 1.0])["geo_mean"])


def test_distribution_weights():
    ecd = np.array([1.0, 2.0, 4.0])
    np.testing.assert_array_equal(distribution_weights(ecd, "number"), [1, 1, 1])
    np.testing.assert_array_equal(distribution_weights(ecd, "area"), [1, 4, 16])
    np.testing.assert_array_equal(distribution_weights(ecd, "volume"), [1, 8, 64])
    with pytest.raises(SaemiInputError):
        distribution_weights(ecd, "mass")
    # By volume, the median moves to the big particles.
    assert weighted_quantile(ecd, 0.5, distribution_weights(ecd, "volume")) > 3.0


def test_lognormal_pdf_is_a_density():
    x = np.linspace(0, 400, 40_001)
    density = lognormal_pdf(x, np.log(30.0), 0.4)
    assert np.trapezoid(density, x) == pytest.approx(1.0, abs=1e-4)
    assert x[np.argmax(density)] == pytest.approx(30.0 * np.exp(-0.16), abs=0.05)  # the mode
    assert lognormal_pdf(np.array([-1.0, 0.0]), 0.0, 1.0).tolist() == [0.0, 0.0]
    assert np.isnan(lognormal_fit([3.0])[0])


def test_weighted_lognormal_fit():
    values = np.array([1.0, np.e, np.e**2])
    mu, sigma = lognormal_fit(values, weights=[1.0, 2.0, 1.0])
    assert mu == pytest.approx(1.0)
    assert sigma == pytest.approx(np.sqrt(0.5))


def edge_frame():
    return pd.DataFrame(
        {
            "particle_id": [1, 2, 3, 4],
            "ecd_px": [5.0, 10.0, 20.0, 40.0],
            "circularity": [0.9, 0.5, 0.8, 0.95],
            "touches_edge": [False, False, True, False],
            "bbox_w_px": [10, 20, 30, 100],
            "bbox_h_px": [5, 40, 30, 10],
        }
    )


def test_miles_lantuejoul_weights_by_hand():
    weights = miles_lantuejoul_weights(edge_frame(), (50, 100))
    expected = [5000 / (90 * 45), 5000 / (80 * 10), 0.0, 0.0]  # edge particle; as wide as the image
    np.testing.assert_allclose(weights, expected)
    framed = miles_lantuejoul_weights(edge_frame(), (60, 100), frame=(5, 55))
    np.testing.assert_allclose(framed, expected)


def test_edge_selection_modes():
    df = edge_frame()
    kept, weights = edge_selection(df, "include")
    assert len(kept) == 4 and weights is None
    kept, weights = edge_selection(df, "exclude")
    assert kept["particle_id"].tolist() == [1, 2, 4] and weights is None
    kept, weights = edge_selection(df, "miles-lantuejoul", image_shape=(50, 100))
    assert kept["particle_id"].tolist() == [1, 2]
    np.testing.assert_allclose(weights, [5000 / (90 * 45), 5000 / (80 * 10)])
    with pytest.raises(SaemiInputError):
        edge_selection(df, "ignore")


def test_edge_selection_reads_geometry_from_measurement():
    labels = np.zeros((40, 50), dtype=np.int32)
    labels[10:14, 10:20] = 1
    labels[0:5, 30:35] = 2
    kept, weights = edge_selection(measure_particles(labels), "miles-lantuejoul")
    assert kept["particle_id"].tolist() == [1]
    np.testing.assert_allclose(weights, [2000 / (40 * 36)])


def test_apply_filters_counts_each_limit():
    kept, removed = apply_filters(edge_frame(), min_ecd=8, max_ecd=30, min_circularity=0.6)
    assert kept["particle_id"].tolist() == [3]
    assert removed == {"min_ecd": 1, "max_ecd": 1, "min_circularity": 1}
    kept, removed = apply_filters(edge_frame())
    assert len(kept) == 4 and removed == {"min_ecd": 0, "max_ecd": 0, "min_circularity": 0}
    nm = edge_frame().assign(ecd_nm=lambda d: d["ecd_px"] * 2)
    kept, removed = apply_filters(nm, min_ecd=15, ecd_col="ecd_nm")
    assert kept["particle_id"].tolist() == [2, 3, 4] and removed["min_ecd"] == 1
    with pytest.raises(SaemiInputError):
        apply_filters(edge_frame(), min_ecd=10, max_ecd=5)


def test_histogram_fractions_and_cumulative():
    values = np.array([0.5, 1.2, 1.9, 2.0, 2.1, 5.5])
    result = histogram(values, 1.0)
    np.testing.assert_allclose(result.edges, np.arange(0, 7.0))
    np.testing.assert_array_equal(result.counts, [1, 2, 2, 0, 0, 1])
    np.testing.assert_allclose(result.heights, np.array([1, 2, 2, 0, 0, 1]) / 6)
    np.testing.assert_allclose(result.cumulative, np.cumsum([1, 2, 2, 0, 0, 1]) / 6)
    weighted = histogram(values, 2.0, weights=values**3)
    expected, _ = np.histogram(values, bins=[0, 2, 4, 6], weights=values**3)
    np.testing.assert_allclose(weighted.heights, expected / np.sum(values**3))
    assert weighted.cumulative[-1] == pytest.approx(1.0)
    assert len(histogram(values, 0.5).heights) > len(result.heights)


def test_histogram_edge_cases():
    empty = histogram([], 1.0)
    assert empty.heights.size == 0 and empty.counts.size == 0
    single = histogram([3.0], 2.0)
    np.testing.assert_allclose(single.edges, [2.0, 4.0])
    np.testing.assert_allclose(single.heights, [1.0])
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(SaemiInputError):
            histogram([1.0], bad)
    with pytest.raises(SaemiInputError, match="bins"):
        histogram([0.0, 1e6], 1e-3)


def test_miles_lantuejoul_reduces_edge_bias():
    """Discs of log-normal size in a plane, cut into windows: dropping edge particles loses the
    big ones preferentially; the Miles-Lantuejoul weights restore the mean ECD."""
    rng = np.random.default_rng(11)
    plane_px, window_px = 1600, 200
    plane = np.zeros((plane_px, plane_px), dtype=np.int32)
    centres, radii = [], []
    for _ in range(6000):
        if len(radii) == 420:
            break
        radius = min(rng.lognormal(np.log(14.0), 0.5), 70.0)
        centre = rng.uniform(radius + 1, plane_px - radius - 1, size=2)
        if centres and np.min(
            np.hypot(*(np.array(centres) - centre).T) - np.array(radii) - radius
        ) < 3:
            continue
        centres.append(centre)
        radii.append(radius)
        rr, cc = disk(tuple(centre), radius, shape=plane.shape)
        plane[rr, cc] = len(radii)
    true_mean = measure_particles(plane)["ecd_px"].mean()

    ecd, weights, excluded = [], [], []
    for top in range(0, plane_px, window_px):
        for left in range(0, plane_px, window_px):
            window = label(plane[top : top + window_px, left : left + window_px] > 0)
            df = measure_particles(window)
            kept, w = edge_selection(df, "miles-lantuejoul")
            ecd.append(kept["ecd_px"].to_numpy())
            weights.append(w)
            excluded.append(edge_selection(df, "exclude")[0]["ecd_px"].to_numpy())
    ml_mean = summarize(np.concatenate(ecd), np.concatenate(weights), n_boot=0)["mean"]
    drop_mean = summarize(np.concatenate(excluded), n_boot=0)["mean"]
    assert drop_mean < true_mean * 0.95  # the bias is real
    assert abs(ml_mean - true_mean) < 0.4 * abs(drop_mean - true_mean)
