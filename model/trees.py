"""Gradient-boosted trees stored as plain numbers (JSON), scored with numpy.

The candidate scorer of the octave fusion (:mod:`model.multiscale`, fitted by :mod:`model.candidate_fit`)
is one. It is fitted with scikit-learn (:func:`trees_from_sklearn` reads a fitted model's trees) and
scored here without it and without pickle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def fit_boosted_trees(x: np.ndarray, y: np.ndarray, weights: np.ndarray, *, n_trees: int, depth: int,
                      learning_rate: float, min_leaf: int, seed: int) -> dict:
    """Gradient-boosted trees (scikit-learn, log-loss) fitted on rows ``x`` with 0/1 labels ``y``, exported as
    plain numbers: ``init``, ``learning_rate`` and ``trees``, so that :func:`boosted_tree_logits` equals the
    fitted model's ``decision_function``."""
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(n_estimators=n_trees, max_depth=depth, learning_rate=learning_rate,
                                       min_samples_leaf=min_leaf, random_state=seed)
    model.fit(x, y, sample_weight=weights)
    fitted = {"init": 0.0, "learning_rate": learning_rate, "trees": trees_from_sklearn(model.estimators_)}
    # The model's constant start (the log-odds of the weighted prior) is read off its scores.
    fitted["init"] = float(model.decision_function(x[:1])[0] - boosted_tree_logits(fitted, x[:1])[0])
    return fitted


def trees_from_sklearn(estimators) -> list[dict]:
    """The node arrays of a fitted ``GradientBoostingClassifier``'s ``estimators_`` (binary: one regression
    tree per stage): ``feature``, ``threshold``, ``left``, ``right`` (-1 at a leaf) and ``value``."""
    trees = []
    for estimator in estimators[:, 0]:
        t = estimator.tree_
        trees.append({"feature": t.feature.tolist(), "threshold": t.threshold.tolist(),
                      "left": t.children_left.tolist(), "right": t.children_right.tolist(),
                      "value": t.value[:, 0, 0].tolist()})
    return trees


#: Most nodes a scorer file may hold over all its trees (the shipped scorers hold under 10,000).
MAX_TREE_NODES = 1_000_000


def tree_problem(model: Mapping[str, Any]) -> str | None:
    """Why ``model`` (a scorer read from a file, perhaps uploaded) cannot be scored safely, or None.

    Every tree's five arrays have one entry per node; an inner node names a feature of the model and two
    children with larger indices (as scikit-learn numbers them), so every walk ends at a leaf; numbers
    are finite; all trees together hold at most :data:`MAX_TREE_NODES` nodes.
    """
    try:
        n_features = len(model["features"])
        trees = model["trees"]
        if not isinstance(trees, list):
            return "its trees are not a list"
        if sum(len(tree["left"]) for tree in trees) > MAX_TREE_NODES:
            return f"it holds more than {MAX_TREE_NODES} nodes"
        if not np.isfinite([float(model["init"]), float(model["learning_rate"])]).all():
            return "its constants are not finite numbers"
        for tree in trees:
            feature, left, right = (np.asarray(tree[key], np.int64) for key in ("feature", "left", "right"))
            threshold, value = (np.asarray(tree[key], np.float64) for key in ("threshold", "value"))
            n = left.size
            if n == 0 or any(a.shape != (n,) for a in (feature, right, threshold, value)):
                return "a tree's arrays differ in length"
            nodes = np.arange(n)
            inner = left >= 0
            if ((right >= 0) != inner).any() or (left[inner] <= nodes[inner]).any() \
                    or (right[inner] <= nodes[inner]).any() or (left[inner] >= n).any() or (right[inner] >= n).any():
                return "a tree's nodes do not lead to its leaves"
            if ((feature[inner] < 0) | (feature[inner] >= n_features)).any():
                return "a tree names a feature the scorer does not have"
            if not (np.isfinite(threshold[inner]).all() and np.isfinite(value).all()):
                return "a tree holds numbers that are not finite"
    except (KeyError, TypeError, ValueError, OverflowError):
        return "it is not a scorer of trees"
    return None


#: Node arrays of the scorers seen in this process, by ``id``, each with its scorer (kept alive, so that
#: the ``id`` stays its own): a model folder's scorer is read once and scored on every image.
_NODE_ARRAYS: dict[int, tuple[Mapping[str, Any], tuple[np.ndarray, ...]]] = {}
_MAX_CACHED_SCORERS = 8


def _node_arrays(model: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """``feature``, ``left``, ``right``, ``threshold`` and ``value`` of all trees, one row per tree, padded
    to the widest (leaves: -1), built once per scorer object."""
    cached = _NODE_ARRAYS.get(id(model))
    if cached is not None and cached[0] is model:
        return cached[1]
    trees = model["trees"]
    width = max(len(tree["left"]) for tree in trees)

    def stacked(key: str, fill: float, dtype) -> np.ndarray:
        return np.array([tree[key] + [fill] * (width - len(tree[key])) for tree in trees], dtype=dtype)

    arrays = (*(stacked(k, -1, np.int64) for k in ("feature", "left", "right")),
              stacked("threshold", 0.0, np.float64), stacked("value", 0.0, np.float64))
    if len(_NODE_ARRAYS) >= _MAX_CACHED_SCORERS:
        _NODE_ARRAYS.clear()
    _NODE_ARRAYS[id(model)] = (model, arrays)
    return arrays


def boosted_tree_logits(model: Mapping[str, Any], features: np.ndarray) -> np.ndarray:
    """Per row of ``features``: ``init`` plus ``learning_rate`` times the sum of the trees' leaf values.

    All trees are walked at once, one level per step. Features are compared at 32-bit precision, as
    scikit-learn's trees compare them, so the logits equal the fitted model's ``decision_function``.
    """
    trees = model["trees"]
    x = np.asarray(features, dtype=np.float32).astype(np.float64)
    if not trees or len(x) == 0:
        return np.full(len(x), float(model["init"]))
    feature, left, right, threshold, value = _node_arrays(model)
    width = left.shape[1]
    tree_ids = np.arange(len(trees))
    node = np.zeros((len(x), len(trees)), dtype=np.int64)  # every row starts at every tree's root
    for _ in range(width):  # children have larger indices than their parents: at most width steps
        inner = left[tree_ids, node] >= 0
        if not inner.any():
            break
        seen = np.take_along_axis(x, np.maximum(feature[tree_ids, node], 0), axis=1)
        goes_left = seen <= threshold[tree_ids, node]
        node = np.where(inner, np.where(goes_left, left[tree_ids, node], right[tree_ids, node]), node)
    return float(model["init"]) + float(model["learning_rate"]) * value[tree_ids, node].sum(axis=1)


def write_trees(model: Mapping[str, Any], path: Path) -> None:
    """Write a scorer as JSON, one tree per line (the file a model's ``input_scale.scorer_file`` names)."""
    head = {key: value for key, value in model.items() if key != "trees"}
    text = json.dumps(head, indent=1)
    if "trees" in model:
        text = (text[:-2] + ',\n "trees": [\n  ' + ",\n  ".join(json.dumps(t) for t in model["trees"])
                + "\n ]\n}")
    Path(path).write_text(text + "\n")
