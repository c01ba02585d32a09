"""Particle classes of a batch's sample: taught on one image in the single-image view, stored with the sample,
brought back on another image of it, and splitting the pooled statistics and the batch zip by class."""

from __future__ import annotations

import io
import zipfile

import pandas as pd
import pytest

from app.analysis.view import ViewOptions
from app.callbacks import classes as classes_callbacks
from app.callbacks import samples as cb
from app.layout import ids
from app.session import classes, samples
from app.session.batchstore import BatchStore
from app.session.results import compute_results
from tests.callbacks.test_samples import SETTINGS, _finish
from tests.conftest import png_bytes
from tests.shapes import shapes_image, shapes_truth

SPHERES = [(row, col) for row, col, kind in shapes_truth() if kind == "sphere"]
RODS = [(row, col) for row, col, kind in shapes_truth() if kind == "rod"]


@pytest.fixture
def shapes_batch():
    """Two images of 12 spheres and 12 rods in sample 's' (rods not split) and one disc-free image in 't'."""
    files = {"s_1.png": png_bytes(shapes_image(0)), "s_2.png": png_bytes(shapes_image(1)),
             "t_1.png": png_bytes(shapes_image(2))}
    started = cb.start([_data_url(data) for data in files.values()], None, list(files),
                       {**SETTINGS, "split_touching": []}, None, r"(.*)_\d+$", trigger=ids.BATCH_UPLOAD)
    assert started["alert"] == ""
    _finish(started["batch"])
    return started["batch"]["batch_id"]


def _data_url(data: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(data).decode()


def opened_stores(batch_id: str, index: int) -> dict:
    """The single-image view's stores for image ``index`` of the batch, as the page keeps them."""
    opened = samples.open_image(BatchStore(), batch_id, index)
    results = compute_results(opened.analysis, opened.gray, opened.edits, None)
    return {"source": opened.source.to_store(), "analysis": opened.analysis.to_store(),
            "gray": opened.gray.to_store(), "results": results.to_store()}


def teach(stores: dict) -> dict:
    """Name the classes and click two particles of each, through the classes callback; the last store."""
    out = classes_callbacks.classes(None, "sphere, rod", 0, None, trigger=ids.CLASS_NAMES, **stores)
    for active, points in ((0, SPHERES[:2]), (1, RODS[:2])):
        for row, col in points:
            click = {"points": [{"x": col, "y": row}]}
            out = classes_callbacks.classes(click, "sphere, rod", active, out["classes"], trigger=ids.OVERLAY,
                                            **stores)
    return out


def test_classes_taught_on_one_image_are_stored_with_its_sample_and_split_the_pooled_results(shapes_batch):
    store = BatchStore()
    revision = store.progress(shapes_batch).revision
    taught = teach(opened_stores(shapes_batch, 0))
    assert classes.ClassesState.from_store(taught["classes"]).counts == {"sphere": 2, "rod": 2}
    assert list(store.classes(shapes_batch)) == ["s"]  # the sample of image 0, not 't'
    assert store.progress(shapes_batch).revision > revision  # the samples view redraws

    # another image of the sample brings the classes back on the page
    other = classes_callbacks.classes(None, None, 0, None, trigger=ids.STORE_SOURCE, **opened_stores(shapes_batch, 1))
    assert other["names"] == "sphere, rod"
    assert classes.ClassesState.from_store(other["classes"]) == classes.ClassesState.from_store(taught["classes"])
    # an image of a sample without classes keeps what the page has
    elsewhere = classes_callbacks.classes(None, None, 0, None, trigger=ids.STORE_SOURCE,
                                          **opened_stores(shapes_batch, 2))
    assert elsewhere["classes"] is classes_callbacks.no_update

    images = samples.load_images(store, shapes_batch)
    pooled = dict(samples.pooled_outputs(images, "s", ViewOptions()).rows)
    assert pooled["sphere: count"] == "24" and pooled["rod: count"] == "24"  # 12 of each in each image
    assert pooled["Count (in statistics)"] == "48"
    assert "sphere: count" not in dict(samples.pooled_outputs(images, "t", ViewOptions()).rows)
    figure = samples.pooled_outputs(images, "s", ViewOptions()).figure
    assert [trace.name for trace in figure.data] == ["sphere (n = 24)", "rod (n = 24)"]

    with zipfile.ZipFile(io.BytesIO(samples.batch_zip(store, shapes_batch, "exclude"))) as archive:
        text = archive.read("pooled_particles.csv").decode()
        per_image_text = archive.read("images/s_2_particles.csv").decode()
        per_image = pd.read_csv(io.StringIO(per_image_text), comment="#")
    assert "# classifier_examples: 4\n" in per_image_text and "# classifier_n_trees: 200\n" in per_image_text
    assert '# classifier of sample s: "random forest (200 trees, seed 0) on 4 clicked particles' in text
    pooled_table = pd.read_csv(io.StringIO(text), comment="#")
    assert pooled_table[pooled_table["sample"] == "s"]["class"].value_counts().to_dict() == {"sphere": 24, "rod": 24}
    assert pooled_table[pooled_table["sample"] == "t"]["class"].isna().all()
    assert per_image["class"].value_counts().to_dict() == {"sphere": 12, "rod": 12}


def test_clearing_the_class_names_forgets_the_samples_classes(shapes_batch):
    stores = opened_stores(shapes_batch, 0)
    taught = teach(stores)
    cleared = classes_callbacks.classes(None, "", 0, taught["classes"], trigger=ids.CLASS_NAMES, **stores)
    assert classes.ClassesState.from_store(cleared["classes"]) == classes.ClassesState()
    assert BatchStore().classes(shapes_batch) == {}
    images = samples.load_images(BatchStore(), shapes_batch)
    assert all("class" not in image.record.particles.columns for image in images)


def test_the_samples_are_compared_class_by_class(shapes_batch):
    teach(opened_stores(shapes_batch, 0))  # sample s
    teach(opened_stores(shapes_batch, 2))  # sample t
    store = BatchStore()
    compared = samples.comparison(samples.load_images(store, shapes_batch), "exclude")
    rows = {row["sample"]: row for row in compared.sample_rows}
    assert {"s", "t", "s · sphere", "s · rod", "t · sphere", "t · rod"} <= set(rows)
    assert rows["s · sphere"]["n_particles"] == 24 and rows["t · rod"]["n_particles"] == 12
    assert rows["s"]["n_particles"] == 48
    pairs = {(row.get("class"), row["sample_a"], row["sample_b"]) for row in compared.comparison_rows}
    assert {("sphere", "s · sphere", "t · sphere"), ("rod", "s · rod", "t · rod")} <= pairs
    assert not any(row.get("class") == "sphere" and "rod" in row["sample_b"] for row in compared.comparison_rows)

    with zipfile.ZipFile(io.BytesIO(samples.batch_zip(store, shapes_batch, "exclude"))) as archive:
        table = pd.read_csv(io.BytesIO(archive.read("samples.csv")), comment="#")
    per_class = table[table["row"] == "sample class"].set_index("sample")
    assert per_class.loc["s · sphere", "n_particles"] == 24 and per_class.loc["t · sphere", "class"] == "sphere"
    assert (table["row"] == "comparison class").sum() == 2
