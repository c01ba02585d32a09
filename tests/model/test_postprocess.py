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
