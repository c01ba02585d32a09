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


def _sized(scale, labels, diameter_px, peak=1.0, foreground=1.0):
    from model.preprocess import encode_size

    size = np.where(labels > 0, encode_size(diameter_px), 0).astype(np.float32)
    return OctavePass(scale, np.where(labels > 0, foreground, 0.0).astype(np.float32),
                      np.where(labels > 0, peak, 0.0).astype(np.float32), labels, size)


def _ellipse(shape, centre, radii):
    rows, cols = np.indices(shape)
    return (((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1).astype(np.int32)


def test_the_networks_size_map_decides_which_pass_keeps_a_particle():
    # Two touching 20 px particles: the coarse pass merges them into one convex blob of in-band size,
    # and the finer pass splits them with no background between (so the merge rule alone cannot tell).
    fine = _discs((128, 128), [(64, 54), (64, 74)], 10)
    coarse = _ellipse((64, 64), (32, 32), (5, 10))
    middle = _ellipse((32, 32), (16, 16), (2.5, 5))  # quarter scale
    no_sizes = fuse_passes([_pass(1.0, fine), _pass(0.5, coarse)], (128, 128), band_px=(7, 30))
    assert no_sizes.max() == 1  # measured sizes only: the coarse blob wins
    # The network says each particle is about 20 px across: the full-resolution instances measure that,
    # and the coarser blobs (about 14 and 7 px where the network says 10 and 5) do not.
    passes = [_sized(1.0, fine, 20.0), _sized(0.5, coarse, 10.0), _sized(0.25, middle, 5.0)]
    assert fuse_passes(passes, (128, 128)).max() == 2
    # Had it said the two pieces are parts of one particle 28 px across (14 px at half scale), the pieces
    # measure too little to be that particle, and the half-scale pass keeps it whole.
    passes = [_sized(1.0, fine, 28.0), _sized(0.5, coarse, 14.0), _sized(0.25, middle, 7.0)]
    fused = fuse_passes(passes, (128, 128))
    assert fused.max() == 1
    assert (fused > 0).sum() > 0.9 * (fine > 0).sum()


def test_a_large_particle_is_kept_whole_when_the_size_map_calls_the_fine_pieces_parts_of_it():
    coarse = _discs((64, 64), [(32, 32)], 12)
    fine = _discs((128, 128), [(64, 64)], 24)
    rows, cols = np.indices(fine.shape)
    fine = np.where(fine > 0, 1 + (rows > 64) + 2 * (cols > 64), 0).astype(np.int32)  # four touching pieces
    quarter = _discs((32, 32), [(16, 16)], 6)
    passes = [_sized(1.0, fine, 48.0), _sized(0.5, coarse, 24.0), _sized(0.25, quarter, 12.0)]
    fused = fuse_passes(passes, (128, 128))
    assert fused.max() == 1
    # and the coarsest pass keeps particles larger than the band
    huge = _discs((64, 64), [(32, 32)], 20)
    passes = [_sized(1.0, np.zeros((128, 128), np.int32), 80.0), _sized(0.5, huge, 40.0),
              _sized(0.25, _discs((32, 32), [(16, 16)], 10), 20.0)]
    assert fuse_passes(passes, (128, 128)).max() == 1


def test_unsure_or_far_from_convex_instances_are_not_particles():
    crescent = _discs((128, 128), [(64, 64)], 20)
    crescent[_discs((128, 128), [(64, 76)], 18) > 0] = 0  # a thin crescent: solidity about 0.4
    round_one = _discs((128, 128), [(30, 30)], 8)
    labels = np.where(round_one > 0, 2, crescent).astype(np.int32)
    # both also show at half scale, where the network is unsure of the crescent's remains
    coarse = _discs((64, 64), [(15, 15)], 4)
    coarse[(_discs((64, 64), [(32, 32)], 10) > 0) & (_discs((64, 64), [(32, 38)], 9) == 0)] = 2
    half = _sized(0.5, coarse, 8.0, foreground=0.6)
    fused = fuse_passes([_sized(1.0, labels, 16.0), half], (128, 128))
    assert fused.max() == 1 and fused[30, 30] > 0
    # a round particle the network is unsure of (mean particle probability 0.6) is dropped too
    unsure = fuse_passes([_sized(1.0, round_one, 16.0, foreground=0.6), half], (128, 128))
    assert unsure.max() == 0


def test_a_confident_candidate_beats_a_weaker_one_over_the_same_pixels():
    fine = _discs((128, 128), [(64, 64)], 10)
    coarse = _discs((64, 64), [(32, 32)], 6)  # a little larger there
    # the same particle in both passes: the higher centre peak wins, and it is kept once
    areas = []
    for fine_peak, coarse_peak in ((1.0, 0.5), (0.5, 1.0)):
        fused = fuse_passes([_sized(1.0, fine, 20.0, peak=fine_peak), _sized(0.5, coarse, 12.0, peak=coarse_peak)],
                            (128, 128))
        assert fused.max() == 1
        areas.append(int((fused > 0).sum()))
    assert areas[0] == (fine > 0).sum()  # the fine pass's own outline
    assert areas[1] > areas[0] * 1.2  # the coarse pass's outline, carried to full resolution


def test_hull_areas_match_scikit_image_within_a_few_per_cent():
    from skimage.measure import regionprops

    from model.multiscale import hull_areas

    rng = np.random.default_rng(4)
    labels = np.zeros((200, 200), np.int32)
    for k in range(1, 21):
        r, c = rng.integers(20, 180, size=2)
        shape = _ellipse((200, 200), (r, c), rng.uniform(3, 12, size=2))
        if k % 3 == 0:  # some non-convex ones: a notch cut out
            shape[r - 2:r + 3, c:] = 0
        labels[(shape > 0) & (labels == 0)] = k
    areas = hull_areas(labels, int(labels.max()))
    for region in regionprops(labels):
        assert abs(areas[region.label] / region.area_convex - 1) < 0.08, region.label


def test_a_pass_that_adds_only_a_few_small_particles_adds_none(monkeypatch):
    import model.multiscale

    monkeypatch.setattr(model.multiscale, "SUPPORT_IOU", 0.0)  # this rule alone: no second look needed
    # Twelve 30 px particles found at half scale (rows 40-160), and small 7 px ones at full scale along
    # the top edge (panel letters, dust; or a second population when there are many).
    centres = [(56 + 36 * (k // 4), 24 + 38 * (k % 4)) for k in range(12)]
    coarse = _discs((80, 80), [(r // 2, c // 2) for r, c in centres], 7.5)

    def fused_count(n_small):
        fine = _discs((160, 160), [(8, 8 + 12 * k) for k in range(n_small)], 3.5)
        passes = [_sized(1.0, fine, 7.0), _sized(0.5, coarse, 15.0)]
        return int(fuse_passes(passes, (160, 160)).max())

    assert fused_count(0) == 12
    assert fused_count(3) == 12  # three small ones: dropped
    assert fused_count(12) == 24  # as many small ones as large: a second population, kept


def test_pieces_inside_a_larger_particle_kept_later_go_and_a_satellite_on_its_rim_stays(monkeypatch):
    import model.multiscale

    monkeypatch.setattr(model.multiscale, "SUPPORT_IOU", 0.0)  # this rule alone: no second look needed
    coarse = _discs((64, 64), [(32, 32)], 14)  # 56 px across in the image
    pieces = _discs((128, 128), [(56, 56), (72, 70)], 7)  # two 14 px "particles" inside it (texture)
    satellite = _discs((128, 128), [(64, 64 + 28 + 6)], 9)  # 18 px, centre 6 px outside the rim
    fine = np.where(satellite > 0, 3, pieces).astype(np.int32)
    # The pieces score higher (peak 1, sizes agree) than the large particle (peak 0.8), so they are kept
    # first; the large particle, mostly free, is kept after them and takes them back.
    passes = [_sized(1.0, fine, 14.0), _sized(0.5, coarse, 28.0, peak=0.8)]
    fused = fuse_passes(passes, (128, 128))
    assert fused.max() == 2
    assert fused[56, 56] == fused[64, 64] and fused[64, 98] not in (0, fused[64, 64])


def test_a_particle_seen_in_one_pass_only_is_not_kept():
    # A 20 px particle at A shows in both passes; a blob at B shows in the half-scale pass only.
    coarse = _discs((64, 64), [(20, 20), (44, 44)], 5)
    for fine_centres, expected in (([(40, 40)], 1), ([(40, 40), (88, 88)], 2)):
        fine = _discs((128, 128), fine_centres, 10)
        fused = fuse_passes([_sized(1.0, fine, 20.0), _sized(0.5, coarse, 10.0)], (128, 128))
        assert fused.max() == expected
        assert fused[40, 40] > 0
    # a small particle of the finest pass, too small to show at half scale, needs no second look
    tiny = _discs((128, 128), [(40, 40), (100, 20)], 4)  # 8 px: 4 px at half scale
    fused = fuse_passes([_sized(1.0, tiny, 8.0), _sized(0.5, _discs((64, 64), [(20, 20)], 2), 4.0)], (128, 128))
    assert fused.max() == 2
