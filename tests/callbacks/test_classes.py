"""Particle classes on the single-image view, called without a browser: clicks become examples, the examples
teach the classifier, a click corrects a class, and the histogram, statistics and CSV are split by class."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from app.analysis.errors import SaemiInputError
from app.analysis.view import ViewOptions
from app.callbacks import classes as classes_callbacks
from app.callbacks import downloads as downloads_callbacks
from app.callbacks import views as views_callbacks
from app.figures import PALETTE, SAMPLE_COLOURS
from app.layout import ids
from app.session import classes, signing
from app.session.display import histogram_outputs
from app.session.downloads import particles_download, summary_download
from app.session.results import compute_results
from app.session.start import PageSettings, start_session
from app.session.stores import DAMAGED_STORE
from tests.conftest import png_bytes
from tests.shapes import shapes_image, shapes_truth
from tests.stores import plain, resigned, tampered

#: Rods are not split: "split touching particles" would cut an ellipse at its waist.
SETTINGS = PageSettings(segmenter="classical", split_touching=False, min_area_px=10, data_bar_mode="off")
SPHERES = [(row, col) for row, col, kind in shapes_truth() if kind == "sphere"]
RODS = [(row, col) for row, col, kind in shapes_truth() if kind == "rod"]


@pytest.fixture(scope="module")
def image():
    started = start_session(png_bytes(shapes_image()), "shapes.png", SETTINGS)
    results = compute_results(started.analysis, started.gray, started.edits, None)
    assert len(results.particles()) == len(shapes_truth())
    return started.analysis, results, started.gray


def click(row, col):
    """The overlay's clickData for a click on pixel (row, col)."""
    return {"points": [{"curveNumber": 0, "x": col, "y": row, "pointNumber": [row, col]}]}


def clicked(image, state, points, active):
    analysis, results, gray = image
    for row, col in points:
        state = classes.record_click(state, click(row, col), active, analysis, results, gray)
    return state


def truth_by_id(results) -> dict[int, str]:
    labels = results.labels()
    return {int(labels[row, col]): kind for row, col, kind in shapes_truth()}


def taught(image) -> classes.ClassesState:
    state = classes.rename(classes.ClassesState(), "sphere, rod")
    return clicked(image, clicked(image, state, SPHERES[:2], 0), RODS[:2], 1)


def test_class_names_are_parsed_and_renaming_drops_the_examples_of_a_class_no_longer_named(image):
    assert classes.parse_names(" sphere, rod,, sphere ") == ("sphere", "rod")
    state = taught(image)
    assert state.counts == {"sphere": 2, "rod": 2}
    renamed = classes.rename(state, "rod, agglomerate")
    assert renamed.names == ("rod", "agglomerate") and renamed.counts == {"rod": 2, "agglomerate": 0}
    with pytest.raises(SaemiInputError, match="At most"):
        classes.parse_names(",".join(f"c{k}" for k in range(20)))


def test_a_click_records_the_particle_under_it_and_one_click_per_class_teaches_the_classifier(image):
    analysis, results, gray = image
    state = clicked(image, classes.rename(classes.ClassesState(), "sphere, rod"), SPHERES[:1], 0)
    assert state.counts == {"sphere": 1, "rod": 0}
    assert state.examples[0].particle_id == results.labels()[SPHERES[0]]
    assert classes.classifier_of(state) is None  # one class only: nothing to learn yet
    assert "at least two classes" in classes.status_text(state)
    state = clicked(image, state, RODS[:1], 1)
    assert classes.classifier_of(state) is not None
    assert "sphere: 1 example, rod: 1 example" in classes.status_text(state)
    table, _ = classes.current_table(state, analysis, results, gray)
    by_id = table.set_index("particle_id")["class"]
    assert [by_id[e.particle_id] for e in state.examples] == ["sphere", "rod"]
    # two clicks per class classify every particle of this image
    state = clicked(image, clicked(image, state, SPHERES[1:2], 0), RODS[1:2], 1)
    table, classifier = classes.current_table(state, analysis, results, gray)
    truth = truth_by_id(results)
    assert list(table["class"]) == [truth[pid] for pid in table["particle_id"]]
    assert ((table["class_probability"] > 0.5) & (table["class_probability"] <= 1)).all()
    # the stored state gives the same classifier back
    again = classes.ClassesState.from_store(state.to_store())
    assert again == state and classes.classifier_of(again).to_dict() == classifier.to_dict()


