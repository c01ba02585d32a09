import argparse

import numpy as np
import pytest

from model.compare_postprocess import methods_for, thresholds
from model.metrics import obj_f1
from model.postprocess import maps_to_instances
from model.preprocess import instance_targets
from tests.model.conftest import two_touching_discs


def test_targets_peak_at_centres_and_vanish_between_touching_particles():
    labels = two_touching_discs()
    targets = instance_targets(labels)
    assert np.array_equal(targets[..., 0] > 0, labels > 0)
    for index in (1, 2):
        assert targets[..., 1][labels == index].max() == 1.0
    seam = (labels == 1) & np.roll(labels == 2, -1, axis=1)
    assert targets[..., 1][seam].max() < 0.15


def test_watershed_separates_touching_particles():
    labels = two_touching_discs()
    targets = instance_targets(labels)
    instances = maps_to_instances(targets[..., 0], targets[..., 1])
    assert instances.dtype == np.int32
    assert instances.max() == 2
    assert obj_f1(labels, instances) == 1.0
    # A plain connected-component labelling of the foreground would merge them.
    assert obj_f1(labels, (labels > 0).astype(np.int32)) < 1.0


def test_foreground_without_marker_becomes_its_own_particle():
    foreground = np.zeros((40, 40), np.float32)
    foreground[5:15, 5:15] = 1.0
    centre = np.zeros_like(foreground)
    instances = maps_to_instances(foreground, centre)
    assert instances.max() == 1
    assert (instances > 0).sum() == 100


def test_empty_maps_give_no_particles():
    zeros = np.zeros((16, 16), np.float32)
    assert maps_to_instances(zeros, zeros).max() == 0


def test_instances_found_at_half_resolution_come_back_with_full_resolution_outlines():
    from model.metrics import dice, ecd_err
    from model.postprocess import upsample_instances
    from model.preprocess import resize_float, resize_labels

    labels = two_touching_discs(shape=(128, 192), radius=28)
    small_targets = instance_targets(resize_labels(labels, (64, 96)))
    small = maps_to_instances(small_targets[..., 0], small_targets[..., 1])
    # The particle probability resized back to full size, as the segmenter does it.
    foreground = resize_float(small_targets[..., 0], labels.shape)
    instances = upsample_instances(small, foreground)
    assert instances.shape == labels.shape and instances.dtype == np.int32
    assert instances.max() == 2 and obj_f1(labels, instances) == 1.0
    assert dice(labels, instances) > 0.98 and ecd_err(labels, instances) < 0.02
    # Every foreground pixel of a kept particle is labelled; nothing outside the foreground is.
    assert np.array_equal(instances > 0, foreground > 0.5)


def test_upsampling_drops_particles_under_the_full_resolution_minimum_area():
    from model.postprocess import upsample_instances

    small = np.zeros((8, 8), np.int32)
    small[1, 1], small[4:7, 4:7] = 1, 2
    # Grown by one pixel, the single pixel covers 5 small pixels (80 full-size ones), the 3x3
    # particle 21 (336).
    instances = upsample_instances(small, np.ones((32, 32), np.float32), min_area_px=100)
    assert instances.max() == 1
    assert (instances == 1).sum() >= 9 * 16


def test_comparison_grid_takes_the_thresholds_it_is_given():
    labels = two_touching_discs()
    maps = instance_targets(labels)
    results = methods_for(maps, 1.0, foreground_thresholds=(0.55,), centre_thresholds=(0.45, 0.5))
    grid = sorted(key for key in results if key.startswith("centre@"))
    assert grid == ["centre@0.55/0.45", "centre@0.55/0.5"]
    assert obj_f1(labels, results["centre@0.55/0.5"]) == 1.0
    assert thresholds("0.45,0.5") == (0.45, 0.5)
    for bad in ("0.5,x", "0.5,1.2", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            thresholds(bad)


def blurred_disc_image(radius_px, sigma_px, *, shape=(64, 64), centre=(31.3, 32.6), inside=0.8, outside=0.2):
    """A disc of ``radius_px`` (area fractions from 8x8 supersampling) blurred by ``sigma_px``, and its exact ECD."""
    from scipy import ndimage

    fine = 8
    rows, cols = (np.indices((shape[0] * fine, shape[1] * fine)) + 0.5) / fine
    disc = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius_px ** 2).astype(np.float64)
    fraction = disc.reshape(shape[0], fine, shape[1], fine).mean(axis=(1, 3))
    image = ndimage.gaussian_filter(outside + (inside - outside) * fraction, sigma_px)
    return image.astype(np.float32), 2.0 * radius_px


