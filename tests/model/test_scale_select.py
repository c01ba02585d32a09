import json
import math

import numpy as np
import pytest

from model.scale_fit import fit_selector, fit_tree_selector, good_pass, main
from model.scale_select import FEATURE_NAMES, PASS_STEP, PassSummary, pass_features, pyramid_scales, selector_scores
from model.trees import write_trees

TARGET_PX = 16.0


def _hand_selector(**weights):
    """A selector on unstandardised features with the given weights (all others 0)."""
    return {"features": list(FEATURE_NAMES), "mean": [0.0] * len(FEATURE_NAMES), "std": [1.0] * len(FEATURE_NAMES),
            "weights": [weights.get(name, 0.0) for name in FEATURE_NAMES], "bias": 0.0}


def _use_selector(model_dir, selector):
    """Put ``selector`` inline in the folder's config.json, in place of the shipped selector file."""
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    config["input_scale"].pop("selector_file", None)
    config["input_scale"]["selector"] = selector
    path.write_text(json.dumps(config))


def _pass(scale, diameter_px, peak, start_scale=1.0, side_px=512):
    return PassSummary(scale=scale, start_scale=start_scale, mean_peak=peak, diameter_aw_px=diameter_px,
                       diameter_median_px=diameter_px, foreground_fraction=0.3, count=10, centre_max=peak,
                       min_side_px=max(1, int(side_px * scale)))


def test_pyramid_scales_step_half_an_octave_down_to_the_smallest_side():
    scales = pyramid_scales((384, 512), 1.0, min_side_px=16)
    assert scales[0] == 1.0
    assert np.allclose(np.array(scales[:-1]) / np.array(scales[1:]), PASS_STEP)
    assert round(384 * scales[-1]) >= 16 > round(384 * scales[-1] / PASS_STEP)
    assert pyramid_scales((20, 20), 1.0, min_side_px=16) == [1.0]  # the start pass is always run


def test_a_pass_is_summarised_from_its_maps_and_instances():
    from model.preprocess import instance_targets
    from model.scale_select import summarize_pass
    from tests.model.test_segmenter import _disc_grid

    labels = _disc_grid((200, 300), 20.0, 50.0)
    maps = instance_targets(labels)
    maps[..., 1] *= 0.8
    summary = summarize_pass(maps, labels, 0.5, 1.0)
    assert summary.count == labels.max() == 24 and summary.min_side_px == 200
    assert summary.mean_peak == pytest.approx(0.8, abs=0.01)
    assert summary.diameter_aw_px == pytest.approx(20.0, rel=0.05)
    assert summary.diameter_median_px == pytest.approx(20.0, rel=0.05)
    assert summary.foreground_fraction == pytest.approx((labels > 0).mean(), rel=0.05)
    empty = summarize_pass(np.zeros((64, 64, 2), np.float32), np.zeros((64, 64), np.int32), 0.5, 1.0)
    assert empty.mean_peak == empty.diameter_aw_px == 0.0 and empty.count == 0


def test_pass_features_compare_each_pass_with_its_neighbours():
    passes = [_pass(1.0, 32.0, 0.6), _pass(1 / PASS_STEP, 22.6, 0.9), _pass(0.5, 0.0, 0.0)]
    features = pass_features(passes, TARGET_PX)
    column = {name: features[:, k] for k, name in enumerate(FEATURE_NAMES)}
    assert features.shape == (3, len(FEATURE_NAMES))
    assert column["log_diameter_aw"][0] == pytest.approx(math.log(2.0))
    assert column["log_scale_vs_start"][2] == pytest.approx(math.log(0.5))
    assert column["peak_below_best"].tolist() == pytest.approx([-0.3, 0.0, -0.9])
    assert column["peak_of_larger_pass"].tolist() == pytest.approx([0.6, 0.6, 0.9])  # the first is its own
    assert column["peak_of_smaller_pass"].tolist() == pytest.approx([0.9, 0.0, 0.0])
    assert column["no_particles"].tolist() == [0.0, 0.0, 1.0]
    # particles half an octave smaller in the smaller pass: a consistent pyramid
    assert column["log_diameter_ratio_to_larger"][1] == pytest.approx(math.log(32.0 / 22.6))


