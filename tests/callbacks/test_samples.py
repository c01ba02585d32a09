"""The samples view's callbacks, called directly: a batch started, polled to the end, pooled, compared,
changed, corrected through the single-image view, and downloaded as one zip."""

from __future__ import annotations

import base64
import io
import re
import time
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from app import config
from app.callbacks import analysis as analysis_callbacks
from app.callbacks import samples as cb
from app.layout import ids
from app.session.batchstore import BatchStore
from app.session.stores import Source
from tests.archives import zip_bytes
from tests.conftest import disc_image, png_bytes

SETTINGS = {"segmenter": "classical", "diameter_px": None, "split_touching": ["split"], "min_area_px": 10,
            "data_bar_mode": "off", "data_bar_rows": None, "scale_bar_label": None, "look_twice": []}
VIEW = {"quantity": "ecd", "basis": "number", "bin_width": None, "edge_mode": "exclude", "min_ecd": None,
        "max_ecd": None, "min_circularity": None}


def _url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _upload(files: dict[str, bytes], nm_per_px=2.0, pattern=r"(.*)_\d+$"):
    names = list(files)
    return cb.start([_url(files[n]) for n in names], None, names, SETTINGS, nm_per_px, pattern,
                    trigger=ids.BATCH_UPLOAD)


def _finish(batch, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        shown = cb.poll(1, batch, None)
        if shown["poll"] is True:
            return shown
        time.sleep(0.2)
    raise AssertionError("the batch did not finish")


def _detected(stats) -> int:
    return int(re.search(r"Particles detected\s*(\d+)", _text(stats)).group(1))


def _text(component) -> str:
    """All text under a Dash component."""
    if isinstance(component, (str, int, float)):
        return f"{component} "
    if isinstance(component, (list, tuple)):
        return "".join(_text(c) for c in component)
    children = getattr(component, "children", None)
    return "" if children is None else _text(children)


@pytest.fixture
def finished_batch():
    """Four disc images (2 nm/px) in samples 'a' and 'b', one inside a .zip with a traversing path, and a
    broken file, analysed to the end."""
    files = {"a_1.png": png_bytes(disc_image(1)), "a_2.png": png_bytes(disc_image(2)),
             "b_1.png": png_bytes(disc_image(3)), "bundle.zip": zip_bytes({"../../b_2.png": png_bytes(disc_image(4))}),
             "b_3.png": b"not an image"}
    started = _upload(files)
    assert started["alert"] == "" and started["poll"] is False
    batch = started["batch"]
    shown = _finish(batch)
    assert (shown["value"], shown["max"]) == ("5", "5")
    assert shown["text"].startswith("5 of 5 images analysed (1 could not be)")
    return batch


def test_a_batch_is_pooled_per_sample_and_compared(finished_batch):
    revision = BatchStore().progress(finished_batch["batch_id"]).revision
    shown = cb.refresh(revision, VIEW, None, finished_batch)
    assert shown["alert"] == "" and shown["options"] == ["a", "b"] and shown["sample"] == "a"
    table = _text(shown["table"])
    assert "b_2.png" in table  # from the zip, named by its last part
    assert "failed" in table and "'b_3.png' is not an image SAEMI can read" in table  # its sentence; the rest went on
    assert _detected(shown["stats"]) == 12  # six discs in each of a_1 and a_2
    names = _text(shown["compare_table"])
    assert "a " in names and "b " in names and "nm" in names
    assert "D50 of b is" in _text(shown["tests"])
    on_b = cb.refresh(revision, VIEW, "b", finished_batch)
    assert _detected(on_b["stats"]) == 12  # b_1 and the b_2 from the zip; the broken b_3 is not pooled


def test_changes_exclude_regroup_and_assign(finished_batch):
    store = BatchStore()
    batch_id = finished_batch["batch_id"]
    rows = store.images(batch_id)
    exclude_ids = [{"type": ids.EXCLUDE_IMAGE, "index": r.index} for r in rows]
    sample_ids = [{"type": ids.IMAGE_SAMPLE, "index": r.index} for r in rows]
    samples = [r.sample for r in rows]
    redrawn = cb.change([None] * 5, samples, 0, exclude_ids, sample_ids, None, finished_batch,
                        trigger={"type": ids.EXCLUDE_IMAGE, "index": 0})
    assert redrawn["revision"] is cb.no_update and not store.image(batch_id, 0).excluded  # drawn, not pressed
    excluded = cb.change([1, None, None, None, None], samples, 0, exclude_ids, sample_ids, None, finished_batch,
                         trigger={"type": ids.EXCLUDE_IMAGE, "index": 0})
    assert store.image(batch_id, 0).excluded
    assert _detected(cb.refresh(excluded["revision"], VIEW, "a", finished_batch)["stats"]) == 6
    cb.change([1] * 5, ["c", *samples[1:]], 0, exclude_ids, sample_ids, None, finished_batch,
              trigger={"type": ids.IMAGE_SAMPLE, "index": 0})
    assert store.image(batch_id, 0).sample == "c"
    cb.change([1] * 5, samples, 1, exclude_ids, sample_ids, None, finished_batch, trigger=ids.GROUP_BUTTON)
    assert {r.sample for r in store.images(batch_id)} == {"sample"}
    refused = cb.change([1] * 5, samples, 2, exclude_ids, sample_ids, r"no(group)_x", finished_batch,
                        trigger=ids.GROUP_BUTTON)
    assert "does not match the sample pattern" in refused["alert"]


def test_a_correction_in_the_single_image_view_updates_the_pool(finished_batch):
    batch_id = finished_batch["batch_id"]
    open_ids = [{"type": ids.OPEN_IMAGE, "index": i} for i in range(4)]
    opened = cb.open_image([None, 1, None, None], open_ids, finished_batch,
                           trigger={"type": ids.OPEN_IMAGE, "index": 1})
    assert opened["alert"] == "" and opened["file_info"].startswith("a_2.png")
    assert Source.from_store(opened["source"]).kind == "batch"
    before = cb.refresh(0, VIEW, "a", finished_batch)
    d50_before = float(re.search(r"D50\s*([\d.]+)", _text(before["stats"])).group(1))
    # the pixel size typed in the single-image view (4 nm/px instead of 2) is a correction of a_2 only
    results = analysis_callbacks.results(opened["analysis"], opened["edits"], 4.0, opened["gray"])
    written = cb.write_back(results["results"], opened["source"], opened["analysis"], opened["edits"], "exclude",
                            finished_batch)
    assert written["revision"] is not cb.no_update
    after = cb.refresh(written["revision"], VIEW, "a", finished_batch)
    assert _detected(after["stats"]) == 12
    d50_after = float(re.search(r"D50\s*([\d.]+)", _text(after["stats"])).group(1))
    assert d50_after > d50_before  # half the particles doubled in size
    reopened = cb.open_image([None, 2, None, None], open_ids, finished_batch,
                             trigger={"type": ids.OPEN_IMAGE, "index": 1})
    assert reopened["analysis"] and BatchStore().current(batch_id, 1).nm_per_px == 4.0
    # the stores of another image are never written into the batch
    other = cb.write_back(results["results"], Source("upload", "x.png").to_store(), opened["analysis"],
                          opened["edits"], "exclude", finished_batch)
    assert other["revision"] is cb.no_update


def test_the_zip_holds_every_file_with_its_provenance(finished_batch):
    sent = cb.download(1, finished_batch, "exclude")
    assert sent["alert"] == "" and sent["file"]["filename"] == "saemi_samples.zip"
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(sent["file"]["content"])))
    stems = ["a_1", "a_2", "b_1", "b_2"]
    expected = ({f"images/{s}_particles.csv" for s in stems} | {f"images/{s}_labels.png" for s in stems}
                | {"pooled_particles.csv", "summary.csv", "samples.csv", "failed.csv"})
    assert set(archive.namelist()) == expected
    for name in expected:
        data = archive.read(name)
        if name.endswith(".csv"):
            assert data.startswith(b"# software: SAEMI"), name
            assert b"# param_edge_mode: exclude" in data and b"# param_segmenter: classical" in data
        else:
            image = Image.open(io.BytesIO(data))
            assert image.text["param_nm_per_px"] == "2.0" and image.text["sample"] in ("a", "b")
            assert np.asarray(image).max() == 6  # six discs, 16-bit labels
    read = {name: pd.read_csv(io.BytesIO(archive.read(name)), comment="#") for name in expected if name.endswith("csv")}
    pooled = read["pooled_particles.csv"]
    assert list(pooled.columns[:2]) == ["sample", "image"] and len(pooled) == 24
    assert pooled.groupby("image").size().to_dict() == {f"{s}.png": 6 for s in stems}
    assert len(read["images/b_2_particles.csv"]) == 6
    summary = read["summary.csv"]
    assert sorted(summary["image"]) == [f"{s}.png" for s in stems] and {"flags", "excluded"} <= set(summary.columns)
    samples = read["samples.csv"]
    assert list(samples.loc[samples["row"] == "sample", "sample"]) == ["a", "b"]
    comparison = samples[samples["row"] == "comparison"].iloc[0]
    assert {"ks_pvalue", "anderson_darling_pvalue", "d50_ratio_ci95_low", "d50_nm_ci95_high"} <= set(samples.columns)
    assert "D50 of b" in comparison["summary"]
    assert read["failed.csv"]["image"].tolist() == ["b_3.png"]