def disc_labels(radius_px, shape=(64, 64), centre=(31.3, 32.6), value=1):
    rows, cols = np.indices(shape) + 0.5
    return np.where((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius_px ** 2, value, 0).astype(np.int32)


@pytest.mark.parametrize("bright", [True, False])
@pytest.mark.parametrize("start_radius_px", [8.0, 12.0])  # 2 px too small, 2 px too large
def test_refined_outline_of_a_blurred_disc_has_its_ecd(bright, start_radius_px):
    from model.postprocess import refine_outlines

    image, true_ecd_px = blurred_disc_image(10.0, 1.0, inside=0.8 if bright else 0.2, outside=0.2 if bright else 0.8)
    start = disc_labels(start_radius_px)
    refined = refine_outlines(image, start)
    refined_ecd_px = np.sqrt(4 * np.count_nonzero(refined == 1) / np.pi)
    assert abs(np.sqrt(4 * np.count_nonzero(start) / np.pi) - true_ecd_px) > 3.0  # the start was wrong
    assert refined_ecd_px == pytest.approx(true_ecd_px, abs=0.3)
    assert set(np.unique(refined)) == {0, 1}


def test_refinement_puts_a_rimmed_particle_edge_at_its_rim_and_leaves_neighbours_alone():
    from model.postprocess import refine_outlines

    # An SEM-like particle: interior 0.35, a 3 px rim at 0.8, background 0.2 (the interior is below
    # the midpoint 0.5 between rim and background, so only the outline may move, not the interior).
    rows, cols = np.indices((64, 96)) + 0.5
    radius_map = np.hypot(rows - 32.0, cols - 30.0)
    sharp = np.where(radius_map <= 12.0, np.where(radius_map > 9.0, 0.8, 0.35), 0.2)
    from scipy import ndimage

    image = ndimage.gaussian_filter(sharp, 0.7).astype(np.float32)
    start = np.zeros((64, 96), np.int32)
    start[radius_map <= 14.0] = 1
    start[np.hypot(rows - 32.0, cols - 60.0) <= 10.0] = 2  # a neighbour with no contrast in the image
    refined = refine_outlines(image, start)
    ecd_px = np.sqrt(4 * np.count_nonzero(refined == 1) / np.pi)
    assert ecd_px == pytest.approx(np.sqrt(4 * np.count_nonzero(radius_map <= 12.0) / np.pi), abs=0.3)
    assert np.array_equal(refined == 2, start == 2)


def test_refining_many_particles_at_once_treats_each_as_if_it_were_alone():
    from model.postprocess import refine_outlines

    # Three separated discs of different polarity and start errors: refined together, each gets the
    # outline it gets when it is the only particle in the image.
    shape = (64, 192)
    image = np.full(shape, 0.5, np.float32)
    start = np.zeros(shape, np.int32)
    for index, (centre_col, inside, start_radius_px) in enumerate([(32.6, 0.9, 8.0), (96.2, 0.1, 12.0),
                                                                  (160.4, 0.8, 10.0)], start=1):
        disc, _ = blurred_disc_image(10.0, 1.0, shape=shape, centre=(31.3, centre_col), inside=inside, outside=0.5)
        image += disc - 0.5
        start += disc_labels(start_radius_px, shape=shape, centre=(31.3, centre_col), value=index)
    together = refine_outlines(image, start)
    for index in (1, 2, 3):
        alone = refine_outlines(image, np.where(start == index, index, 0))
        assert np.array_equal(together == index, alone == index)
        ecd_px = np.sqrt(4 * np.count_nonzero(together == index) / np.pi)
        assert ecd_px == pytest.approx(20.0, abs=0.3)


def test_upsampling_can_keep_each_particles_id():
    from model.postprocess import upsample_instances

    small = np.zeros((8, 8), np.int32)
    small[1, 1], small[4:7, 4:7], small[1:3, 5:7] = 3, 7, 9
    # Grown by one pixel and doubled, the single pixel covers 20 full-size pixels: under the minimum.
    kept = upsample_instances(small, np.ones((16, 16)), min_area_px=30, renumber=False)
    assert set(np.unique(kept)) == {0, 7, 9}
    renumbered = upsample_instances(small, np.ones((16, 16)), min_area_px=30)
    assert set(np.unique(renumbered)) == {0, 1, 2}
    assert np.array_equal(kept > 0, renumbered > 0)


def test_only_particles_under_the_size_limit_are_redrawn_and_never_over_a_neighbour():
    from model.postprocess import refine_small_outlines

    shape = (64, 160)
    image = np.full(shape, 0.2, np.float32)
    small, true_small_px = blurred_disc_image(4.0, 1.0, shape=shape, centre=(31.3, 30.2), inside=0.8, outside=0.2)
    large, _ = blurred_disc_image(14.0, 1.0, shape=shape, centre=(31.3, 100.6), inside=0.8, outside=0.2)
    image += small - 0.2 + large - 0.2
    start = disc_labels(6.5, shape=shape, centre=(31.3, 30.2), value=1)  # 13 px across for an 8 px particle
    start += disc_labels(17.0, shape=shape, centre=(31.3, 100.6), value=2)  # too large, but large
    refined = refine_small_outlines(image, start, 16.0)
    assert np.sqrt(4 * np.count_nonzero(refined == 1) / np.pi) == pytest.approx(true_small_px, abs=0.5)
    assert np.array_equal(refined == 2, start == 2)
    assert np.array_equal(refine_small_outlines(image, start, 8.0), start)  # nothing under 8 px: unchanged
    # a small particle whose too-large outline borders a large particle's: the large one keeps every pixel
    touching = start.copy()
    touching[:, :24][start[:, :24] == 0] = 3
    redrawn = refine_small_outlines(image, touching, 16.0)
    assert np.array_equal(redrawn == 3, touching == 3)
    assert np.sqrt(4 * np.count_nonzero(redrawn == 1) / np.pi) < np.sqrt(4 * np.count_nonzero(touching == 1) / np.pi)