def test_clicking_a_particle_again_with_another_class_corrects_it_and_the_classifier_updates(image):
    analysis, results, gray = image
    state = classes.rename(classes.ClassesState(), "sphere, rod")
    state = clicked(image, state, [SPHERES[0], SPHERES[1], RODS[0]], 0)  # the rod clicked by mistake as a sphere
    state = clicked(image, state, [RODS[1]], 1)
    mistaken = {e.particle_id: e.name for e in state.examples}
    rod_id = int(results.labels()[RODS[0]])
    assert mistaken[rod_id] == "sphere"
    state = clicked(image, state, [RODS[0]], 1)  # corrected
    assert state.counts == {"sphere": 2, "rod": 2} and len(state.examples) == 4
    assert {e.particle_id: e.name for e in state.examples}[rod_id] == "rod"
    assert classes.classifier_of(state).labels.count("rod") == 2
    table, _ = classes.current_table(state, analysis, results, gray)
    truth = truth_by_id(results)
    assert list(table["class"]) == [truth[pid] for pid in table["particle_id"]]


@pytest.mark.parametrize("active", [2, -1, "1", 1.0, True, None])
def test_a_class_index_that_names_no_class_is_refused(image, active):
    analysis, results, gray = image
    state = classes.rename(classes.ClassesState(), "sphere, rod")
    with pytest.raises(SaemiInputError, match="Choose the class"):
        classes.record_click(state, click(*SPHERES[0]), active, analysis, results, gray)


@pytest.mark.parametrize("data", [click(5, 5), click(-3, 10), click(10, 10**7), {"points": [{"x": "60", "y": 60}]},
                                  {"points": [{"x": float("nan"), "y": 60}]}, {"points": []}, None, "x"])
def test_a_click_beside_every_particle_or_unreadable_click_data_records_nothing(image, data):
    analysis, results, gray = image
    state = classes.rename(classes.ClassesState(), "sphere, rod")
    with pytest.raises(SaemiInputError):
        classes.record_click(state, data, 0, analysis, results, gray)


def test_the_browser_cannot_forge_an_example_or_a_class(image):
    stored = taught(image).to_store()
    assert classes.ClassesState.from_store(stored) == taught(image)
    forged = [
        tampered("classes", stored, names=["sphere", "rod", "agglomerate"]),  # without the key
        resigned("classes", stored, names=["sphere"]),  # an example of a class not named
        resigned("classes", stored, names=["a", "a"]),
        resigned("classes", stored, examples=[["x", 0, "sphere", [0.0] * 7]]),  # particle id 0 is background
        resigned("classes", stored, examples=[["x", 3, "sphere", [0.0] * 6]]),  # wrong number of features
        resigned("classes", stored, examples=[["x" * 65, 3, "sphere", [0.0] * 7]]),  # not an image key
        resigned("classes", stored, examples=[["x", 3, "sphere", [0.0] * 6 + ["1"]]]),
        resigned("classes", stored, examples=[["x", 3, "sphere", [0.0] * 7]] * (classes.MAX_EXAMPLES + 1)),
        signing.sign("analysis", plain("classes", stored)),  # another store's signature
    ]
    for payload in forged:
        with pytest.raises(SaemiInputError, match="changed or has expired"):
            classes.ClassesState.from_store(payload)


