"""Fine-tuning from a user's images and masks, and the checks a model folder must pass before it is used."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from app.config import REPO_ROOT
from model.config import ModelLoadError
from model.finetune import REFITTING, TRAINING, finetune, read_masks
from model.loading import MAX_UNPACKED_BYTES, check_model_folder, check_weights_file
from model.synthetic import generate_sample

pytestmark = pytest.mark.slow


def _png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def pairs(tmp_path):
    """Two generated images with instance masks, and a third with a binary (0/255) mask."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for k in range(3):
        sample = generate_sample(600 + k, 160, 160, modality="tem", median_diameter_px=16, data_bar=False,
                                 scale_bar=False, letters=False)
        (images / f"img{k}.png").write_bytes(_png(sample.image))
        mask = sample.labels.astype(np.uint16) if k < 2 else ((sample.labels > 0) * 255).astype(np.uint8)
        (masks / f"img{k}.png").write_bytes(_png(mask))
    return images, masks


def test_binary_masks_become_connected_components(tmp_path):
    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 2:6] = 255
    mask[10:15, 10:15] = 255
    (tmp_path / "a.png").write_bytes(_png(mask))
    labels = read_masks(tmp_path, ["a"])["a"]
    assert labels.max() == 2 and set(np.unique(labels)) == {0, 1, 2}


def test_a_finetune_writes_a_model_folder_that_analyze_uses(tiny_model_dir, pairs, tmp_path):
    images, masks = pairs
    out = tmp_path / "tuned"
    steps = []
    result = finetune(tiny_model_dir, images, masks, out, minutes=0.05, seed=3,
                      progress=lambda step, loss, left, phase: steps.append((step, loss, left, phase)))
    training = [s for s in steps if s[3] == TRAINING]
    assert result.steps == len(training) > 0 and np.isfinite(result.last_loss)
    assert steps[-1][3] == REFITTING and steps[-1][0] == result.steps  # then the scorer is refitted
    check_model_folder(out)  # a valid SAEMI U-Net folder
    settings = json.loads((out / "config.json").read_text())
    assert settings["version"] == result.version and "+ft." in result.version
    record = settings["training"]["finetune"]
    assert record["images"] == ["img0", "img1", "img2"] and record["seed"] == 3 and record["steps"] == result.steps
    proc = subprocess.run([sys.executable, "-m", "app", "analyze", str(images / "img0.png"), "--out",
                           str(tmp_path / "res"), "--segmenter", "unet", "--diameter-px", "16", "--model-dir",
                           str(out), "--workers", "0"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    header = (tmp_path / "res" / "img0_particles.csv").read_text()
    assert f"# segmenter: unet {result.version}\n" in header and f"# param_model_dir: {out}\n" in header
    pd.read_csv(tmp_path / "res" / "img0_particles.csv", comment="#")


def test_a_bad_model_folder_is_refused_with_a_sentence(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "app", "analyze", "x.png", "--out", str(tmp_path / "o"),
                           "--segmenter", "unet", "--model-dir", str(tmp_path / "missing")], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: The model folder missing does not exist.")


def test_a_lambda_layer_is_refused(tmp_path):
    import keras

    inputs = keras.Input((None, None, 1))
    outputs = keras.layers.Lambda(lambda x: keras.ops.concatenate([x, x], axis=-1))(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    with pytest.raises(ModelLoadError, match="corrupted or unreadable"):
        check_weights_file(tmp_path / "lambda.keras")


def test_a_model_of_the_wrong_shape_is_refused(tmp_path):
    import keras

    inputs = keras.Input((None, None, 3))
    keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs)).save(tmp_path / "rgb.keras")
    with pytest.raises(ModelLoadError, match="one grayscale image and give two maps"):
        check_weights_file(tmp_path / "rgb.keras")


def test_a_zip_bomb_is_refused_unopened(tmp_path):
    path = tmp_path / "bomb.keras"
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("model.weights.h5", "w", force_zip64=True) as entry:
            for _ in range(MAX_UNPACKED_BYTES // len(chunk) + 2):
                entry.write(chunk)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(ModelLoadError, match="would unpack to"):
        check_weights_file(path)
