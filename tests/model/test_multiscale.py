"""Octave passes fused by size (model/multiscale.py) on hand-made passes, and the segmenter's option."""

import json

import numpy as np
import pytest

from app.analysis.errors import SaemiInputError
from model.config import ModelLoadError, read_config
from model.loading import load_shipped_model
from model.multiscale import OctavePass, fuse_passes, octave_scales
from model.segmenter import UNetSegmenter


def _discs(shape, centres, radius):
    rows, cols = np.indices(shape)
    labels = np.zeros(shape, np.int32)
    for k, (r, c) in enumerate(centres, start=1):
        labels[(rows - r) ** 2 + (cols - c) ** 2 <= radius ** 2] = k
    return labels


def _pass(scale, labels, peak=1.0):
    return OctavePass(scale, (labels > 0).astype(np.float32), np.where(labels > 0, peak, 0.0).astype(np.float32),
                      labels)


def test_a_big_particle_is_taken_whole_from_the_coarse_pass_and_its_fine_fragments_dropped():
    coarse = _discs((64, 64), [(32, 32)], 12)  # 24 px across at scale 0.5 ... 48 px in the image
    fine = _discs((128, 128), [(64, 64)], 24)
    rows, cols = np.indices(fine.shape)
    fine = np.where(fine > 0, 1 + (rows > 64) + 2 * (cols > 64), 0).astype(np.int32)  # four touching pieces
    fused = fuse_passes([_pass(1.0, fine), _pass(0.5, coarse)], (128, 128), band_px=(7, 30))
    assert fused.max() == 1
    assert abs((fused > 0).sum() - (fine > 0).sum()) < 0.05 * (fine > 0).sum()


def test_a_coarse_blob_that_the_finer_pass_shows_as_separate_particles_is_a_merge():
    fine = _discs((128, 128), [(64, 50), (64, 78)], 10)  # two 20 px particles 8 px apart
    coarse = np.zeros((64, 64), np.int32)
    coarse[28:37, 21:43] = 1  # one blob at half scale
    fused = fuse_passes([_pass(1.0, fine), _pass(0.5, coarse)], (128, 128), band_px=(7, 30))
    assert fused.max() == 2
    # without the finer pass's separation the blob stays one particle
    joined = fine.copy()
    joined[60:68, 58:71] = 1
    joined[joined == 2] = 1
    assert fuse_passes([_pass(1.0, joined), _pass(0.5, coarse)], (128, 128), band_px=(7, 30)).max() == 1


def test_each_particle_comes_from_the_pass_where_it_is_in_the_band():
    fine = np.zeros((128, 128), np.int32)
    fine[10:16, 10:16] = 1  # 6.8 px: only the finest pass sees it; it also keeps what is below the band
    coarse = np.zeros((64, 64), np.int32)
    coarse[29:35, 29:35] = 1  # 6.8 px at half scale: below the band there, so left to the finer pass
    fine[60:68, 60:68] = 2  # the same particle at full scale, 9 px: in the band
    fused = fuse_passes([_pass(1.0, fine), _pass(0.5, coarse)], (128, 128), band_px=(7, 30))
    assert fused.max() == 2
    assert (fused == fused[64, 64]).sum() == 64  # the finer pass's outline, not the coarse 12 x 12 one
    coarse[28:36, 28:36] = 1  # 9 px at half scale: in the band, so the coarse pass keeps it
    fused = fuse_passes([_pass(1.0, fine), _pass(0.5, coarse)], (128, 128), band_px=(7, 30))
    assert (fused == fused[64, 64]).sum() == 256


def test_a_weak_piece_beside_a_kept_particle_goes_and_a_confident_neighbour_stays():
    coarse = _discs((64, 64), [(32, 32)], 12)
    fine_big = _discs((128, 128), [(64, 64)], 24)
    for peak, expected in ((0.3, 1), (0.95, 2)):
        fine = np.where(fine_big > 0, 1, 0).astype(np.int32)
        rim_piece = _discs((128, 128), [(64, 93)], 5)  # just outside the big particle's edge
        fine[(rim_piece > 0) & (fine == 0)] = 2
        centre = np.where(fine == 2, peak, np.where(fine > 0, 1.0, 0.0)).astype(np.float32)
        fine_pass = OctavePass(1.0, (fine > 0).astype(np.float32), centre, fine)
        assert fuse_passes([fine_pass, _pass(0.5, coarse)], (128, 128), band_px=(7, 30)).max() == expected


