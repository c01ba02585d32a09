import numpy as np
import pytest

from model.metrics import (
    count_err,
    dice,
    drop_small,
    ecd_err,
    match_instances,
    matched_ecd_px,
    obj_f1,
    score_image,
    size_bias_px,
)


def square(shape, top, left, side, value=1, labels=None):
    labels = np.zeros(shape, np.int32) if labels is None else labels
    labels[top:top + side, left:left + side] = value
    return labels


def test_perfect_match_scores_perfectly():
    truth = square((50, 50), 5, 5, 10)
    square((50, 50), 30, 30, 12, value=2, labels=truth)
    scores = score_image(truth, truth.copy())
    assert scores["dice"] == 1.0 and scores["obj_f1"] == 1.0
    assert scores["count_err"] == 0.0 and scores["ecd_err"] == 0.0


def test_shift_below_and_above_the_iou_threshold():
    truth = square((40, 40), 10, 10, 10)
    small_shift = square((40, 40), 10, 12, 10)  # IoU = 80 / 120
    large_shift = square((40, 40), 10, 15, 10)  # IoU = 50 / 150
    assert match_instances(truth, small_shift)[0][2] == pytest.approx(80 / 120)
    assert obj_f1(truth, small_shift) == 1.0
    assert obj_f1(truth, large_shift) == 0.0
    assert dice(truth, large_shift) == pytest.approx(2 * 50 / 200)


def test_merged_particles():
    truth = square((30, 40), 5, 5, 10, value=1)
    square((30, 40), 5, 15, 10, value=2, labels=truth)
    merged = (truth > 0).astype(np.int32)
    # The merged blob has IoU 0.5 with each; one-to-one matching lets it match only one of them.
    assert obj_f1(truth, merged) == pytest.approx(2 * 1 / 3)
    assert count_err(truth, merged) == pytest.approx(0.5)
    assert ecd_err(truth, merged) == pytest.approx(np.sqrt(2) - 1)
    assert dice(truth, merged) == 1.0


def test_small_particles_are_ignored_on_both_sides():
    truth = square((40, 40), 10, 10, 10)
    predicted = truth.copy()
    predicted[30:33, 30:33] = 7  # 9 px speck
    assert drop_small(predicted).max() == 1
    assert score_image(truth, predicted)["obj_f1"] == 1.0
    assert obj_f1(truth, predicted) == pytest.approx(2 / 3)


def test_empty_images():
    empty = np.zeros((10, 10), np.int32)
    assert score_image(empty, empty) == {"dice": 1.0, "obj_f1": 1.0, "count_err": 0.0, "ecd_err": 0.0,
                                         "n_true": 0, "n_pred": 0}
    assert score_image(square((10, 10), 0, 0, 5), empty)["obj_f1"] == 0.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        score_image(np.zeros((4, 4), int), np.zeros((4, 5), int))


def test_matched_ecd_pairs_follow_the_matching_and_the_chosen_ids():
    truth = square((60, 60), 5, 5, 10)
    square((60, 60), 30, 30, 8, value=2, labels=truth)
    square((60, 60), 50, 5, 6, value=3, labels=truth)
    predicted = square((60, 60), 5, 5, 12, value=7)  # grown by 2 px: IoU 100 / 144
    square((60, 60), 30, 36, 8, value=8, labels=predicted)  # shifted off particle 2: IoU 16 / 112
    true_ecd_px, pred_ecd_px = matched_ecd_px(truth, predicted)
    assert true_ecd_px == pytest.approx(np.sqrt(4 * np.array([100, 64, 36]) / np.pi))
    assert pred_ecd_px[0] == pytest.approx(np.sqrt(4 * 144 / np.pi))
    assert np.isnan(pred_ecd_px[1:]).all()
    only_two = matched_ecd_px(truth, predicted, true_ids=np.array([2]))
    assert only_two[0] == pytest.approx([np.sqrt(4 * 64 / np.pi)]) and np.isnan(only_two[1]).all()


def test_size_bias_is_the_median_difference_over_matches_and_recall_counts_misses():
    result = size_bias_px(np.array([10.0, 10.0, 10.0, 20.0]), np.array([11.0, 13.0, np.nan, 21.0]))
    assert result == {"bias_px": pytest.approx(1.0), "recall": 0.75, "n_true": 4}
    none = size_bias_px(np.array([5.0]), np.array([np.nan]))
    assert np.isnan(none["bias_px"]) and none["recall"] == 0.0
