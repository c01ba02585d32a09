"""The samples view in headless Chromium (dash_duo): a batch of generated images in two samples, analysed by
the U-Net on a Dask cluster started here, pooled, compared, corrected, excluded, reloaded and downloaded.

No server is assumed running: the test starts a ``LocalCluster`` and points ``SAEMI_SCHEDULER`` at it.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import time
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from app.batch import SCHEDULER_ENV
from app.layout import ids
from app.session.demo_samples import DEMO_PATTERN, DEMO_SAMPLES, demo_files, true_ecd_nm
from app.webapp import create_app
from model.loading import model_problem
from tests.browser.test_workflow import choose_tool, stroke, type_into
from tests.conftest import poll

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(model_problem() is not None, reason="the shipped U-Net is needed")]

TIMEOUT_S = 60
#: The U-Net's first batch includes loading the network on the worker.
BATCH_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def cluster():
    """A one-worker Dask cluster for this module, its address in ``SAEMI_SCHEDULER`` (as ``make run`` sets it)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as local:
        previous = os.environ.get(SCHEDULER_ENV)
        os.environ[SCHEDULER_ENV] = local.scheduler_address
        try:
            yield local
        finally:
            for thread in threading.enumerate():  # the page's batch runners end before their cluster does
                if thread.name.startswith(("saemi-batch-", "saemi-beat-")):
                    thread.join(timeout=60)
            if previous is None:
                os.environ.pop(SCHEDULER_ENV, None)
            else:
                os.environ[SCHEDULER_ENV] = previous


def wait(predicate, message, timeout_s=TIMEOUT_S):
    return poll(predicate, message, timeout_s)


def table_rows(duo) -> list[dict]:
    """The image table as the browser shows it."""
    rows = []
    for tr in duo.driver.find_elements("css selector", f"#{ids.IMAGE_TABLE} tbody tr"):
        cells = tr.find_elements("css selector", "td")
        sample = cells[1].find_element("css selector", "input").get_attribute("value")
        count = cells[3].text.strip()
        rows.append({"name": cells[0].text, "sample": sample, "status": cells[2].text,
                     "count": int(count) if count else None})
    return rows


def pooled_detected(duo) -> int | None:
    match = re.search(r"Particles detected\s+(\d+)", duo.find_element(f"#{ids.POOLED_STATS}").text)
    return int(match.group(1)) if match else None


def compare_d50(duo) -> dict[str, float]:
    """Each sample's D50 (the number before its interval) from the comparison table."""
    found = {}
    for tr in duo.driver.find_elements("css selector", f"#{ids.COMPARE_TABLE} tbody tr"):
        cells = [td.text for td in tr.find_elements("css selector", "td")]
        if len(cells) > 4 and cells[4] != "–":
            found[cells[0]] = float(cells[4].split()[0])
    return found


def button(duo, kind, name):
    """The Open or Exclude button of the image called ``name``."""
    for tr in duo.driver.find_elements("css selector", f"#{ids.IMAGE_TABLE} tbody tr"):
        if tr.find_element("css selector", "td").text == name:
            return tr.find_element("css selector", f"button[id*='{kind}']")
    raise AssertionError(f"no row for {name}")


