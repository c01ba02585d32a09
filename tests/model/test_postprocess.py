import numpy as np

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
