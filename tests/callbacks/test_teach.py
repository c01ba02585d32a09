"""Teach the model on my corrections, through the session functions: what is learnt from, the fine-tune and its
progress, the re-analysis with the tuned model, Keep and Discard, Cancel, download and upload (and refusals),
and a fine-tune whose Dask worker is killed."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import signal
import time
import zipfile

import numpy as np
import pytest

from app.analysis import encoding
from app.analysis.errors import SaemiInputError
from app.analysis.pipeline import AnalysisParams
from app.batch import SCHEDULER_ENV
from app.session import teach
from app.session.batchrun import ensure_running
from app.session.batchstore import BatchStore, CurrentImage, NewImage
from app.session.samples import batch_zip
from model.loading import MAX_UNPACKED_BYTES, model_folder_zip
from model.synthetic import generate_sample
from tests.archives import zip_bytes
from tests.conftest import png_bytes, poll
from tests.model.conftest import tiny_model, tiny_model_dir  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def _generated(seed: int):
    return generate_sample(seed, 160, 160, modality="tem", median_diameter_px=16, data_bar=False, scale_bar=False,
                           letters=False)


@pytest.fixture
def batch(tmp_path, tiny_model_dir):  # noqa: F811 - the fixture imported above
    """Three generated images of sample 's' analysed by the tiny U-Net; image 0 corrected to its true labels."""
    store = BatchStore(tmp_path / "batches")
    samples = [_generated(700 + k) for k in range(3)]
    params = AnalysisParams(segmenter="unet", diameter_px=16.0, model_dir=str(tiny_model_dir), data_bar="off")
    batch_id = store.create([NewImage(f"img{k}.png", png_bytes(s.image), sample="s") for k, s in enumerate(samples)],
                            params)
    ensure_running(store, batch_id)
    poll(lambda: not store.unfinished(batch_id), "the batch was not analysed", 120)
    truth = encoding.labels_to_png_bytes(samples[0].labels.astype(np.int32))
    outcome = store.outcome(batch_id, 0)
    store.save_current(batch_id, 0, CurrentImage(truth, outcome.particles, None, outcome.provenance, {}, {}))
    return store, batch_id, samples


def _wait(store, batch_id, wanted, timeout_s=180):
    return poll(lambda: teach.status(store, batch_id).get("status") in wanted and teach.status(store, batch_id),
                f"the fine-tune did not reach {wanted}", timeout_s)


def test_the_corrected_region_or_a_checked_image_is_learnt_from(batch):
    store, batch_id, samples = batch
    examples = teach.teach_examples(store, batch_id, "s")
    assert [e.name for e in examples] == ["img0.png"] and examples[0].region.startswith("corrected region")
    region = encoding.png_bytes_to_labels(examples[0].supervised_png) > 0
    assert region.any() and region.shape == samples[0].labels.shape
    teach.toggle_checked(store, batch_id, 1)
    examples = teach.teach_examples(store, batch_id, "s")
    assert [e.name for e in examples] == ["img0.png", "img1.png"]
    assert examples[1].supervised_png is None and examples[1].region.startswith("whole image")
    teach.toggle_checked(store, batch_id, 1)
    assert len(teach.teach_examples(store, batch_id, "s")) == 1
    with pytest.raises(SaemiInputError, match="not part of this batch"):
        teach.toggle_checked(store, batch_id, 99)


def test_teach_reanalyses_the_other_images_and_keep_or_discard(batch, tmp_path):
    store, batch_id, _ = batch
    base_params = store.params(batch_id)
    before_counts = {row.index: row.n_particles for row in store.images(batch_id)}
    teach.start_teaching(store, batch_id, "s", minutes=0.03, seed=2)
    with pytest.raises(SaemiInputError, match="under way"):
        teach.start_teaching(store, batch_id, "s", minutes=0.03)
    state = _wait(store, batch_id, ("review",))
    assert state["steps"] >= 1 and "+ft." in state["version"] and state["indices"] == [1, 2]
    tuned = store.folder(batch_id) / "models" / state["model"]
    record = json.loads((tuned / "config.json").read_text())["training"]["finetune"]
    assert record["images"] == ["img0.png"] and record["regions"]["img0.png"].startswith("corrected region")
    assert record["seed"] == 2 and record["steps"] == state["steps"]
    assert store.params(batch_id).model_dir == str(tuned)
    # the other images were analysed again with the tuned model; the corrected one kept its correction
    rows = teach.before_after(store, batch_id, "exclude")
    assert [r["index"] for r in rows] == [1, 2] and all(state["version"] in r["model"] for r in rows)
    assert [r["before"] for r in rows] == [before_counts[1], before_counts[2]]
    assert store.current(batch_id, 0) is not None
    view = teach.teach_page(store, batch_id, "exclude")
    assert view.review and not view.polling and state["version"] in view.model and view.rows == rows
    before_fig, after_fig = view.overlays
    assert before_fig.data and after_fig.data
    assert view.revision == store.progress(batch_id).revision
    # the batch zip's CSVs name the tuned model
    with zipfile.ZipFile(io.BytesIO(batch_zip(store, batch_id, "exclude"))) as archive:
        header = archive.read("images/img1_particles.csv").decode()
    assert f"+ft.{state['version'].split('+ft.')[1]}" in header
    assert f"# param_model_dir: {state['model']}\n" in header and str(tmp_path) not in header  # no server path
    # discard puts the previous results and settings back
    teach.discard_tuned(store, batch_id)
    assert store.params(batch_id) == base_params and not tuned.exists()
    assert {row.index: row.n_particles for row in store.images(batch_id)} == before_counts
    assert "+ft." not in store.outcome(batch_id, 1).provenance["segmenter"]
    assert teach.status(store, batch_id)["status"] == "discarded"
    # teach again and keep
    teach.start_teaching(store, batch_id, "s", minutes=0.03, seed=2)
    state = _wait(store, batch_id, ("review",))
    teach.keep_tuned(store, batch_id)
    assert teach.status(store, batch_id)["status"] == "kept"
    assert "+ft." in store.outcome(batch_id, 2).provenance["segmenter"]
    with pytest.raises(SaemiInputError, match="Keep or Discard"):
        teach.discard_tuned(store, batch_id)


def test_cancel_keeps_nothing(batch):
    store, batch_id, _ = batch
    base_params = store.params(batch_id)
    teach.start_teaching(store, batch_id, "s", minutes=2)
    poll(lambda: teach.status(store, batch_id).get("step", 0) >= 1, "no step was taken", 120)
    assert teach.teach_view(store, batch_id).running
    teach.cancel_teaching(store, batch_id)
    state = _wait(store, batch_id, ("cancelled",), 60)
    assert "cancelled" in state["message"] and store.params(batch_id) == base_params
    assert not (store.folder(batch_id) / "models").exists()
    with pytest.raises(SaemiInputError, match="No fine-tune"):
        teach.cancel_teaching(store, batch_id)


def test_nothing_to_learn_from_gets_a_sentence(batch):
    store, batch_id, _ = batch
    with pytest.raises(SaemiInputError, match="Choose the sample"):
        teach.start_teaching(store, batch_id, "no such sample")
    store.set_samples(batch_id, {1: "t", 2: "t"})
    with pytest.raises(SaemiInputError, match="No image of sample 't' is corrected yet"):
        teach.start_teaching(store, batch_id, "t")


def _url(data: bytes) -> str:
    return "data:application/zip;base64," + base64.b64encode(data).decode()


def test_a_model_downloads_and_uploads_again(batch, tiny_model_dir):  # noqa: F811
    store, batch_id, _ = batch
    with pytest.raises(SaemiInputError, match="no tuned model"):
        store.set_params(batch_id, AnalysisParams(segmenter="unet", diameter_px=16.0))
        teach.model_download(store, batch_id)
    data = model_folder_zip(tiny_model_dir)
    sentence = teach.upload_model(store, batch_id, _url(data), "mine.zip")
    assert sentence.startswith("Model in use: the uploaded model") and "mine.zip" in sentence
    folder = store.params(batch_id).model_dir
    assert folder and os.path.basename(folder).startswith("upload-")
    payload = teach.model_download(store, batch_id)
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(payload["content"]))) as archive:
        assert sorted(archive.namelist()) == ["candidate_scorer.json", "config.json", "saemi_unet.keras"]


def _model_zip_with(tiny_model_dir, weights: bytes) -> bytes:  # noqa: F811
    files = {name: (tiny_model_dir / name).read_bytes() for name in ("config.json", "candidate_scorer.json")}
    return zip_bytes({**files, "saemi_unet.keras": weights})


def _keras_bytes(tmp_path, build) -> bytes:
    import keras

    inputs = keras.Input((None, None, 1))
    path = tmp_path / "m.keras"
    keras.Model(inputs, build(keras, inputs)).save(path)
    return path.read_bytes()


@pytest.mark.parametrize("kind, refusal", [
    ("lambda", "corrupted or unreadable"),
    ("shape", "one grayscale image and give three maps"),
    ("bomb", "would unpack to more than"),
    ("path", "folders or paths"),
    ("not a zip", "not a .zip"),
    ("no config", "has no config.json"),
    ("outside", "lacks ../../etc/passwd, which its config.json names"),
])
def test_a_malicious_or_wrong_model_upload_is_refused(batch, tiny_model_dir, tmp_path, kind, refusal):  # noqa: F811
    store, batch_id, _ = batch
    if kind == "lambda":
        data = _model_zip_with(tiny_model_dir, _keras_bytes(tmp_path, lambda keras, x: keras.layers.Lambda(
            lambda t: keras.ops.concatenate([t, t], axis=-1))(x)))
    elif kind == "shape":
        data = _model_zip_with(tiny_model_dir, _keras_bytes(tmp_path, lambda keras, x: keras.layers.Conv2D(2, 1)(x)))
    elif kind == "bomb":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            with archive.open("saemi_unet.keras", "w", force_zip64=True) as entry:
                for _ in range(MAX_UNPACKED_BYTES // (1 << 20) + 2):
                    entry.write(bytes(1 << 20))
        data = buffer.getvalue()
    elif kind == "path":
        data = zip_bytes({"../../evil/config.json": b"{}", "saemi_unet.keras": b"x"})
    elif kind == "outside":
        settings = json.loads((tiny_model_dir / "config.json").read_text())
        settings["input_scale"]["scorer_file"] = "../../etc/passwd"
        data = zip_bytes({"config.json": json.dumps(settings).encode(),
                     "saemi_unet.keras": (tiny_model_dir / "saemi_unet.keras").read_bytes()})
    elif kind == "not a zip":
        data = b"PK? not really"
    else:
        data = zip_bytes({"saemi_unet.keras": (tiny_model_dir / "saemi_unet.keras").read_bytes()})
    previous = store.params(batch_id)
    with pytest.raises(SaemiInputError, match=refusal) as refused:
        teach.upload_model(store, batch_id, _url(data), "evil.zip")
    assert str(refused.value).startswith("The model file 'evil.zip' was refused")
    assert store.params(batch_id) == previous
    assert not any((store.folder(batch_id) / "models").glob("upload-*"))


def test_a_killed_worker_leaves_the_previous_model_and_says_so(batch, monkeypatch):
    """Fault test: the Dask worker running the fine-tune is killed mid-way."""
    from distributed import Client, LocalCluster

    store, batch_id, _ = batch
    base_params = store.params(batch_id)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        monkeypatch.setenv(SCHEDULER_ENV, cluster.scheduler_address)
        teach.start_teaching(store, batch_id, "s", minutes=3)
        poll(lambda: teach.status(store, batch_id).get("step", 0) >= 1, "no step was taken", 180)
        pids = list(client.run(os.getpid).values())
        os.kill(pids[0], signal.SIGKILL)
        state = _wait(store, batch_id, ("interrupted", "failed"), 180)
        time.sleep(1)
    assert state["status"] == "interrupted" and "previous model stays in use" in state["message"]
    assert store.params(batch_id) == base_params
    assert not (store.folder(batch_id) / "models").exists()
    assert teach.teach_view(store, batch_id).text == state["message"]


def test_the_callbacks_answer_a_forged_batch_id_with_a_sentence():
    from app.callbacks import teach as cb
    from app.layout import ids

    forged = {"batch_id": "A" * 32}
    shown = cb.act(1, 0, 0, 0, "s", forged, trigger=ids.TEACH_BUTTON)
    assert shown["alert"].startswith("This batch is not on the server") and shown["poll"] is cb.no_update
    assert cb.upload_model(_url(b"x"), "m.zip", forged)["alert"].startswith("This batch is not on the server")
    assert cb.download_model(1, forged)["alert"].startswith("This batch is not on the server")
    assert cb.follow(1, forged, None, "exclude")["alert"].startswith("This batch is not on the server")
    assert cb.act(1, 0, 0, 0, "s", None, trigger=ids.TEACH_BUTTON)["alert"].startswith("Upload images")


def test_cancel_reaches_a_fine_tune_on_a_dask_worker(batch, monkeypatch):
    from distributed import LocalCluster

    store, batch_id, _ = batch
    base_params = store.params(batch_id)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        monkeypatch.setenv(SCHEDULER_ENV, cluster.scheduler_address)
        teach.start_teaching(store, batch_id, "s", minutes=3)
        poll(lambda: teach.status(store, batch_id).get("step", 0) >= 1, "no step was taken", 180)
        teach.cancel_teaching(store, batch_id)
        started = time.monotonic()
        state = _wait(store, batch_id, ("cancelled",), 60)
    assert time.monotonic() - started < 30 and state["steps"] < 1000  # stopped long before its 3 minutes
    assert store.params(batch_id) == base_params and not (store.folder(batch_id) / "models").exists()


def test_a_fine_tune_task_run_a_second_time_reports_interrupted():
    """What Dask does after a worker's death: the task runs again; it must not start the fine-tune over."""
    from distributed import Client, Event, LocalCluster

    from app.batch import TUNE_INTERRUPTED, TuneJob, _tune_on_worker

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        Event("saemi-tune-x-started", client=client).set()  # the first run got this far before its worker died
        outcome = client.submit(_tune_on_worker, TuneJob("x", {}, (), 1.0), "saemi-tune-x", pure=False).result()
    assert outcome.status == "interrupted" and outcome.message == TUNE_INTERRUPTED and not outcome.model_zip


