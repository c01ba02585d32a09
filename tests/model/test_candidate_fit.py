"""The octave method's candidate scorer: its labels, its fit and its file (model/candidate_fit.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

from model.candidate_fit import best_iou, collect, fit_candidate_scorer, main, supervised_share
from model.multiscale import CANDIDATE_FEATURES, OctavePass, candidate_logits
from model.trees import write_trees


def _disc(shape, centre, radius):
    rows, cols = np.indices(shape)
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def _pass(scale, labels):
    return OctavePass(scale, labels > 0, labels > 0, labels, np.zeros(labels.shape, np.float32))


def test_each_candidate_is_labelled_with_its_best_iou_at_its_passs_resolution():
    truth = np.zeros((64, 64), np.int32)
    truth[_disc(truth.shape, (20, 20), 8)] = 1
    truth[_disc(truth.shape, (44, 44), 8)] = 2
    fine = np.zeros((64, 64), np.int32)
    fine[_disc(fine.shape, (20, 20), 8)] = 1  # the same particle
    fine[_disc(fine.shape, (44, 52), 8)] = 2  # shifted by its radius: IoU about 0.24
    coarse = np.zeros((32, 32), np.int32)
    coarse[_disc(coarse.shape, (10, 10), 4)] = 1
    passes = [_pass(1.0, fine), _pass(0.5, coarse)]
    iou = best_iou(passes, [(0, 1), (0, 2), (1, 1)], truth)
    assert iou[0] == pytest.approx(1.0)
    assert 0.15 < iou[1] < 0.35
    assert iou[2] > 0.8  # compared with the truth shrunk to half scale


def test_the_fitted_scorer_is_plain_json_that_rates_candidates_as_it_learned(tmp_path):
    rng = np.random.default_rng(0)
    features, ious = [], []
    for _ in range(6):  # six "images"; a candidate is a particle when its peak is over 0.5
        x = rng.random((80, len(CANDIDATE_FEATURES)))
        features.append(x)
        ious.append(np.where(x[:, 0] > 0.5, 0.9, 0.1))
    scorer = fit_candidate_scorer(features, ious, n_trees=20, depth=2, min_leaf=5)
    write_trees(scorer, tmp_path / "candidate_scorer.json")
    stored = json.loads((tmp_path / "candidate_scorer.json").read_text())
    probe = np.zeros((2, len(CANDIDATE_FEATURES)))
    probe[:, 0] = [0.2, 0.8]
    logits = candidate_logits(stored, probe)
    assert logits[0] < -1 and logits[1] > 1
    assert np.allclose(logits, candidate_logits(scorer, probe))


def test_a_candidates_supervised_share_is_measured_at_its_passs_resolution():
    fine = np.zeros((64, 64), np.int32)
    fine[10:20, 10:20] = 1  # inside the region
    fine[10:20, 26:36] = 2  # 4 of 10 columns inside
    coarse = np.zeros((32, 32), np.int32)
    coarse[20:30, 20:30] = 1  # outside
    passes = [_pass(1.0, fine), _pass(0.5, coarse)]
    supervised = np.zeros((64, 64), bool)
    supervised[:, :30] = True
    share = supervised_share(passes, [(0, 1), (0, 2), (1, 1)], supervised)
    assert share == pytest.approx([1.0, 0.4, 0.0])


def test_an_images_weight_tilts_the_fit_toward_its_examples():
    rng = np.random.default_rng(1)
    a = rng.random((200, len(CANDIDATE_FEATURES)))
    b = rng.random((200, len(CANDIDATE_FEATURES)))
    ious = [np.where(a[:, 0] > 0.5, 0.9, 0.1), np.where(b[:, 0] > 0.5, 0.1, 0.9)]  # the two images disagree
    probe = np.full((1, len(CANDIDATE_FEATURES)), 0.5)
    probe[0, 0] = 0.8
    for weights, sign in (([20.0, 1.0], 1), ([1.0, 20.0], -1)):
        scorer = fit_candidate_scorer([a, b], ious, n_trees=20, depth=2, min_leaf=5, image_weights=weights)
        assert sign * candidate_logits(scorer, probe)[0] > 1


def test_the_held_out_seeds_are_refused_for_fitting():
    with pytest.raises(SystemExit):
        main(["--synthetic-seeds", "990:1010"])
    with pytest.raises(SystemExit):
        main(["--size-case-seed", "1850"])  # would reach the benchmark's 1900-1939


@pytest.mark.slow
def test_candidates_are_collected_from_a_networks_octave_passes_before_it_has_a_scorer(tmp_path, tiny_model):
    from model.segmenter import UNetSegmenter
    from model.synthetic import generate_sample

    shipped = json.loads((Path(__file__).resolve().parents[2] / "model" / "config.json").read_text())
    tiny_model.save(tmp_path / "saemi_unet.keras")
    shipped["input_scale"].pop("scorer_file")  # a network just trained: its scorer is fitted from these
    shipped["test_time_views"] = 1
    (tmp_path / "config.json").write_text(json.dumps(shipped))
    sample = generate_sample(7, 96, 128, modality="tem")
    cases = [("one", sample.image.astype(np.float32) / 255, sample.labels)]
    features, ious = collect(UNetSegmenter(tmp_path), iter(cases))
    assert len(features) == 1 and features[0].shape[1] == len(CANDIDATE_FEATURES)
    assert len(ious[0]) == len(features[0]) and ((ious[0] >= 0) & (ious[0] <= 1)).all()
