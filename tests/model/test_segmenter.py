import json

import numpy as np
import pytest

from app.analysis.errors import SaemiInputError
from model.config import CONFIG_NAME, WEIGHTS_NAME, ModelLoadError, default_model_dir
from model.segmenter import UNetSegmenter


def test_missing_weights_give_a_clear_error(tmp_path):
    (tmp_path / CONFIG_NAME).write_text(json.dumps({"weights": WEIGHTS_NAME}))
    with pytest.raises(ModelLoadError, match="weights .* are missing"):
        UNetSegmenter(tmp_path).load()


def test_corrupted_weights_give_a_clear_error(tmp_path):
    (tmp_path / CONFIG_NAME).write_text(json.dumps({"weights": WEIGHTS_NAME}))
    (tmp_path / WEIGHTS_NAME).write_bytes(b"PK\x03\x04 this is not a keras archive")
    with pytest.raises(ModelLoadError, match="corrupted or unreadable"):
        UNetSegmenter(tmp_path).segment(np.zeros((32, 32), np.float32))


def test_missing_or_broken_config_gives_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="settings file .* is missing"):
        UNetSegmenter(tmp_path).load()
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ModelLoadError, match="corrupted"):
        UNetSegmenter(tmp_path / "").load()


def test_segmenter_runs_end_to_end_with_any_network(tiny_model_dir):
    segmenter = UNetSegmenter(tiny_model_dir)
    gray = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    calls = []
    labels = segmenter.segment(gray, progress=lambda fraction, message: calls.append(fraction))
    assert labels.shape == gray.shape and labels.dtype == np.int32
    shipped_version = json.loads((tiny_model_dir / "config.json").read_text())["version"]
    assert segmenter.name == "unet" and segmenter.version == shipped_version
    assert calls and calls[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in calls)
    assert segmenter.load() is UNetSegmenter(tiny_model_dir).load()  # loaded once per process


@pytest.mark.slow
def test_shipped_model_separates_particles_on_generated_images():
    if not (default_model_dir() / WEIGHTS_NAME).is_file():
        pytest.skip(f"shipped weights {default_model_dir() / WEIGHTS_NAME} are absent")
    from app.analysis.segmentation import ClassicalSegmenter
    from model.metrics import score_image
    from model.synthetic import generate_sample

    segmenter, classical = UNetSegmenter(), ClassicalSegmenter()
    scores, classical_scores = [], []
    for seed in (11, 12, 13, 14):
        sample = generate_sample(seed, height=384, width=384, modality=("sem", "tem")[seed % 2])
        gray = sample.image.astype(np.float32) / 255.0
        scores.append(score_image(sample.labels, segmenter.segment(gray))["obj_f1"])
        classical_scores.append(score_image(sample.labels, classical.segment(gray))["obj_f1"])
    # The bar for the shipped model on this set (its figure is in model/README.md, earlier models' in
    # model/CHANGELOG.md).
    assert np.mean(scores) >= 0.9, scores
    assert np.mean(scores) > np.mean(classical_scores) + 0.1, (scores, classical_scores)


def test_known_diameter_sets_the_scale_and_bad_values_are_refused(tiny_model_dir):
    gray = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    target_px = json.loads((tiny_model_dir / "config.json").read_text())["input_scale"]["target_diameter_px"]
    _, scale = UNetSegmenter(tiny_model_dir, diameter_px=8.0).predict_maps(gray)
    assert scale == pytest.approx(target_px / 8.0)
    from app.analysis.errors import SaemiInputError

    with pytest.raises(SaemiInputError, match="positive"):
        UNetSegmenter(tiny_model_dir, diameter_px=0)


def _disc_grid(shape, diameter_px, spacing_px):
    """Labels of equal discs of ``diameter_px`` on a square grid of ``spacing_px``."""
    rows, cols = np.indices(shape)
    labels = np.zeros(shape, np.int32)
    k = 0
    for r in np.arange(spacing_px / 2, shape[0] - diameter_px / 2, spacing_px):
        for c in np.arange(spacing_px / 2, shape[1] - diameter_px / 2, spacing_px):
            k += 1
            labels[(rows - r) ** 2 + (cols - c) ** 2 <= (diameter_px / 2) ** 2] = k
    return labels


def test_a_given_diameter_runs_the_network_once_and_gives_the_instances_of_its_maps(tiny_model_dir, monkeypatch):
    import model.segmenter as segmenter_module
    from model.preprocess import instance_targets, resize_labels, scaled_shape

    truth = _disc_grid((192, 256), 32.0, 60.0)
    seen = []

    def network(model, scaled, views=(0,), progress=None, **kwargs):
        seen.append(scaled.shape)
        return instance_targets(resize_labels(truth, scaled.shape))

    monkeypatch.setattr(segmenter_module, "predict_tiled", network)
    monkeypatch.setattr(UNetSegmenter, "octave_passes", lambda *a, **k: pytest.fail("no octave passes"))
    segmenter = UNetSegmenter(tiny_model_dir, diameter_px=32.0)  # the trained size is 16 px: scale 0.5
    maps, scale = segmenter.network_maps(truth.astype(np.float32))
    assert scale == 0.5 and seen == [scaled_shape(truth.shape, 0.5)]
    labels = segmenter.segment((truth > 0).astype(np.float32))
    assert np.array_equal(labels, segmenter.instances(maps, scale, truth.shape))
    assert labels.max() == truth.max()


@pytest.mark.parametrize("config_views, asked_views, views", [(1, None, 1), (2, None, 2), (1, 2, 2), (2, 1, 1)])
@pytest.mark.parametrize("diameter_px", [16.0, None])
def test_the_network_averages_the_views_asked_for_in_every_pass(tiny_model_dir, monkeypatch, config_views,
                                                                asked_views, views, diameter_px):
    import model.segmenter as segmenter_module

    path = tiny_model_dir / CONFIG_NAME
    path.write_text(json.dumps({**json.loads(path.read_text()), "test_time_views": config_views}))
    calls = []

    def network(model, scaled, views=(0,), progress=None, **kwargs):
        calls.append(tuple(views))
        progress(1.0, "Running the segmentation model")
        return np.zeros((*scaled.shape, 3), np.float32)

    monkeypatch.setattr(segmenter_module, "predict_tiled", network)
    reported = []
    UNetSegmenter(tiny_model_dir, diameter_px=diameter_px, views=asked_views).segment(
        np.zeros((64, 64), np.float32), progress=lambda fraction, message: reported.append(fraction))
    n_passes = 1 if diameter_px else 2  # without a diameter: the octaves 1 and 1/2 of a 64 px image
    assert calls == [tuple(range(views))] * n_passes
    assert reported == sorted(reported) and reported[-1] == 1.0


@pytest.mark.parametrize("views", [0, 5, 2.5, True])
def test_a_number_of_views_the_network_cannot_take_is_refused_with_a_sentence(views):
    with pytest.raises(SaemiInputError, match="number of network views must be a whole number from 1 to 4"):
        UNetSegmenter(views=views)
