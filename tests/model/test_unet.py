import numpy as np

from model.unet import build_unet


def test_factory_builds_net_with_requested_outputs():
    model = build_unet(filters=(4, 8, 16), n_outputs=3, convs_per_block=1)
    image = np.random.default_rng(0).random((2, 32, 48, 1), dtype=np.float32)
    out = np.asarray(model(image, training=False))
    assert out.shape == (2, 32, 48, 3)
    assert out.min() >= 0.0 and out.max() <= 1.0
    # Encoder/decoder follow the filter list: one pooling per level below the bottleneck.
    assert sum("pool" in layer.name for layer in model.layers) == 2


def test_factory_rejects_a_single_level():
    import pytest

    with pytest.raises(ValueError, match="two filter levels"):
        build_unet(filters=(8,))
