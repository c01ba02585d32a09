"""The int8 TensorFlow Lite copy of the network (model/quantize.py) and the segmenter's ``int8`` backend."""

import numpy as np
import pytest

from app.analysis.errors import SaemiInputError
from model.config import WEIGHTS_NAME, default_model_dir
from model.metrics import score_image
from model.preprocess import normalize_percentile
from model.quantize import QuantizedNetwork, calibration_tiles, quantized
from model.segmenter import UNetSegmenter
from model.synthetic import generate_sample

pytestmark = pytest.mark.slow


def _shipped():
    if not (default_model_dir() / WEIGHTS_NAME).is_file():
        pytest.skip("the shipped weights are absent")
    return UNetSegmenter().load()


def test_calibration_tiles_are_fixed_normalised_and_cover_both_polarities():
    first, again = list(calibration_tiles(4, 64)), list(calibration_tiles(4, 64))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert all(t.shape == (1, 64, 64, 1) and t.dtype == np.float32 and 0 <= t.min() and t.max() <= 1 for t in first)


def test_int8_maps_match_the_float_network_on_a_generated_image():
    shipped = _shipped()
    sample = generate_sample(5, 192, 256, modality="tem", median_diameter_px=16.0, data_bar=False,
                             scale_bar=False, letters=False)
    batch = normalize_percentile(sample.image.astype(np.float32))[None, ..., None]
    expected = np.asarray(shipped.model(batch, training=False))
    int8 = quantized(shipped.model)
    assert quantized(shipped.model) is int8  # one copy per loaded model
    got = int8(batch)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).mean() < 0.02
    assert ((got[..., 0] > 0.5) == (expected[..., 0] > 0.5)).mean() > 0.98
    # another shape (and a batch of two) gets its own interpreter and the same answer per tile
    pair = np.concatenate([batch[:, :96, :128], batch[:, 96:, 128:]])
    assert np.allclose(int8(pair)[0], int8(batch[:, :96, :128])[0], atol=1e-6)


def test_int8_backend_segments_like_the_float_one():
    _shipped()
    sample = generate_sample(12, 384, 384, modality="sem", data_bar=False, scale_bar=False, letters=False)
    gray = sample.image.astype(np.float32) / 255.0
    float_segmenter = UNetSegmenter(backend="tensorflow")
    assert isinstance(UNetSegmenter().network(), QuantizedNetwork)  # the shipped config runs int8
    assert not isinstance(float_segmenter.network(), QuantizedNetwork)
    float_score = score_image(sample.labels, float_segmenter.segment(gray))
    int8_score = score_image(sample.labels, UNetSegmenter().segment(gray))
    assert int8_score["obj_f1"] >= 0.9 and int8_score["obj_f1"] >= float_score["obj_f1"] - 0.03
    assert abs(int8_score["ecd_err"] - float_score["ecd_err"]) < 0.03


def test_unknown_backend_is_refused_with_a_sentence():
    with pytest.raises(SaemiInputError, match="backend must be one of tensorflow, int8"):
        UNetSegmenter(backend="gpu")


def test_quantized_network_keeps_the_models_shapes():
    shipped = _shipped()
    int8 = quantized(shipped.model)
    assert isinstance(int8, QuantizedNetwork)
    assert int8.output_shape == tuple(shipped.model.output_shape)


def test_the_process_keeps_a_few_int8_copies_and_drops_the_oldest(monkeypatch):
    import model.quantize as quantize

    monkeypatch.setattr(quantize, "_QUANTIZED", type(quantize._QUANTIZED)())
    monkeypatch.setattr(quantize, "QuantizedNetwork", lambda model, threads: ("int8", model))
    models = [object() for _ in range(quantize.MAX_QUANTIZED + 2)]
    first = quantize.quantized(models[0])
    for model in models[1:]:
        quantize.quantized(model)
        quantize.quantized(models[-1])
    assert len(quantize._QUANTIZED) == quantize.MAX_QUANTIZED
    assert id(models[0]) not in quantize._QUANTIZED and id(models[-1]) in quantize._QUANTIZED
    assert quantize.quantized(models[-1]) == ("int8", models[-1]) and first == ("int8", models[0])


def test_an_interpreter_computes_with_the_threads_tensorflow_was_given(monkeypatch):
    import tensorflow as tf

    from model.quantize import network_threads

    monkeypatch.setattr(tf.config.threading, "get_intra_op_parallelism_threads", lambda: 1)
    assert network_threads() == 1  # a single-thread batch worker (app.batch)
    monkeypatch.setattr(tf.config.threading, "get_intra_op_parallelism_threads", lambda: 0)
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "3")
    assert network_threads() == 3
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS")
    assert network_threads() == 2
