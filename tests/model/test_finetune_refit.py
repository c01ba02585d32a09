"""A tune refits the model's candidate scorer with the user's images (model.candidate_fit.refit_for_user,
model.finetune.finetune_images)."""

import json
from pathlib import Path

import numpy as np
import pytest

from model.candidate_fit import candidate_examples, fit_candidate_scorer, refit_for_user
from model.config import SCORER_NAME, name_scorer_file, read_config
from model.data import LabelledImage
from model.multiscale import CANDIDATE_FEATURES, candidate_logits
from model.trees import tree_problem, write_trees

pytestmark = pytest.mark.slow


@pytest.fixture
def octave_model_dir(tmp_path, tiny_model, monkeypatch):
    """The tiny network with a candidate scorer fitted on made-up features (a candidate is a particle
    when its peak is over 0.5). The data folder is empty, so the refit's original images are generated ones
    on every machine."""
    monkeypatch.setenv("SAEMI_DATA_ROOT", str(tmp_path / "no-datasets"))
    folder = tmp_path / "octave"
    folder.mkdir()
    config = json.loads((Path(__file__).resolve().parents[2] / "model" / "config.json").read_text())
    tiny_model.save(folder / config["weights"])
    config["input_scale"].pop("scorer_file")
    config["test_time_views"] = 1
    (folder / "config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(0)
    x = rng.random((300, len(CANDIDATE_FEATURES)))
    write_trees(fit_candidate_scorer([x], [np.where(x[:, 0] > 0.5, 0.9, 0.1)], n_trees=10, depth=2, min_leaf=5),
                folder / SCORER_NAME)
    name_scorer_file(folder, SCORER_NAME)
    return folder


def _user_images(folder: Path) -> list[LabelledImage]:
    """Two generated images: on the first the user accepts what the network's finest pass draws, on the
    second the user says there is no particle. So the user's candidates are of both kinds."""
    from model.segmenter import UNetSegmenter
    from model.synthetic import generate_sample

    images = []
    for seed in (612, 613):
        sample = generate_sample(seed, 160, 160, modality="sem", median_diameter_px=16, data_bar=False,
                                 scale_bar=False, letters=False)
        gray = sample.image.astype(np.float32) / 255.0
        images.append((f"user{seed}", gray))
    finest = max(UNetSegmenter(folder).octave_passes(images[0][1]), key=lambda p: p.scale)
    assert finest.scale == 1.0 and finest.labels.max() >= 1
    return [LabelledImage(images[0][0], images[0][1], np.asarray(finest.labels, np.int32)),
            LabelledImage(images[1][0], images[1][1], np.zeros((160, 160), np.int32))]


def test_the_refit_learns_from_the_users_images_and_writes_a_valid_scorer(octave_model_dir):
    before = json.loads((octave_model_dir / SCORER_NAME).read_text())
    ticks = []
    said = refit_for_user(octave_model_dir, _user_images(octave_model_dir), 0.0, n_trees=10,
                          tick=lambda: ticks.append(1))
    assert said.startswith("refitted after a fine-tune on 2 user images")
    assert len(ticks) >= 2
    after = json.loads((octave_model_dir / SCORER_NAME).read_text())
    assert tree_problem(after) is None and after["trees"] != before["trees"]
    config = read_config(octave_model_dir)
    assert config.input_scale.scorer["fitted_on"] == said
    # the old scorer judged by the made-up peak rule; the new one by what the user's images showed
    probe = np.full((1, len(CANDIDATE_FEATURES)), 0.5)
    assert not np.allclose(candidate_logits(before, probe), candidate_logits(after, probe))


def test_a_supervised_region_leaves_the_candidates_outside_it_out(octave_model_dir):
    from model.segmenter import UNetSegmenter

    segmenter = UNetSegmenter(octave_model_dir)
    image = _user_images(octave_model_dir)[0]
    every, _ = candidate_examples(segmenter, image.gray, image.labels)
    whole, _ = candidate_examples(segmenter, image.gray, image.labels, np.ones(image.gray.shape, bool))
    corner = np.zeros(image.gray.shape, bool)
    corner[:4, :4] = True  # no candidate lies mostly in this corner
    none, _ = candidate_examples(segmenter, image.gray, image.labels, corner)
    assert len(every) >= 1 and np.array_equal(whole, every) and len(none) == 0


def test_a_tune_of_an_octave_model_refits_its_scorer_and_says_so(octave_model_dir, tmp_path):
    from model.finetune import finetune_images

    seen = []
    result = finetune_images(octave_model_dir, _user_images(octave_model_dir), tmp_path / "tuned", minutes=0.1,
                             seed=1, progress=lambda step, loss, left, phase: seen.append((step, left, phase)))
    record = json.loads((tmp_path / "tuned" / "config.json").read_text())["training"]["finetune"]
    assert record["candidate_scorer"].startswith("refitted after a fine-tune on 2 user images")
    tuned = read_config(tmp_path / "tuned")
    assert tuned.input_scale.scorer["fitted_on"] == record["candidate_scorer"]
    assert tree_problem(tuned.input_scale.scorer) is None
    phases = [phase for _, _, phase in seen]
    assert phases == ["training"] * result.steps + ["refitting"] * (len(seen) - result.steps)
    assert len(seen) >= result.steps + 2  # the refit reports after each of its images (2 of the user's at least)
    assert all(step == result.steps for step, _, phase in seen if phase == "refitting")
    assert [left for _, left, _ in seen] == sorted([left for _, left, _ in seen], reverse=True)


def test_the_refit_gets_the_last_share_of_the_budget_and_the_users_images(octave_model_dir, tmp_path, monkeypatch):
    import model.finetune as finetune_module

    calls = []
    monkeypatch.setattr(finetune_module, "refit_for_user",
                        lambda folder, images, budget_s, **kw: calls.append((folder, images, budget_s)) or "done")
    images = _user_images(octave_model_dir)
    result = finetune_module.finetune_images(octave_model_dir, images, tmp_path / "tuned", minutes=0.1, seed=1)
    (folder, passed, budget_s), = calls
    assert folder == tmp_path / "tuned" and passed == images
    total_s = 0.1 * 60
    assert budget_s <= finetune_module.REFIT_SHARE * total_s + 0.5  # training stopped at its share
    assert budget_s >= finetune_module.REFIT_SHARE * total_s - 1.5  # and did not eat into the refit's
    assert result.steps >= 1


def test_a_tune_stopped_while_training_keeps_the_base_scorer_and_says_so(octave_model_dir, tmp_path):
    from model.finetune import finetune_images

    answers = iter([False, False, True])
    finetune_images(octave_model_dir, _user_images(octave_model_dir), tmp_path / "tuned", minutes=1.0, seed=1,
                    should_stop=lambda: next(answers, True))
    record = json.loads((tmp_path / "tuned" / "config.json").read_text())["training"]["finetune"]
    assert record["candidate_scorer"] == "the base model's scorer, kept: the tune was stopped"
    assert (tmp_path / "tuned" / SCORER_NAME).read_bytes() == (octave_model_dir / SCORER_NAME).read_bytes()


def test_a_tune_without_images_is_refused(octave_model_dir, tmp_path):
    from app.analysis.errors import SaemiInputError
    from model.finetune import finetune_images

    with pytest.raises(SaemiInputError, match="no corrected image"):
        finetune_images(octave_model_dir, [], tmp_path / "tuned", minutes=0.1)


def test_a_stopped_refit_keeps_the_scorer_there(octave_model_dir):
    before = (octave_model_dir / SCORER_NAME).read_bytes()
    asked = []

    def stop_after_the_first_image() -> bool:
        asked.append(1)
        return len(asked) > 1

    said = refit_for_user(octave_model_dir, _user_images(octave_model_dir), 60.0, n_trees=10,
                          should_stop=stop_after_the_first_image)
    assert said == "the base model's scorer, kept: its refit was stopped"
    assert (octave_model_dir / SCORER_NAME).read_bytes() == before and len(asked) == 2