def test_good_pass_is_within_half_an_octave_of_the_trained_size():
    assert good_pass(0.5, 32.0, TARGET_PX)
    assert good_pass(0.5, 32.0 * 1.4, TARGET_PX) and not good_pass(0.5, 32.0 * 1.42, TARGET_PX)
    assert not good_pass(1.0, 8.0, TARGET_PX)


def _fake_pyramid(rng, diameter_px):
    """A pyramid where particles of ``diameter_px`` are seen best at the trained size and
    thumbnails show confident clutter: the trap of the old most-confident rule."""
    passes = []
    for k in range(2, -10, -1):
        scale = PASS_STEP ** k
        seen_px = diameter_px * scale
        if seen_px >= 4:
            peak = 0.9 - 0.25 * abs(math.log(seen_px / TARGET_PX)) + rng.normal(0, 0.03)
            passes.append(_pass(scale, seen_px * math.exp(rng.normal(0, 0.1)), peak))
        else:  # clutter blobs of about the trained size, seen rather confidently
            passes.append(_pass(scale, TARGET_PX * math.exp(rng.normal(0, 0.3)), 0.85 + rng.normal(0, 0.03)))
    return passes


def _fake_training_set(rng, n_images=200):
    train = [_fake_pyramid(rng, float(np.exp(rng.uniform(np.log(5), np.log(300))))) for _ in range(n_images)]
    features = [pass_features(p, TARGET_PX) for p in train]
    sizes = [p[0].diameter_aw_px / p[0].scale for p in train]  # the first pass is never clutter here
    labels = [np.array([good_pass(q.scale, d, TARGET_PX) for q in p], float) for p, d in zip(train, sizes)]
    return features, labels


@pytest.mark.parametrize("fit", [fit_selector, fit_tree_selector], ids=["logistic", "trees"])
def test_the_fitted_scorer_finds_the_right_pass_where_confidence_alone_fails(fit):
    rng = np.random.default_rng(0)
    selector = fit(*_fake_training_set(rng))
    assert selector["features"] == list(FEATURE_NAMES)
    json.dumps(selector)  # stored as JSON
    hits = confident_hits = 0
    for _ in range(100):
        diameter_px = float(np.exp(rng.uniform(np.log(5), np.log(300))))
        passes = _fake_pyramid(rng, diameter_px)
        chosen = passes[int(np.argmax(selector_scores(selector, pass_features(passes, TARGET_PX))))]
        hits += good_pass(chosen.scale, diameter_px, TARGET_PX)
        confident = max(passes, key=lambda p: p.mean_peak)
        confident_hits += good_pass(confident.scale, diameter_px, TARGET_PX)
    # when written: logistic 86, trees 98; the most confident pass 56
    assert hits >= 80 and hits > confident_hits + 20, (hits, confident_hits)


def test_exported_trees_score_exactly_as_the_fitted_model(tmp_path, monkeypatch):
    """The trees are stored as plain numbers; scored by numpy they give scikit-learn's logits."""
    import sklearn.ensemble

    fitted = []
    original = sklearn.ensemble.GradientBoostingClassifier.fit

    def keep(model, *args, **kwargs):
        fitted.append(model)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(sklearn.ensemble.GradientBoostingClassifier, "fit", keep)
    features, labels = _fake_training_set(np.random.default_rng(2), n_images=60)
    selector = fit_tree_selector(features, labels, n_trees=40)
    write_trees(selector, tmp_path / "scale_selector.json")
    stored = json.loads((tmp_path / "scale_selector.json").read_text())
    assert stored == selector and len(stored["trees"]) == 40
    x = np.concatenate(features)
    assert np.allclose(selector_scores(stored, x), fitted[0].decision_function(x), rtol=0, atol=1e-9)
    assert np.ptp(selector_scores(stored, x)) > 1.0  # the scores are not flat


