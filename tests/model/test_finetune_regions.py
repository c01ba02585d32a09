"""Fine-tuning on part of an image: unsupervised pixels are left out of the loss, crops find the supervised
ones, and the provenance names the regions used."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model import data
from model.finetune import finetune_images, labelled_image, masked_segmentation_loss
from model.synthetic import generate_sample
from model.train import segmentation_loss
from tests.model.conftest import two_touching_discs


def _targets_and_weights(rng, shape=(2, 32, 32)):
    targets = np.stack([rng.random(shape) > 0.5, rng.random(shape)], axis=-1).astype(np.float32)
    weight = np.zeros(shape + (1,), np.float32)
    weight[:, 8:20, 4:24] = 1.0
    return targets, weight


def _loss_and_gradient(model, images, y_true):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = masked_segmentation_loss(tf.constant(y_true), model(images, training=False))
    return float(loss), [g.numpy() for g in tape.gradient(loss, model.trainable_weights)]


def test_unsupervised_pixels_change_neither_the_loss_nor_its_gradient(tiny_model):
    rng = np.random.default_rng(0)
    images = rng.random((2, 32, 32, 1)).astype(np.float32)
    targets, weight = _targets_and_weights(rng)
    other = targets.copy()
    outside = weight[..., 0] == 0
    other[outside] = 1.0 - other[outside]  # every unsupervised pixel now says the opposite
    loss_a, grad_a = _loss_and_gradient(tiny_model, images, np.concatenate([targets, weight], -1))
    loss_b, grad_b = _loss_and_gradient(tiny_model, images, np.concatenate([other, weight], -1))
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    for a, b in zip(grad_a, grad_b):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # ... while a supervised pixel does change them
    inside = targets.copy()
    inside[0, 10, 10, 0] = 1.0 - inside[0, 10, 10, 0]
    loss_c, _ = _loss_and_gradient(tiny_model, images, np.concatenate([inside, weight], -1))
    assert loss_c != pytest.approx(loss_a, rel=1e-6)


def test_with_every_pixel_supervised_the_loss_is_the_training_loss():
    import keras
    from keras import ops

    from model.unet import build_unet

    keras.utils.set_random_seed(1)
    two_maps = build_unet(filters=(4, 8), convs_per_block=1)  # a network without a size map: the plain loss
    rng = np.random.default_rng(1)
    images = rng.random((2, 32, 32, 1)).astype(np.float32)
    targets, _ = _targets_and_weights(rng)
    predicted = two_maps(images, training=False)
    full = np.concatenate([targets, np.ones(targets.shape[:-1] + (1,), np.float32)], -1)
    assert float(ops.convert_to_numpy(masked_segmentation_loss(full, predicted))) == pytest.approx(
        float(ops.convert_to_numpy(segmentation_loss(targets, predicted))), rel=1e-5)


def test_crops_of_a_partly_supervised_image_hold_supervised_pixels():
    labels = np.zeros((400, 400), np.int32)
    labels[50:350, 50:350] = two_touching_discs((300, 300), radius=40)
    supervised = np.zeros(labels.shape, bool)
    supervised[300:320, 330:360] = True  # a small corner
    gray = (labels > 0).astype(np.float32) * 0.6 + 0.2
    sample = data.prepare_sample(gray, labels, "x", min_side_px=data.CROP_SIZE_PX, supervised=supervised)
    rng = np.random.default_rng(2)
    for _ in range(20):
        image, targets = data.random_crop(sample, rng, 64)
        assert image.shape == (64, 64, 1) and targets.shape == (64, 64, 3)
        assert targets[..., 2].any() and set(np.unique(targets[..., 2])) <= {0.0, 1.0}
    plain = data.prepare_sample(gray, labels, "x", min_side_px=data.CROP_SIZE_PX)
    assert data.random_crop(plain, rng, 64)[1].shape == (64, 64, 2)


def test_an_image_without_a_corrected_region_is_refused():
    from app.analysis.errors import SaemiInputError

    labels = two_touching_discs()
    with pytest.raises(SaemiInputError, match="no corrected region"):
        labelled_image(np.zeros(labels.shape, np.float32), labels, "a", np.zeros(labels.shape, bool))


@pytest.mark.slow
def test_the_provenance_names_the_supervised_regions(tiny_model_dir, tmp_path):
    generated = generate_sample(610, 160, 160, modality="tem", median_diameter_px=16, data_bar=False,
                                scale_bar=False, letters=False)
    gray = generated.image.astype(np.float32) / 255.0
    supervised = np.zeros(gray.shape, bool)
    supervised[40:90, 40:90] = True
    images = [labelled_image(gray, generated.labels, "part", supervised),
              labelled_image(gray, generated.labels, "whole")]
    result = finetune_images(tiny_model_dir, images, tmp_path / "tuned", minutes=0.02, seed=1,
                             regions={"part": "corrected region (2500 px)", "whole": "whole image"})
    record = json.loads((tmp_path / "tuned" / "config.json").read_text())["training"]["finetune"]
    assert result.steps >= 1 and np.isfinite(result.last_loss)
    assert record["regions"] == {"part": "corrected region (2500 px)", "whole": "whole image"}
    assert record["candidate_scorer"]  # what became of the scorer, in words (tests/model/test_finetune_refit.py)


def test_a_network_with_a_size_map_is_tuned_with_its_size_target_where_supervised(tiny_model_dir, tmp_path):
    import keras
    from keras import ops

    from model.train import size_aware_loss
    from model.unet import build_unet, with_size_output

    keras.utils.set_random_seed(3)
    sized = with_size_output(build_unet(filters=(4, 8), convs_per_block=1))  # a v3 network gains its size map
    rng = np.random.default_rng(2)
    head = sized.get_layer("maps")
    kernel, bias = head.get_weights()
    kernel[..., 2] = rng.normal(0, 0.5, kernel[..., 2].shape)  # a size map that is not 0.5 everywhere
    head.set_weights([kernel, bias])
    images = rng.random((2, 32, 32, 1)).astype(np.float32)
    targets, weight = _targets_and_weights(rng)
    size = rng.random(targets.shape[:-1] + (1,)).astype(np.float32)
    predicted = sized(images, training=False)
    everywhere = np.concatenate([targets, size, np.ones_like(weight)], -1)
    assert float(ops.convert_to_numpy(masked_segmentation_loss(everywhere, predicted))) == pytest.approx(
        float(ops.convert_to_numpy(size_aware_loss(everywhere[..., :3], predicted))), rel=1e-5)
    part = np.concatenate([targets, size, weight], -1)
    changed = part.copy()
    changed[..., 2][weight[..., 0] == 0] = 1.0 - changed[..., 2][weight[..., 0] == 0]  # unsupervised sizes
    a = float(ops.convert_to_numpy(masked_segmentation_loss(part, predicted)))
    assert a == pytest.approx(float(ops.convert_to_numpy(masked_segmentation_loss(changed, predicted))), rel=1e-6)
    changed[..., 2] = 1.0 - part[..., 2]  # every size target
    assert a != pytest.approx(float(ops.convert_to_numpy(masked_segmentation_loss(changed, predicted))), rel=1e-6)
    # and a whole fine-tune of such a network runs and keeps its size map
    config = json.loads((tiny_model_dir / "config.json").read_text())
    sized.save(tiny_model_dir / config["weights"])
    generated = generate_sample(611, 160, 160, modality="sem", median_diameter_px=16, data_bar=False,
                                scale_bar=False, letters=False)
    image = labelled_image(generated.image.astype(np.float32) / 255.0, generated.labels, "one")
    finetune_images(tiny_model_dir, [image], tmp_path / "tuned", minutes=0.02, seed=1)
    tuned = keras.saving.load_model(tmp_path / "tuned" / "saemi_unet.keras", safe_mode=True, compile=False)
    assert tuned.output_shape[-1] == 3
