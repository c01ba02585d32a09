"""Scorer files of boosted trees (model/trees.py): scored as fitted, and refused when they could not be
scored safely (an uploaded model folder carries one)."""

import json

import numpy as np
import pytest

from model.config import ModelLoadError
from model.loading import check_model_folder
from model.trees import boosted_tree_logits, tree_problem


def _scorer(trees, n_features=2):
    return {"kind": "boosted_trees", "features": [f"f{k}" for k in range(n_features)], "init": 0.5,
            "learning_rate": 1.0, "trees": trees}


def _stump(feature=0, threshold=0.5, left=(1, -1, -1), right=(2, -1, -1)):
    return {"feature": [feature, -2, -2], "threshold": [threshold, -2.0, -2.0], "left": list(left),
            "right": list(right), "value": [0.0, -1.0, 1.0]}


def test_a_stump_scores_each_side_of_its_threshold():
    scorer = _scorer([_stump(), _stump(feature=1, threshold=0.0)])
    logits = boosted_tree_logits(scorer, np.array([[0.2, -1.0], [0.9, 1.0]]))
    assert logits.tolist() == [0.5 - 2.0, 0.5 + 2.0]
    assert tree_problem(scorer) is None


@pytest.mark.parametrize("tree, words", [
    (_stump(left=(0, -1, -1)), "do not lead to its leaves"),  # a node that is its own child: a walk never ends
    (_stump(right=(2, -1, 1)), "do not lead to its leaves"),  # a leaf with one child
    (_stump(left=(7, -1, -1)), "do not lead to its leaves"),  # a child past the end
    (_stump(feature=5), "names a feature the scorer does not have"),
    ({**_stump(), "value": [0.0, 1.0]}, "differ in length"),
    ({**_stump(), "value": [0.0, float("inf"), 1.0]}, "not finite"),
    ({"left": [-1]}, "not a scorer of trees"),
])
def test_a_scorer_that_could_not_be_scored_safely_is_named_as_such(tree, words):
    assert words in tree_problem(_scorer([tree]))


def test_a_scorer_with_too_many_nodes_is_refused(monkeypatch):
    import model.trees

    monkeypatch.setattr(model.trees, "MAX_TREE_NODES", 5)
    assert "more than 5 nodes" in tree_problem(_scorer([_stump(), _stump()]))


def test_a_walk_on_a_cyclic_tree_still_ends():
    logits = boosted_tree_logits(_scorer([_stump(left=(0, -1, -1))]), np.array([[0.1, 0.0]]))
    assert logits.shape == (1,)


def test_a_model_folder_with_a_broken_scorer_is_refused_with_a_sentence(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    path = tiny_model_dir / config["input_scale"]["scorer_file"]
    check_model_folder(tiny_model_dir)  # the shipped scorer is fine
    scorer = json.loads(path.read_text())
    scorer["trees"][0]["left"][0] = 0
    path.write_text(json.dumps(scorer))
    with pytest.raises(ModelLoadError, match="cannot be used: a tree's nodes do not lead to its leaves"):
        check_model_folder(tiny_model_dir)
