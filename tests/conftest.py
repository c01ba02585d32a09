"""Shared fixtures: small generated test images and the headless Chromium setup for dash_duo."""

from __future__ import annotations

import io
import os
import tempfile
import time

import numpy as np
import pytest
from PIL import Image

# The key that signs the page's stored data is generated into a folder of the test run, not the user's cache.
os.environ.setdefault("SAEMI_DATA_DIR", tempfile.mkdtemp(prefix="saemi-test-data-"))

#: Centres (row, col) and radius of the bright discs in :func:`disc_image`.
DISC_CENTRES = ((60, 60), (60, 160), (60, 260), (180, 60), (180, 160), (180, 260))
DISC_RADIUS_PX = 14
DISC_SHAPE = (256, 320)


def pytest_configure(config):
    _load_plotly_eagerly()


def _load_plotly_eagerly():
    """Build each kind of figure once before any test runs.

    plotly imports its graph-object classes lazily on first use. A dash_duo server thread still
    answering a callback when the next test starts can import them at the same moment as the test's
    own thread, and concurrent first imports of plotly's lazy modules can deadlock on Python's import
    locks (seen here: the suite hung). Importing them once, up front and in one thread, removes the race.
    """
    from app.figures import histogram_figure, label_colour_image, overlay_figure

    labels = np.zeros((8, 8), np.int32)
    labels[2:5, 2:5] = 1
    histogram_figure(np.array([1.0, 2.0, 2.5, 3.0]), bin_width=0.5, unit="nm")
    histogram_figure(np.zeros(0), bin_width=1.0)
    overlay_figure(np.zeros((8, 8), np.uint8), labels, opacity=0.5, mode="fill")
    label_colour_image(labels, mode="colour")


def pytest_setup_options():
    """Chrome options for dash_duo: headless and sandbox-free, as on a CI container."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--window-size=1400,1800"):
        options.add_argument(argument)
    return options


def disc_image(seed: int = 0) -> np.ndarray:
    """Six separate bright discs (radius 14 px) on a dark, slightly noisy 320 x 256 background, uint8."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: DISC_SHAPE[0], : DISC_SHAPE[1]]
    image = np.full(DISC_SHAPE, 40.0) + rng.normal(0.0, 4.0, DISC_SHAPE)
    for row, col in DISC_CENTRES:
        image[(rows - row) ** 2 + (cols - col) ** 2 <= DISC_RADIUS_PX**2] = 200.0
    return np.clip(image, 0, 255).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    """Encode an array as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def disc_png(tmp_path):
    """Path of :func:`disc_image` saved as PNG."""
    path = tmp_path / "discs.png"
    path.write_bytes(png_bytes(disc_image()))
    return path


def poll(predicate, message: str, timeout_s: float = 30.0):
    """Return ``predicate()`` once it is truthy, retrying every 0.1 s; fail with ``message`` after ``timeout_s``.

    Exceptions count as "not yet": the page may be re-rendering the element being read.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - retried until the deadline
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(message)


@pytest.fixture(scope="session", autouse=True)
def dask_offload_thread_before_any_page():
    """Start Dask's offload thread before any page test starts a server.

    dash.testing stops its threaded Flask server by raising SystemExit in every thread that started after
    the server's own (``KillerThread.kill``). Dask's offload thread (one per process, started on first use,
    used by every scheduler and client to read task graphs) was one of them when a page test had used a
    Dask cluster first; once killed, every later batch in the process waited for it forever.
    """
    from distributed.utils import _offload_executor

    _offload_executor.submit(lambda: None).result()
    yield