def test_an_image_weight_counts_like_copies_of_the_image():
    rng = np.random.default_rng(1)
    pyramids = [_fake_pyramid(rng, d) for d in (7.0, 30.0, 90.0, 250.0, 12.0)]
    features = [pass_features(p, TARGET_PX) for p in pyramids]
    labels = [np.array([good_pass(q.scale, d, TARGET_PX) for q in p], float)
              for p, d in zip(pyramids, (7.0, 30.0, 90.0, 250.0, 12.0))]
    weighted = fit_selector(features, labels, image_weights=[1, 1, 1, 3, 1])
    copied = fit_selector(features + [features[3]] * 2, labels + [labels[3]] * 2)
    plain = fit_selector(features, labels)
    assert np.allclose(weighted["weights"], copied["weights"], atol=1e-5)
    assert not np.allclose(weighted["weights"], plain["weights"], atol=1e-3)


def test_a_selector_for_other_features_is_refused():
    selector = _hand_selector(peak=1.0)
    selector["features"] = selector["features"][:-1]
    with pytest.raises(ValueError, match="refit"):
        selector_scores(selector, np.zeros((2, len(FEATURE_NAMES))))


def test_the_validation_seeds_cannot_be_used_for_fitting():
    with pytest.raises(SystemExit):
        main(["--synthetic-seeds", "990:1005"])


def test_the_shipped_model_has_a_complete_selector():
    from model.config import default_model_dir, read_config

    selector = read_config(default_model_dir()).input_scale.selector
    assert selector["kind"] == "boosted_trees" and selector["features"] == list(FEATURE_NAMES)
    assert len(selector["trees"]) == selector["settings"]["n_trees"] > 0
    assert "model.scale_select" in selector["fitted_on"]
    for tree in selector["trees"]:
        assert len(tree["feature"]) == len(tree["threshold"]) == len(tree["left"]) == len(tree["value"])
        assert max(tree["feature"]) < len(FEATURE_NAMES)


def test_a_missing_or_broken_selector_file_gives_a_clear_error(tiny_model_dir):
    from model.config import SELECTOR_NAME, ModelLoadError, read_config

    (tiny_model_dir / SELECTOR_NAME).write_text('{"kind": "boosted_trees", "trees": [')
    with pytest.raises(ModelLoadError, match="scale selector file .* is corrupted"):
        read_config(tiny_model_dir)
    (tiny_model_dir / SELECTOR_NAME).unlink()
    with pytest.raises(ModelLoadError, match="scale selector file .* is missing"):
        read_config(tiny_model_dir)


def _disc_world(diameter_px, side_px, calls):
    """A fake network: discs of ``diameter_px`` (image pixels) seen surely at the trained size and
    less surely elsewhere."""
    from model.preprocess import instance_targets
    from tests.model.test_segmenter import _disc_grid

    def network(model, scaled, **kwargs):
        calls.append(scaled.shape)
        seen_px = diameter_px * scaled.shape[0] / side_px
        maps = instance_targets(_disc_grid(scaled.shape, seen_px, 2.5 * seen_px))
        maps[..., 1] *= 1.0 if 0.8 * TARGET_PX <= seen_px <= 1.25 * TARGET_PX else 0.7
        return maps

    return network


@pytest.mark.parametrize("diameter_px", [8.0, 64.0])
def test_the_segmenter_segments_the_pass_the_selector_rates_best(tiny_model_dir, monkeypatch, diameter_px):
    """Small particles make the pyramid look magnified too; large ones do not. The chosen pass is
    segmented as it is (no further pass), and its instances are reused."""
    import model.segmenter as segmenter_module
    from model.preprocess import scaled_shape
    from model.segmenter import UNetSegmenter

    _use_selector(tiny_model_dir, _hand_selector(peak=4.0, log_diameter_squared=-1.0))
    side_px = 512
    calls = []
    monkeypatch.setattr(segmenter_module, "predict_tiled", _disc_world(diameter_px, side_px, calls))
    segmenter = UNetSegmenter(tiny_model_dir)
    maps, scale, labels = segmenter.network_maps(np.zeros((side_px, side_px), np.float32))
    assert scale == pytest.approx(TARGET_PX / diameter_px)
    assert maps.shape[:2] == scaled_shape((side_px, side_px), scale) and labels is not None
    magnified = [shape for shape in calls if shape[0] > side_px]
    assert len(magnified) == (2 if diameter_px < TARGET_PX else 0)
    assert len(calls) == len(set(calls))  # every pass once, and the chosen one is not rerun
    from tests.model.test_segmenter import _disc_grid

    assert labels.max() == _disc_grid(maps.shape[:2], TARGET_PX, 2.5 * TARGET_PX).max()  # the particles


