"""Octave passes fused by the candidate scorer (model/multiscale.py) on hand-made passes, and the segmenter."""

import json

import numpy as np
import pytest

from model.config import ModelLoadError, read_config
from model.multiscale import OctavePass, fuse_passes, octave_scales
from model.segmenter import UNetSegmenter


def _discs(shape, centres, radius):
    rows, cols = np.indices(shape)
    labels = np.zeros(shape, np.int32)
    for k, (r, c) in enumerate(centres, start=1):
        labels[(rows - r) ** 2 + (cols - c) ** 2 <= radius ** 2] = k
    return labels


def test_octave_scales_stop_at_the_smallest_useful_pass():
    assert octave_scales((768, 1024)) == [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125]
    assert octave_scales((100, 100), max_scale=0.5) == [0.5, 0.25]


def test_octave_segmentation_runs_end_to_end_with_any_network(tiny_model_dir):
    gray = np.random.default_rng(1).random((96, 128)).astype(np.float32)
    calls = []
    labels = UNetSegmenter(tiny_model_dir).segment(gray, progress=lambda fraction, message: calls.append(fraction))
    assert labels.shape == gray.shape and labels.dtype == np.int32
    assert calls[-1] == 1.0 and calls == sorted(calls)


def test_a_network_without_a_size_map_or_a_settings_file_of_the_old_scale_choice_is_refused(tiny_model_dir):
    config_path = tiny_model_dir / "config.json"
    shipped = json.loads(config_path.read_text())
    config = json.loads(config_path.read_text())
    config["architecture"]["outputs"] = ["foreground_probability", "centre_map"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="without a size map cannot be fused across scales"):
        read_config(tiny_model_dir)
    config = json.loads(json.dumps(shipped))
    config["input_scale"]["method"] = "learned"  # a v3 model's settings
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="unknown setting.*method"):
        read_config(tiny_model_dir)


def _sized(scale, labels, diameter_px, peak=1.0, foreground=1.0):
    from model.preprocess import encode_size

    size = np.where(labels > 0, encode_size(diameter_px), 0).astype(np.float32)
    return OctavePass(scale, np.where(labels > 0, foreground, 0.0).astype(np.float32),
                      np.where(labels > 0, peak, 0.0).astype(np.float32), labels, size)


