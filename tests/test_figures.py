"""Tests of the plotly figure builders."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from app.analysis.stats import distribution_weights
from app.figures import PALETTE, class_histogram_figure, histogram_figure, label_colour_image, overlay_figure

SIZES_NM = np.random.default_rng(0).lognormal(np.log(40.0), 0.3, 500)


def decode_source(source):
    prefix = "data:image/png;base64,"
    assert source.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(source[len(prefix):]))))


def trace_named(fig, prefix):
    matches = [trace for trace in fig.data if (trace.name or "").startswith(prefix)]
    assert matches, f"no trace named {prefix!r}"
    return matches[0]


def test_bar_count_follows_bin_width():
    wide = histogram_figure(SIZES_NM, bin_width=10.0, unit="nm")
    narrow = histogram_figure(SIZES_NM, bin_width=2.0, unit="nm")
    n_wide, n_narrow = len(wide.data[0].x), len(narrow.data[0].x)
    assert n_narrow > 3 * n_wide
    span = SIZES_NM.max() - SIZES_NM.min()
    assert n_wide == pytest.approx(span / 10.0, abs=2)
    assert np.allclose(narrow.data[0].width, 2.0)


def test_counts_and_hover_carry_units():
    fig = histogram_figure(SIZES_NM, bin_width=5.0, unit="nm", quantity_label="ECD")
    bars = fig.data[0]
    assert sum(bars.y) == pytest.approx(SIZES_NM.size)  # by number: bar heights are counts
    assert "nm" in bars.hovertemplate and "ECD" in bars.hovertemplate
    assert "Particles" in bars.hovertemplate
    low, high = bars.customdata[0][0], bars.customdata[0][1]
    assert high - low == pytest.approx(5.0)
    assert fig.layout.xaxis.title.text == "ECD (nm)"
    assert fig.layout.yaxis.title.text == "Particles"


def test_fit_curve_is_scaled_to_the_bars():
    fig = histogram_figure(SIZES_NM, bin_width=2.0, unit="nm")
    curve = trace_named(fig, "Log-normal fit")
    # Area under the fit equals the area of the bars (counts x bin width).
    area_fit = np.trapezoid(curve.y, curve.x)
    area_bars = sum(fig.data[0].y) * 2.0
    assert area_fit == pytest.approx(area_bars, rel=0.05)
    # The curve peaks at the log-normal mode, exp(mu - sigma**2), for mu = ln 40 nm, sigma = 0.3.
    peak_nm = curve.x[int(np.argmax(curve.y))]
    assert peak_nm == pytest.approx(40.0 * np.exp(-0.09), abs=2.0)
    without = histogram_figure(SIZES_NM, bin_width=2.0, fit=False)
    assert not any((t.name or "").startswith("Log-normal") for t in without.data)


def test_cumulative_curve_on_secondary_axis():
    fig = histogram_figure(SIZES_NM, bin_width=5.0, unit="nm")
    curve = trace_named(fig, "Cumulative")
    assert curve.yaxis == "y2"
    assert curve.y[0] == 0.0 and curve.y[-1] == pytest.approx(100.0)
    assert np.all(np.diff(curve.y) >= 0)
    assert fig.layout.yaxis2.title.text == "Cumulative (%)"
    without = histogram_figure(SIZES_NM, bin_width=5.0, cumulative=False)
    assert all(t.name != "Cumulative" for t in without.data)


def test_volume_weighting_shows_percentages_and_shifts_mass_to_big_particles():
    weights = distribution_weights(SIZES_NM, "volume")
    by_volume = histogram_figure(
        SIZES_NM, bin_width=5.0, unit="nm", weights=weights, basis="volume"
    )
    by_number = histogram_figure(SIZES_NM, bin_width=5.0, unit="nm")
    assert sum(by_volume.data[0].y) == pytest.approx(100.0)
    assert "volume" in by_volume.layout.yaxis.title.text
    centres_v, heights_v = np.array(by_volume.data[0].x), np.array(by_volume.data[0].y)
    centres_n, heights_n = np.array(by_number.data[0].x), np.array(by_number.data[0].y)
    assert np.average(centres_v, weights=heights_v) > np.average(centres_n, weights=heights_n)


def test_empty_values_are_annotated():
    for values in ([], [np.nan]):
        fig = histogram_figure(values, bin_width=1.0)
        assert len(fig.data) == 0
        assert any(a.text == "No particles found" for a in fig.layout.annotations)


def test_label_colour_image_modes():
    labels = np.array([[0, 1, 1], [2, 0, 17]])
    bw = label_colour_image(labels, "bw")
    assert bw.shape == (2, 3, 3) and bw.dtype == np.uint8
    np.testing.assert_array_equal(bw[..., 0], [[0, 255, 255], [255, 0, 255]])
    colour = label_colour_image(labels, "colour")
    np.testing.assert_array_equal(colour[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(colour[0, 1], PALETTE[0])
    np.testing.assert_array_equal(colour[1, 0], PALETTE[1])
    np.testing.assert_array_equal(colour[1, 2], PALETTE[16 % len(PALETTE)])
    with pytest.raises(ValueError):
        label_colour_image(labels, "rainbow")


def test_overlay_opacity_and_modes():
    gray = np.tile(np.arange(40, dtype=np.uint8) * 5, (30, 1))
    labels = np.zeros((30, 40), dtype=np.int32)
    labels[5:15, 5:20] = 1
    labels[18:28, 22:35] = 2
    fig = overlay_figure(gray, labels, opacity=0.35, mode="outline")
    base, overlay = fig.data
    assert base.type == "image" and overlay.type == "image"
    assert overlay.opacity == pytest.approx(0.35)
    np.testing.assert_array_equal(decode_source(base.source), gray)
    rgba = decode_source(overlay.source)
    assert rgba.shape == (30, 40, 4)
    assert rgba[5, 10, 3] == 255 and rgba[10, 10, 3] == 0  # outline painted, inside clear
    np.testing.assert_array_equal(rgba[5, 10, :3], PALETTE[0])
    assert rgba[0, 0, 3] == 0
    filled = decode_source(overlay_figure(gray, labels, opacity=0.8, mode="fill").data[1].source)
    assert filled[10, 10, 3] == 255 and filled[20, 25, 3] == 255 and filled[16, 2, 3] == 0
    np.testing.assert_array_equal(filled[20, 25, :3], PALETTE[1])
    assert fig.layout.yaxis.scaleanchor == "x"
    assert list(fig.layout.yaxis.range) == [29.5, -0.5]


def test_overlay_rejects_mismatched_sizes():
    with pytest.raises(ValueError):
        overlay_figure(np.zeros((10, 10), np.uint8), np.zeros((10, 11), np.int32), opacity=0.5)


def test_figures_have_a_light_look_without_plotly_s_large_template():
    """White background and pale grid, from a small template: the figure goes to the browser on
    every canvas edit, and plotly's own "plotly_white" would add about 6 kB and 15-25 ms to it."""
    import plotly.io as pio

    figures = [histogram_figure(np.array([10.0, 12.0, 15.0, 20.0]), bin_width=2.0),
               overlay_figure(np.zeros((8, 8), np.uint8), np.zeros((8, 8), int), opacity=0.5)]
    for fig in figures:
        layout = fig.layout.template.layout
        assert layout.plot_bgcolor == "white" and layout.paper_bgcolor == "white"
        assert layout.xaxis.gridcolor == layout.yaxis.gridcolor == "#EBF0F8"
        assert len(pio.to_json(fig.layout.template)) < 1000