@pytest.mark.parametrize("batch", [{"batch_id": "../../etc"}, {"batch_id": "A" * 32}, {"batch_id": 3}, {"x": 1}])
def test_bad_batch_ids_get_a_sentence(batch):
    assert "not on the server" in cb.poll(1, batch, None)["alert"]
    assert "not on the server" in cb.refresh(1, VIEW, None, batch)["alert"]
    assert "not on the server" in cb.download(1, batch, "exclude")["alert"]
    opened = cb.open_image([1], [{"type": ids.OPEN_IMAGE, "index": 0}], batch,
                           trigger={"type": ids.OPEN_IMAGE, "index": 0})
    assert "not on the server" in opened["alert"]


def test_limits_are_checked_before_anything_is_stored(monkeypatch):
    monkeypatch.setattr(config, "MAX_BATCH_BYTES", 20_000)
    before = set(BatchStore().root.glob("*")) if BatchStore().root.exists() else set()
    big = _upload({f"x_{k}.png": png_bytes(disc_image(k)) for k in range(3)})  # about 30 kB together
    assert "a batch takes at most 0 MB" in big["alert"] and big["batch"] is cb.no_update
    inside = _upload({"many.zip": zip_bytes({f"x_{k}.png": bytes(9_000) for k in range(3)})})
    assert "archives counted unpacked" in inside["alert"]
    after = set(BatchStore().root.glob("*")) if BatchStore().root.exists() else set()
    assert after == before


def test_a_name_outside_the_pattern_gets_a_sentence():
    refused = _upload({"nomatch.png": png_bytes(disc_image(0))}, pattern=r"(.*)_\d+$")
    assert "does not match the sample pattern" in refused["alert"] and refused["batch"] is cb.no_update