def _ellipse(shape, centre, radii):
    rows, cols = np.indices(shape)
    return (((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1).astype(np.int32)


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


def _scorer(trees=(), init=5.0, learning_rate=1.0):
    """A candidate scorer by hand: ``init`` alone (5: every candidate kept) or stumps on named features."""
    from model.multiscale import CANDIDATE_FEATURES, CANDIDATE_SCORER_KIND

    return {"kind": CANDIDATE_SCORER_KIND, "features": list(CANDIDATE_FEATURES), "init": init,
            "learning_rate": learning_rate, "trees": list(trees)}


def _stump(feature, threshold, below, above):
    """One split on ``feature``: leaf value ``below`` at or under ``threshold``, ``above`` over it."""
    from model.multiscale import CANDIDATE_FEATURES

    return {"feature": [CANDIDATE_FEATURES.index(feature), -2, -2], "threshold": [threshold, -2.0, -2.0],
            "left": [1, -1, -1], "right": [2, -1, -1], "value": [0.0, below, above]}


def test_a_pass_that_adds_only_a_few_small_particles_adds_none():
    # Twelve 30 px particles found at half scale (rows 40-160), and small 7 px ones at full scale along
    # the top edge (panel letters, dust; or a second population when there are many).
    centres = [(56 + 36 * (k // 4), 24 + 38 * (k % 4)) for k in range(12)]
    coarse = _discs((80, 80), [(r // 2, c // 2) for r, c in centres], 7.5)

    def fused_count(n_small):
        fine = _discs((160, 160), [(8, 8 + 12 * k) for k in range(n_small)], 3.5)
        passes = [_sized(1.0, fine, 7.0), _sized(0.5, coarse, 15.0)]
        return int(fuse_passes(passes, (160, 160), _scorer()).max())

    assert fused_count(0) == 12
    assert fused_count(3) == 12  # three small ones: dropped
    assert fused_count(12) == 24  # as many small ones as large: a second population, kept


def test_a_particle_found_in_a_coarse_pass_is_drawn_with_the_finer_passs_outline_of_it():
    from model.multiscale import OUTLINE_IOU

    rows, cols = np.indices((128, 128))
    fine = ((rows - 64) ** 2 + (cols - 64) ** 2 <= 10.5 ** 2).astype(np.int32)  # 21 px at full resolution
    coarse = _discs((64, 64), [(32, 32)], 5)  # the same particle at half scale, a little smaller
    scorer = _scorer([_stump("peak", 0.75, -0.5, 0.5)], init=1.0)  # the coarse candidate is the more likely

    def fused(fine_labels):
        return fuse_passes([_sized(1.0, fine_labels, 21.0, peak=0.5), _sized(0.5, coarse, 10.0, peak=1.0)],
                           (128, 128), scorer)

    whole = fused(fine)
    assert whole.max() == 1 and np.array_equal(whole > 0, fine > 0)  # the finer outline of the same particle
    split = fine.copy()
    split[:, 64:] *= 2  # the finer pass shows two halves: no instance of it matches the coarse one
    halves = fused(split)
    assert halves.max() == 1 and (halves > 0).sum() != (fine > 0).sum()  # the coarse outline, carried up
    assert OUTLINE_IOU is not None and 0.5 < OUTLINE_IOU < 1


def test_a_particle_the_coarse_pass_sees_at_the_trained_size_keeps_the_coarse_outline():
    from model.multiscale import OUTLINE_BELOW_PX

    rows, cols = np.indices((128, 128))
    fine = ((rows - 64) ** 2 + (cols - 64) ** 2 <= 21.5 ** 2).astype(np.int32)  # 43 px at full resolution
    coarse = _discs((64, 64), [(32, 32)], 10)  # 21 px at half scale: over OUTLINE_BELOW_PX there
    assert np.sqrt(4 * coarse.sum() / np.pi) >= OUTLINE_BELOW_PX
    scorer = _scorer([_stump("peak", 0.75, -0.5, 0.5)], init=1.0)
    fused = fuse_passes([_sized(1.0, fine, 43.0, peak=0.5), _sized(0.5, coarse, 21.0, peak=1.0)], (128, 128), scorer)
    assert fused.max() == 1 and not np.array_equal(fused > 0, fine > 0)  # its own outline, carried up


def test_the_more_likely_candidate_wins_the_pixels_it_shares_with_a_less_likely_one():
    fine = _discs((128, 128), [(64, 64)], 10)
    coarse = _discs((64, 64), [(32, 32)], 7)  # larger there: too unlike the fine one to lend it its outline
    scorer = _scorer([_stump("peak", 0.75, -0.5, 0.5)], init=1.0)  # probabilities 0.62 and 0.82: both kept
    areas = []
    for fine_peak, coarse_peak in ((1.0, 0.5), (0.5, 1.0)):
        fused = fuse_passes([_sized(1.0, fine, 20.0, peak=fine_peak), _sized(0.5, coarse, 12.0, peak=coarse_peak)],
                            (128, 128), scorer=scorer)
        assert fused.max() == 1  # the same particle, kept once
        areas.append(int((fused > 0).sum()))
    assert areas[0] == (fine > 0).sum()  # the fine pass's own outline
    assert areas[1] > areas[0] * 1.2  # the coarse pass's outline, carried to full resolution


def test_candidates_the_scorer_finds_unlikely_are_not_kept():
    from model.multiscale import KEEP_PROBABILITY

    labels = _discs((128, 128), [(30, 30), (90, 90)], 8)
    half = _discs((64, 64), [(15, 15), (45, 45)], 4)
    scorer = _scorer([_stump("mean_foreground", 0.8, -3.0, 3.0)], init=0.0)
    sure = fuse_passes([_sized(1.0, labels, 16.0), _sized(0.5, half, 8.0)], (128, 128), scorer=scorer)
    assert sure.max() == 2
    unsure = fuse_passes([_sized(1.0, labels, 16.0, foreground=0.6), _sized(0.5, half, 8.0, foreground=0.6)],
                         (128, 128), scorer=scorer)
    assert unsure.max() == 0
    # just over the threshold a candidate is kept; just under it, not
    logit = float(np.log(KEEP_PROBABILITY / (1 - KEEP_PROBABILITY)))
    for init, expected in ((logit + 1e-6, 2), (logit - 1e-3, 0)):
        fused = fuse_passes([_sized(1.0, labels, 16.0), _sized(0.5, half, 8.0)], (128, 128), scorer=_scorer(init=init))
        assert fused.max() == expected


def test_candidate_features_describe_each_instance_and_its_context():
    from model.multiscale import CANDIDATE_FEATURES, candidate_features, measure_candidates

    # A 20 px particle seen in both passes, a 6 px speck only at full resolution, and one cut by the frame.
    fine = _discs((128, 128), [(40, 40), (100, 100), (64, 0)], 10)
    fine[(_discs((128, 128), [(100, 100)], 3) > 0)] = 2
    fine[(fine == 2) & (_discs((128, 128), [(100, 100)], 3) == 0)] = 0
    coarse = _discs((64, 64), [(20, 20)], 5)
    passes = [_sized(1.0, fine, 20.0, peak=0.9), _sized(0.5, coarse, 10.0, peak=0.8)]
    features, meta = candidate_features(passes, [measure_candidates(one) for one in passes])
    assert features.shape == (4, len(CANDIDATE_FEATURES)) and meta == [(0, 1), (0, 2), (0, 3), (1, 1)]
    row = {name: features[:, j] for j, name in enumerate(CANDIDATE_FEATURES)}
    assert np.allclose(row["peak"], [0.9, 0.9, 0.9, 0.8])
    assert row["iou_with_coarser"][0] > 0.8 and row["iou_with_coarser"][1] == 0  # the speck: one pass only
    assert row["iou_with_finer"][3] > 0.8 and row["iou_with_finer"][3] == pytest.approx(row["iou_with_coarser"][0])
    assert list(row["touches_frame"]) == [0, 0, 1, 0]
    assert row["passes_finer"].tolist() == [0, 0, 0, 1] and row["passes_coarser"].tolist() == [1, 1, 1, 0]
    assert row["log2_diameter_image_px"][0] == pytest.approx(np.log2(20), abs=0.1)
    assert row["log2_diameter_image_px"][3] == pytest.approx(np.log2(20), abs=0.2)  # 10 px at half scale
    # the speck is about 3x smaller than the strong particles (all of peak >= 0.7 here)
    assert row["log2_diameter_over_strong_max"][1] == pytest.approx(np.log2(6.5 / 20), abs=0.3)
    assert row["log2_measured_over_predicted"][0] == pytest.approx(0, abs=0.1)


def test_the_fusion_needs_a_candidate_scorer_fitted_on_its_features():
    from model.multiscale import candidate_logits

    passes = [_sized(1.0, _discs((64, 64), [(32, 32)], 8), 16.0), _sized(0.5, _discs((32, 32), [(16, 16)], 4), 8.0)]
    with pytest.raises(ValueError, match="candidate scorer"):
        fuse_passes(passes, (64, 64), None)
    pass_scorer = {"kind": "boosted_trees", "features": ["peak"], "init": 0.0, "learning_rate": 0.1, "trees": []}
    with pytest.raises(ValueError, match="refit it with python -m model.candidate_fit"):
        candidate_logits(pass_scorer, np.zeros((1, 18)))
    renamed = {**_scorer(), "features": ["peak"] * 18}  # the right kind, fitted on other features
    with pytest.raises(ValueError, match="refit it with python -m model.candidate_fit"):
        candidate_logits(renamed, np.zeros((1, 18)))


def test_a_model_folder_without_a_candidate_scorer_or_with_another_kind_of_scorer_is_refused(tiny_model_dir):
    from model.loading import check_model_folder, model_problem

    config_path = tiny_model_dir / "config.json"
    config = json.loads(config_path.read_text())
    scorer_path = tiny_model_dir / config["input_scale"]["scorer_file"]
    check_model_folder(tiny_model_dir)  # the shipped scorer
    scorer_path.write_text(json.dumps({"kind": "boosted_trees", "features": ["peak"], "init": 0.0,
                                       "learning_rate": 0.1, "trees": []}))  # the v3 scale choice's pass scorer
    with pytest.raises(ModelLoadError, match="must name the candidate scorer"):
        read_config(tiny_model_dir)
    del config["input_scale"]["scorer_file"]
    config_path.write_text(json.dumps(config))
    assert read_config(tiny_model_dir).input_scale.scorer is None  # a network just trained: fit one next
    with pytest.raises(ModelLoadError, match="has no candidate scorer.*python -m model.candidate_fit"):
        check_model_folder(tiny_model_dir)
    with pytest.raises(ModelLoadError, match="has no candidate scorer"):
        UNetSegmenter(tiny_model_dir).segment(np.zeros((32, 32), np.float32))
    assert "has no candidate scorer" in model_problem(tiny_model_dir)  # said at start-up, before any image


def test_the_octave_method_redraws_small_outlines_at_their_half_maximum(tiny_model_dir, monkeypatch):
    import model.segmenter as segmenter_module
    from model.segmenter import REFINE_BELOW_PX

    rows, cols = np.indices((64, 64)) + 0.5
    radius = np.hypot(rows - 32.0, cols - 32.0)
    gray = np.where(radius <= 3.0, 0.9, 0.1).astype(np.float32)  # a 6 px bright dot
    too_large = (radius <= 5.5).astype(np.int32)  # the network's outline at the blur's outer end: 11 px
    assert np.sqrt(4 * too_large.sum() / np.pi) < REFINE_BELOW_PX
    monkeypatch.setattr(segmenter_module, "fuse_passes", lambda passes, shape, scorer: too_large)
    labels = UNetSegmenter(tiny_model_dir).segment(gray)
    assert np.sqrt(4 * np.count_nonzero(labels) / np.pi) == pytest.approx(6.0, abs=0.6)


def test_a_large_image_is_segmented_window_by_window_and_every_particle_kept_once_and_whole(tiny_model_dir,
                                                                                          monkeypatch):
    from scipy import ndimage

    import model.segmenter as segmenter_module

    monkeypatch.setattr(segmenter_module, "WINDOW_PX", 64)
    monkeypatch.setattr(segmenter_module, "MARGIN_PX", 16)
    rng = np.random.default_rng(5)
    rows, cols = np.indices((200, 260))
    gray = np.zeros((200, 260), np.float32)
    for _ in range(40):  # discs up to 24 px across, many of them over a window's edge
        r, c, radius = rng.uniform(0, 200), rng.uniform(0, 260), rng.uniform(3, 12)
        gray[(rows - r) ** 2 + (cols - c) ** 2 <= radius ** 2] = 1.0
    truth, _ = ndimage.label(gray > 0.5)
    seen = []

    def window_labels(self, image, progress=None):  # a perfect segmenter of what the window shows
        seen.append(image.shape)
        return ndimage.label(image.gray > 0.5)[0].astype(np.int32)

    monkeypatch.setattr(UNetSegmenter, "_window_labels", window_labels)
    calls = []
    labels = UNetSegmenter(tiny_model_dir).segment(gray, progress=lambda fraction, message: calls.append(fraction))
    assert len(seen) == 4 * 5 and max(seen) <= (64 + 2 * 16 + 1, 64 + 2 * 16 + 1)
    assert labels.max() == truth.max()  # each particle once
    for i in range(1, truth.max() + 1):  # and whole: one found label covers exactly its pixels
        found = np.unique(labels[truth == i])
        assert found.size == 1 and found[0] > 0 and np.array_equal(labels == found[0], truth == i)
    assert calls == sorted(calls) and calls[-1] == 1.0
