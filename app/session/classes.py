"""Particle classes: class names, clicked examples, the classes of every particle, and a sample's classes.

The ``classes`` store (:class:`ClassesState`) keeps the names the user typed and one example per clicked
particle: the particle's features (:func:`app.analysis.classes.particle_features`) and its class. The
classifier is fitted again from these examples whenever it is needed (:func:`classifier_of`), as
:mod:`app.analysis.classes` stores it. A click is turned into a particle on the server, from the signed
label image of the ``results`` store; the class index the page sends is checked against the names. For an
image of a batch, the classes are kept with its sample in the batch store and classify the pooled particles.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from app.analysis import encoding
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
from app.analysis.samples import ImageRecord
from app.analysis.view import HistogramView, ViewOptions, class_stats_rows, class_views, view_results
from app.figures import SAMPLE_COLOURS, class_histogram_figure
from app.session import display, downloads, signing
from app.session.batchstore import BatchStore, parse_image_ref
from app.session.stores import AnalysisState, GrayState, ResultsState, Source

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (signed for the page by :meth:`to_store`, kept as it is with a batch's sample)."""
        return {"names": list(self.names), "examples": [example.to_list() for example in self.examples]}

    def to_store(self) -> dict[str, str]:
        return signing.sign("classes", self.to_dict())

    @classmethod
    def from_store(cls, payload: Any) -> ClassesState:
        """The classes; none when nothing was typed yet."""
        if not payload:
            return cls()
        return cls.from_dict(signing.verify("classes", payload))

    @classmethod
    def from_dict(cls, data: Any) -> ClassesState:
        """Inverse of :meth:`to_dict`, checked (names, example fields, sizes)."""
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
    if (not isinstance(image, str) or len(image) > 64 or isinstance(particle_id, bool)
            or not isinstance(particle_id, int) or particle_id < 1 or name not in names
            or not isinstance(features, list) or len(features) != len(FEATURES)
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
    return split_outputs(view_results(table, **options), class_views(table, names=classifier.classes, **options),
                         view)


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


# -- the classes of a batch's samples --------------------------------------------------------------------


def batch_sample(store: BatchStore, source: Source | None) -> tuple[str, str] | None:
    """(batch id, sample) of the image shown, when it is an image of a batch (else None)."""
    if source is None or source.kind != "batch":
        return None
    batch_id, index = parse_image_ref(source.filename)
    store.check_id(batch_id)
    return batch_id, store.image(batch_id, index).sample


def save_to_batch(store: BatchStore, source: Source | None, state: ClassesState) -> bool:
    """Store the classes with the sample of the batch image shown; returns whether the image is one."""
    where = batch_sample(store, source)
    if where is None:
        return False
    store.save_classes(*where, state.to_dict() if state.names else None)
    return True


def load_from_batch(store: BatchStore, source: Source | None) -> ClassesState | None:
    """The classes stored with the sample of the batch image shown (None when it has none or is no batch image)."""
    where = batch_sample(store, source)
    stored = None if where is None else store.classes(where[0]).get(where[1])
    return None if stored is None else ClassesState.from_dict(stored)


def sample_classifiers(stored: Mapping[str, Any]) -> dict[str, ParticleClassifier]:
    """The taught classifier of each sample, from :meth:`app.session.batchstore.BatchStore.classes`."""
    classifiers = {}
    for sample, data in stored.items():
        classifier = classifier_of(ClassesState.from_dict(data))
        if classifier is not None:
            classifiers[sample] = classifier
    return classifiers


def classify_record(record: ImageRecord, classifier: ParticleClassifier, labels_png: bytes,
                    gray: np.ndarray) -> ImageRecord:
    """The image's particles with their classes; ``gray`` is read as the page holds it (8 bits), so that the
    intensity features are those the examples were clicked with."""
    labels = encoding.png_bytes_to_labels(labels_png, record.shape)
    intensity = encoding.gray_to_uint8(gray).astype(np.float32) / 255.0
    return replace(record, particles=classified(record.particles, classifier, labels, intensity),
                   classes=classifier.classes)


def split_outputs(shown: HistogramView, per_class: Mapping[str, HistogramView],
                  view: ViewOptions) -> display.HistogramOutputs:
    """Histogram outputs of a view split by class: stacked per-class bars, the whole view's statistics
    followed by per-class rows."""
    weighted = shown.weights is not None
    figure = class_histogram_figure(
        {name: v.values for name, v in per_class.items()}, bin_width=shown.bin_width,
        weights_by_class={name: v.weights for name, v in per_class.items()} if weighted else None,
        quantity_label=shown.label, unit=shown.unit or "", basis=shown.basis)
    plain = display.view_outputs(shown, view)
    return display.HistogramOutputs(figure, [*plain.rows, *class_stats_rows(per_class)], plain.hint, plain.filters)


def class_colours(table: pd.DataFrame, classifier: ParticleClassifier, n_labels: int) -> np.ndarray:
    """The colour (RGB) of each particle id by its class, as in the class histogram's legend; black elsewhere."""
    palette = np.array([[int(code[i:i + 2], 16) for i in (1, 3, 5)] for code in SAMPLE_COLOURS], dtype=np.uint8)
    ids = table["particle_id"].to_numpy(dtype=int)
    colours = np.zeros((max(n_labels, int(ids.max(initial=0)) + 1), 3), dtype=np.uint8)
    index = {name: k for k, name in enumerate(classifier.classes)}
    numbers = np.array([index[str(name)] for name in table["class"]], dtype=int)
    colours[ids] = palette[numbers % len(palette)]
    return colours


def class_overlay(results: ResultsState, gray: GrayState, opacity: float | None, analysis: AnalysisState,
                  dragmode: str | None, state: ClassesState):
    """The overlay with every particle filled in the colour of its class (in the palette's colours before the
    classifier is taught); a redraw after a click keeps the zoom."""
    table, classifier = current_table(state, analysis, results, gray)
    labels = results.labels()
    colours = None if classifier is None else class_colours(table, classifier, int(labels.max(initial=0)) + 1)
    return display.overlay(results, gray, opacity, "fill", analysis, dragmode, label_colours=colours,
                           uirevision=f"classes-{analysis.sha256}")


def summary_download(analysis: AnalysisState, results: ResultsState, edge_mode: str, state: ClassesState,
                     gray: GrayState | None) -> dict:
    """The summary CSV, with one more row per class (and the classifier's provenance) once it is taught (else
    exactly :func:`app.session.downloads.summary_download`)."""
    table, classifier = current_table(state, analysis, results, gray)
    if classifier is None:
        return downloads.summary_download(analysis, results, edge_mode)
    by_class = {name: table[table["class"] == name].drop(columns=["class", "class_probability"])
                for name in classifier.classes}
    return downloads.summary_download(analysis, results, edge_mode, by_class, classifier_provenance(classifier))
