import numpy as np
import pytest

from model.prune import prune_unet


@pytest.fixture(scope="module")
def source_model():
    import keras

    from model.unet import build_unet

    keras.utils.set_random_seed(1)
    model = build_unet(filters=(6, 10, 14), convs_per_block=2)
    # Distinct batch-norm scales and statistics, so the choice of channels matters.
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.name.endswith(tuple(f"_bn{i}" for i in range(2))):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.1, 2, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2, var.shape)])
    return model


def test_pruning_to_the_same_filters_reproduces_the_network(source_model):
    copy = prune_unet(source_model, (6, 10, 14))
    batch = np.random.default_rng(2).random((2, 32, 48, 1), dtype=np.float32)
    assert np.allclose(np.asarray(copy(batch, training=False)), np.asarray(source_model(batch, training=False)),
                       atol=1e-5)


def test_pruned_network_keeps_the_channels_with_the_largest_scales(source_model):
    pruned = prune_unet(source_model, (3, 5, 7))
    assert pruned.count_params() < source_model.count_params()
    gamma = source_model.get_layer("enc0_bn0").get_weights()[0]
    kept = np.sort(np.argsort(-np.abs(gamma))[:3])
    assert np.allclose(pruned.get_layer("enc0_bn0").get_weights()[0], gamma[kept])
    # The first decoder convolution reads the kept channels of the upsampled bottleneck and of the skip.
    old_kernel = source_model.get_layer("dec1_conv0").get_weights()[0]
    new_kernel = pruned.get_layer("dec1_conv0").get_weights()[0]
    assert new_kernel.shape[2] == 7 + 5
    bottleneck_kept = np.sort(np.argsort(-np.abs(source_model.get_layer("bottleneck_bn1").get_weights()[0]))[:7])
    out_kept = np.sort(np.argsort(-np.abs(source_model.get_layer("dec1_bn0").get_weights()[0]))[:5])
    assert np.allclose(new_kernel[:, :, :7], old_kernel[:, :, bottleneck_kept][..., out_kept])
    batch = np.random.default_rng(4).random((1, 32, 32, 1), dtype=np.float32)
    assert np.asarray(pruned(batch, training=False)).shape == (1, 32, 32, 2)


def test_pruning_cannot_add_channels(source_model):
    with pytest.raises(ValueError, match="Cannot keep"):
        prune_unet(source_model, (8, 10, 14))
