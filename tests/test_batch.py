"""Samples: batches on Dask (local cluster, separate scheduler, a worker killed), pooling and the CLI's files."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from app.analysis.pipeline import AnalysisParams
from app.batch import ImageJob, batch_client, run_batch, sample_of
from app.config import REPO_ROOT
from model.synthetic import generate_sample

pytestmark = pytest.mark.slow

CLASSICAL = AnalysisParams(segmenter="classical", min_area_px=10)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jobs(n: int, size: int = 256) -> list[ImageJob]:
    return [ImageJob(k, f"img_{k}.png", _png(generate_sample(300 + k, size, size, modality="sem", data_bar=False,
                                                              scale_bar=False, letters=False).image))
            for k in range(n)]


def _by_index(outcomes) -> dict[int, tuple[bytes, str]]:
    result = {}
    for outcome in outcomes:
        assert outcome.error is None, outcome.error
        assert outcome.index not in result  # never twice
        result[outcome.index] = (outcome.labels_png, outcome.particles.to_csv())
    return result


def test_a_local_cluster_gives_the_sequential_results():
    jobs = _jobs(4)
    sequential = _by_index(run_batch(jobs, CLASSICAL))
    with batch_client(workers=2) as client:
        distributed = _by_index(run_batch(jobs, CLASSICAL, client=client))
    assert distributed == sequential


def test_the_unet_is_loaded_once_per_worker():
    jobs = _jobs(4, size=128)
    with batch_client(workers=2) as client:
        outcomes = list(run_batch(jobs, AnalysisParams(segmenter="unet", diameter_px=16.0), client=client))

        def loads() -> int:
            from model.loading import load_shipped_model

            return load_shipped_model.cache_info().misses

        per_worker = client.run(loads)
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3] and all(o.error is None for o in outcomes)
    assert list(per_worker.values()) == [1, 1]  # at start-up by the plugin, never per image


def test_a_separate_scheduler_and_worker_give_the_sequential_results(tmp_path):
    jobs = _jobs(3)
    sequential = _by_index(run_batch(jobs, CLASSICAL))
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(scheduler_file)], cwd=REPO_ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        processes.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard",
                                           "--host", "127.0.0.1"], cwd=REPO_ROOT, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with batch_client(address) as client:
            client.wait_for_workers(1, timeout=60)
            distributed = _by_index(run_batch(jobs, CLASSICAL, client=client))
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)
    assert distributed == sequential


def test_a_batch_survives_a_killed_worker_without_losing_or_repeating_an_image():
    jobs = _jobs(8)
    sequential = _by_index(run_batch(jobs, CLASSICAL))
    outcomes, killed = [], []
    with batch_client(workers=2) as client:
        for outcome in run_batch(jobs, CLASSICAL, client=client):
            outcomes.append(outcome)
            if not killed:
                victim = outcome.worker_pid
                os.kill(victim, signal.SIGKILL)  # the worker that just delivered; its nanny restarts it
                killed.append(victim)
    assert killed
    assert _by_index(outcomes) == sequential
    assert len(outcomes) == len(jobs)


def test_samples_are_named_by_the_first_group_of_the_pattern():
    assert sample_of("pH4_003.png", r"(.*)_\d+$") == "pH4"
    assert sample_of("x.png", None) == "sample"
    from app.analysis.errors import SaemiInputError

    with pytest.raises(SaemiInputError, match="does not match"):
        sample_of("other.png", r"(.*)_\d+$")


def test_cli_pools_images_into_samples(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    truth = {}
    for sample, median_px in (("small", 14.0), ("large", 22.0)):
        for k in range(2):
            generated = generate_sample(400 + k + int(median_px), 384, 384, modality="sem",
                                        median_diameter_px=median_px, sigma_log=0.1, arrangement="isolated",
                                        data_bar=False, scale_bar=False, letters=False)
            (folder / f"{sample}_{k}.png").write_bytes(_png(generated.image))
            truth[sample] = median_px
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "app", "analyze", str(folder), "--out", str(out),
                           "--segmenter", "classical", "--nm-per-px", "2.0", "--sample-by", r"(.*)_\d+$",
                           "--workers", "0"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(out / "summary.csv", comment="#")
    pooled = pd.read_csv(out / "pooled_particles.csv", comment="#")
    assert sorted(summary["sample"]) == ["large", "large", "small", "small"]
    assert len(pooled) == int(summary["n_detected"].sum())  # every particle of every image, once
    assert pooled.groupby("image").size().to_dict() == dict(zip(summary["image"], summary["n_detected"]))
    samples = pd.read_csv(out / "samples.csv", comment="#")
    rows = samples[samples["row"] == "sample"].set_index("sample")
    for name in ("small", "large"):
        kept = pooled[(pooled["sample"] == name) & ~pooled["touches_edge"]]
        assert rows.loc[name, "n_particles"] == len(kept)
        assert rows.loc[name, "d50_nm"] == pytest.approx(np.median(kept["ecd_nm"]))
        assert rows.loc[name, "d50_nm_ci95_low"] < rows.loc[name, "d50_nm"] < rows.loc[name, "d50_nm_ci95_high"]
    comparison = samples[samples["row"] == "comparison"].iloc[0]
    assert (comparison["sample_a"], comparison["sample_b"]) == ("large", "small")
    assert comparison["ks_pvalue"] < 0.01 and "smaller than that of large" in comparison["summary"]


def test_queued_images_start_heaviest_first():
    """Images of fine particles (more work for the U-Net) are started before coarse ones, whatever
    their order in the batch: the batch is submitted to a cluster with no worker, then one joins."""
    import threading

    from distributed import Client, LocalCluster

    diameters = [24, 6, 48, 12]
    jobs = [ImageJob(k, f"img_{k}.png", _png(generate_sample(310 + k, 256, 256, modality="tem", median_diameter_px=d,
                                                              sigma_log=0.1, data_bar=False, scale_bar=False,
                                                              letters=False).image))
            for k, d in enumerate(diameters)]
    with LocalCluster(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        def join_when_all_queued() -> None:
            while client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) < len(jobs):
                time.sleep(0.05)
            cluster.scale(1)

        joiner = threading.Thread(target=join_when_all_queued)
        joiner.start()
        order = [outcome.index for outcome in run_batch(jobs, CLASSICAL, client=client)]
        joiner.join()
    assert [diameters[k] for k in order] == sorted(diameters)
