"""Fine-tune a copy of a model on a user's own images and masks, within a time budget.

``python -m app finetune --images DIR --masks DIR --out MODEL_DIR [--minutes 3] [--seed 0]``

Masks may be instance labels (each particle its own id) or binary masks (particles are then the
connected components). The user's images are mixed with a share of the original kind of training data
(crops of the synthetic generator), so that the model does not forget what it knew; crops are augmented
(scale, rotation, mirror, intensity) as in training. The tuned model is written as a model folder: the
weights, ``config.json`` (the base model's settings, a new version, and the fine-tune's provenance under
``training.finetune``) and the candidate scorer, so ``analyze --model-dir`` and ``evaluate --model-dir``
can use it. The candidate scorer belongs to the weights, so it is refitted for the tuned ones within the
same budget, with the user's images among its examples (:data:`REFIT_SHARE`,
:func:`model.candidate_fit.refit_for_user`).

Only the supervised pixels of a user's image count in the loss (:func:`masked_segmentation_loss`): an
image may come with a ``supervised`` mask (in the samples view, the region the user corrected, or the
whole image once it is marked fully checked); crops of it are then drawn around supervised pixels.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from app.analysis.errors import SaemiInputError
from app.analysis.imageio import decode_image
from model import data
from model.candidate_fit import refit_for_user
from model.config import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    ModelLoadError,
    default_model_dir,
    read_config,
)
from model.loading import check_weights_file

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: Shares of each batch: the user's images, the EMPS training split (when the data folder has it) and the
#: synthetic generator. The last two are the original training data, mixed in against forgetting.
USER_FRACTION = 0.5
EMPS_FRACTION = 0.25
#: Share of the time budget that refits the candidate scorer when the model uses the octave method.
REFIT_SHARE = 0.5
#: The phases a fine-tune's progress names: training the weights, then (octave models) refitting the scorer.
TRAINING, REFITTING = "training", "refitting"


@dataclasses.dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tune did."""

    model_dir: Path
    version: str
    steps: int
    seconds: float
    first_loss: float
    last_loss: float


