"""Train SAEMI's U-Net: ``python -m model.train --out runs/NAME [options]`` (or ``python -m app train``).

Training is reproducible (fixed seed, committed EMPS split), resumes automatically from
``OUT/last.keras``, stops cleanly after ``--max-minutes``, logs validation metrics per epoch to
``OUT/log.csv`` and keeps the best checkpoint (``OUT/best.keras``, by validation ``obj_f1``).
``OUT/final.keras`` is the best model without optimizer state, ready to ship.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from model import data
from model.metrics import score_image
from model.postprocess import maps_to_instances
from model.preprocess import TARGET_DIAMETER_PX, decode_size, log2_size_map

logger = logging.getLogger(__name__)

# Without a terminal (a log file, nohup) Keras prints one line per epoch, which on two CPU cores
# can be a quarter of an hour apart: a progress line is logged this often instead.
PROGRESS_EVERY_S = 60.0


def _configure_threads(n_threads: int) -> None:
    """Limit TensorFlow's threads; other Keras backends (``KERAS_BACKEND``, for a GPU machine) keep theirs."""
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(n_threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(n_threads))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(os.environ["TF_NUM_INTRAOP_THREADS"]))
        tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["TF_NUM_INTEROP_THREADS"]))
    except RuntimeError:  # TensorFlow already initialised in this process (tests): keep its threads.
        logger.info("TensorFlow is already running; its thread settings are kept.")


def segmentation_loss(y_true, y_pred):
    """Foreground BCE + soft Dice (against class imbalance) + BCE on the centre map."""
    from keras import ops

    fg_true, fg_pred = y_true[..., 0], y_pred[..., 0]
    centre_true, centre_pred = y_true[..., 1], y_pred[..., 1]
    bce_fg = ops.mean(ops.binary_crossentropy(fg_true, fg_pred))
    intersection = ops.sum(fg_true * fg_pred, axis=(1, 2))
    total = ops.sum(fg_true, axis=(1, 2)) + ops.sum(fg_pred, axis=(1, 2))
    dice_loss = 1.0 - ops.mean((2.0 * intersection + 1.0) / (total + 1.0))
    bce_centre = ops.mean(ops.binary_crossentropy(centre_true, centre_pred))
    return bce_fg + dice_loss + 2.0 * bce_centre


#: Weight of the size channel's loss (a third output, see :func:`size_aware_loss`).
SIZE_LOSS_WEIGHT = 1.0


def size_aware_loss(y_true, y_pred):
    """:func:`segmentation_loss` plus the BCE of the size channel (channel 2) over particle pixels only."""
    from keras import ops

    foreground = y_true[..., 0]
    size_bce = ops.binary_crossentropy(y_true[..., 2:3], y_pred[..., 2:3])[..., 0]
    size_loss = ops.sum(size_bce * foreground) / (ops.sum(foreground) + 1.0)
    return segmentation_loss(y_true, y_pred) + SIZE_LOSS_WEIGHT * size_loss


def _numpy_loss(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    p = np.clip(y_pred, 1e-7, 1 - 1e-7)
    bce = -(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))
    fg_t, fg_p = y_true[..., 0], y_pred[..., 0]
    dice_loss = 1.0 - np.mean((2 * (fg_t * fg_p).sum((1, 2)) + 1) / (fg_t.sum((1, 2)) + fg_p.sum((1, 2)) + 1))
    return float(bce[..., 0].mean() + dice_loss + 2.0 * bce[..., 1].mean())


def validation_scores(model, images: np.ndarray, targets: np.ndarray, labels: np.ndarray,
                      batch_size: int = 16) -> dict[str, float]:
    """Validation loss, pixel Dice (pooled) and mean per-crop ``obj_f1`` / ``ecd_err``."""
    from keras import ops

    preds = np.concatenate([ops.convert_to_numpy(model(images[i:i + batch_size], training=False))
                            for i in range(0, len(images), batch_size)])
    size = {}
    if preds.shape[-1] > 2:  # a size channel: the median |log2| error of the size map on particle pixels
        errors = [np.abs(np.log2(decode_size(p[..., 2][lab > 0])) - log2_size_map(lab)[lab > 0])
                  for lab, p in zip(labels, preds) if lab.any()]
        size["val_size_log2_err"] = float(np.median(np.concatenate(errors))) if errors else float("nan")
    preds = preds[..., :2]
    fg_true, fg_pred = targets[..., 0] > 0.5, preds[..., 0] > 0.5
    pooled_dice = 2 * (fg_true & fg_pred).sum() / max(1, fg_true.sum() + fg_pred.sum())
    scores = [score_image(lab, maps_to_instances(p[..., 0], p[..., 1])) for lab, p in zip(labels, preds)]
    return {"val_loss": _numpy_loss(targets, preds), "val_dice": float(pooled_dice),
            "val_obj_f1": float(np.mean([s["obj_f1"] for s in scores])),
            "val_ecd_err": float(np.mean([s["ecd_err"] for s in scores])), **size}


