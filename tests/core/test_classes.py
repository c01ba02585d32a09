"""Particle classes from five clicks per class, on generated spheres, rods and faceted crystals."""

from __future__ import annotations

import numpy as np
import pytest

from app.analysis.classes import (
    classifier_from_dict,
    classify,
    particle_at,
    particle_features,
    train_classifier,
    with_classes,
)
from app.analysis.errors import SaemiInputError
from app.analysis.measure import measure_particles
from model.synthetic import generate_sample

SHAPES = {"sphere": ("round", 20.0), "rod": ("elongated", 24.0), "crystal": ("faceted", 28.0)}


@pytest.fixture(scope="module")
def population():
    """Particles of three classes, each from its own generated image (so the truth is known)."""
    features, truth, ecd = [], [], []
    for k, (name, (shape, median_px)) in enumerate(SHAPES.items()):
        sample = generate_sample(50 + k, 1024, 1024, modality="sem", shape=shape, median_diameter_px=median_px,
                                 sigma_log=0.2, arrangement="isolated", data_bar=False, scale_bar=False,
                                 letters=False)
        labels = sample.labels.astype(np.int32)
        gray = sample.image.astype(np.float32) / 255
        table = measure_particles(labels, intensity_image=gray)
        table = table[~table["touches_edge"]]
        features.append(particle_features(table, labels, gray))
        truth += [name] * len(table)
        ecd.append(table["ecd_px"].to_numpy())
    return np.concatenate(features), np.array(truth), np.concatenate(ecd)


def _five_clicks_each(truth: np.ndarray, seed: int) -> dict[int, str]:
    rng = np.random.default_rng(seed)
    return {int(row): name for name in SHAPES for row in rng.choice(np.flatnonzero(truth == name), 5, replace=False)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_five_clicks_per_class_classify_the_particles(population, seed):
    features, truth, ecd = population
    clicks = _five_clicks_each(truth, seed)
    classifier = train_classifier(features, clicks, seed=seed)
    names, probability = classify(classifier, features)
    others = np.setdiff1d(np.arange(len(truth)), list(clicks))
    assert np.mean(names[others] == truth[others]) >= 0.95
    assert ((probability > 0) & (probability <= 1)).all()
    for name in SHAPES:  # the per-class D50 follows from the classes given
        assert np.median(ecd[names == name]) == pytest.approx(np.median(ecd[truth == name]), rel=0.03)


def test_a_stored_classifier_is_fitted_again_to_the_same_answers(population):
    features, truth, _ = population
    classifier = train_classifier(features, _five_clicks_each(truth, 4), seed=4)
    again = classifier_from_dict(classifier.to_dict())
    assert (classify(again, features)[0] == classify(classifier, features)[0]).all()
    assert "15 clicked particles" in classifier.provenance
    with pytest.raises(SaemiInputError, match="damaged"):
        classifier_from_dict({**classifier.to_dict(), "examples": [[1.0, 2.0]]})
    with pytest.raises(SaemiInputError, match="other particle features"):
        classifier_from_dict({**classifier.to_dict(), "features": ["size"]})


def test_clicks_must_name_two_classes_on_real_particles(population):
    features, _, _ = population
    with pytest.raises(SaemiInputError, match="at least two classes"):
        train_classifier(features, {0: "sphere", 1: "sphere"})
    with pytest.raises(SaemiInputError, match="does not fall on a particle"):
        train_classifier(features, {0: "sphere", len(features) + 3: "rod"})


def test_a_table_gets_class_columns_and_clicks_find_their_particle():
    labels = np.zeros((40, 40), np.int32)
    labels[5:15, 5:15] = 1
    labels[20:24, 5:35] = 2
    table = measure_particles(labels)
    features = particle_features(table)
    classifier = train_classifier(features, {0: "blob", 1: "line"})
    classified = with_classes(table, classifier)
    assert list(classified["class"]) == ["blob", "line"]
    assert particle_at(labels, 10.2, 9.8) == 1 and particle_at(labels, 30, 22) == 2
    assert particle_at(labels, 0, 0) == 0 and particle_at(labels, 99, 5) == 0