def test_octave_scales_stop_at_the_smallest_useful_pass():
    assert octave_scales((768, 1024)) == [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125]
    assert octave_scales((100, 100), max_scale=0.5) == [0.5, 0.25]


def test_segmenter_refuses_an_unknown_scale_method():
    with pytest.raises(SaemiInputError, match="scale method must be one of learned, octaves"):
        UNetSegmenter(scale_method="guess")


def test_octave_segmentation_runs_end_to_end_with_any_network(tiny_model_dir):
    gray = np.random.default_rng(1).random((96, 128)).astype(np.float32)
    calls = []
    labels = UNetSegmenter(tiny_model_dir, scale_method="octaves").segment(
        gray, progress=lambda fraction, message: calls.append(fraction))
    assert labels.shape == gray.shape and labels.dtype == np.int32
    assert calls[-1] == 1.0 and calls == sorted(calls)


def test_the_model_config_chooses_the_scale_method(tiny_model_dir, monkeypatch):
    config_path = tiny_model_dir / "config.json"
    config = json.loads(config_path.read_text())
    used = []
    monkeypatch.setattr(UNetSegmenter, "_octave_labels",
                        lambda self, gray, progress=None: used.append("octaves") or np.zeros(gray.shape, np.int32))
    gray = np.random.default_rng(2).random((64, 64)).astype(np.float32)
    UNetSegmenter(tiny_model_dir).segment(gray)
    assert used == []  # the shipped settings: one learned scale
    config["input_scale"]["method"] = "octaves"
    config_path.write_text(json.dumps(config))
    load_shipped_model.cache_clear()
    UNetSegmenter(tiny_model_dir).segment(gray)
    assert used == ["octaves"]
    UNetSegmenter(tiny_model_dir, scale_method="learned").segment(gray)
    assert used == ["octaves"]  # the argument wins over the config
    config["input_scale"]["method"] = "guess"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="input_scale.method must be one of learned, octaves"):
        read_config(tiny_model_dir)


def test_the_networks_size_map_decides_which_pass_keeps_a_particle():
    from model.preprocess import encode_size

    # Two touching 20 px particles: the coarse pass merges them into one blob of in-band size, and the
    # finer pass splits them with no background between (so the merge rule alone cannot tell).
    fine = _discs((128, 128), [(64, 54), (64, 74)], 10)
    fine[(fine == 0) & (_discs((128, 128), [(64, 64)], 9) > 0)] = 1
    coarse = (_discs((64, 64), [(32, 27), (32, 37)], 5) > 0).astype(np.int32)
    middle = (_discs((32, 32), [(16, 13), (16, 18)], 3) > 0).astype(np.int32)  # quarter scale
    band = (7, 30)
    no_sizes = fuse_passes([_pass(1.0, fine), _pass(0.5, coarse)], (128, 128), band_px=band)
    assert no_sizes.max() == 1  # measured sizes only: the coarse blob wins

    def sized(scale, labels, diameter_px):
        base = _pass(scale, labels)
        size = np.where(labels > 0, encode_size(diameter_px), 0).astype(np.float32)
        return OctavePass(base.scale, base.foreground, base.centre, base.labels, size)

    # The network says each particle is about 20 px across: the full-resolution instances measure that,
    # so they are kept, and the blobs of the coarser passes, already covered, are not.
    passes = [sized(1.0, fine, 20.0), sized(0.5, coarse, 10.0), sized(0.25, middle, 5.0)]
    assert fuse_passes(passes, (128, 128), band_px=band).max() == 2
    # Had it said the two pieces are parts of one particle 30 px across (15 px at half scale), the pieces
    # measure too little to be that particle, and the half-scale pass keeps it whole.
    passes = [sized(1.0, fine, 30.0), sized(0.5, coarse, 15.0), sized(0.25, middle, 7.5)]
    assert fuse_passes(passes, (128, 128), band_px=band).max() == 1
