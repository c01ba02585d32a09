"""Particle classes learned from a few clicks: spheres against rods, single particles against agglomerates.

Each particle is described by shape and intensity features (:func:`particle_features`); a random forest
(scikit-learn) learns the classes from the particles the user clicked (:func:`train_classifier`) and then
gives every particle a class and its probability (:func:`classify`). A classifier is stored as its
training examples and settings (:meth:`ParticleClassifier.to_dict`), never as a pickle: it is fitted
again, identically, from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from app.analysis.errors import SaemiInputError

#: The features, in the order of :func:`particle_features`' columns.
FEATURES = ("log_ecd", "aspect_ratio", "circularity", "solidity", "feret_ratio", "mean_intensity",
            "intensity_std")
#: Trees of the forest; a few examples need no more.
N_TREES = 200
#: Most classes a user may define.
MAX_CLASSES = 12


def particle_features(particles: pd.DataFrame, label_image: np.ndarray | None = None,
                      gray: np.ndarray | None = None) -> np.ndarray:
    """One row of :data:`FEATURES` per particle of ``particles`` (in its order).

    ``label_image`` and ``gray`` give the intensity spread inside each particle; without them it is 0.
    Missing values (a one-pixel line has no aspect ratio) are replaced by neutral ones.
    """
    n = len(particles)
    ecd = particles["ecd_px"].to_numpy(dtype=float) if n else np.zeros(0)
    feret_min = particles["feret_min_px"].to_numpy(dtype=float) if n else np.zeros(0)
    feret_max = particles["feret_max_px"].to_numpy(dtype=float) if n else np.zeros(0)
    has_intensity = n and "mean_intensity" in particles
    intensity = particles["mean_intensity"].to_numpy(dtype=float) if has_intensity else np.zeros(n)
    spread = np.zeros(n)
    if n and label_image is not None and gray is not None:
        ids = particles["particle_id"].to_numpy()
        labels = np.asarray(label_image).ravel()
        values = np.asarray(gray, dtype=float).ravel()
        count = np.bincount(labels, minlength=ids.max() + 1).astype(float)
        total = np.bincount(labels, weights=values, minlength=ids.max() + 1)
        squares = np.bincount(labels, weights=values**2, minlength=ids.max() + 1)
        mean = total[ids] / np.maximum(count[ids], 1)
        spread = np.sqrt(np.maximum(squares[ids] / np.maximum(count[ids], 1) - mean**2, 0.0))
    columns = [np.log(np.maximum(ecd, 1e-3)),
               particles["aspect_ratio"].to_numpy(dtype=float) if n else np.zeros(0),
               particles["circularity"].to_numpy(dtype=float) if n else np.zeros(0),
               particles["solidity"].to_numpy(dtype=float) if n else np.zeros(0),
               feret_max / np.maximum(feret_min, 1e-3),
               intensity, spread]
    features = np.stack(columns, axis=1) if n else np.zeros((0, len(FEATURES)))
    neutral = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    return np.where(np.isfinite(features), features, neutral)


@dataclass(frozen=True)
class ParticleClassifier:
    """A forest fitted on the clicked particles: ``examples`` (features) with their ``labels`` (class names)."""

    classes: tuple[str, ...]
    examples: np.ndarray
    labels: tuple[str, ...]
    seed: int = 0
    model: object = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready form: the examples and settings it is fitted from (see :func:`classifier_from_dict`)."""
        return {"features": list(FEATURES), "classes": list(self.classes), "seed": self.seed,
                "n_trees": N_TREES, "examples": self.examples.tolist(), "labels": list(self.labels)}

    @property
    def provenance(self) -> str:
        """One line for CSV headers."""
        counts = ", ".join(f"{name}: {self.labels.count(name)}" for name in self.classes)
        return (f"random forest ({N_TREES} trees, seed {self.seed}) on {len(self.labels)} clicked particles "
                f"({counts}); features {', '.join(FEATURES)}")


