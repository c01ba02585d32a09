import numpy as np
import pytest

from model.metrics import (
    count_err,
    dice,
    drop_small,
    ecd_err,
    match_instances,
    matched_ecd_errors,
    matched_ecd_px,
    obj_f1,
    recall_by_size,
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


def _size_ladder():
    """Six true squares (sides 4, 5, 6, 8, 10, 12) and a prediction that finds 4, 6, 8 and 12 exactly."""
    truth = np.zeros((40, 80), np.int32)
    pred = np.zeros((40, 80), np.int32)
    left = 1
    for value, (side, found) in enumerate([(4, True), (5, False), (6, True), (8, True), (10, False),
                                           (12, True)], start=1):
        square(truth.shape, 2, left, side, value=value, labels=truth)
        if found:
            square(pred.shape, 2, left, side, value=10 + value, labels=pred)
        left += side + 2
    return truth, pred


def test_recall_by_size_splits_the_true_particles_into_equal_thirds_by_ecd():
    truth, pred = _size_ladder()
    groups = recall_by_size(truth, pred, min_area_px=1)
    assert [g["n_true"] for g in groups] == [2, 2, 2]
    assert [g["recall"] for g in groups] == [0.5, 1.0, 0.5]
    assert groups[0]["ecd_min_px"] == pytest.approx(np.sqrt(4 * 16 / np.pi))
    assert groups[2]["ecd_max_px"] == pytest.approx(np.sqrt(4 * 144 / np.pi))
    assert groups[0]["ecd_max_px"] < groups[1]["ecd_min_px"] <= groups[1]["ecd_max_px"] < groups[2]["ecd_min_px"]


def test_recall_by_size_drops_small_particles_and_handles_empty_groups():
    truth, pred = _size_ladder()
    # With the default minimum area of 10 px the 4 px square (16 px) stays, a 3 px one would go.
    assert sum(g["n_true"] for g in recall_by_size(truth, pred)) == 6
    assert sum(g["n_true"] for g in recall_by_size(truth, pred, min_area_px=30)) == 4
    groups = recall_by_size(np.zeros((8, 8), int), np.zeros((8, 8), int))
    assert len(groups) == 3 and all(g["n_true"] == 0 and np.isnan(g["recall"]) for g in groups)


def test_recall_by_size_misses_a_particle_drawn_too_large():
    truth = square((30, 30), 10, 10, 6)
    grown = square((30, 30), 8, 8, 10)  # IoU 36 / 100: not found
    assert recall_by_size(truth, grown, n_groups=1, min_area_px=1)[0]["recall"] == 0.0


def test_matched_ecd_errors_are_signed_and_relative_to_the_true_ecd():
    truth = square((40, 40), 2, 2, 10, value=1)
    square((40, 40), 20, 20, 10, value=2, labels=truth)
    square((40, 40), 2, 25, 4, value=3, labels=truth)  # missed
    pred = square((40, 40), 2, 2, 11, value=7)  # area 121: ECD x 1.1
    square((40, 40), 20, 20, 9, value=8, labels=pred)  # area 81: ECD x 0.9
    errors = matched_ecd_errors(truth, pred, min_area_px=1)
    np.testing.assert_allclose(errors, [0.1, -0.1])
    assert matched_ecd_errors(truth, np.zeros_like(truth)).size == 0