def test_the_particles_csv_gets_class_columns_and_the_classifiers_provenance(image):
    analysis, results, gray = image
    plain_csv = particles_download(analysis, results, "exclude")
    assert classes.particles_download(analysis, results, "exclude", classes.ClassesState(), gray) == plain_csv
    one_class = clicked(image, classes.rename(classes.ClassesState(), "sphere, rod"), SPHERES[:3], 0)
    assert classes.particles_download(analysis, results, "exclude", one_class, gray) == plain_csv

    text = classes.particles_download(analysis, results, "exclude", taught(image), gray)["content"]
    header = dict(line[2:].split(": ", 1) for line in text.splitlines() if line.startswith("# "))
    assert header["classifier_classes"] == '"sphere, rod"'
    assert header["classifier_examples"] == "4"
    assert header["classifier_seed"] == "0" and header["classifier_n_trees"] == "200"
    assert "aspect_ratio" in header["classifier_features"] and "random forest" in header["classifier"]
    table = pd.read_csv(io.StringIO(text), comment="#")
    plain_table = pd.read_csv(io.StringIO(plain_csv["content"]), comment="#")
    assert list(table.columns) == [*plain_table.columns, "class", "class_probability"]
    truth = truth_by_id(results)
    assert list(table["class"]) == [truth[pid] for pid in table["particle_id"]]


def test_the_histogram_and_statistics_are_split_by_class(image):
    analysis, results, gray = image
    view = ViewOptions()
    before = histogram_outputs(results, analysis, view)
    same = classes.histogram_outputs(results, analysis, view, classes.ClassesState(), gray)
    assert same.rows == before.rows and same.figure == before.figure

    split = classes.histogram_outputs(results, analysis, view, taught(image), gray)
    names = [trace.name for trace in split.figure.data]
    assert names == ["sphere (n = 12)", "rod (n = 12)"] and split.figure.layout.barmode == "stack"
    assert sum(np.sum(trace.y) for trace in split.figure.data) == 24
    rows = dict(split.rows)
    assert rows["sphere: count"] == "12" and rows["rod: count"] == "12"
    ecd = results.particles().set_index("particle_id")["ecd_px"]
    truth = truth_by_id(results)
    sphere_ecd = [ecd[pid] for pid, kind in truth.items() if kind == "sphere"]
    assert rows["sphere: D50"] == f"{np.median(sphere_ecd):.4g} px"
    assert rows["Count (in statistics)"] == "24"  # the whole image's rows stay

    by_area = classes.histogram_outputs(results, analysis, ViewOptions(basis="area"), taught(image), gray)
    assert sum(np.sum(trace.y) for trace in by_area.figure.data) == pytest.approx(100.0)


def test_the_callback_renames_records_clicks_and_shows_a_sentence_for_a_forged_index(image):
    analysis, results, gray = image
    stores = {"results": results.to_store(), "analysis": analysis.to_store(), "gray": gray.to_store()}
    named = classes_callbacks.classes(None, "sphere, rod", 0, None, trigger=ids.CLASS_NAMES, **stores)
    assert named["options"] == [{"label": "sphere", "value": 0}, {"label": "rod", "value": 1}]
    out = classes_callbacks.classes(click(*RODS[0]), "sphere, rod", 1, named["classes"], trigger=ids.OVERLAY,
                                    **stores)
    assert classes.ClassesState.from_store(out["classes"]).counts == {"sphere": 0, "rod": 1}
    assert out["info"].startswith("sphere: 0 examples, rod: 1 example")
    forged = classes_callbacks.classes(click(*RODS[0]), "sphere, rod", 7, named["classes"], trigger=ids.OVERLAY,
                                       **stores)
    assert forged["classes"] is classes_callbacks.no_update and "Choose the class" in forged["info"]
    damaged = classes_callbacks.classes(click(*RODS[0]), "", 0, {"signed": "x"}, trigger=ids.OVERLAY, **stores)
    assert damaged["info"].startswith(DAMAGED_STORE.split(";")[0])
    unnamed = classes_callbacks.classes(click(*RODS[0]), None, 0, None, trigger=ids.OVERLAY, **stores)
    assert all(value is classes_callbacks.no_update for value in unnamed.values())


