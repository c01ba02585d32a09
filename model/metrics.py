"""Segmentation metrics of SAEMI's model issue, in pure numpy.

All functions take integer instance label images (0 = background) of equal shape. Particles under
``min_area_px`` pixels are removed from both sides before scoring (:func:`drop_small`).
"""

from __future__ import annotations

import numpy as np

from app.analysis.measure import ecd_from_area

#: Particles smaller than this (in pixels) are ignored on both sides.
MIN_AREA_PX = 10


def drop_small(labels: np.ndarray, min_area_px: int = MIN_AREA_PX) -> np.ndarray:
    """Return a copy of ``labels`` (int64) with particles under ``min_area_px`` pixels set to 0."""
    labels = np.asarray(labels, dtype=np.int64)
    areas_px = np.bincount(labels.ravel())
    small = areas_px < min_area_px
    small[0] = False
    return np.where(small[labels], 0, labels)


def dice(true_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """Pixel F1 (Dice) of the particle class; 1.0 when both images have no particle."""
    true_fg = np.asarray(true_labels) > 0
    pred_fg = np.asarray(pred_labels) > 0
    total = int(true_fg.sum()) + int(pred_fg.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(true_fg, pred_fg).sum()) / total


def match_instances(true_labels: np.ndarray, pred_labels: np.ndarray,
                    iou_threshold: float = 0.5) -> list[tuple[int, int, float]]:
    """Match true and predicted particles one to one where their IoU is at least ``iou_threshold``.

    Pairs are taken greedily in order of decreasing IoU, so each particle matches at most once.

    Returns
    -------
    list of (int, int, float)
        ``(true_id, pred_id, iou)`` for every match.
    """
    true_labels = np.asarray(true_labels, dtype=np.int64).ravel()
    pred_labels = np.asarray(pred_labels, dtype=np.int64).ravel()
    true_area = np.bincount(true_labels)
    pred_area = np.bincount(pred_labels)
    both = (true_labels > 0) & (pred_labels > 0)
    if not both.any():
        return []
    pair_key = true_labels[both] * (int(pred_labels.max()) + 1) + pred_labels[both]
    keys, overlap = np.unique(pair_key, return_counts=True)
    true_ids = keys // (int(pred_labels.max()) + 1)
    pred_ids = keys % (int(pred_labels.max()) + 1)
    iou = overlap / (true_area[true_ids] + pred_area[pred_ids] - overlap)
    order = np.argsort(-iou, kind="stable")
    used_true: set[int] = set()
    used_pred: set[int] = set()
    matches = []
    for k in order:
        if iou[k] < iou_threshold:
            break
        t, p = int(true_ids[k]), int(pred_ids[k])
        if t in used_true or p in used_pred:
            continue
        used_true.add(t)
        used_pred.add(p)
        matches.append((t, p, float(iou[k])))
    return matches


def _count(labels: np.ndarray) -> int:
    return int(np.count_nonzero(np.bincount(np.asarray(labels, dtype=np.int64).ravel())[1:]))


def obj_f1(true_labels: np.ndarray, pred_labels: np.ndarray, iou_threshold: float = 0.5) -> float:
    """Instance F1: ``2 * matches / (n_true + n_pred)``; 1.0 when both sides are empty."""
    n_true, n_pred = _count(true_labels), _count(pred_labels)
    if n_true + n_pred == 0:
        return 1.0
    return 2.0 * len(match_instances(true_labels, pred_labels, iou_threshold)) / (n_true + n_pred)


def count_err(true_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """``|n_pred - n_true| / n_true``; with no true particle, 0.0 if none is predicted, else 1.0."""
    n_true, n_pred = _count(true_labels), _count(pred_labels)
    if n_true == 0:
        return 0.0 if n_pred == 0 else 1.0
    return abs(n_pred - n_true) / n_true


def mean_ecd_px(labels: np.ndarray) -> float:
    """Mean equivalent circular diameter (px) of the labelled particles; NaN when there are none."""
    areas_px = np.bincount(np.asarray(labels, dtype=np.int64).ravel())[1:]
    areas_px = areas_px[areas_px > 0]
    if areas_px.size == 0:
        return float("nan")
    return float(np.mean(ecd_from_area(areas_px)))


def ecd_err(true_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """Relative error of the mean ECD; 1.0 when one side is empty and the other not, 0.0 if both are."""
    true_mean, pred_mean = mean_ecd_px(true_labels), mean_ecd_px(pred_labels)
    if np.isnan(true_mean) or np.isnan(pred_mean):
        return 0.0 if np.isnan(true_mean) and np.isnan(pred_mean) else 1.0
    return abs(pred_mean - true_mean) / true_mean


def matched_ecd_px(true_labels: np.ndarray, pred_labels: np.ndarray, true_ids: np.ndarray | None = None,
                   iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """ECD of each true particle and of the predicted particle matched to it (:func:`match_instances`).

    Parameters
    ----------
    true_labels, pred_labels : numpy.ndarray
        Instance label images of equal shape (0 = background).
    true_ids : numpy.ndarray, optional
        The true particles to report, for example those that do not touch the frame; default:
        every id present in ``true_labels``.
    iou_threshold : float
        Smallest IoU of a match.

    Returns
    -------
    true_ecd_px, pred_ecd_px : numpy.ndarray
        float64 arrays, one entry per id of ``true_ids``; ``pred_ecd_px`` is NaN where no
        prediction matched.

    Examples
    --------
    >>> truth = np.zeros((8, 8), int); truth[1:5, 1:5] = 1; truth[6:8, 6:8] = 2
    >>> pred = np.zeros((8, 8), int); pred[1:6, 1:6] = 3
    >>> matched_ecd_px(truth, pred)[1].round(2)
    array([5.64,  nan])
    """
    true_labels = np.asarray(true_labels, dtype=np.int64)
    pred_labels = np.asarray(pred_labels, dtype=np.int64)
    true_area_px = np.bincount(true_labels.ravel())
    pred_area_px = np.bincount(pred_labels.ravel())
    if true_ids is None:
        true_ids = np.flatnonzero(true_area_px[1:]) + 1
    true_ids = np.asarray(true_ids, dtype=np.int64)
    matched_pred = np.zeros(true_area_px.size, dtype=np.int64)
    for true_id, pred_id, _ in match_instances(true_labels, pred_labels, iou_threshold):
        matched_pred[true_id] = pred_id
    pred_ids = matched_pred[true_ids]
    pred_ecd_px = np.where(pred_ids > 0, ecd_from_area(pred_area_px[pred_ids].astype(np.float64)), np.nan)
    return np.asarray(ecd_from_area(true_area_px[true_ids].astype(np.float64)), dtype=np.float64), pred_ecd_px


def size_bias_px(true_ecd_px: np.ndarray, pred_ecd_px: np.ndarray) -> dict[str, float]:
    """Size bias and recall from the pairs of :func:`matched_ecd_px` (pooled over images if wished).

    Returns
    -------
    dict
        ``bias_px``: median of ``pred - true`` ECD over matched particles (NaN when none matched);
        ``recall``: fraction of true particles matched (NaN when there are none); ``n_true``.

    Examples
    --------
    >>> size_bias_px(np.array([4.0, 4.0, 6.0]), np.array([5.0, np.nan, 6.5]))
    {'bias_px': 0.75, 'recall': 0.6666666666666666, 'n_true': 3}
    """
    true_ecd_px = np.asarray(true_ecd_px, dtype=np.float64)
    pred_ecd_px = np.asarray(pred_ecd_px, dtype=np.float64)
    matched = ~np.isnan(pred_ecd_px)
    return {
        "bias_px": float(np.median(pred_ecd_px[matched] - true_ecd_px[matched])) if matched.any() else float("nan"),
        "recall": float(matched.mean()) if matched.size else float("nan"),
        "n_true": int(matched.size),
    }


def score_image(true_labels: np.ndarray, pred_labels: np.ndarray,
                min_area_px: int = MIN_AREA_PX) -> dict[str, float]:
    """All metrics for one image, after dropping particles under ``min_area_px`` on both sides.

    Returns
    -------
    dict
        ``dice``, ``obj_f1``, ``count_err``, ``ecd_err``, ``n_true``, ``n_pred``.
    """
    if np.shape(true_labels) != np.shape(pred_labels):
        raise ValueError(f"Label images differ in shape: {np.shape(true_labels)} and {np.shape(pred_labels)}.")
    true_labels = drop_small(true_labels, min_area_px)
    pred_labels = drop_small(pred_labels, min_area_px)
    return {
        "dice": dice(true_labels, pred_labels),
        "obj_f1": obj_f1(true_labels, pred_labels),
        "count_err": count_err(true_labels, pred_labels),
        "ecd_err": ecd_err(true_labels, pred_labels),
        "n_true": _count(true_labels),
        "n_pred": _count(pred_labels),
    }


def _true_ecd_px(true_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids present in ``true_labels`` and their ECDs in pixels."""
    areas_px = np.bincount(np.asarray(true_labels, dtype=np.int64).ravel())
    ids = np.nonzero(areas_px)[0]
    ids = ids[ids > 0]
    return ids, ecd_from_area(areas_px[ids])


def recall_by_size(true_labels: np.ndarray, pred_labels: np.ndarray, n_groups: int = 3,
                   iou_threshold: float = 0.5, min_area_px: int = MIN_AREA_PX) -> list[dict[str, float]]:
    """Recall of the true particles split into ``n_groups`` equal-count groups by their ECD.

    With ``n_groups=3`` these are the size terciles: the smallest third of the true particles,
    the middle third and the largest third. The particles are ranked by ECD (ties by id) and the
    ranking is cut into groups whose counts differ by at most one, so every group is populated
    even when many particles share one area. A true particle counts as found when it is matched
    one to one at IoU >= ``iou_threshold`` (:func:`match_instances`). Particles under
    ``min_area_px`` are dropped on both sides first, as in :func:`score_image`.

    Parameters
    ----------
    true_labels, pred_labels : np.ndarray
        Integer instance label images of equal shape, 0 = background.
    n_groups : int
        Number of size groups.
    iou_threshold : float
        Smallest IoU of a match.
    min_area_px : int
        Smallest particle scored.

    Returns
    -------
    list of dict
        One per group, smallest first: ``ecd_min_px``, ``ecd_max_px`` (range of the group's true
        ECDs), ``n_true`` and ``recall`` (NaN for an empty group).

    Examples
    --------
    >>> truth = np.zeros((20, 20), int); truth[1:3, 1:3] = 1; truth[5:10, 5:10] = 2; truth[12:19, 12:19] = 3
    >>> [group["recall"] for group in recall_by_size(truth, truth, min_area_px=1)]
    [1.0, 1.0, 1.0]
    """
    true_labels = drop_small(true_labels, min_area_px)
    pred_labels = drop_small(pred_labels, min_area_px)
    ids, ecd_px = _true_ecd_px(true_labels)
    found = {t for t, _, _ in match_instances(true_labels, pred_labels, iou_threshold)}
    order = np.lexsort((ids, ecd_px))
    groups = []
    for members in np.array_split(order, n_groups):
        n_true = int(members.size)
        hits = sum(int(ids[k]) in found for k in members)
        groups.append({
            "ecd_min_px": float(ecd_px[members].min()) if n_true else float("nan"),
            "ecd_max_px": float(ecd_px[members].max()) if n_true else float("nan"),
            "n_true": n_true,
            "recall": hits / n_true if n_true else float("nan"),
        })
    return groups


def matched_ecd_errors(true_labels: np.ndarray, pred_labels: np.ndarray, iou_threshold: float = 0.5,
                       min_area_px: int = MIN_AREA_PX) -> np.ndarray:
    """Relative ECD error ``(ecd_pred - ecd_true) / ecd_true`` of every matched particle.

    Particles are matched one to one at IoU >= ``iou_threshold`` (:func:`match_instances`) after
    dropping those under ``min_area_px`` on both sides. Unmatched particles do not count, so a
    size bias large enough to push the IoU under the threshold shows in the recall, not here.

    Returns
    -------
    np.ndarray
        float64 errors, ordered by true id; empty when nothing matches. Positive: drawn too large.

    Examples
    --------
    >>> truth = np.zeros((10, 10), int); truth[2:6, 2:6] = 1
    >>> pred = np.zeros((10, 10), int); pred[2:7, 2:7] = 5
    >>> matched_ecd_errors(truth, pred, min_area_px=1).round(3).tolist()
    [0.25]
    """
    true_ecd, pred_ecd = matched_ecd_px(drop_small(true_labels, min_area_px), drop_small(pred_labels, min_area_px),
                                        iou_threshold=iou_threshold)
    matched = ~np.isnan(pred_ecd)
    return (pred_ecd[matched] - true_ecd[matched]) / true_ecd[matched]
