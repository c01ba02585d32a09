"""The samples view's batches on the server: stored, read back by another worker, resubmitted, expired,
and bad ids refused."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from app.analysis.errors import SaemiInputError
from app.analysis.pipeline import AnalysisParams
from app.batch import analyze_job
from app.session import batchrun
from app.session.batchstore import BatchStore, CurrentImage, NewImage, image_ref, parse_image_ref
from tests.conftest import disc_image, png_bytes

PARAMS = AnalysisParams(segmenter="classical", min_area_px=10, nm_per_px=2.0)


@pytest.fixture
def store(tmp_path):
    return BatchStore(tmp_path / "batches", ttl_s=3600)


def _images(n: int = 2) -> list[NewImage]:
    return [NewImage(f"disc_{k}.png", png_bytes(disc_image(k)), sample="A" if k % 2 == 0 else "B") for k in range(n)]


def test_nothing_is_written_before_the_first_batch(tmp_path):
    BatchStore(tmp_path / "batches")
    assert not (tmp_path / "batches").exists()


def test_a_batch_is_stored_and_read_back_by_another_worker(store, tmp_path):
    images = _images(2) + [NewImage("disc_0.png", b"other bytes", "JEOL sidecar", "A")]
    batch_id = store.create(images, PARAMS)
    other = BatchStore(tmp_path / "batches", ttl_s=3600)  # another gunicorn worker: its own store, same folder
    assert other.check_id(batch_id) == batch_id
    assert other.params(batch_id) == PARAMS
    rows = other.images(batch_id)
    assert [(r.name, r.sample, r.status) for r in rows] == [
        ("disc_0.png", "A", "queued"), ("disc_1.png", "B", "queued"), ("disc_0_2.png", "A", "queued")]
    # a repeated name is made unique
    job = other.job(batch_id, 2)
    assert (job.data, job.sidecar_text) == (b"other bytes", "JEOL sidecar")
    assert other.unfinished(batch_id) == [0, 1, 2]


def test_an_outcome_saved_by_one_worker_is_read_whole_by_another(store, tmp_path):
    batch_id = store.create(_images(2), PARAMS)
    before = store.progress(batch_id)
    outcome = analyze_job(store.job(batch_id, 0), PARAMS)
    store.set_stage(batch_id, 1, "Thresholding")
    store.save_outcome(batch_id, outcome)
    other = BatchStore(tmp_path / "batches", ttl_s=3600)
    progress = other.progress(batch_id)
    assert (progress.total, progress.done, progress.failed) == (2, 1, 0)
    assert progress.stage == "disc_1.png: Thresholding"
    assert progress.revision > before.revision
    read = other.outcome(batch_id, 0)
    assert read.labels_png == outcome.labels_png
    pd.testing.assert_frame_equal(read.particles, outcome.particles, check_dtype=False)
    assert read.provenance == outcome.provenance and read.measures == outcome.measures
    assert (read.shape, read.frame) == (tuple(outcome.shape), tuple(outcome.frame))
    assert other.images(batch_id)[0].n_particles == len(outcome.particles) == 6


def test_a_failed_image_keeps_its_sentence_and_the_others_go_on(store):
    batch_id = store.create([NewImage("broken.png", b"not an image"), *_images(1)], PARAMS)
    store.save_outcome(batch_id, analyze_job(store.job(batch_id, 0), PARAMS))
    row = store.images(batch_id)[0]
    assert row.status == "failed" and row.error and "image" in row.error.lower()
    assert store.unfinished(batch_id) == [1]
    with pytest.raises(SaemiInputError, match="could not be analysed"):
        store.outcome(batch_id, 0)


def test_corrections_exclusions_and_samples_are_kept(store, tmp_path):
    batch_id = store.create(_images(2), PARAMS)
    outcome = analyze_job(store.job(batch_id, 0), PARAMS)
    store.save_outcome(batch_id, outcome)
    fewer = outcome.particles.iloc[:4]
    store.save_current(batch_id, 0, CurrentImage(b"png", fewer, 2.5, {"file": "disc_0.png"}, {"a": 1}, {"cursor": 1}))
    store.set_excluded(batch_id, 1, True)
    store.set_samples(batch_id, {0: "  renamed "})
    other = BatchStore(tmp_path / "batches", ttl_s=3600)
    current = other.current(batch_id, 0)
    assert len(current.particles) == 4 and current.nm_per_px == 2.5 and current.edits == {"cursor": 1}
    assert [(r.sample, r.excluded) for r in other.images(batch_id)] == [("renamed", False), ("B", True)]
    with pytest.raises(SaemiInputError, match="sample name"):
        store.set_samples(batch_id, {0: ""})
    with pytest.raises(SaemiInputError, match="not part of this batch"):
        store.set_excluded(batch_id, 7, True)


@pytest.mark.parametrize("bad", [None, "", 3, {"id": 1}, "../../etc/passwd", "A" * 31, "A" * 33, "A" * 31 + "/",
                                 "A" * 31 + "."])
def test_malformed_ids_are_refused(store, bad):
    with pytest.raises(SaemiInputError, match="not on the server"):
        store.check_id(bad)


def test_an_unknown_well_formed_id_is_refused(store):
    store.create(_images(1), PARAMS)
    with pytest.raises(SaemiInputError, match="not on the server"):
        store.check_id("A" * 32)


def test_image_references_are_checked():
    assert parse_image_ref(image_ref("B" * 32, 12)) == ("B" * 32, 12)
    for bad in ("B" * 32, "B" * 32 + "/-1", "../x/1", None, "B" * 32 + "/1/2"):
        with pytest.raises(SaemiInputError):
            parse_image_ref(bad)


def test_old_batches_expire(store):
    old = store.create(_images(1), PARAMS)
    folder = store.folder(old)
    assert folder.is_dir()
    assert store.expire(now=time.time() + 3601) == [old]
    assert not folder.exists()
    with pytest.raises(SaemiInputError, match="not on the server"):
        store.check_id(old)


def test_an_expired_batch_is_refused_before_it_is_swept(tmp_path):
    short = BatchStore(tmp_path / "batches", ttl_s=0.5)
    batch_id = short.create(_images(1), PARAMS)
    time.sleep(0.6)
    with pytest.raises(SaemiInputError, match="not on the server"):
        short.check_id(batch_id)
    short.create(_images(1), PARAMS)  # a new batch sweeps the old ones
    assert not short.folder(batch_id).exists()


def test_one_runner_at_a_time_and_a_silent_one_is_replaced(store):
    batch_id = store.create(_images(1), PARAMS)
    assert store.claim(batch_id, "worker-1", stale_s=20)
    assert not store.claim(batch_id, "worker-2", stale_s=20)
    assert store.heartbeat(batch_id, "worker-1") and not store.heartbeat(batch_id, "worker-2")
    time.sleep(0.05)
    assert store.claim(batch_id, "worker-2", stale_s=0.01)  # worker-1 went silent
    assert not store.heartbeat(batch_id, "worker-1")
    store.release(batch_id, "worker-2")
    assert store.claim(batch_id, "worker-3", stale_s=20)


def test_images_of_a_gone_runner_are_resubmitted_by_the_next_worker_that_polls(store, tmp_path):
    batch_id = store.create(_images(3), PARAMS)
    store.save_outcome(batch_id, analyze_job(store.job(batch_id, 0), PARAMS))
    assert store.claim(batch_id, "a-worker-that-died", stale_s=20)
    other = BatchStore(tmp_path / "batches", ttl_s=3600)
    assert batchrun.ensure_running(other, batch_id) is None  # its runner looks alive still
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batchrun, "STALE_S", 0.0)
        thread = batchrun.ensure_running(other, batch_id)
    assert thread is not None
    thread.join(timeout=60)
    progress = other.progress(batch_id)
    assert (progress.done, progress.total) == (3, 3)
    counts = [row.n_particles for row in other.images(batch_id)]
    assert counts == [6, 6, 6]
    assert np.all(other.outcome(batch_id, 2).particles["ecd_nm"] > 0)


@pytest.mark.slow
def test_the_runner_sends_the_images_to_the_cluster_of_saemi_scheduler_and_hears_their_stages(store, monkeypatch):
    from distributed import Client, LocalCluster

    from app.batch import SCHEDULER_ENV, STARTED, run_batch

    batch_id = store.create(_images(2), PARAMS)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        heard = []
        with Client(cluster) as client:
            jobs = [store.job(batch_id, index) for index in (0, 1)]
            outcomes = list(run_batch(jobs, PARAMS, client=client, on_stage=lambda *event: heard.append(event)))
            deadline = time.monotonic() + 10
            while {event[0] for event in heard} != {0, 1} and time.monotonic() < deadline:
                time.sleep(0.1)
        assert sorted(o.index for o in outcomes) == [0, 1]
        assert {(index, message) for index, _, message in heard} >= {(0, STARTED), (1, STARTED), (0, "Thresholding")}
        monkeypatch.setenv(SCHEDULER_ENV, cluster.scheduler_address)
        seen = []
        monkeypatch.setattr(batchrun, "run_batch", lambda *a, **k: (seen.append(k["client"]), *run_batch(*a, **k))[1:])
        thread = batchrun.ensure_running(store, batch_id)
        thread.join(timeout=60)
    assert seen and seen[0] is not None  # a client of the cluster, not the web worker itself
    assert store.progress(batch_id).done == 2