def train_classifier(features: np.ndarray, clicks: Mapping[int, str], *, seed: int = 0) -> ParticleClassifier:
    """Fit a classifier on the clicked particles.

    Parameters
    ----------
    features : ndarray
        :func:`particle_features` of all particles.
    clicks : mapping
        Row index in ``features`` -> class name, one entry per clicked particle.
    seed : int
        Seed of the forest.

    Raises
    ------
    SaemiInputError
        With fewer than two classes, a class without a click, or a click on no particle.
    """
    names = tuple(dict.fromkeys(str(name) for name in clicks.values()))
    if len(names) < 2:
        raise SaemiInputError("Click particles of at least two classes to teach the classifier.")
    if len(names) > MAX_CLASSES:
        raise SaemiInputError(f"At most {MAX_CLASSES} classes can be taught; got {len(names)}.")
    rows = np.fromiter(clicks.keys(), dtype=int)
    if rows.size and (rows.min() < 0 or rows.max() >= len(features)):
        raise SaemiInputError("A click does not fall on a particle of this image.")
    return _fit(names, np.asarray(features, dtype=float)[rows], tuple(str(clicks[r]) for r in rows), seed)


def _fit(classes: tuple[str, ...], examples: np.ndarray, labels: tuple[str, ...], seed: int) -> ParticleClassifier:
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=N_TREES, random_state=seed, class_weight="balanced", n_jobs=1)
    model.fit(examples, np.array([classes.index(label) for label in labels]))
    return ParticleClassifier(classes, examples, labels, seed, model)


def classifier_from_dict(data: Mapping) -> ParticleClassifier:
    """The classifier stored by :meth:`ParticleClassifier.to_dict`, fitted again (the same forest).

    Raises
    ------
    SaemiInputError
        When the stored data is not a classifier of these features.
    """
    if isinstance(data, Mapping) and "features" in data and list(data["features"]) != list(FEATURES):
        raise SaemiInputError("The stored classifier was made with other particle features; teach it again.")
    try:
        classes = tuple(str(name) for name in data["classes"])
        examples = np.asarray(data["examples"], dtype=float)
        labels = tuple(str(name) for name in data["labels"])
        if (examples.ndim != 2 or examples.shape[1] != len(FEATURES) or len(labels) != len(examples)
                or not set(labels) <= set(classes) or not 2 <= len(classes) <= MAX_CLASSES
                or not np.isfinite(examples).all()):
            raise ValueError("inconsistent classifier data")
        return _fit(classes, examples, labels, int(data.get("seed", 0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise SaemiInputError("The stored particle classifier is damaged; teach it again.") from exc


def classify(classifier: ParticleClassifier, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each particle's class name and the forest's probability for it."""
    if len(features) == 0:
        return np.zeros(0, dtype=object), np.zeros(0)
    probabilities = classifier.model.predict_proba(np.asarray(features, dtype=float))
    best = probabilities.argmax(axis=1)
    names = np.array([classifier.classes[int(k)] for k in classifier.model.classes_], dtype=object)
    return names[best], probabilities[np.arange(len(best)), best]


def with_classes(particles: pd.DataFrame, classifier: ParticleClassifier, label_image: np.ndarray | None = None,
                 gray: np.ndarray | None = None) -> pd.DataFrame:
    """``particles`` with ``class`` and ``class_probability`` columns."""
    names, probability = classify(classifier, particle_features(particles, label_image, gray))
    return particles.assign(**{"class": names, "class_probability": probability})


def particle_at(label_image: np.ndarray, x_px: float, y_px: float) -> int:
    """The id of the particle under a click at (x, y) in image pixels (0 for the background or outside)."""
    row, col = int(round(y_px)), int(round(x_px))
    if not (0 <= row < label_image.shape[0] and 0 <= col < label_image.shape[1]):
        return 0
    return int(label_image[row, col])