def test_a_rival_pass_at_another_scale_is_reported(tiny_model_dir, monkeypatch):
    import model.segmenter as segmenter_module
    from model.loading import load_shipped_model
    from model.segmenter import UNetSegmenter

    # Rates every pass alike: the first one wins, and passes far from it are rivals.
    _use_selector(tiny_model_dir, _hand_selector())
    monkeypatch.setattr(segmenter_module, "predict_tiled", _disc_world(64.0, 512, []))
    notes = []
    UNetSegmenter(tiny_model_dir).segment(np.zeros((512, 512), np.float32), notes=notes)
    assert len(notes) == 1 and "hard to estimate" in notes[0]
    _use_selector(tiny_model_dir, _hand_selector(peak=4.0, log_diameter_squared=-1.0))
    load_shipped_model.cache_clear()  # the config changed on disk
    notes = []
    UNetSegmenter(tiny_model_dir).segment(np.zeros((512, 512), np.float32), notes=notes)
    assert notes == []


def _periodic_discs(side_px, diameter_px, spacing_px):
    rows, cols = np.indices((side_px, side_px))
    return (((rows % spacing_px) - spacing_px / 2) ** 2 + ((cols % spacing_px) - spacing_px / 2) ** 2
            <= (diameter_px / 2) ** 2).astype(np.float32)


def _thresholding_network(calls):
    """A fake network that segments bright discs perfectly at any scale and is surest of them at
    about the trained size."""
    from skimage.measure import label

    from model.preprocess import instance_targets, median_diameter_px

    def network(model, scaled, **kwargs):
        calls.append(scaled.shape)
        labels = label(scaled > 0.5)
        maps = instance_targets(labels)
        seen_px = median_diameter_px(labels) or 0.0
        maps[..., 1] *= 1.0 if 0.8 * TARGET_PX <= seen_px <= 1.25 * TARGET_PX else 0.7
        kwargs["progress"](1.0, "network pass done")
        return maps

    return network


@pytest.mark.parametrize("window_px", [1024, None])
def test_a_large_image_has_its_scale_chosen_on_a_central_window(tiny_model_dir, monkeypatch, window_px):
    """In a 2048 px image the reference pass (512 px) shows 16 px particles at 4 px, too small even
    magnified twice; on the central 1024 px window they reach 16 px, and that scale is then applied
    to the whole image."""
    import model.segmenter as segmenter_module
    from model.segmenter import UNetSegmenter

    selector = _hand_selector(peak=4.0, log_diameter_squared=-1.0)
    _use_selector(tiny_model_dir, selector)
    path = tiny_model_dir / "config.json"
    config = json.loads(path.read_text())
    config["input_scale"]["estimate_window_px"] = window_px
    config["input_scale"]["magnify_further_steps"] = 0  # the window alone
    path.write_text(json.dumps(config))
    calls = []
    monkeypatch.setattr(segmenter_module, "predict_tiled", _thresholding_network(calls))
    image = _periodic_discs(2048, TARGET_PX, 32)
    reported = []
    maps, scale, labels = UNetSegmenter(tiny_model_dir).network_maps(
        image, progress=lambda fraction, message: reported.append(fraction))
    assert len(reported) == len(calls) and reported == sorted(reported)  # every pass reports, in order
    if window_px is None:
        assert scale == pytest.approx(0.5) and max(shape[0] for shape in calls) <= 1024  # 8 px at best
        return
    assert scale == pytest.approx(1.0) and maps.shape[:2] == (2048, 2048) and labels is None
    assert all(shape[0] <= 1024 for shape in calls[:-1]) and calls[-1][:2] == (2048, 2048)
    assert reported[-2] <= 0.3 < reported[-1] <= 0.8  # the window's pyramid, then the whole image


