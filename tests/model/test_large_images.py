"""The band-at-a-time paths that keep memory bounded on very large images give the whole-image results.

Each path is forced onto small arrays by shrinking its band size, and compared with the plain
whole-image computation it replaces (Pillow's resize, scikit-image's watershed, numpy's bincount).
"""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.segmentation import watershed

import app.analysis.labels as labels_module
import model.postprocess as postprocess
import model.preprocess as preprocess
from app.analysis.labels import sequential_labels
from model.postprocess import banded_watershed, maps_to_instances, upsample_instances
from model.preprocess import LevelledImage, nearest_indices, normalize_percentile, resize_float


def pillow_bilinear(image, shape):
    return np.asarray(Image.fromarray(np.asarray(image, np.float32), mode="F")
                      .resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


@pytest.mark.parametrize("band_px", [1, 700, 1 << 22])
def test_banded_resize_equals_pillows_whole_image_resize(monkeypatch, band_px):
    monkeypatch.setattr(preprocess, "BAND_PX", band_px)
    rng = np.random.default_rng(band_px)
    for _ in range(40):
        source = tuple(int(n) for n in rng.integers(1, 200, 2))
        target = tuple(int(n) for n in rng.integers(1, 260, 2))
        image = (rng.random(source) * 100).astype(np.float32)
        # Pillow 13 runs its vertical pass first for some sizes, so the two agree to float32 rounding.
        np.testing.assert_allclose(resize_float(image, target), pillow_bilinear(image, target), rtol=1e-6, atol=1e-4)


def test_a_levelled_image_resizes_as_its_normalised_copy_would(monkeypatch):
    monkeypatch.setattr(preprocess, "BAND_PX", 500)
    rng = np.random.default_rng(1)
    gray = ndimage.gaussian_filter(rng.random((123, 97)), 2).astype(np.float32) * 7 + 3
    levelled = LevelledImage.of(gray)
    normalised = normalize_percentile(gray)
    assert normalised.dtype == np.float32 and normalised.min() == 0.0 and normalised.max() == 1.0
    assert np.array_equal(levelled.normalised(), normalised)
    assert np.array_equal(levelled.resized((61, 200)), resize_float(normalised, (61, 200)))
    window = (slice(10, 80), slice(5, 60))
    assert np.array_equal(levelled[window].normalised(), normalised[window])
    assert LevelledImage.of(np.full((9, 9), 4.0)).resized((4, 4)).max() == 0.0


def test_nearest_indices_reproduce_pillows_nearest_resize():
    rng = np.random.default_rng(2)
    for _ in range(60):
        source = tuple(int(n) for n in rng.integers(1, 150, 2))
        target = tuple(int(n) for n in rng.integers(1, 400, 2))
        labels = rng.integers(0, 1000, source).astype(np.int32)
        expected = np.asarray(Image.fromarray(labels, mode="I").resize((target[1], target[0]),
                                                                      Image.Resampling.NEAREST))
        assert np.array_equal(labels[nearest_indices(source[0], target[0])][:, nearest_indices(source[1], target[1])],
                              expected)


def random_maps(rng, shape):
    foreground = ndimage.gaussian_filter(rng.random(shape), 2)
    foreground = (foreground - foreground.min()) / (foreground.max() - foreground.min())
    centre = ndimage.gaussian_filter(rng.random(shape), 1.5).astype(np.float32)  # continuous: no ties
    return foreground.astype(np.float32), centre


def test_banded_watershed_equals_one_watershed_on_the_whole_mask(monkeypatch):
    rng = np.random.default_rng(3)
    for _ in range(30):
        foreground, centre = random_maps(rng, tuple(int(n) for n in rng.integers(20, 160, 2)))
        mask = foreground > 0.5
        markers, count = ndimage.label(mask & (centre > np.quantile(centre, 0.7)))
        expected = watershed(-centre, markers, mask=mask)
        monkeypatch.setattr(postprocess, "WATERSHED_BAND_PX", int(rng.integers(1, 3000)))
        assert np.array_equal(banded_watershed(centre, markers, mask), expected)


def test_instances_are_the_same_with_bands_as_without(monkeypatch):
    rng = np.random.default_rng(4)
    foreground, centre = random_maps(rng, (150, 170))
    whole = maps_to_instances(foreground, centre)
    monkeypatch.setattr(postprocess, "WATERSHED_BAND_PX", 900)
    monkeypatch.setattr(labels_module, "_BAND_PX", 333)
    assert whole.max() > 10
    assert np.array_equal(maps_to_instances(foreground, centre), whole)


def test_sequential_labels_in_place_and_counted_in_bands(monkeypatch):
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 50, (60, 70)).astype(np.int32) * 3
    expected = sequential_labels(raw, min_area_px=60)
    monkeypatch.setattr(labels_module, "_BAND_PX", 97)
    assert np.array_equal(sequential_labels(raw, min_area_px=60), expected)
    copy = raw.copy()
    result = sequential_labels(copy, min_area_px=60, in_place=True)
    assert result is copy and np.array_equal(copy, expected)
    assert not np.shares_memory(sequential_labels(raw, min_area_px=60), raw)


def test_upsampling_from_low_resolution_maps_equals_upsampling_a_resized_copy(monkeypatch):
    rng = np.random.default_rng(6)
    foreground, centre = random_maps(rng, (60, 80))
    small = maps_to_instances(foreground, centre)
    shape = (157, 203)
    expected = upsample_instances(small, pillow_bilinear(foreground, shape), min_area_px=9)
    monkeypatch.setattr(preprocess, "BAND_PX", 1000)
    got = upsample_instances(small, foreground, shape=shape, min_area_px=9)
    assert got.shape == shape and got.max() > 5
    # the probabilities agree to float32 rounding, so at most a pixel sitting on the threshold flips
    assert (got != expected).sum() <= 2
