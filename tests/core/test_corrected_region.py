"""The region a correction changed: what fine-tuning learns from in an image that was not fully checked."""

from __future__ import annotations

import numpy as np
import pytest

from app.analysis.labels import corrected_region


def _two_squares():
    labels = np.zeros((40, 40), np.int32)
    labels[5:15, 5:15] = 1
    labels[25:35, 25:35] = 2
    return labels


def test_renumbering_alone_is_no_correction():
    labels = _two_squares()
    assert not corrected_region(labels, np.where(labels > 0, 9 - labels, 0)).any()


def test_a_deleted_particle_is_its_pixels_and_a_margin():
    before = _two_squares()
    after = np.where(before == 2, 0, before)
    region = corrected_region(before, after, margin_px=2)
    assert region[25:35, 25:35].all() and region[23:37, 23:37].sum() == 14 * 14
    assert not region[5:15, 5:15].any()


def test_a_split_marks_both_halves_and_a_drawn_particle_its_own_pixels():
    before = _two_squares()
    after = before.copy()
    after[5:15, 10:15] = 3  # the first square split in two
    after[20:23, 2:5] = 4  # a new particle
    region = corrected_region(before, after, margin_px=0)
    assert region.sum() == 100 + 9 and not region[25:35, 25:35].any()


def test_shapes_must_agree():
    with pytest.raises(ValueError):
        corrected_region(np.zeros((3, 3)), np.zeros((4, 3)))