def read_masks(masks_dir: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Instance labels per image name (stem): instance masks as they are, binary ones split into connected
    components (4-connectivity)."""
    found = {p.stem: p for p in sorted(masks_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    masks = {}
    for name in names:
        if name not in found:
            continue
        with Image.open(found[name]) as image:
            mask = np.asarray(image)
        if mask.ndim == 3:
            mask = mask[..., 0]
        values = np.unique(mask)
        if values.size <= 2:  # binary: 0 and one foreground value
            mask, _ = ndimage.label(mask > 0)
        masks[name] = mask.astype(np.int32)
    return masks


def user_images(images_dir: Path, masks_dir: Path) -> list[data.LabelledImage]:
    """The user's image/mask pairs (matched by stem), at their own resolution.

    Raises
    ------
    SaemiInputError
        When no image has a mask, or an image and its mask differ in size.
    """
    images = {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    masks = read_masks(masks_dir, list(images))
    if not masks:
        raise SaemiInputError(f"No image in {images_dir.name} has a mask of the same name in {masks_dir.name}.")
    pairs = []
    for name, labels in masks.items():
        gray = decode_image(images[name].read_bytes(), images[name].name).gray
        if gray.shape != labels.shape:
            raise SaemiInputError(f"The image {name} is {gray.shape[1]} x {gray.shape[0]} px but its mask is "
                                  f"{labels.shape[1]} x {labels.shape[0]} px.")
        pairs.append(data.LabelledImage(name, gray, labels))
    return pairs


def original_samples(target_diameter_px: float) -> list[data.Sample]:
    """The EMPS training split, prepared as in training, or none when the data folder lacks it."""
    root = data.data_root()
    return data.load_emps(root, data.available_train_names(root), min_side_px=data.CROP_SIZE_PX,
                          target_diameter_px=target_diameter_px)


def masked_segmentation_loss(y_true, y_pred):
    """:func:`model.train.segmentation_loss` over the supervised pixels only.

    ``y_true`` has three channels: foreground, centre map and the pixel weight (1 supervised, 0 not); four
    for a network with a size map (:func:`model.train.size_aware_loss`), whose size target comes third and
    counts on supervised particle pixels. Every term (foreground BCE, soft Dice, centre BCE, size BCE) sums
    over weighted pixels, so an unsupervised pixel changes neither the loss nor its gradient; with every
    weight 1 the loss equals ``segmentation_loss`` (``size_aware_loss`` with a size map).
    """
    from keras import ops

    weight = y_true[..., -1]
    fg_true, fg_pred = y_true[..., 0], y_pred[..., 0]
    centre_true, centre_pred = y_true[..., 1], y_pred[..., 1]
    pixels = ops.maximum(ops.sum(weight), 1.0)
    bce_fg = ops.sum(weight * ops.binary_crossentropy(fg_true, fg_pred)) / pixels
    intersection = ops.sum(weight * fg_true * fg_pred, axis=(1, 2))
    total = ops.sum(weight * fg_true, axis=(1, 2)) + ops.sum(weight * fg_pred, axis=(1, 2))
    dice_loss = 1.0 - ops.mean((2.0 * intersection + 1.0) / (total + 1.0))
    bce_centre = ops.sum(weight * ops.binary_crossentropy(centre_true, centre_pred)) / pixels
    loss = bce_fg + dice_loss + 2.0 * bce_centre
    if y_pred.shape[-1] > 2:
        from model.train import SIZE_LOSS_WEIGHT

        size_weight = weight * fg_true
        size_bce = ops.binary_crossentropy(y_true[..., 2:3], y_pred[..., 2:3])[..., 0]
        loss = loss + SIZE_LOSS_WEIGHT * ops.sum(size_weight * size_bce) / (ops.sum(size_weight) + 1.0)
    return loss


def _weighted(targets: np.ndarray, has_weight: bool) -> np.ndarray:
    """Targets with the weight channel last: a crop without one is supervised everywhere."""
    if has_weight:
        return targets
    return np.concatenate([targets, np.ones(targets.shape[:-1] + (1,), np.float32)], axis=-1)


def mixed_batches(user: list[data.Sample], original: list[data.Sample], rng: np.random.Generator, *,
                  batch_size: int, crop_size_px: int, target_diameter_px: float, size_channel: bool = False):
    """Endless augmented batches: :data:`USER_FRACTION` of the crops from the user's images,
    :data:`EMPS_FRACTION` from ``original`` (when there is any), the rest from the synthetic generator.

    Targets have three channels, the third the pixel weight (see :func:`masked_segmentation_loss`); with
    ``size_channel`` (a network with a size map) a size target comes before the weight."""
    generate = data.synthetic_crop_generator()
    pool = data.SyntheticPool(generate, rng, target_diameter_px=target_diameter_px) if generate else None
    emps_share = EMPS_FRACTION if original else 0.0
    while True:
        images, targets = [], []
        for _ in range(batch_size):
            draw = rng.random()
            if draw < USER_FRACTION or (pool is None and not original):
                sample = user[int(rng.integers(len(user)))]
            elif draw < USER_FRACTION + emps_share:
                sample = original[int(rng.integers(len(original)))]
            else:
                sample = pool.draw() if pool is not None else original[int(rng.integers(len(original)))]
            x, y = data.random_crop(sample, rng, crop_size_px, size_channel=size_channel)
            images.append(x)
            targets.append(_weighted(y, sample.supervised is not None))
        yield np.stack(images), np.stack(targets)


def labelled_image(gray: np.ndarray, labels: np.ndarray, name: str,
                   supervised: np.ndarray | None = None) -> data.LabelledImage:
    """One of the user's images (2-D float in [0, 1]) with its instance labels; ``supervised`` (bool, same
    shape) marks the pixels whose labels count (default: all).

    Raises
    ------
    SaemiInputError
        When the image, its labels and its mask differ in size, or nothing is supervised.
    """
    if gray.shape != labels.shape or (supervised is not None and supervised.shape != gray.shape):
        raise SaemiInputError(f"The image {name} and its labels differ in size.")
    if supervised is not None and not supervised.any():
        raise SaemiInputError(f"The image {name} has no corrected region to learn from.")
    return data.LabelledImage(name, gray, np.asarray(labels, np.int32), supervised)


def training_sample(image: data.LabelledImage, target_diameter_px: float) -> data.Sample:
    """``image`` prepared for training at the network's scale (its particles brought to ``target_diameter_px``)."""
    return data.prepare_sample(image.gray, image.labels, image.name, min_side_px=data.CROP_SIZE_PX,
                               target_diameter_px=target_diameter_px, supervised=image.supervised)