def export_without_optimizer(source: Path, dest: Path) -> None:
    """Save the model in ``source`` to ``dest`` (.keras) without optimizer state."""
    import keras

    model = keras.saving.load_model(source, compile=False)
    model.save(dest)


def _emps_samples(root: Path, names: list[str], target_px: float, cache: Path | None, which: str):
    """Prepared EMPS samples, read from ``cache/emps_WHICH.npz`` when it holds them."""
    if cache is None:
        return data.load_emps(root, names, min_side_px=data.CROP_SIZE_PX, target_diameter_px=target_px)
    path = cache / f"emps_{which}.npz"
    samples = data.load_samples(path, names, target_px)
    if samples is None:
        samples = _emps_samples(root, names, target_px, None, which)
        cache.mkdir(parents=True, exist_ok=True)
        data.save_samples(path, samples, target_px)
    return samples


def _jitter(text: str) -> tuple[float, float]:
    """``LOW,HIGH`` with 0 < LOW <= HIGH, for ``--scale-jitter``."""
    try:
        low, high = (float(value) for value in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"give two numbers LOW,HIGH, got {text!r}") from err
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"need 0 < LOW <= HIGH, got {text!r}")
    return low, high


def _zooms(text: str) -> tuple[float, ...]:
    """``Z1,Z2,...``, each positive, for ``--val-zooms``."""
    try:
        zooms = tuple(float(value) for value in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"give positive numbers separated by commas, got {text!r}") from err
    if not zooms or min(zooms) <= 0:
        raise argparse.ArgumentTypeError(f"zooms must be positive, got {text!r}")
    return zooms


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="train", description="Train SAEMI's particle segmentation U-Net.")
    parser.add_argument("--out", required=True, type=Path, help="run folder for checkpoints and logs")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--steps-per-epoch", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop-size", type=int, default=128, help="training crop side in pixels")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this wall time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=None,
                        help=f"datasets folder (default ${data.DATA_ROOT_ENV} or ../shared/datasets)")
    parser.add_argument("--synthetic-fraction", type=float, default=0.3,
                        help="share of training crops drawn from the synthetic generator")
    parser.add_argument("--filters", type=str, default="16,32,64,128",
                        help="comma-separated filter counts per U-Net level")
    parser.add_argument("--convs-per-block", type=int, default=2)
    parser.add_argument("--target-diameter-px", type=float, default=TARGET_DIAMETER_PX,
                        help="median particle diameter every sample is rescaled to (the config's "
                             "input_scale.target_diameter_px must match it)")
    parser.add_argument("--scale-jitter", type=_jitter, default=data.SCALE_JITTER, metavar="LOW,HIGH",
                        help="crops are rescaled by a factor drawn log-uniformly from LOW to HIGH around the "
                             "target diameter (default %(default)s; 0.25,2 trains on particles of 4 to 32 px)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0,
                        help="processes that make training batches (0: the training process itself)")
    parser.add_argument("--samples-cache", type=Path, default=None,
                        help="folder where the prepared EMPS samples are stored after the first load and "
                             "read from afterwards (images at 8 bits)")
    parser.add_argument("--val-zooms", type=_zooms, default=(1.0,), metavar="Z1,Z2,...",
                        help="validation crops at these zooms of the prepared size (default 1: particles at "
                             "--target-diameter-px); e.g. 0.25,1,3 for a network trained over a band of sizes")
    parser.add_argument("--size-head", action=argparse.BooleanOptionalAction, default=True,
                        help="a third output, each particle's size (a size map; model.preprocess.encode_size), "
                             "which the segmenter needs; an --init network with two outputs gains it (default: "
                             "on; --no-size-head trains the two maps alone, for studies)")
    parser.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/last.keras exists")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from the weights of this .keras model (for example one made by "
                             "model.prune) instead of a new network; --filters is then ignored")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Train; returns the process exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.monotonic()
    deadline = started + 60 * args.max_minutes if args.max_minutes else None
    _configure_threads(args.threads)
    import keras

    keras.utils.set_random_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    root = data.data_root(args.data_root)
    train_names, val_names = data.read_split("train"), data.read_split("val")
    logger.info("Loading %d training and %d validation EMPS images from %s", len(train_names), len(val_names), root)
    target_px = args.target_diameter_px
    train_samples = _emps_samples(root, train_names, target_px, args.samples_cache, "train")
    val_images, val_targets, val_labels = data.validation_crops(
        _emps_samples(root, val_names, target_px, args.samples_cache, "val"), zooms=args.val_zooms)
    synthetic = data.synthetic_crop_generator() if args.synthetic_fraction > 0 else None

    state_path, last_path, best_path = args.out / "state.json", args.out / "last.keras", args.out / "best.keras"
    state = {"epoch": 0, "best_obj_f1": -1.0, "train_seconds": 0.0}
    if last_path.exists() and state_path.exists() and not args.no_resume:
        state = json.loads(state_path.read_text())
        model = keras.saving.load_model(last_path, custom_objects={"segmentation_loss": segmentation_loss,
                                                                   "size_aware_loss": size_aware_loss})
        logger.info("Resuming from %s after epoch %d", last_path, state["epoch"])
    else:
        from model.unet import build_unet, with_size_output

        if args.init is not None:
            model = keras.saving.load_model(args.init, safe_mode=True, compile=False)
            logger.info("Starting from the weights of %s", args.init)
            if args.size_head and model.output_shape[-1] == 2:
                model = with_size_output(model)
        else:
            model = build_unet(filters=tuple(int(f) for f in args.filters.split(",")),
                               convs_per_block=args.convs_per_block, n_outputs=3 if args.size_head else 2)
        schedule = keras.optimizers.schedules.CosineDecay(
            args.learning_rate, decay_steps=args.epochs * args.steps_per_epoch, alpha=0.05)
        model.compile(optimizer=keras.optimizers.Adam(schedule),
                      loss=size_aware_loss if args.size_head else segmentation_loss)
    # A resumed run draws from a stream seeded by (seed, epoch): reproducible without replaying
    # (and re-generating) every batch already consumed.
    stream = {"batch_size": args.batch_size, "seed": args.seed + 1000 * state["epoch"],
              "synthetic_fraction": args.synthetic_fraction, "crop_size_px": args.crop_size,
              "target_diameter_px": target_px, "scale_jitter": args.scale_jitter,
              "size_channel": model.output_shape[-1] > 2}  # a resumed run: what its network has
    if args.workers > 0:
        batches = data.parallel_batches(train_samples, workers=args.workers, use_synthetic=synthetic is not None,
                                        **stream)
    else:
        batches = data.training_batches(train_samples, synthetic=synthetic, **stream)

    keras_bar = sys.stdout.isatty()  # Keras draws a live bar only where a terminal shows it

    class EpochEnd(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch_started = time.monotonic()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = self.last_report = time.monotonic()
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            now = time.monotonic()
            if not keras_bar and now - self.last_report >= PROGRESS_EVERY_S:
                self.last_report = now
                done = batch + 1
                left_min = (now - self.epoch_started) / done * (args.steps_per_epoch - done) / 60
                logger.info("epoch %d/%d: step %d/%d, loss %.4f, about %.0f min left in this epoch",
                            self.epoch + 1, args.epochs, done, args.steps_per_epoch,
                            float((logs or {}).get("loss", float("nan"))), left_min)
            if deadline is not None and now > deadline:
                logger.info("Time limit reached; stopping after this epoch's validation.")
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs.update(validation_scores(self.model, val_images, val_targets, val_labels))
            state["epoch"] = epoch + 1
            state["train_seconds"] += time.monotonic() - self.epoch_started
            logs["train_seconds"] = state["train_seconds"]
            if logs["val_obj_f1"] > state["best_obj_f1"]:
                state["best_obj_f1"] = logs["val_obj_f1"]
                self.model.save(best_path)
                export_without_optimizer(best_path, args.out / "final.keras")
            self.model.save(last_path)
            state_path.write_text(json.dumps(state, indent=1))
            logger.info("epoch %d: %s", epoch + 1, {k: round(float(v), 4) for k, v in logs.items()})

    if state["epoch"] < args.epochs:
        model.fit(batches, epochs=args.epochs, initial_epoch=state["epoch"], steps_per_epoch=args.steps_per_epoch,
                  verbose=1 if keras_bar else 2,
                  callbacks=[EpochEnd(), keras.callbacks.CSVLogger(args.out / "log.csv", append=True)])
    if best_path.exists():
        logger.info("Best model (val obj_f1 %.4f) is in %s", state["best_obj_f1"], args.out / "final.keras")
    logger.info("Training wall time %.1f min (this process)", (time.monotonic() - started) / 60)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