def test_the_histogram_and_download_callbacks_read_the_classes_store(image):
    analysis, results, gray = image
    stores = {"results": results.to_store(), "analysis": analysis.to_store()}
    view = dict(ViewOptions().__dict__)
    taught_store = taught(image).to_store()
    shown = views_callbacks.histogram(view=view, classes=taught_store, gray=gray.to_store(), **stores)
    assert [trace.name for trace in shown["figure"].data] == ["sphere (n = 12)", "rod (n = 12)"]
    assert "sphere: count" in str(shown["table"])
    plain_shown = views_callbacks.histogram(view=view, **stores)
    assert "sphere" not in str(plain_shown["table"])
    forged = views_callbacks.histogram(view=view, classes=tampered("classes", taught_store, names=["x", "y"]),
                                       gray=gray.to_store(), **stores)
    assert forged["figure"] is views_callbacks.no_update and "changed or has expired" in forged["hint"]

    sent = downloads_callbacks.download(1, 0, 0, trigger=ids.DOWNLOAD_CSV_BUTTON, edge_mode="exclude",
                                        classes=taught_store, gray=gray.to_store(), **stores)
    table = pd.read_csv(io.StringIO(sent["file"]["content"]), comment="#")
    assert table["class"].value_counts().to_dict() == {"sphere": 12, "rod": 12}


def overlay_rgb(figure) -> np.ndarray:
    """The RGB of the overlay's particles trace (the second image trace)."""
    source = figure.data[1].source
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))))[..., :3]


def test_the_overlay_by_class_fills_each_particle_in_its_class_colour(image):
    analysis, results, gray = image
    stores = {"results": results.to_store(), "analysis": analysis.to_store(), "gray": gray.to_store()}
    taught_store = taught(image).to_store()
    drawn = views_callbacks.overlay(opacity=0.7, mode="class", classes=taught_store, trigger=ids.STORE_CLASSES,
                                    **stores)
    rgb = overlay_rgb(drawn["figure"])
    colours = [tuple(int(code[i:i + 2], 16) for i in (1, 3, 5)) for code in SAMPLE_COLOURS[:2]]
    for row, col, kind in shapes_truth():
        assert tuple(rgb[row, col]) == colours[0 if kind == "sphere" else 1]
    assert drawn["figure"].layout.uirevision == f"classes-{analysis.sha256}"  # a click keeps the zoom
    # shown otherwise, a change of the classes does not redraw the overlay
    unchanged = views_callbacks.overlay(opacity=0.7, mode="outline", classes=taught_store,
                                        trigger=ids.STORE_CLASSES, **stores)
    assert unchanged["figure"] is views_callbacks.no_update
    # before the classifier is taught, "by class" fills the particles in the palette
    untaught = views_callbacks.overlay(opacity=0.7, mode="class", classes=None, trigger=ids.OVERLAY_MODE, **stores)
    labels = results.labels()
    row, col = SPHERES[0]
    assert tuple(overlay_rgb(untaught["figure"])[row, col]) == tuple(PALETTE[(labels[row, col] - 1) % len(PALETTE)])


def test_the_summary_csv_gets_one_row_per_class(image):
    analysis, results, gray = image
    plain_summary = summary_download(analysis, results, "exclude")
    assert classes.summary_download(analysis, results, "exclude", classes.ClassesState(), gray) == plain_summary
    text = classes.summary_download(analysis, results, "exclude", taught(image), gray)["content"]
    assert "# classifier_examples: 4\n" in text
    table = pd.read_csv(io.StringIO(text), comment="#").set_index("class")
    assert list(table.index) == ["all", "sphere", "rod"]
    assert table.loc["all", "n_particles"] == 24
    assert table.loc["sphere", "n_particles"] == 12 and table.loc["rod", "n_particles"] == 12
    ecd = results.particles().set_index("particle_id")["ecd_px"]
    rods = [ecd[pid] for pid, kind in truth_by_id(results).items() if kind == "rod"]
    assert table.loc["rod", "d50_ecd_px"] == pytest.approx(np.median(rods), rel=1e-4)
    plain_table = pd.read_csv(io.StringIO(plain_summary["content"]), comment="#")
    assert "class" not in plain_table.columns and len(plain_table) == 1
