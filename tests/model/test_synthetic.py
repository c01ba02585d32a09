"""Tests of the synthetic SEM/TEM generator: exact labels, appearance and burned-in decorations."""

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label as connected_components

from app.analysis.errors import SaemiInputError
from model.synthetic import (
    format_length,
    generate_crop,
    generate_sample,
    nice_scale_length_nm,
    render_data_bar,
    render_panel_letter,
    render_scale_bar,
)

DECORATED = {"data_bar": True, "letters": True}
PLAIN = {"data_bar": False, "scale_bar": False, "letters": False}


def _touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of distinct non-zero ids that are 4-neighbours somewhere."""
    pairs = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        differ = (a != b) & (a > 0) & (b > 0)
        for i, j in zip(a[differ].tolist(), b[differ].tolist()):
            pairs.add((min(i, j), max(i, j)))
    return pairs


def _box_is_unlabelled(labels: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    x0, y0, x1, y1 = box
    return not labels[y0:y1, x0:x1].any()


def test_same_arguments_give_the_same_sample_and_another_seed_does_not():
    first = generate_sample(11, 160, 200, modality=None)
    again = generate_sample(11, 160, 200, modality=None)
    other = generate_sample(12, 160, 200, modality=None)
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert first.nm_per_px == again.nm_per_px
    assert not np.array_equal(first.image, other.image)


def test_generate_crop_is_reproducible_from_the_generator_state():
    image_a, labels_a = generate_crop(np.random.default_rng(4), size=96)
    image_b, labels_b = generate_crop(np.random.default_rng(4), size=96)
    assert image_a.shape == labels_a.shape == (96, 96)
    assert image_a.dtype == np.uint8 and labels_a.dtype == np.uint16
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(labels_a, labels_b)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("modality", ["sem", "tem"])
def test_labels_are_contiguous_connected_and_absent_from_decorations(seed, modality):
    sample = generate_sample(seed, 256, 320, modality=modality, **DECORATED)
    labels = sample.labels
    assert sample.image.shape == labels.shape == (256, 320)
    assert sample.image.dtype == np.uint8 and labels.dtype == np.uint16
    n = int(labels.max())
    assert n > 0
    np.testing.assert_array_equal(np.unique(labels), np.arange(n + 1))
    assert connected_components(labels, background=0, connectivity=1).max() == n
    y0, y1 = sample.data_bar_rows
    assert y1 - y0 >= 0.06 * 256 - 1 and (y0 == 0 or y1 == 256)
    assert not labels[y0:y1].any()
    assert sample.scale_bar["in_data_bar"]
    assert y0 <= sample.scale_bar["y0"] < sample.scale_bar["y1"] <= y1
    assert _box_is_unlabelled(labels, sample.letter["bbox"])
    areas_px = np.bincount(labels.ravel())[1:]
    np.testing.assert_allclose(sample.true_ecd_px, np.sqrt(4 * areas_px / math.pi))


@pytest.mark.parametrize("seed", range(4))
def test_free_scale_bar_and_letter_cover_no_particle(seed):
    sample = generate_sample(seed, 256, 320, modality=None, data_bar=False, scale_bar=True, letters=True)
    assert sample.data_bar_rows is None
    assert not sample.scale_bar["in_data_bar"]
    assert _box_is_unlabelled(sample.labels, sample.scale_bar["bbox"])
    assert _box_is_unlabelled(sample.labels, sample.letter["bbox"])


@pytest.mark.parametrize("seed", range(4))
def test_sem_particles_are_brighter_and_tem_particles_darker_than_the_substrate(seed):
    sem = generate_sample(seed, 192, 256, modality="sem", **PLAIN)
    tem = generate_sample(seed, 192, 256, modality="tem", **PLAIN)
    for sample, sign in ((sem, 1), (tem, -1)):
        image = sample.image.astype(float)
        inside = sample.labels > 0
        contrast = image[inside].mean() - image[~inside].mean()
        assert sign * contrast > 10, (sample.modality, contrast)


def test_tem_thicker_particle_centres_are_darker_than_their_rims():
    sample = generate_sample(3, 256, 320, modality="tem", shape="round", arrangement="isolated",
                             n_particles=20, median_diameter_px=40, sigma_log=0.05, **PLAIN)
    depth = ndimage.distance_transform_edt(sample.labels > 0)
    image = sample.image.astype(float)
    assert image[depth > 12].mean() < image[(depth > 0) & (depth <= 3)].mean() - 5


@pytest.mark.parametrize("shape", ["round", "faceted", "irregular"])
def test_equivalent_diameters_follow_the_requested_log_normal_law(shape):
    median_px, sigma_log = 20.0, 0.25
    sample = generate_sample(1, 512, 640, modality="sem", shape=shape, arrangement="isolated",
                             n_particles=250, median_diameter_px=median_px, sigma_log=sigma_log, **PLAIN)
    ecd_px = sample.true_ecd_px[~sample.touches_border]
    assert ecd_px.size > 150
    assert abs(np.median(ecd_px) / median_px - 1) < 0.1
    assert abs(np.std(np.log(ecd_px)) - sigma_log) < 0.05


def test_particles_of_hundreds_of_pixels_and_of_a_few_pixels_can_be_drawn():
    big = generate_sample(2, 512, 512, shape="round", n_particles=1, median_diameter_px=400,
                          sigma_log=0.0, arrangement="isolated", **PLAIN)
    assert big.true_ecd_px.max() > 250
    small = generate_sample(2, 128, 128, shape="round", n_particles=60, median_diameter_px=5,
                            sigma_log=0.0, arrangement="isolated", **PLAIN)
    inner = small.true_ecd_px[~small.touches_border]
    assert inner.size > 30 and abs(np.median(inner) - 5) < 1


def test_touching_arrangement_makes_touching_pairs_and_isolated_does_not():
    common = {"modality": "sem", "shape": "mixed", "n_particles": 60, "median_diameter_px": 24, **PLAIN}
    touching = generate_sample(5, 256, 320, arrangement="touching", **common)
    isolated = generate_sample(5, 256, 320, arrangement="isolated", **common)
    assert len(_touching_pairs(touching.labels)) >= touching.labels.max() // 2
    assert len(_touching_pairs(isolated.labels)) == 0


def test_clustered_arrangement_forms_agglomerates():
    sample = generate_sample(6, 256, 320, modality="tem", shape="round", arrangement="clustered",
                             n_particles=80, median_diameter_px=14, **PLAIN)
    clumps = connected_components(sample.labels > 0, connectivity=1)
    assert clumps.max() < sample.labels.max() / 3


@pytest.mark.parametrize("nm_per_px", [0.37, 2.0, 12.5, 55.0])
def test_generated_scale_bar_length_matches_the_pixel_size(nm_per_px):
    sample = generate_sample(8, 300, 400, nm_per_px=nm_per_px, data_bar=True, scale_bar=True)
    bar = sample.scale_bar
    assert abs(bar["length_px"] - bar["length_nm"] / nm_per_px) <= 0.5
    assert bar["x1"] - bar["x0"] == bar["length_px"]
    assert 0.1 * 400 <= bar["length_px"] <= 0.25 * 400 + 1
    row = sample.image[bar["y"]]
    assert np.all(row[bar["x0"] : bar["x1"]] == row[bar["x0"]])  # the bar is one uniform stroke
    assert row[bar["x0"] - 1] != row[bar["x0"]] and row[bar["x1"]] != row[bar["x0"]]
    assert bar["label"] == format_length(bar["length_nm"])


def test_render_scale_bar_draws_a_bar_of_the_stated_length():
    image, info = render_scale_bar(np.zeros((200, 300), np.uint8), 2.5, length_nm=200, corner="bottom-left")
    assert info["length_px"] == 80 and info["label"] == "200 nm"
    bright_columns = np.nonzero(image[info["y"]] == 255)[0]
    assert bright_columns.min() == info["x0"] and bright_columns.max() == info["x1"] - 1
    assert bright_columns.size == 80
    x0, y0, x1, y1 = info["bbox"]
    assert image[:y0].max() == 0 and image[y1:].max() == 0
    assert y0 < info["y0"]  # the label sits above the bar
    assert x0 < 150  # bottom-left corner


def test_render_scale_bar_keeps_float_images_float_and_boxes_the_bar():
    gray = np.full((120, 160), 0.5, np.float32)
    image, info = render_scale_bar(gray, 1.0, length_nm=20, box=True, bright=False)
    assert image.dtype == np.float32
    x0, y0, x1, y1 = info["bbox"]
    assert image[y0:y1, x0:x1].max() == 1.0 and image[info["y"], info["x0"]] == 0.0
    outside = np.ones(image.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert np.all(image[outside] == 0.5)


def test_render_data_bar_fills_the_bottom_rows_with_a_uniform_strip_and_text():
    image, info = render_data_bar(np.full((400, 500), 128, np.uint8), 5.0, height_px=32, dark=True)
    y0, y1 = info["rows"]
    assert (y0, y1) == (368, 400)
    strip = image[y0:y1]
    assert np.mean(strip == 20) > 0.7  # mostly the uniform background
    assert np.any(strip > 200)  # light text and scale bar
    assert np.all(image[:y0] == 128)
    assert info["scale_bar"]["length_px"] == round(info["scale_bar"]["length_nm"] / 5.0)
    assert "mag" in info["text"]
    top, top_info = render_data_bar(np.zeros((100, 200), np.uint8), 1.0, position="top", dark=False)
    assert top_info["rows"][0] == 0 and np.mean(top[: top_info["rows"][1]] == 230) > 0.5


def test_render_panel_letter_stays_in_its_corner():
    image, info = render_panel_letter(np.zeros((200, 200), np.uint8), "b)", corner="top-right")
    x0, y0, x1, y1 = info["bbox"]
    assert x0 > 100 and y1 < 100
    assert image[y0:y1, x0:x1].max() > 200
    assert image.sum() == image[y0:y1, x0:x1].sum()


def test_nice_scale_lengths_are_round_and_fit_the_width():
    for nm_per_px in (0.11, 0.9, 3.3, 17.0, 240.0):
        length_nm = nice_scale_length_nm(nm_per_px, 1024)
        mantissa = length_nm / 10 ** math.floor(math.log10(length_nm))
        assert round(mantissa, 6) in (1.0, 2.0, 5.0)
        assert 0.1 <= length_nm / nm_per_px / 1024 <= 0.25
    assert format_length(500) == "500 nm"
    assert format_length(2000) == "2 µm"


@pytest.mark.parametrize(
    "kwargs",
    [{"modality": "xray"}, {"shape": "blob"}, {"arrangement": "stacked"}, {"median_diameter_px": -3.0}],
)
def test_bad_arguments_raise_a_clear_error(kwargs):
    with pytest.raises(SaemiInputError):
        generate_sample(0, 64, 64, **kwargs)


def test_blur_sigma_sets_the_edge_width_and_leaves_the_labels_alone():
    kwargs = dict(modality="tem", shape="round", median_diameter_px=30.0, sigma_log=0.0, n_particles=6,
                  arrangement="isolated", data_bar=False, scale_bar=False, letters=False)
    sharp = generate_sample(11, 160, 160, blur_sigma_px=0.3, **kwargs)
    soft = generate_sample(11, 160, 160, blur_sigma_px=3.0, **kwargs)
    assert np.array_equal(sharp.labels, soft.labels)
    edge = ndimage.binary_dilation(sharp.labels > 0) & ~ndimage.binary_erosion(sharp.labels > 0, iterations=2)
    # A wider point-spread function makes the step across the outline shallower.
    gradient = [np.hypot(*np.gradient(ndimage.gaussian_filter(s.image.astype(float), 1.0)))[edge].mean()
                for s in (sharp, soft)]
    assert gradient[0] > 1.5 * gradient[1]


def _log_thirds(ecd_px: np.ndarray, low: float, high: float) -> np.ndarray:
    """How many diameters fall in each third of ``[low, high]`` on a log scale."""
    edges = np.exp(np.linspace(math.log(low), math.log(high), 4))
    return np.histogram(np.clip(ecd_px, low, high), edges)[0]


def test_diameter_range_spreads_a_powder_over_a_decade_and_a_half_log_uniformly():
    sample = generate_sample(2, 768, 1024, modality="sem", shape="round", arrangement="touching",
                             diameter_range_px=(8.0, 150.0), n_particles=150, **PLAIN)
    ecd_px = sample.true_ecd_px[~sample.touches_border]
    assert ecd_px.size >= 90
    assert np.percentile(ecd_px, 2) < 10 and ecd_px.max() > 110  # 8-150 px in one frame
    assert ecd_px.min() > 8 * 0.85 and ecd_px.max() < 150 * 1.05
    thirds = _log_thirds(ecd_px, 8.0, 150.0)
    assert thirds.min() >= 0.2 * ecd_px.size, thirds  # each third of the log range is populated alike
    assert thirds[0] >= 25  # enough small particles to count
    coverage = np.mean(sample.labels > 0)
    assert 0.2 < coverage < 0.65  # the big particles do not fill the frame
    assert sample.params["diameter_range_px"] == (8.0, 150.0)
    assert sample.params["median_diameter_px"] == pytest.approx(math.sqrt(8 * 150))


def test_diameter_range_default_count_follows_the_coverage():
    sample = generate_sample(4, 384, 512, modality="tem", shape="round", arrangement="isolated",
                             diameter_range_px=(6.0, 90.0), **PLAIN)
    assert 0.05 < np.mean(sample.labels > 0) < 0.4
    assert sample.params["n_placed"] >= 10


@pytest.mark.parametrize("kwargs", [{"diameter_range_px": (8.0, 4.0)}, {"diameter_range_px": (0.0, 5.0)},
                                    {"diameter_range_px": "big"},
                                    {"diameter_range_px": (4.0, 8.0), "median_diameter_px": 6.0}])
def test_bad_diameter_ranges_raise_a_clear_error(kwargs):
    with pytest.raises(SaemiInputError):
        generate_sample(0, 64, 64, **kwargs)


@pytest.mark.parametrize("modality", ["sem", "tem"])
@pytest.mark.parametrize("diameter_px", [4.0, 6.0, 8.0])
def test_tiny_particles_keep_their_size_survive_the_clean_up_and_show_in_the_image(modality, diameter_px):
    sample = generate_sample(9, 160, 192, modality=modality, shape="round", arrangement="isolated",
                             n_particles=80, diameter_range_px=(diameter_px, diameter_px), blur_sigma_px=1.2,
                             **PLAIN)
    # Only particles cut by the frame to under the minimum area may go unlabelled.
    assert sample.labels.max() >= sample.params["n_placed"] - 2
    ecd_px = sample.true_ecd_px[~sample.touches_border]
    assert ecd_px.size >= 60
    assert abs(np.median(ecd_px) / diameter_px - 1) < 0.05
    assert np.all(np.abs(ecd_px - diameter_px) < 0.75)
    # Each particle differs from the ring of substrate around it in its modality's direction.
    image = sample.image.astype(float)
    ids = np.arange(1, sample.labels.max() + 1)
    inside = ndimage.mean(image, sample.labels, ids)
    ring_labels = ndimage.grey_dilation(sample.labels, size=7) * (sample.labels == 0)
    ring_labels[ndimage.binary_dilation(sample.labels > 0, iterations=1)] = 0
    around = ndimage.mean(image, ring_labels, ids)
    sign = 1 if modality == "sem" else -1
    assert np.mean(sign * (inside - around) > 0) > 0.9


def test_satellites_touch_their_host_and_are_labels_of_their_own():
    sample = generate_sample(4, 384, 512, modality="sem", shape="round", arrangement="isolated", n_particles=12,
                             median_diameter_px=90, sigma_log=0.1, satellites=True, **PLAIN)
    host = sample.satellite_host
    assert host.shape == (sample.labels.max(),)
    satellite_ids = np.nonzero(host)[0] + 1
    assert satellite_ids.size >= 10
    assert sample.params["n_satellites"] >= satellite_ids.size
    pairs = _touching_pairs(sample.labels)
    for satellite_id in satellite_ids:
        host_id = int(host[satellite_id - 1])
        assert host[host_id - 1] == 0  # a host is not itself a satellite
        assert (min(host_id, satellite_id), max(host_id, satellite_id)) in pairs
    inner = satellite_ids[~sample.touches_border[satellite_ids - 1]]
    ratio = sample.true_ecd_px[inner - 1] / sample.true_ecd_px[host[inner - 1] - 1]
    assert inner.size >= 8
    assert np.all((ratio > 0.035) & (ratio < 0.2)), ratio  # 5-15 % of the host, give or take pixels
    assert 0.06 < np.median(ratio) < 0.14


def test_satellites_need_large_round_hosts_and_stay_off_by_default():
    plain = generate_sample(4, 256, 320, modality="tem", shape="round", n_particles=20, median_diameter_px=60,
                            sigma_log=0.05, arrangement="isolated", **PLAIN)
    assert not plain.satellite_host.any() and "n_satellites" not in plain.params
    small = generate_sample(4, 256, 320, modality="tem", shape="round", n_particles=20, median_diameter_px=20,
                            sigma_log=0.05, arrangement="isolated", satellites=True, **PLAIN)
    assert small.params["n_satellites"] == 0 and not small.satellite_host.any()


def test_new_options_are_deterministic_by_seed():
    kwargs = dict(modality="tem", diameter_range_px=(5.0, 80.0), satellites=True, **PLAIN)
    first = generate_sample(21, 192, 256, **kwargs)
    again = generate_sample(21, 192, 256, **kwargs)
    other = generate_sample(22, 192, 256, **kwargs)
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.satellite_host, again.satellite_host)
    assert not np.array_equal(first.labels, other.labels)


def test_generate_crop_draws_polydisperse_tiny_and_satellite_cases(monkeypatch):
    import model.synthetic.sampling as sampling

    calls = []
    real = sampling.generate_sample

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "generate_sample", recording)
    rng = np.random.default_rng(3)
    for _ in range(150):
        image, labels = generate_crop(rng, size=96)
        assert image.shape == labels.shape == (96, 96)
    ranges = [c["diameter_range_px"] for c in calls if c["diameter_range_px"] is not None]
    wide = [r for r in ranges if r[1] / r[0] >= 9.5]
    tiny = [r for r in ranges if r == (4.0, 8.0)]
    with_satellites = [c for c in calls if c["satellites"]]
    assert 0.06 * 150 <= len(wide) <= 0.2 * 150
    assert 0.03 * 150 <= len(tiny) <= 0.15 * 150
    assert 0.02 * 150 <= len(with_satellites) <= 0.14 * 150
    assert all(c["shape"] == "round" and c["median_diameter_px"] >= 40 for c in with_satellites)
