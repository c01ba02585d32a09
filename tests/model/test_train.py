"""A tiny training run: logging, checkpoints, resume after an interruption, and --init."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from model import data
from model.preprocess import TARGET_DIAMETER_PX

#: Every test here trains a (tiny) network for a few steps.
pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_dataset(tmp_path, monkeypatch):
    """Three generated images in the EMPS folder layout, with a committed-style split beside them."""
    from model.synthetic import generate_sample

    root = tmp_path / "datasets"
    for sub in ("images", "masks"):
        (root / data.EMPS_FOLDER / sub).mkdir(parents=True)
    names = [f"gen{seed}" for seed in (1, 2, 3)]
    for seed, name in zip((1, 2, 3), names):
        sample = generate_sample(seed, height=128, width=128, modality=("sem", "tem")[seed % 2],
                                 median_diameter_px=24, data_bar=False)
        Image.fromarray(sample.image).save(root / data.EMPS_FOLDER / "images" / f"{name}.png")
        Image.fromarray(sample.labels.astype(np.uint16)).save(root / data.EMPS_FOLDER / "masks" / f"{name}.png")
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "emps_train.txt").write_text("\n".join(names[:2]) + "\n")
    (splits / "emps_val.txt").write_text(names[2] + "\n")
    monkeypatch.setattr(data, "SPLITS_DIR", splits)
    return root


def _args(root, out, epochs, *extra):
    return ["--out", str(out), "--data-root", str(root), "--epochs", str(epochs), "--steps-per-epoch", "2",
            "--batch-size", "2", "--crop-size", "64", "--filters", "4,8", "--synthetic-fraction", "0.5",
            "--seed", "3", *extra]


def _log_rows(out):
    with open(out / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_training_logs_checkpoints_and_resumes(tiny_dataset, tmp_path):
    from model.train import main

    out = tmp_path / "run"
    assert main(_args(tiny_dataset, out, 1)) == 0
    assert [row["epoch"] for row in _log_rows(out)] == ["0"]
    for name in ("last.keras", "best.keras", "final.keras", "state.json"):
        assert (out / name).is_file(), name
    assert {"val_dice", "val_obj_f1", "val_ecd_err", "val_loss"} <= set(_log_rows(out)[0])
    # "Interrupted" after one epoch: asking for two continues from the checkpoint, not from scratch.
    assert main(_args(tiny_dataset, out, 2)) == 0
    assert [row["epoch"] for row in _log_rows(out)] == ["0", "1"]
    state = json.loads((out / "state.json").read_text())
    assert state["epoch"] == 2 and state["train_seconds"] > 0


def test_training_can_start_from_a_pruned_network(tiny_dataset, tmp_path):
    import keras

    from model.prune import prune_unet
    from model.train import main
    from model.unet import build_unet

    source = build_unet(filters=(6, 12))
    init = tmp_path / "pruned.keras"
    prune_unet(source, (4, 8)).save(init)
    out = tmp_path / "run_init"
    assert main(_args(tiny_dataset, out, 1, "--filters", "16,32,64", "--init", str(init))) == 0
    final = keras.saving.load_model(out / "final.keras", compile=False)
    # the pruned filters are kept; the size map (on by default) adds one 1x1 output over the 4 top filters
    assert final.count_params() == keras.saving.load_model(init, compile=False).count_params() + 4 + 1
    assert final.output_shape[-1] == 3


def test_batch_workers_and_the_samples_cache(tiny_dataset, tmp_path):
    from model.train import main

    out, cache = tmp_path / "run_workers", tmp_path / "cache"
    assert main(_args(tiny_dataset, out, 1, "--workers", "1", "--samples-cache", str(cache))) == 0
    assert (cache / "emps_train.npz").is_file() and (cache / "emps_val.npz").is_file()
    assert [row["epoch"] for row in _log_rows(out)] == ["0"]
    assert data.load_samples(cache / "emps_train.npz", data.read_split("train"), TARGET_DIAMETER_PX) is not None


def test_progress_lines_between_epochs_without_a_terminal(tiny_dataset, tmp_path, monkeypatch, caplog):
    """On two CPU cores an epoch can take a quarter of an hour; a log file still gets steps and loss."""
    import logging

    from model import train

    monkeypatch.setattr(train, "PROGRESS_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger="model.train")
    assert train.main(_args(tiny_dataset, tmp_path / "run_progress", 1)) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "model.train"]
    steps = [line for line in lines if line.startswith("epoch 1/1: step ")]
    assert [line.split(",")[0] for line in steps] == ["epoch 1/1: step 1/2", "epoch 1/1: step 2/2"]
    assert all(", loss " in line and "min left in this epoch" in line for line in steps)


def test_app_train_logs_at_info_level(monkeypatch, tmp_path):
    """``python -m app train`` must not set WARNING first: that would silence every progress line."""
    import logging

    from app import cli

    class Configured(Exception):
        pass

    levels = []

    def record(**kwargs):
        levels.append(kwargs.get("level"))
        raise Configured

    monkeypatch.setattr(logging, "basicConfig", record)
    with pytest.raises(Configured):
        cli.main(["train", "--out", str(tmp_path / "run")])
    assert levels == [logging.INFO]


def test_a_size_head_is_added_to_a_two_output_network_trained_and_resumed(tiny_dataset, tmp_path):
    import keras

    from model.train import main
    from model.unet import build_unet

    init = tmp_path / "init.keras"
    build_unet(filters=(4, 8), convs_per_block=1).save(init)
    out = tmp_path / "sized"
    assert main(_args(tiny_dataset, out, 1, "--init", str(init), "--size-head")) == 0
    model = keras.saving.load_model(out / "final.keras", safe_mode=True, compile=False)
    assert model.output_shape[-1] == 3
    assert "val_size_log2_err" in _log_rows(out)[0]
    assert main(_args(tiny_dataset, out, 2, "--size-head")) == 0  # resumes with the size-aware loss
    assert [row["epoch"] for row in _log_rows(out)] == ["0", "1"]
