"""Analysing a stored batch in the background: a thread in the web worker that feeds Dask.

:func:`ensure_running` is called whenever a page asks how a batch stands. When the batch has images not
analysed yet and no runner has shown life for :data:`STALE_S` seconds (none started yet, or the web
worker that ran it is gone), this process claims it in the index (:meth:`BatchStore.claim`, one
transaction, so one worker wins) and starts a daemon thread. The thread sends the unfinished images,
read back from the batch's folder, to the Dask cluster of ``SAEMI_SCHEDULER`` (without one, it
analyses them itself, one after the other), records each image's stage as the workers report it, and
stores each outcome as it completes. A second thread beats the heart of the claim meanwhile. The page
reads the progress from the index, so any worker can answer it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading

from app.batch import SCHEDULER_ENV, batch_client, run_batch
from app.session.batchstore import BatchStore

logger = logging.getLogger(__name__)

#: Seconds between two heartbeats of a runner.
HEARTBEAT_S = 2.0
#: A runner silent for this long is taken for gone, and its batch's unfinished images are resubmitted.
STALE_S = 20.0
#: The sentence for the images left when the cluster cannot be used.
CLUSTER_FAILED = ("The analysis cluster could not be reached or failed, so this image was not analysed; "
                  "please upload it again.")


def _client():
    """A client of the cluster at ``$SAEMI_SCHEDULER``, or none (the images are then analysed in this thread)."""
    if os.environ.get(SCHEDULER_ENV):
        return batch_client()
    return contextlib.nullcontext(None)


def _beat(store: BatchStore, batch_id: str, runner: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            if not store.heartbeat(batch_id, runner):
                return
        except Exception:  # noqa: BLE001 - a missed beat is retried; logged
            logger.warning("Heartbeat of batch %s failed", batch_id, exc_info=True)


def _run(store: BatchStore, batch_id: str, runner: str) -> None:
    stop = threading.Event()
    beating = threading.Thread(target=_beat, args=(store, batch_id, runner, stop), daemon=True,
                               name=f"saemi-beat-{batch_id[:6]}")
    beating.start()
    try:
        params = store.params(batch_id)
        jobs = [store.job(batch_id, index) for index in store.unfinished(batch_id)]

        def on_stage(index: int, fraction: float, message: str) -> None:
            store.set_stage(batch_id, index, f"{message} ({100 * fraction:.0f}%)" if fraction else message)

        with _client() as client:
            for outcome in run_batch(jobs, params, client=client, on_stage=on_stage):
                store.save_outcome(batch_id, outcome)
    except Exception:  # noqa: BLE001 - the batch's page shows a sentence per image; the details are logged
        logger.exception("Batch %s stopped", batch_id)
        with contextlib.suppress(Exception):
            store.fail_unfinished(batch_id, CLUSTER_FAILED)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            store.release(batch_id, runner)


def ensure_running(store: BatchStore, batch_id: str) -> threading.Thread | None:
    """Start analysing the batch's unfinished images in this process, unless a live runner has them.

    Returns the thread started, or None (nothing to do, or another runner is alive).
    """
    if not store.unfinished(batch_id):
        return None
    runner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    if not store.claim(batch_id, runner, stale_s=STALE_S):
        return None
    thread = threading.Thread(target=_run, args=(store, batch_id, runner), daemon=True,
                              name=f"saemi-batch-{batch_id[:6]}")
    thread.start()
    return thread