def test_two_teach_presses_at_once_start_one_fine_tune(batch):
    import threading

    store, batch_id, _ = batch
    results, barrier = [], threading.Barrier(4)

    def press():
        barrier.wait()
        try:
            results.append(teach.start_teaching(store, batch_id, "s", minutes=0.02))
        except SaemiInputError as exc:
            results.append(exc)

    threads = [threading.Thread(target=press) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started = [r for r in results if isinstance(r, str)]
    assert len(started) == 1 and all("under way" in str(r) for r in results if r not in started)
    _wait(store, batch_id, ("review",))


def test_the_page_says_when_the_particle_scorer_is_refitted(batch):
    from model.finetune import REFITTING, TRAINING

    store, batch_id, _ = batch
    state = {"tune_id": "t", "status": "running", "images": ["img0.png"], "step": 40, "loss": 0.5,
             "seconds_left": 30.0, "minutes": 3}
    teach._write(store, batch_id, {**state, "phase": TRAINING})
    assert teach.teach_view(store, batch_id).text == ("Fine-tuning on 1 corrected images: step 40, loss 0.5000, "
                                                      "30 s left.")
    teach._write(store, batch_id, {**state, "phase": REFITTING})
    view = teach.teach_view(store, batch_id)
    assert view.text == ("Fine-tuned on 1 corrected images (40 steps); now refitting the particle scorer for the "
                         "tuned network: 30 s left.")
    assert view.running and view.polling
