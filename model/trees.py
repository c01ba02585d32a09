"""Gradient-boosted trees stored as plain numbers (JSON), scored with numpy.

Two learned scorers use them: the pass scorer of the learned scale choice (:mod:`model.scale_select`)
and the candidate scorer of the octave method (:mod:`model.multiscale`). They are fitted with
scikit-learn (:func:`trees_from_sklearn` reads a fitted model's trees) and scored here without it and
without pickle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


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


def boosted_tree_logits(model: Mapping[str, Any], features: np.ndarray) -> np.ndarray:
    """Per row of ``features``: ``init`` plus ``learning_rate`` times the sum of the trees' leaf values.

    All trees are walked at once, one level per step. Features are compared at 32-bit precision, as
    scikit-learn's trees compare them, so the logits equal the fitted model's ``decision_function``.
    """
    trees = model["trees"]
    x = np.asarray(features, dtype=np.float32).astype(np.float64)
    if not trees or len(x) == 0:
        return np.full(len(x), float(model["init"]))
    width = max(len(tree["left"]) for tree in trees)

    def stacked(key: str, fill: float, dtype) -> np.ndarray:
        return np.array([tree[key] + [fill] * (width - len(tree[key])) for tree in trees], dtype=dtype)

    feature, left, right = (stacked(k, -1, np.int64) for k in ("feature", "left", "right"))
    threshold, value = stacked("threshold", 0.0, np.float64), stacked("value", 0.0, np.float64)
    tree_ids = np.arange(len(trees))
    node = np.zeros((len(x), len(trees)), dtype=np.int64)  # every row starts at every tree's root
    while True:
        inner = left[tree_ids, node] >= 0
        if not inner.any():
            break
        seen = np.take_along_axis(x, np.maximum(feature[tree_ids, node], 0), axis=1)
        goes_left = seen <= threshold[tree_ids, node]
        node = np.where(inner, np.where(goes_left, left[tree_ids, node], right[tree_ids, node]), node)
    return float(model["init"]) + float(model["learning_rate"]) * value[tree_ids, node].sum(axis=1)


def write_trees(model: Mapping[str, Any], path: Path) -> None:
    """Write a scorer as JSON, one tree per line (the file a model's ``input_scale.selector_file`` names)."""
    head = {key: value for key, value in model.items() if key != "trees"}
    text = json.dumps(head, indent=1)
    if "trees" in model:
        text = (text[:-2] + ',\n "trees": [\n  ' + ",\n  ".join(json.dumps(t) for t in model["trees"])
                + "\n ]\n}")
    Path(path).write_text(text + "\n")
