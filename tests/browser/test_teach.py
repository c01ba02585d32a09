"""Teach the model on my corrections, in headless Chromium (dash_duo): correct an image of a small generated
batch on the canvas, teach with a budget of a few seconds on a Dask worker, follow the progress to the end,
see the sample's other images analysed again by the tuned model, keep it, download it and upload it again.

The batch uses a tiny untrained U-Net (``SAEMI_MODEL_DIR``), which a few seconds can tune; the shipped one
would be too slow on two cores.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import zipfile
from pathlib import Path

import pytest

from app.batch import SCHEDULER_ENV
from app.layout import ids
from app.webapp import create_app
from model.synthetic import generate_sample
from tests.browser.test_samples import button
from tests.browser.test_workflow import choose_tool, stroke, type_into
from tests.conftest import png_bytes, poll

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_S = 120


@pytest.fixture(scope="module")
def tiny_cluster(tmp_path_factory):
    """A tiny U-Net as the model folder (``SAEMI_MODEL_DIR``), a teach budget of 3 s, and a one-worker Dask
    cluster (``SAEMI_SCHEDULER``) started after both are set, so its worker sees them."""
    import keras
    from distributed import LocalCluster

    from model.unet import build_unet

    folder = tmp_path_factory.mktemp("tiny_model")
    shipped = Path(__file__).resolve().parents[2] / "model"
    keras.utils.set_random_seed(0)
    build_unet(filters=(4, 8), convs_per_block=1, n_outputs=3).save(folder / "saemi_unet.keras")
    config = json.loads((shipped / "config.json").read_text())
    config["test_time_views"] = 1
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(shipped / config["input_scale"]["scorer_file"], folder)
    settings = {"SAEMI_MODEL_DIR": str(folder), "SAEMI_TEACH_MINUTES": "0.05"}
    previous = {name: os.environ.get(name) for name in (*settings, SCHEDULER_ENV)}
    os.environ.update(settings)
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=logging.ERROR) as local:
            os.environ[SCHEDULER_ENV] = local.scheduler_address
            yield local
            for thread in threading.enumerate():
                if thread.name.startswith(("saemi-batch-", "saemi-beat-", "saemi-teach-")):
                    thread.join(timeout=60)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def wait(predicate, message, timeout_s=TIMEOUT_S):
    return poll(predicate, message, timeout_s)


def rows(duo) -> dict[str, dict]:
    """The image table: per image name, its status, count and the segmenter that analysed it."""
    found = {}
    for tr in duo.driver.find_elements("css selector", f"#{ids.IMAGE_TABLE} tbody tr"):
        cells = tr.find_elements("css selector", "td")
        count = cells[3].text.strip()
        found[cells[0].text] = {"status": cells[2].text, "count": int(count) if count else None,
                                "segmenter": cells[-1].text}
    return found


def before_after(duo) -> dict[str, tuple[int, int]]:
    """The before/after table: per image name, (particles before, particles after)."""
    found = {}
    for tr in duo.driver.find_elements("css selector", f"#{ids.TEACH_TABLE} tbody tr"):
        cells = [td.text for td in tr.find_elements("css selector", "td")]
        found[cells[0]] = (int(cells[1]), int(cells[2]))
    return found


def test_teach_on_a_correction_then_download_and_upload_the_model(dash_duo, tiny_cluster, tmp_path):
    duo = dash_duo
    duo.start_server(create_app(default_segmenter="unet"))
    duo.wait_for_element(f"#{ids.BATCH_UPLOAD}")
    paths = []
    for k in range(3):
        generated = generate_sample(800 + k, 200, 200, modality="tem", median_diameter_px=16, data_bar=False,
                                    scale_bar=False, letters=False)
        paths.append(tmp_path / f"s_{k}.png")
        paths[-1].write_bytes(png_bytes(generated.image))
    type_into(duo, ids.DIAMETER_PX, "16")
    duo.find_element(f"#{ids.BATCH_UPLOAD} input[type=file]").send_keys("\n".join(str(p) for p in paths))
    progress = duo.find_element(f"#{ids.BATCH_PROGRESS}")
    wait(lambda: progress.get_attribute("value") == "3", "the batch was not analysed", 300)
    wait(lambda: len(rows(duo)) == 3 and all(r["status"].startswith("done") for r in rows(duo).values()),
         "the table does not list three analysed images")
    assert duo.find_element(f"#{ids.MODEL_IN_USE}").text.startswith("Model in use: the shipped U-Net")

    # correct one image on the canvas (the untrained network finds one particle as large as the image: remove it)
    count = rows(duo)["s_0.png"]["count"]
    button(duo, "open-image", "s_0.png").click()
    duo.wait_for_contains_text(f"#{ids.FILE_INFO}", "s_0.png", timeout=TIMEOUT_S)
    time.sleep(1)  # the mask image loads into the canvas
    choose_tool(duo, "remove")
    stroke(duo, [(x, 300) for x in range(250, 400, 10)])
    wait(lambda: "corrected" in rows(duo)["s_0.png"]["status"] and rows(duo)["s_0.png"]["count"] != count,
         "the correction did not reach the batch")

    # teach: the progress bar reaches its end and the other images are analysed again by the tuned model
    duo.find_element(f"#{ids.TEACH_BUTTON}").click()
    wait(lambda: "Fine-tuned model" in duo.find_element(f"#{ids.TEACH_TEXT}").text
         or duo.find_element(f"#{ids.TEACH_ALERT}").text, "the fine-tune did not finish", 300)
    assert duo.find_element(f"#{ids.TEACH_ALERT}").text == ""
    bar = duo.find_element(f"#{ids.TEACH_PROGRESS}")
    assert bar.get_attribute("value") == bar.get_attribute("max")
    version = re.search(r"Fine-tuned model (\S+)", duo.find_element(f"#{ids.TEACH_TEXT}").text).group(1)
    assert "+ft." in version
    assert duo.find_element(f"#{ids.TEACH_KEEP}").is_displayed()
    wait(lambda: set(before_after(duo)) == {"s_1.png", "s_2.png"}, "the before/after table lacks the other images")
    wait(lambda: all(version in rows(duo)[name]["segmenter"] for name in ("s_1.png", "s_2.png")),
         "the table does not say the other images were segmented by the tuned model")
    table = rows(duo)
    assert version not in table["s_0.png"]["segmenter"]  # the corrected image keeps its correction
    for name, (_, after) in before_after(duo).items():
        assert table[name]["count"] == after, name  # the counts are the tuned model's
    assert duo.find_element(f"#{ids.TEACH_OVERLAY_AFTER}").is_displayed()
    duo.find_element(f"#{ids.TEACH_KEEP}").click()
    wait(lambda: "kept" in duo.find_element(f"#{ids.TEACH_TEXT}").text, "Keep was not confirmed")
    wait(lambda: version in duo.find_element(f"#{ids.MODEL_IN_USE}").text, "the page does not name the tuned model")

    # download the tuned model, and upload it again
    duo.find_element(f"#{ids.MODEL_DOWNLOAD_BUTTON}").click()
    path = os.path.join(duo.download_path, f"saemi_model_{version.replace('+', '_')}.zip")
    wait(lambda: os.path.isfile(path) and zipfile.is_zipfile(path), "the tuned model was not downloaded")
    time.sleep(0.5)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["candidate_scorer.json", "config.json", "saemi_unet.keras"]
        assert json.loads(archive.read("config.json"))["version"] == version
    duo.find_element(f"#{ids.MODEL_UPLOAD} input[type=file]").send_keys(path)
    wait(lambda: "uploaded model" in duo.find_element(f"#{ids.MODEL_IN_USE}").text,
         f"the uploaded model is not named: {duo.find_element(f'#{ids.TEACH_ALERT}').text!r}")
    named = duo.find_element(f"#{ids.MODEL_IN_USE}").text
    assert version in named and os.path.basename(path) in named

    # anything else is refused with a sentence
    other = tmp_path / "notes.zip"
    other.write_bytes(b"not a zip at all")
    duo.find_element(f"#{ids.MODEL_UPLOAD} input[type=file]").send_keys(str(other))
    wait(lambda: "was refused" in duo.find_element(f"#{ids.TEACH_ALERT}").text, "a bad model file was not refused")
