import numpy as np
import pytest

from model.metrics import count_err, dice, drop_small, ecd_err, match_instances, obj_f1, score_image


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
