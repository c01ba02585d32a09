import numpy as np
import pytest
from scipy import ndimage

from model.inference import _forward, blend_window, predict_at_scale, predict_tiled


def smooth_image(shape, seed=0):
    image = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 3)
    image = (image - image.min()) / (image.max() - image.min())
    return image.astype(np.float32)


def predict_whole(model, image, margin=32, multiple=16):
    """The network run on the whole image at once (reflect-padded as the tiles are): the reference."""
    rows, cols = image.shape
    pad = ((margin, margin + (-(rows + 2 * margin)) % multiple),
           (margin, margin + (-(cols + 2 * margin)) % multiple))
    padded = np.pad(np.asarray(image, np.float32), pad, mode="reflect")
    return _forward(model, padded[None, ..., None])[0][margin:margin + rows, margin:margin + cols]


def test_tiled_and_whole_image_inference_agree(tiny_model):
    image = smooth_image((150, 230))
    whole = predict_whole(tiny_model, image)
    tiled = predict_tiled(tiny_model, image, tile=64, overlap=32, batch_size=3)
    assert tiled.shape == whole.shape == (150, 230, 3)
    assert np.abs(tiled - whole).mean() < 0.001
    assert np.abs(tiled - whole).max() < 0.01


def test_tiles_without_overlap_show_seams_that_blending_removes(tiny_model):
    image = smooth_image((128, 128), seed=1)
    whole = predict_whole(tiny_model, image)
    blended = predict_tiled(tiny_model, image, tile=64, overlap=32)
    hard = predict_tiled(tiny_model, image, tile=64, overlap=0)
    assert np.abs(blended - whole).max() < np.abs(hard - whole).max()


def test_image_smaller_than_a_tile(tiny_model):
    image = smooth_image((20, 37))
    out = predict_tiled(tiny_model, image, tile=64, overlap=16)
    assert out.shape == (20, 37, 3)
    assert np.isfinite(out).all()


def test_rescaled_prediction_returns_maps_at_image_resolution(tiny_model):
    image = smooth_image((90, 70))
    assert predict_at_scale(tiny_model, image, 0.5, tile=64, overlap=16).shape == (90, 70, 3)
    assert predict_at_scale(tiny_model, image, 1.7, tile=64, overlap=16).shape == (90, 70, 3)


def test_blend_window_is_one_inside_and_tapers_at_edges():
    window = blend_window(64, 16)
    assert window[32, 32] == 1.0
    assert window[0, 32] < 0.01
    assert np.all(np.diff(window[:16, 32]) > 0)


def test_overlap_must_be_smaller_than_tile(tiny_model):
    with pytest.raises(ValueError, match="overlap"):
        predict_tiled(tiny_model, smooth_image((32, 32)), tile=32, overlap=32)


def test_traced_forward_matches_the_keras_model_for_any_tile_shape(tiny_model):
    from model.inference import _traced_forward

    rng = np.random.default_rng(3)
    for shape in [(1, 32, 48, 1), (3, 64, 32, 1), (2, 96, 160, 1)]:
        batch = rng.random(shape, dtype=np.float32)
        assert np.allclose(_forward(tiny_model, batch), np.asarray(tiny_model(batch, training=False)), atol=1e-5)
    # One trace serves every shape: the function object is built once per model.
    assert _traced_forward(tiny_model) is _traced_forward(tiny_model)
    assert len(_traced_forward(tiny_model)._list_all_concrete_functions()) == 1


@pytest.mark.parametrize("view, turn", [(1, lambda a: a[::-1, ::-1]), (2, lambda a: a[:, ::-1]),
                                        (3, lambda a: a[::-1])])
def test_views_average_the_outputs_for_the_turned_and_mirrored_image(tiny_model, view, turn):
    # One tile with no padding, so that a view of the tile is the same view of the image.
    image = smooth_image((64, 96), seed=4)
    plain = predict_tiled(tiny_model, image, tile=96, overlap=0)
    seen_turned = turn(predict_tiled(tiny_model, np.ascontiguousarray(turn(image)), tile=96, overlap=0))
    averaged = predict_tiled(tiny_model, image, tile=96, overlap=0, views=(0, view))
    assert np.abs(plain - seen_turned).max() > 1e-3  # the untrained network does not see the views alike
    assert np.allclose(averaged, (plain + seen_turned) / 2, atol=1e-5)
    assert np.allclose(predict_tiled(tiny_model, image, tile=96, overlap=0, views=(view,)), seen_turned, atol=1e-5)


def predict_tiled_padded(model, image, *, tile, overlap, batch_size=1):
    """The tiling as first written (a padded copy of the image, a 2-D weight sum): the reference
    that the memory-lean :func:`predict_tiled` must reproduce."""
    from model.inference import _forward_views, _tile_layout

    rows, cols = image.shape
    margin = overlap // 2
    tile_rows, row_starts, padded_rows = _tile_layout(rows, tile, overlap)
    tile_cols, col_starts, padded_cols = _tile_layout(cols, tile, overlap)
    padded = np.pad(image, ((margin, padded_rows - rows - margin), (margin, padded_cols - cols - margin)),
                    mode="reflect")
    accumulated = np.zeros((padded_rows, padded_cols, 3), np.float32)
    weight_sum = np.zeros((padded_rows, padded_cols), np.float32)
    window = blend_window(tile_rows, overlap, tile_cols)
    for r in row_starts:
        for c in col_starts:
            out = _forward_views(model, padded[None, r:r + tile_rows, c:c + tile_cols, None], (0,))[0]
            accumulated[r:r + tile_rows, c:c + tile_cols] += out * window[..., None]
            weight_sum[r:r + tile_rows, c:c + tile_cols] += window
    core = (slice(margin, margin + rows), slice(margin, margin + cols))
    return accumulated[core] / weight_sum[core][..., None]


@pytest.mark.parametrize("shape, tile, overlap", [((150, 230), 64, 32), ((37, 300), 96, 16), ((20, 37), 64, 16)])
def test_tiles_cut_from_the_image_match_tiles_of_a_padded_copy(tiny_model, shape, tile, overlap):
    image = smooth_image(shape, seed=3)
    lean = predict_tiled(tiny_model, image, tile=tile, overlap=overlap, batch_size=2)
    reference = predict_tiled_padded(tiny_model, image, tile=tile, overlap=overlap)
    assert lean.shape == reference.shape and lean.dtype == np.float32
    # the same network outputs; only the weight sums are rounded differently (separable product)
    np.testing.assert_allclose(lean, reference, rtol=1e-5, atol=1e-6)


def test_reflect_indices_follow_numpy_reflect_padding_even_past_the_image():
    from model.inference import reflect_indices

    for length in (1, 2, 3, 7, 40):
        for margin in (0, 1, 5, 16, 90):
            for extra in (0, 3, 100):
                padded_length = length + margin + extra
                values = np.arange(length)
                expected = np.pad(values, (margin, extra), mode="reflect")
                assert np.array_equal(values[reflect_indices(length, margin, padded_length)], expected)
