"""Shared fixtures for the model tests: a tiny untrained network and hand-drawn label images."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def tiny_model():
    """A two-level U-Net with a handful of filters, the three output maps and fixed random weights."""
    import keras

    from model.unet import build_unet

    keras.utils.set_random_seed(0)
    return build_unet(filters=(4, 8), convs_per_block=1, n_outputs=3)


def two_touching_discs(shape=(64, 96), radius=14):
    """Labels of two discs of ``radius`` px that touch along a vertical line, ids 1 and 2."""
    rows, cols = np.indices(shape)
    centre_row, centre_col = shape[0] // 2, shape[1] // 2
    labels = np.zeros(shape, dtype=np.int32)
    left = (rows - centre_row) ** 2 + (cols - (centre_col - radius + 2)) ** 2 <= radius ** 2
    right = (rows - centre_row) ** 2 + (cols - (centre_col + radius - 2)) ** 2 <= radius ** 2
    labels[left] = 1
    labels[right & ~left] = 2
    return labels


@pytest.fixture
def tiny_model_dir(tmp_path, tiny_model):
    """A model folder holding the tiny network with the shipped config and candidate scorer.

    The config shows the network one view of the image (``test_time_views`` 1), so that the tests count
    passes of their own; the extra views have tests of their own.
    """
    import shutil
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "model"
    tiny_model.save(tmp_path / "saemi_unet.keras")
    config = json.loads((shipped / "config.json").read_text())
    config["test_time_views"] = 1
    (tmp_path / "config.json").write_text(json.dumps(config))
    shutil.copy(shipped / config["input_scale"]["scorer_file"], tmp_path)
    return tmp_path
