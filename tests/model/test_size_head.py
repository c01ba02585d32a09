"""The size map: a third network output coding each particle's apparent diameter."""

import numpy as np

from model import data
from model.preprocess import decode_size, encode_size, log2_size_map
from model.synthetic import generate_sample


def test_size_codes_round_trip_inside_their_range():
    diameters = np.array([2.0, 4.0, 16.0, 100.0, 256.0])
    assert np.allclose(decode_size(encode_size(diameters)), diameters, rtol=1e-5)


def test_log2_size_map_carries_each_particles_diameter_and_fills_the_background_with_the_nearest():
    labels = np.zeros((40, 40), np.int32)
    labels[5:15, 5:15] = 1  # 100 px: ECD 11.28
    labels[30:32, 30:32] = 2  # 4 px: ECD 2.26
    size = log2_size_map(labels)
    assert np.allclose(np.exp2(size[labels == 1]), np.sqrt(4 * 100 / np.pi), rtol=1e-5)
    assert np.allclose(np.exp2(size[labels == 2]), np.sqrt(4 * 4 / np.pi), rtol=1e-5)
    assert size[0, 0] == size[10, 10] and size[39, 39] == size[31, 31]


def test_crops_code_the_diameter_as_the_particles_appear_after_the_crops_zoom():
    sample = generate_sample(1, 384, 384, median_diameter_px=20, sigma_log=0.0, shape="round",
                             arrangement="isolated", data_bar=False, scale_bar=False, letters=False)
    prepared = data.prepare_sample(sample.image.astype(np.float32), sample.labels, "x", min_side_px=256)
    base_px = np.median(np.exp2(log2_size_map(prepared.labels)[prepared.labels > 0]))
    rng = np.random.default_rng(0)
    for zoom in (0.5, 2.0):
        image, targets = data.random_crop(prepared, rng, 128, (zoom, zoom), size_channel=True)
        assert targets.shape == (128, 128, 3)
        on_particles = targets[..., 0] > 0.5
        assert abs(np.median(decode_size(targets[..., 2][on_particles])) / (base_px * zoom) - 1) < 0.05
    image, targets = data.random_crop(prepared, rng, 128, (1.0, 1.0))
    assert targets.shape == (128, 128, 2)  # no size channel unless asked


def test_a_size_output_added_to_a_network_leaves_its_other_maps_alone(tiny_model):
    from model.unet import with_size_output

    extended = with_size_output(tiny_model)
    batch = np.random.default_rng(0).random((1, 32, 32, 1)).astype(np.float32)
    before, after = np.asarray(tiny_model(batch)), np.asarray(extended(batch))
    assert after.shape[-1] == before.shape[-1] + 1
    assert np.allclose(after[..., :-1], before, atol=1e-6)
    assert np.allclose(after[..., -1], 0.5)