def test_two_samples_pooled_compared_corrected_and_downloaded(dash_duo, cluster, tmp_path):
    dash_duo.start_server(create_app(default_segmenter="unet"))
    duo = dash_duo
    duo.wait_for_element(f"#{ids.BATCH_UPLOAD}")
    paths = []
    for name, data in demo_files():
        path = tmp_path / name
        path.write_bytes(data)
        paths.append(path)
    type_into(duo, ids.NM_PER_PX, "2")
    type_into(duo, ids.SAMPLE_PATTERN, DEMO_PATTERN)
    duo.find_element(f"#{ids.BATCH_UPLOAD} input[type=file]").send_keys("\n".join(str(p) for p in paths))

    # the progress bar reaches the end: every image done, of six
    progress = duo.find_element(f"#{ids.BATCH_PROGRESS}")
    wait(lambda: progress.get_attribute("max") == "6", "the progress bar did not get the batch's size")
    wait(lambda: progress.get_attribute("value") == "6", "the batch did not finish", BATCH_TIMEOUT_S)
    assert duo.find_element(f"#{ids.BATCH_PROGRESS_TEXT}").text.startswith("6 of 6 images analysed")
    wait(lambda: len(table_rows(duo)) == 6 and all(r["status"].startswith("done") for r in table_rows(duo)),
         "the image table does not list six finished images")
    # (the table is redrawn while the batch is polled: read it until it settles)
    wait(lambda: [r["sample"] for r in table_rows(duo)] == ["small"] * 3 + ["large"] * 3,
         "the images were not grouped into the samples the pattern names")
    rows = table_rows(duo)

    # the pooled count of the first sample is the sum of its images' counts
    small = sum(r["count"] for r in rows if r["sample"] == "small")
    wait(lambda: pooled_detected(duo) == small, f"pooled count {pooled_detected(duo)} is not the sum {small}")

    # the comparison names both samples, each D50 within 3% of the generator's truth, in nm
    wait(lambda: set(compare_d50(duo)) == {"small", "large"}, "the comparison does not name both samples")
    measured = compare_d50(duo)
    for sample in DEMO_SAMPLES:
        truth = float(np.median(true_ecd_nm(sample)))
        assert measured[sample.name] == pytest.approx(truth, rel=0.03), sample.name
    assert "nm" in duo.find_element(f"#{ids.COMPARE_TABLE}").text
    assert "D50 of large is" in duo.find_element(f"#{ids.COMPARE_TESTS}").text

    # open one image in the single-image view and remove particles on the canvas: the pool follows
    button(duo, "open-image", "small_0.png").click()
    duo.wait_for_contains_text(f"#{ids.FILE_INFO}", "small_0.png", timeout=TIMEOUT_S)
    wait(lambda: re.search(r"Particles detected\s+(\d+)", duo.find_element(f"#{ids.STATS_TABLE}").text),
         "the opened image shows no statistics")
    choose_tool(duo, "remove")
    stroke(duo, [(x, 320) for x in range(10, 640, 20)])  # across the middle of the image: touches several
    wait(lambda: pooled_detected(duo) is not None and pooled_detected(duo) < small,
         "a correction did not change the pooled count")
    wait(lambda: "corrected" in [r for r in table_rows(duo) if r["name"] == "small_0.png"][0]["status"],
         "the corrected image is not marked as corrected")
    corrected = [r for r in table_rows(duo) if r["name"] == "small_0.png"][0]
    small_after = sum(r["count"] for r in table_rows(duo) if r["sample"] == "small")
    wait(lambda: pooled_detected(duo) == small_after, "pooled count is not the sum after the correction")

    # one click leaves a flagged (or any) image out of the pool, and the next takes it back
    count_1 = [r for r in table_rows(duo) if r["name"] == "small_1.png"][0]["count"]
    button(duo, "exclude-image", "small_1.png").click()
    wait(lambda: pooled_detected(duo) == small_after - count_1, "excluding an image did not leave it out")
    button(duo, "exclude-image", "small_1.png").click()
    wait(lambda: pooled_detected(duo) == small_after, "including it again did not bring it back")

    # the zip download holds every file, each with its provenance
    duo.find_element(f"#{ids.DOWNLOAD_BATCH_BUTTON}").click()
    path = os.path.join(duo.download_path, "saemi_samples.zip")
    wait(lambda: os.path.isfile(path) and zipfile.is_zipfile(path), "the batch's zip was not downloaded")
    time.sleep(0.5)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        stems = [p.stem for p in paths]
        assert {f"images/{s}_particles.csv" for s in stems} | {f"images/{s}_labels.png" for s in stems} <= names
        assert {"pooled_particles.csv", "summary.csv", "samples.csv"} <= names
        for name in names:
            data = archive.read(name)
            if name.endswith(".csv"):
                assert data.startswith(b"# software: SAEMI"), name
            else:
                assert Image.open(io.BytesIO(data)).text["software"].startswith("SAEMI"), name
        pooled = pd.read_csv(io.BytesIO(archive.read("pooled_particles.csv")), comment="#")
        first = pd.read_csv(io.BytesIO(archive.read("images/small_0_particles.csv")), comment="#")
    assert {"sample", "image"} <= set(pooled.columns)
    assert len(first) == corrected["count"]  # the corrected image, as corrected
    assert len(pooled[pooled["image"] == "small_0.png"]) == corrected["count"]

    # a reload finds the batch on the server
    duo.driver.refresh()
    wait(lambda: len(table_rows(duo)) == 6, "the batch was lost on reload")
    wait(lambda: pooled_detected(duo) == small_after, "the pooled result changed on reload")