def finetune(base_dir: Path, images_dir: Path, masks_dir: Path, out_dir: Path, *, minutes: float = 3.0,
             seed: int = 0, batch_size: int = 8, crop_size_px: int = 128, learning_rate: float = 1e-4,
             progress: Callable[[int, float, float, str], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> FinetuneResult:
    """Fine-tune the model of ``base_dir`` on the pairs in ``images_dir``/``masks_dir`` for ``minutes``.

    ``progress(step, loss, seconds_left, phase)`` is called after every step (phase :data:`TRAINING`), and
    while an octave model's scorer is refitted after every image (:data:`REFITTING`: the last step and
    loss, less time left); ``should_stop()`` (if given)
    is asked too, and a true answer ends the fine-tune early: the weights so far are kept (with an octave
    model, the base model's scorer too, as the provenance says).

    Raises
    ------
    SaemiInputError
        For unusable images or masks.
    ModelLoadError
        When the base model cannot be used.
    """
    return finetune_images(base_dir, user_images(images_dir, masks_dir), out_dir, minutes=minutes, seed=seed,
                           batch_size=batch_size, crop_size_px=crop_size_px, learning_rate=learning_rate,
                           progress=progress, should_stop=should_stop)


def finetune_images(base_dir: Path, images: list[data.LabelledImage], out_dir: Path, *, minutes: float = 3.0,
                    seed: int = 0, batch_size: int = 8, crop_size_px: int = 128, learning_rate: float = 1e-4,
                    progress: Callable[[int, float, float, str], None] | None = None,
                    should_stop: Callable[[], bool] | None = None,
                    regions: dict[str, str] | None = None) -> FinetuneResult:
    """:func:`finetune` on the user's images already read (:func:`labelled_image`).

    The last :data:`REFIT_SHARE` of the budget refits the candidate scorer for the tuned weights, with the
    user's images among its examples (:func:`model.candidate_fit.refit_for_user`); the progress then names
    the phase :data:`REFITTING` and keeps its last step and loss while the time left runs down. ``regions``
    describes, per image name, the region that was supervised, for the provenance (default: "whole image",
    or the supervised pixel count at network scale).
    """
    import keras

    if not images:
        raise SaemiInputError("There is no corrected image to learn from.")
    config = read_config(base_dir)
    samples = [training_sample(image, config.input_scale.target_diameter_px) for image in images]
    check_weights_file(Path(base_dir) / config.weights, len(config.architecture.outputs))
    model = keras.saving.load_model(Path(base_dir) / config.weights, safe_mode=True, compile=False)
    for layer in model.layers:  # batch statistics stay those of the original data (against forgetting)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=masked_segmentation_loss)
    batches = mixed_batches(samples, original_samples(config.input_scale.target_diameter_px),
                            np.random.default_rng(seed), batch_size=batch_size, crop_size_px=crop_size_px,
                            target_diameter_px=config.input_scale.target_diameter_px,
                            size_channel=model.output_shape[-1] > 2)
    keras.utils.set_random_seed(seed)
    budget_s = 60.0 * minutes
    train_s = budget_s * (1.0 - REFIT_SHARE)
    start = time.monotonic()
    steps, losses = 0, []

    def stopped() -> bool:
        return should_stop is not None and should_stop()

    def report(phase: str = TRAINING) -> None:
        if progress is not None:
            progress(steps, losses[-1] if losses else float("nan"), max(0.0, budget_s - (time.monotonic() - start)),
                     phase)

    while time.monotonic() - start < train_s and not stopped():
        x, y = next(batches)
        losses.append(float(np.asarray(model.train_on_batch(x, y)).ravel()[0]))
        steps += 1
        report()
    if regions is None:
        regions = {s.name: "whole image" if s.supervised is None else
                   f"{int(s.supervised.sum())} px at network scale" for s in samples}
    result = _save(model, config, base_dir, out_dir, samples, steps, time.monotonic() - start, seed, minutes,
                   learning_rate, losses[0] if losses else float("nan"), losses[-1] if losses else float("nan"),
                   regions)
    done = ("the base model's scorer, kept: the tune was stopped" if stopped() else
            refit_for_user(out_dir, images, budget_s - (time.monotonic() - start), seed=seed,
                           tick=lambda: report(REFITTING), should_stop=should_stop))
    settings = json.loads((out_dir / CONFIG_NAME).read_text())
    settings["training"]["finetune"]["candidate_scorer"] = done
    settings["training"]["finetune"]["seconds"] = round(time.monotonic() - start, 1)
    (out_dir / CONFIG_NAME).write_text(json.dumps(settings, indent=2) + "\n")
    return dataclasses.replace(result, seconds=time.monotonic() - start)


def _save(model, config, base_dir: Path, out_dir: Path, samples, steps: int, seconds: float, seed: int,
          minutes: float, learning_rate: float, first_loss: float, last_loss: float,
          regions: dict[str, str]) -> FinetuneResult:
    import keras

    out_dir.mkdir(parents=True, exist_ok=True)
    clean = keras.Model.from_config(model.get_config())  # uncompiled: no optimizer state in the file
    clean.set_weights(model.get_weights())
    clean.save(out_dir / WEIGHTS_NAME)
    digest = hashlib.sha256((out_dir / WEIGHTS_NAME).read_bytes()).hexdigest()[:8]
    version = f"{config.version}+ft.{digest}"
    settings = config.to_dict()
    settings["version"] = version
    settings["weights"] = WEIGHTS_NAME
    settings["training"] = {"finetune": {
        "base_version": config.version, "images": [s.name for s in samples], "regions": regions,
        "steps": steps, "seconds": round(seconds, 1), "budget_minutes": minutes, "seed": seed,
        "shares": {"user": USER_FRACTION, "emps_train": EMPS_FRACTION, "synthetic": 1 - USER_FRACTION - EMPS_FRACTION},
        "learning_rate": learning_rate}, "base": dict(config.training)}
    if config.input_scale.scorer_file:  # the base model's, until the refit replaces it
        shutil.copy(Path(base_dir) / config.input_scale.scorer_file, out_dir)
    (out_dir / CONFIG_NAME).write_text(json.dumps(settings, indent=2) + "\n")
    return FinetuneResult(out_dir, version, steps, seconds, first_loss, last_loss)


def main(argv: list[str] | None = None) -> int:
    """``python -m app finetune``: one line of progress per ten steps, then the result."""
    parser = argparse.ArgumentParser(prog="python -m app finetune", description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, type=Path, help="folder of images")
    parser.add_argument("--masks", required=True, type=Path, help="folder of masks with the images' names")
    parser.add_argument("--out", required=True, type=Path, help="folder for the tuned model")
    parser.add_argument("--model-dir", type=Path, default=None, help="base model folder (default: the shipped)")
    parser.add_argument("--minutes", type=float, default=3.0, help="time budget (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    printed = [0, TRAINING]

    def report(step: int, loss: float, seconds_left: float, phase: str) -> None:
        if phase == REFITTING and printed[1] != REFITTING:
            print(f"{step} steps done; refitting the particle scorer for the tuned network, "
                  f"{seconds_left:.0f} s left", flush=True)
        elif phase == TRAINING and step % 10 == 0 and step != printed[0]:
            print(f"step {step}: loss {loss:.4f}, {seconds_left:.0f} s left", flush=True)
        printed[:] = [step, phase]

    try:
        result = finetune(args.model_dir or default_model_dir(), args.images, args.masks, args.out,
                          minutes=args.minutes, seed=args.seed, progress=report)
    except (SaemiInputError, ModelLoadError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Tuned model {result.version} written to {result.model_dir}: {result.steps} steps in "
          f"{result.seconds:.0f} s, loss {result.first_loss:.3f} -> {result.last_loss:.3f}")
    return 0
