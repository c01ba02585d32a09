"""Particle classes on the single-image view: class names, clicked examples, and the classes of every particle.

The ``classes`` store (:class:`ClassesState`) keeps the names the user typed and one example per clicked
particle: the particle's features (:func:`app.analysis.classes.particle_features`) and its class. The
classifier is fitted again from these examples whenever it is needed (:func:`classifier_of`), as
:mod:`app.analysis.classes` stores it. A click is turned into a particle on the server, from the signed
label image of the ``results`` store; the class index the page sends is checked against the names.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from app.analysis.classes import (
    FEATURES,
    MAX_CLASSES,
    ParticleClassifier,
    classifier_from_dict,
    particle_at,
    particle_features,
    with_classes,
)
from app.analysis.errors import SaemiInputError
from app.analysis.view import ViewOptions, class_stats_rows, class_views, filter_text, stats_rows, view_results
from app.figures import class_histogram_figure
from app.session import display, downloads, signing
from app.session.stores import AnalysisState, GrayState, ResultsState

#: Longest class name, in characters.
MAX_NAME_CHARS = 40
#: Most clicked examples kept (each is a few numbers; the classifier is fitted on all of them).
MAX_EXAMPLES = 300


@dataclass(frozen=True)
class ClassExample:
    """One clicked particle: the label image it was clicked on (``image``, see :func:`image_key`), its id there,
    its class and its features."""

    image: str
    particle_id: int
    name: str
    features: tuple[float, ...]

    def to_list(self) -> list:
        return [self.image, self.particle_id, self.name, list(self.features)]


@dataclass(frozen=True)
class ClassesState:
    """The class names and the clicked examples (the ``classes`` store)."""

    names: tuple[str, ...] = ()
    examples: tuple[ClassExample, ...] = ()

    def to_store(self) -> dict[str, str]:
        return signing.sign("classes", {"names": list(self.names),
                                        "examples": [example.to_list() for example in self.examples]})

    @classmethod
    def from_store(cls, payload: Any) -> ClassesState:
        """The classes; none when nothing was typed yet."""
        if not payload:
            return cls()
        data = signing.verify("classes", payload)
        if not isinstance(data, Mapping):
            raise signing.damaged("the classes store is not an object")
        names, examples = data.get("names", []), data.get("examples", [])
        if (not isinstance(names, list) or len(names) > MAX_CLASSES
                or not all(isinstance(name, str) and 0 < len(name) <= MAX_NAME_CHARS for name in names)
                or len(set(names)) != len(names)):
            raise signing.damaged("the class names are not a list this server keeps")
        if not isinstance(examples, list) or len(examples) > MAX_EXAMPLES:
            raise signing.damaged("the class examples are not a list this server keeps")
        return cls(tuple(names), tuple(_example(item, names) for item in examples))

    @property
    def counts(self) -> dict[str, int]:
        """Examples per class name, in the order of the names."""
        return {name: sum(example.name == name for example in self.examples) for name in self.names}


def _example(item: Any, names: Sequence[str]) -> ClassExample:
    if not isinstance(item, list) or len(item) != 4:
        raise signing.damaged("a class example is not four fields")
    image, particle_id, name, features = item
    if (not isinstance(image, str) or isinstance(particle_id, bool) or not isinstance(particle_id, int)
            or particle_id < 1 or name not in names or not isinstance(features, list)
            or len(features) != len(FEATURES)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                       for v in features)):
        raise signing.damaged("a class example is not one this server wrote")
    return ClassExample(image, particle_id, name, tuple(float(v) for v in features))


def parse_names(text: str | None) -> tuple[str, ...]:
    """Class names from the typed text: separated by commas, trimmed, empty and repeated names dropped.

    Examples
    --------
    >>> parse_names(" sphere, rod,, sphere ")
    ('sphere', 'rod')

    Raises
    ------
    SaemiInputError
        For more than :data:`~app.analysis.classes.MAX_CLASSES` names or a name longer than
        :data:`MAX_NAME_CHARS` characters.
    """
    names = tuple(dict.fromkeys(part.strip() for part in (text or "").split(",") if part.strip()))
    if len(names) > MAX_CLASSES:
        raise SaemiInputError(f"At most {MAX_CLASSES} classes can be named; {len(names)} were typed.")
    if any(len(name) > MAX_NAME_CHARS for name in names):
        raise SaemiInputError(f"A class name may have at most {MAX_NAME_CHARS} characters.")
    return names


def rename(state: ClassesState, text: str | None) -> ClassesState:
    """The classes named by ``text``; the examples of a class no longer named are dropped."""
    names = parse_names(text)
    return ClassesState(names, tuple(example for example in state.examples if example.name in names))


def image_key(results: ResultsState) -> str:
    """A short fingerprint of the current label image: examples clicked on it can be corrected by a click."""
    return hashlib.sha256(results.labels_png.encode("ascii")).hexdigest()[:16]


def click_position(click_data: Any) -> tuple[float, float]:
    """(x, y) in image pixels of a click on the overlay (plotly ``clickData``), checked.

    Raises
    ------
    SaemiInputError
        When the click data is not one point with finite coordinates.
    """
    points = click_data.get("points") if isinstance(click_data, Mapping) else None
    point = points[0] if isinstance(points, list) and points and isinstance(points[0], Mapping) else {}
    x, y = point.get("x"), point.get("y")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (x, y)):
        raise SaemiInputError("The click on the overlay could not be read; click on a particle again.")
    return float(x), float(y)


def record_click(state: ClassesState, click_data: Any, active: Any, analysis: AnalysisState, results: ResultsState,
                 gray: GrayState | None) -> ClassesState:
    """Add the clicked particle as an example of the active class (replacing an earlier click on it).

    Parameters
    ----------
    state : ClassesState
        The names and the examples so far.
    click_data : mapping
        The overlay's ``clickData``; the particle under it is found in the server's label image.
    active : int
        Index of the active class in ``state.names``, as the page sends it (checked).
    analysis, results, gray
        The current image, labels and particle table, and the image for the intensity features.

    Raises
    ------
    SaemiInputError
        Without class names, for an index that names no class, a click beside every particle, or too many
        examples.
    """
    if not state.names:
        raise SaemiInputError("Type the class names first (for example: sphere, rod), then click particles.")
    if isinstance(active, bool) or not isinstance(active, int) or not 0 <= active < len(state.names):
        raise SaemiInputError("Choose the class of the particles you click.")
    x, y = click_position(click_data)
    labels = results.labels()
    particle_id = particle_at(labels, x, y)
    table = results.particles()
    rows = np.flatnonzero(table["particle_id"].to_numpy() == particle_id) if particle_id else []
    if not len(rows):
        raise SaemiInputError("That click is not on a particle; click inside one.")
    intensity = gray.image(analysis.shape) if gray is not None else None
    features = particle_features(table.iloc[rows[:1]], labels, intensity)[0]
    key = image_key(results)
    kept = tuple(e for e in state.examples if (e.image, e.particle_id) != (key, particle_id))
    if len(kept) >= MAX_EXAMPLES:
        raise SaemiInputError(f"At most {MAX_EXAMPLES} particles can be clicked; that is plenty for the classifier.")
    example = ClassExample(key, particle_id, state.names[active], tuple(float(v) for v in features))
    return replace(state, examples=(*kept, example))


def classifier_of(state: ClassesState, seed: int = 0) -> ParticleClassifier | None:
    """The forest fitted on the examples, once at least two classes have one (None before)."""
    taught = tuple(name for name, count in state.counts.items() if count)
    if len(taught) < 2:
        return None
    return classifier_from_dict({"classes": list(taught), "seed": seed, "labels": [e.name for e in state.examples],
                                 "examples": [list(e.features) for e in state.examples]})


def classified(particles: pd.DataFrame, classifier: ParticleClassifier | None, labels: np.ndarray | None,
               gray: np.ndarray | None) -> pd.DataFrame:
    """``particles`` with ``class`` and ``class_probability`` columns; unchanged without a classifier."""
    if classifier is None:
        return particles
    return with_classes(particles, classifier, labels, gray)


def current_table(state: ClassesState, analysis: AnalysisState, results: ResultsState,
                  gray: GrayState | None) -> tuple[pd.DataFrame, ParticleClassifier | None]:
    """The current particle table, with the classes of its particles once the classifier is taught."""
    classifier = classifier_of(state)
    table = results.particles()
    if classifier is None:
        return table, None
    intensity = gray.image(analysis.shape) if gray is not None else None
    return classified(table, classifier, results.labels(), intensity), classifier


def status_text(state: ClassesState) -> str:
    """How many examples each class has, and whether the classifier is taught."""
    if not state.names:
        return "No classes: type class names to label particles by clicking them on the overlay."
    counts = ", ".join(f"{name}: {count} example{'s' if count != 1 else ''}" for name, count in state.counts.items())
    taught = sum(1 for count in state.counts.values() if count)
    tail = ("classifier taught; every particle has a class." if taught >= 2
            else "click particles of at least two classes to teach the classifier.")
    return f"{counts}; {tail}"


def class_options(state: ClassesState) -> list[dict]:
    """Options of the active-class choice: the names, by index."""
    return [{"label": name, "value": index} for index, name in enumerate(state.names)]


def histogram_outputs(results: ResultsState, analysis: AnalysisState, view: ViewOptions, state: ClassesState,
                      gray: GrayState | None) -> display.HistogramOutputs:
    """The histogram outputs, split by class once the classifier is taught (else those of
    :func:`app.session.display.histogram_outputs`): stacked per-class bars and per-class statistics rows."""
    table, classifier = current_table(state, analysis, results, gray)
    if classifier is None:
        return display.histogram_outputs(results, analysis, view)
    options = {"calibrated": results.calibrated, "image_shape": analysis.shape, "frame": analysis.frame,
               "view": view}
    shown = view_results(table, **options)
    per_class = class_views(table, names=classifier.classes, **options)
    weighted = shown.weights is not None
    figure = class_histogram_figure(
        {name: v.values for name, v in per_class.items()}, bin_width=shown.bin_width,
        weights_by_class={name: v.weights for name, v in per_class.items()} if weighted else None,
        quantity_label=shown.label, unit=shown.unit or "", basis=shown.basis)
    plain = display.view_outputs(shown, view)
    return display.HistogramOutputs(figure, [*stats_rows(shown), *class_stats_rows(per_class)], plain.hint,
                                    filter_text(shown))


def classifier_provenance(classifier: ParticleClassifier) -> dict[str, str]:
    """Provenance lines of a classifier for CSV headers: classes, examples, features, seed and trees."""
    stored = classifier.to_dict()
    return {"classifier": classifier.provenance, "classifier_classes": ", ".join(stored["classes"]),
            "classifier_examples": str(len(stored["labels"])), "classifier_features": ", ".join(stored["features"]),
            "classifier_seed": str(stored["seed"]), "classifier_n_trees": str(stored["n_trees"])}


def particles_download(analysis: AnalysisState, results: ResultsState, edge_mode: str, state: ClassesState,
                       gray: GrayState | None) -> dict:
    """The per-particle CSV, with ``class`` and ``class_probability`` columns and the classifier's provenance
    once it is taught (else exactly :func:`app.session.downloads.particles_download`)."""
    table, classifier = current_table(state, analysis, results, gray)
    if classifier is None:
        return downloads.particles_download(analysis, results, edge_mode)
    return downloads.particles_download(analysis, results, edge_mode, table, classifier_provenance(classifier))
