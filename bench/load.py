"""Load and fault test of the real server: ``python bench/load.py [--sessions 20] [--kill-worker]``.

Starts gunicorn as ``make run`` does (``-c python:app.gunicorn_conf ... app.wsgi:server``) on a free
loopback port, with a fresh ``SAEMI_DATA_DIR`` (so the workers must agree on the key they generate),
and drives it through Dash's HTTP callback endpoint (``/_dash-update-component``) as the browser
does. Each simulated session uploads its own generated image (a different number of discs), reads
its results, paints one new particle on the canvas, reads the results again and downloads its CSV.
The CSV must name the session's own file and SHA-256 and count its own particles: anything else is
a cross-session leak.

With ``--kill-worker`` one gunicorn worker is killed with SIGKILL while requests are in flight. A
request cut off by it is retried once, as a user would press again; the other sessions carry on, and
the key file on disk (the only thing stored server-side) must be unchanged.

The run is bounded: ``--sessions`` sessions of five steps each, and ``--max-seconds`` in all, after
which the server is stopped. Prints requests, errors, leaks and p50/p95 latency; exits 1 unless
there are 0 errors and 0 leaks. ``--segmenter classical`` (default) keeps the CPU low; ``unet``
loads the network in each worker.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHAPE = (256, 320)


def disc_image(n_discs: int, seed: int) -> np.ndarray:
    """``n_discs`` bright discs (radius 12 px) on a noisy dark background, in a grid, uint8."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    image = np.full(SHAPE, 40.0) + rng.normal(0.0, 4.0, SHAPE)
    for index in range(n_discs):
        row, col = 30 + 45 * (index // 6), 30 + 50 * (index % 6)
        image[(rows - row) ** 2 + (cols - col) ** 2 <= 12**2] = 200.0
    return np.clip(image, 0, 255).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


class Client:
    """Calls the page's callbacks over HTTP, found by their outputs in ``/_dash-dependencies``."""

    def __init__(self, base_url: str, timeout_s: float):
        self.base_url, self.timeout_s = base_url, timeout_s
        self.http = requests.Session()
        self.callbacks = self.http.get(f"{base_url}/_dash-dependencies", timeout=timeout_s).json()

    def _spec(self, output_prefix: str) -> dict:
        return next(cb for cb in self.callbacks if cb["output"].lstrip(".").startswith(output_prefix))

    def call(self, output_prefix: str, values: dict, changed: str) -> dict:
        """Run the callback whose first output starts with ``output_prefix``; ``values`` by "id.property"."""
        spec = self._spec(output_prefix)
        outputs = []
        for item in spec["output"].strip(".").split("..."):
            component, _, prop = item.rpartition(".")
            outputs.append({"id": component, "property": prop})

        def filled(items):
            return [{**item, "value": values.get(f"{item['id']}.{item['property']}")} for item in items]

        body = {"output": spec["output"], "outputs": outputs, "inputs": filled(spec["inputs"]),
                "state": filled(spec["state"]), "changedPropIds": [changed]}
        response = self.http.post(f"{self.base_url}/_dash-update-component", json=body, timeout=self.timeout_s)
        response.raise_for_status()
        answer = response.json()["response"]
        return {f"{component}.{prop.split('@')[0]}": value
                for component, props in answer.items() for prop, value in props.items()}


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.cut_off: list[str] = []
        self.leaks: list[str] = []


def run_session(index: int, base_url: str, tally: Tally, deadline: float, timeout_s: float) -> None:
    n_discs = 4 + index % 18
    image = png_bytes(disc_image(n_discs, seed=index))
    filename = f"session{index:02d}.png"
    sha256 = hashlib.sha256(image).hexdigest()
    client = Client(base_url, timeout_s)
    stores: dict = {}
    page = {"segmenter.value": "classical", "diameter-px.value": None, "split-touching.value": ["split"],
            "min-area-px.value": 10, "data-bar-mode.value": "off", "data-bar-rows.value": None,
            "scale-bar-label.value": None, "views.value": [], "upload.filename": [filename],
            "upload.contents": ["data:image/png;base64," + base64.b64encode(image).decode()],
            "canvas.trigger": 1, "undo-button.n_clicks": 0, "redo-button.n_clicks": 0, "edge-mode.value": "exclude",
            "download-csv-button.n_clicks": 1}
    canvas = json.dumps({"objects": [{"type": "image", "scaleX": 2.0}, {
        "type": "path", "stroke": "#00e000", "strokeWidth": 16, "path": [["M", 600, 480], ["L", 616, 480]]}]})

    def step(name: str, output_prefix: str, changed: str) -> dict:
        for attempt in (1, 2):
            if time.monotonic() > deadline:
                raise TimeoutError("the run's time limit was reached")
            started = time.perf_counter()
            try:
                answer = client.call(output_prefix, {**page, **stores, "canvas.json_data": canvas}, changed)
            except requests.ConnectionError as exc:  # the worker answering was killed: press again once
                with tally.lock:
                    tally.cut_off.append(f"session {index} {name}: {type(exc).__name__}")
                if attempt == 2:
                    raise
                time.sleep(1.0)
                continue
            with tally.lock:
                tally.latencies.append(time.perf_counter() - started)
            alert = answer.get("alert.children")
            if alert:
                raise RuntimeError(f"{name}: the page says {alert!r}")
            return answer
        raise AssertionError("unreachable")

    try:
        answer = step("upload", "store-source.data", "upload.contents")
        stores.update({key: value for key, value in answer.items() if key.startswith("store-")})
        stores.update(step("results", "store-results.data", "store-analysis.data"))
        stores.update({k: v for k, v in step("edit", "store-edits.data", "canvas.trigger").items()
                       if k.startswith("store-")})
        stores.update(step("results after the edit", "store-results.data", "store-edits.data"))
        sent = step("download", "download.data", "download-csv-button.n_clicks")["download.data"]
        check_csv(sent["content"], filename, sha256, n_discs + 1, index, tally)
    except Exception as exc:  # noqa: BLE001 - every failure of a session is counted and printed
        with tally.lock:
            tally.errors.append(f"session {index}: {type(exc).__name__}: {exc}"[:300])


def check_csv(text: str, filename: str, sha256: str, n_particles: int, index: int, tally: Tally) -> None:
    header = dict(line[2:].split(": ", 1) for line in text.splitlines() if line.startswith("# "))
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    problems = []
    if header.get("file") != filename or header.get("sha256") != sha256:
        problems.append(f"names {header.get('file')} {header.get('sha256', '')[:12]}")
    if len(rows) != n_particles or header.get("canvas_edits") != "1":
        problems.append(f"{len(rows)} particles and {header.get('canvas_edits')} edits, not {n_particles} and 1")
    if problems:
        with tally.lock:
            tally.leaks.append(f"session {index} ({filename}): " + "; ".join(problems))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_pids(master_pid: int) -> list[int]:
    path = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--segmenter", choices=["classical", "unet"], default="classical")
    parser.add_argument("--max-seconds", type=float, default=240.0, help="the whole run stops after this")
    parser.add_argument("--kill-worker", action="store_true", help="SIGKILL one worker while requests are in flight")
    args = parser.parse_args(argv)

    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="saemi-load-"))
    env = {**os.environ, "SAEMI_DATA_DIR": str(data_dir), "SAEMI_SEGMENTER": args.segmenter,
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("SAEMI_SECRET_KEY", None)
    command = [str(REPO / ".venv/bin/gunicorn"), "-c", "python:app.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
               "--workers", str(args.workers), "--timeout", "300", "app.wsgi:server"]
    log = open(data_dir / "gunicorn.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + args.max_seconds
    base_url = f"http://127.0.0.1:{port}"
    tally = Tally()
    killed = None
    try:
        while time.monotonic() < deadline:
            try:
                if requests.get(base_url + "/_dash-dependencies", timeout=5).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.sessions) as pool:
            futures = [pool.submit(run_session, i, base_url, tally, deadline, 120.0) for i in range(args.sessions)]
            if args.kill_worker:
                time.sleep(1.5)  # uploads are being analysed now
                key_before = (data_dir / "secret_key").read_bytes()
                killed = worker_pids(server.pid)[0]
                os.kill(killed, signal.SIGKILL)
            for future in futures:
                future.result()
        wall = time.perf_counter() - started
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    latencies = np.array(tally.latencies) if tally.latencies else np.array([np.nan])
    print(f"gunicorn, {args.workers} workers, segmenter {args.segmenter}, {args.sessions} sessions, "
          f"{wall:.1f} s")
    print(f"requests: {len(tally.latencies)} answered, {len(tally.cut_off)} cut off by the killed worker "
          f"(retried), errors: {len(tally.errors)}, leaks: {len(tally.leaks)}")
    p50, p95 = np.percentile(latencies, [50, 95]) * 1000
    print(f"latency: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {latencies.max() * 1000:.0f} ms")
    intact = True
    if killed is not None:
        intact = (data_dir / "secret_key").read_bytes() == key_before
        print(f"killed worker {killed} with SIGKILL; key file on disk unchanged: {intact}")
    for line in tally.errors + tally.leaks + tally.cut_off:
        print("  " + line)
    return 0 if not tally.errors and not tally.leaks and intact else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