def _set_scaling(model_dir, **settings):
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    config["input_scale"].update(settings)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("steps", [3, 0])
def test_small_particles_are_magnified_beyond_the_pyramid(tiny_model_dir, monkeypatch, steps):
    """5 px particles in a 1024 px image reach only 5 px in the pyramid's largest pass (twice the
    512 px reference). When that pass wins and its particles are still small, the network runs
    again at the scale that brings them to the trained size."""
    import model.segmenter as segmenter_module
    from model.segmenter import UNetSegmenter

    _use_selector(tiny_model_dir, _hand_selector(peak=4.0, log_diameter_squared=-1.0))
    _set_scaling(tiny_model_dir, magnify_below=1.0, magnify_further_steps=steps)
    calls = []
    monkeypatch.setattr(segmenter_module, "predict_tiled", _thresholding_network(calls))
    reported = []
    maps, scale, labels = UNetSegmenter(tiny_model_dir).network_maps(
        _periodic_discs(1024, 5.0, 12), progress=lambda fraction, message: reported.append(fraction))
    assert reported == sorted(reported) and reported[-1] <= 0.9
    if steps == 0:
        assert scale == pytest.approx(1.0)  # the largest pass of the pyramid
        return
    assert scale == pytest.approx(TARGET_PX / 5.0, rel=0.1)
    assert maps.shape[:2] == calls[-1][:2] and labels is not None and labels.shape == maps.shape[:2]
    assert sum(shape[0] > 1024 for shape in calls) == 1  # one step was enough: it measured 16 px


def test_magnifying_further_stops_after_its_steps(tiny_model_dir, monkeypatch):
    """A network that shows 10 px blobs at any scale never reaches the trained size: the scale
    grows for ``magnify_further_steps`` passes and then stops."""
    from skimage.measure import label

    import model.segmenter as segmenter_module
    from model.preprocess import instance_targets
    from model.segmenter import UNetSegmenter

    _use_selector(tiny_model_dir, _hand_selector(peak=4.0, log_diameter_squared=-1.0))
    _set_scaling(tiny_model_dir, magnify_below=1.0, magnify_further_steps=2, max_scale=8.0)
    calls = []

    def network(model, scaled, **kwargs):
        calls.append(scaled.shape)
        return instance_targets(label(_periodic_discs(scaled.shape[0], 10.0, 24) > 0))

    monkeypatch.setattr(segmenter_module, "predict_tiled", network)
    _, scale, _ = UNetSegmenter(tiny_model_dir).network_maps(np.zeros((512, 512), np.float32))
    beyond = [shape[0] for shape in calls if shape[0] > 1024]  # the pyramid's largest pass is 1024 px
    assert len(beyond) == 2 and scale == pytest.approx(2.0 * 1.6 ** 2, rel=0.05)


def test_an_uncertain_size_note_names_the_size_finally_used(tiny_model_dir, monkeypatch):
    """A scorer that rates every pass alike picks the most magnified one, and every pass far from it
    is a rival; the note gives the diameter after the further magnification (5 px), not that of
    the pass that won (16 px)."""
    import model.segmenter as segmenter_module
    from model.segmenter import UNetSegmenter

    _use_selector(tiny_model_dir, _hand_selector())
    _set_scaling(tiny_model_dir, magnify_below=1.0, magnify_further_steps=3)
    monkeypatch.setattr(segmenter_module, "predict_tiled", _thresholding_network([]))
    notes = []
    UNetSegmenter(tiny_model_dir).segment(_periodic_discs(1024, 5.0, 12), notes=notes)
    assert len(notes) == 1 and "worked with particles about 5 px across" in notes[0]