def test_overlay_frames_the_scale_bar_used_and_names_its_reading():
    labels = np.zeros((100, 200), np.int32)
    fig = overlay_figure(np.zeros((100, 200), np.uint8), labels, opacity=0.5, scale_bar=(40, 140, 90, "200 nm"))
    frames = [shape for shape in fig.layout.shapes if shape.type == "rect"]
    assert [(s.x0, s.x1) for s in frames] == [(39.5, 139.5)]
    assert any("100 px" in a.text and "'200 nm'" in a.text for a in fig.layout.annotations)
    assert not overlay_figure(np.zeros((100, 200), np.uint8), labels, opacity=0.5).layout.shapes


def test_class_histogram_stacks_the_classes_on_shared_bins():
    small, large = SIZES_NM[:200] * 0.5, SIZES_NM[200:]
    counts = class_histogram_figure({"small": small, "large": large}, bin_width=5.0, unit="nm")
    assert [trace.name for trace in counts.data] == ["small (n = 200)", "large (n = 300)"]
    assert counts.layout.barmode == "stack" and counts.layout.yaxis.title.text == "Particles"
    assert list(counts.data[0].x) == list(counts.data[1].x)  # the same bins
    assert sum(counts.data[0].y) == 200 and sum(counts.data[1].y) == 300
    weights = {"small": distribution_weights(small, "volume"), "large": distribution_weights(large, "volume")}
    by_volume = class_histogram_figure({"small": small, "large": large}, bin_width=5.0, weights_by_class=weights,
                                       unit="nm", basis="volume")
    shares = [float(np.sum(trace.y)) for trace in by_volume.data]
    assert sum(shares) == pytest.approx(100.0)
    assert shares[0] == pytest.approx(100.0 * weights["small"].sum() / (weights["small"].sum()
                                                                        + weights["large"].sum()))
    empty = class_histogram_figure({"small": [], "large": [np.nan]}, bin_width=5.0)
    assert not empty.data and empty.layout.annotations[0].text == "No particles found"
