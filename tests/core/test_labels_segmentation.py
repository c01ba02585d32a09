"""Classical segmentation, polarity, splitting and label finalisation on hand-built images."""

import numpy as np
import pytest

from app.analysis.labels import add_orphan_regions, finalize_labels
from app.analysis.segmentation import ClassicalSegmenter, Segmenter, split_touching


def _discs(shape, centres, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for cy, cx in centres:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return mask


@pytest.mark.parametrize("bright", [True, False])
def test_classical_finds_discs_in_both_polarities(bright):
    mask = _discs((120, 160), [(30, 30), (30, 100), (90, 60)], 12)
    rng = np.random.default_rng(1)
    image = np.where(mask, 0.8, 0.2) if bright else np.where(mask, 0.2, 0.8)
    image = (image + rng.normal(0, 0.03, mask.shape)).astype(np.float32)
    seg = ClassicalSegmenter()
    assert isinstance(seg, Segmenter)
    labels = seg.segment(image)
    assert labels.max() == 3
    overlap = (labels > 0) & mask
    assert overlap.sum() / mask.sum() > 0.95


def test_touching_discs_are_split_and_merged_on_request():
    mask = _discs((80, 120), [(40, 40), (40, 64)], 13)  # overlapping pair
    assert split_touching(mask).max() == 2
    merged = finalize_labels(split_touching(mask), split_touching=False)
    assert merged.max() == 1


def test_hollow_particle_is_filled():
    outer = _discs((60, 60), [(30, 30)], 15)
    inner = _discs((60, 60), [(30, 30)], 8)
    image = np.where(outer & ~inner, 0.9, 0.1).astype(np.float32)  # a bright rim only (SEM edge effect)
    labels = ClassicalSegmenter(smoothing_px=0.5).segment(image)
    assert labels.max() == 1
    assert labels[30, 30] == 1


def test_blank_image_gives_no_particles():
    assert ClassicalSegmenter().segment(np.zeros((40, 40), np.float32)).max() == 0


def test_finalize_drops_small_and_is_sequential():
    labels = np.zeros((20, 20), np.int32)
    labels[1:3, 1:3] = 7  # 4 px
    labels[5:10, 5:10] = 3  # 25 px
    out = finalize_labels(labels, min_area_px=5)
    assert out.max() == 1
    assert (out[5:10, 5:10] == 1).all()
    assert out[1:3, 1:3].max() == 0


@pytest.mark.parametrize("noise", [0.01, 0.05, 0.15])
def test_bare_noisy_substrate_has_no_particles(noise):
    rng = np.random.default_rng(7)
    substrate = np.clip(0.5 + rng.normal(0, noise, (256, 320)), 0, 1).astype(np.float32)
    assert ClassicalSegmenter().segment(substrate).max() == 0


def test_faint_but_real_particles_survive_the_noise_check():
    mask = _discs((128, 128), [(40, 40), (90, 80)], 10)
    rng = np.random.default_rng(3)
    image = (0.5 + 0.08 * mask + rng.normal(0, 0.04, mask.shape)).astype(np.float32)  # contrast 2 sigma
    assert ClassicalSegmenter().segment(image).max() == 2


def test_sequential_labels_match_scikit_image_and_keep_id_order():
    from skimage.segmentation import relabel_sequential

    from app.analysis.labels import sequential_labels

    rng = np.random.default_rng(3)
    labels = rng.choice([0, 0, 5, 9, 40_000, 123], size=(60, 80)).astype(np.int32)
    out = sequential_labels(labels)
    assert out.dtype == np.int32 and np.array_equal(out, relabel_sequential(labels)[0])
    for old_id, new_id in [(0, 0), (5, 1), (9, 2), (123, 3), (40_000, 4)]:  # the order of the old ids
        assert np.all(out[labels == old_id] == new_id)
    with pytest.raises(ValueError, match="negative"):
        sequential_labels(-labels)
    assert sequential_labels(np.zeros((0, 3), np.int32)).shape == (0, 3)


@pytest.mark.parametrize("connectivity", [1, 2])
def test_orphan_regions_are_numbered_after_the_existing_ids_in_raster_order(connectivity):
    from scipy import ndimage

    rng = np.random.default_rng(5)
    mask = ndimage.gaussian_filter(rng.random((70, 90)), 1.5) > 0.5
    labels = np.where(mask & (rng.random(mask.shape) < 0.3), rng.integers(1, 9, mask.shape), 0).astype(np.int64)
    out = add_orphan_regions(labels, mask, connectivity=connectivity)
    assert out.dtype == np.int32
    kept = labels > 0
    assert np.array_equal(out[kept], labels[kept]) and np.array_equal(out > 0, kept | mask)
    pieces, n = ndimage.label(mask & ~kept, structure=ndimage.generate_binary_structure(2, connectivity))
    assert n > 1 and np.array_equal(out[pieces > 0], pieces[pieces > 0] + labels.max())
    assert np.array_equal(add_orphan_regions(labels, kept), labels)  # nothing left over
