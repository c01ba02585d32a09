"""State the browser cannot forge: signed stores, the request body limit, forged callback inputs.

The property-based tests run ``FUZZ_EXAMPLES * SAEMI_FUZZ_SCALE`` cases each (see tests/limits.py).
"""

from __future__ import annotations

import io
import json
import multiprocessing
import stat
import time

import numpy as np
import pytest
from dash import no_update
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

from app import config
from app.analysis.errors import SaemiInputError
from app.callbacks import analysis as analysis_cb
from app.callbacks import canvas as canvas_cb
from app.callbacks import views as views_cb
from app.layout import ids
from app.session import signing
from app.session.edits import current_labels
from app.session.results import compute_results
from app.session.start import PageSettings, start_session
from app.session.stores import DAMAGED_STORE, AnalysisState, EditsState, GrayState, ResultsState, Source
from tests.conftest import disc_image, png_bytes
from tests.limits import fuzz_examples, memory_cap
from tests.stores import plain, tampered

SETTINGS = PageSettings(segmenter="classical", min_area_px=10, data_bar_mode="off")
STORES = ("source", "analysis", "gray", "edits", "results")


def fuzz(examples: int) -> settings:
    return settings(max_examples=fuzz_examples(examples), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def payloads() -> dict:
    """One signed payload of each store, from a real analysis of the disc image."""
    started = start_session(png_bytes(disc_image()), "discs.png", SETTINGS)
    results = compute_results(started.analysis, started.gray, started.edits, 2.0)
    return {"source": Source("upload", "discs.png").to_store(), "analysis": started.analysis.to_store(),
            "gray": started.gray.to_store(), "edits": started.edits.to_store(), "results": results.to_store()}


def read(store: str, payload, shape=(256, 320)):
    """Read a store as the callbacks do, down to its pixels and table."""
    if store == "source":
        return Source.from_store(payload)
    if store == "analysis":
        state = AnalysisState.from_store(payload)
        return None if state is None else (state.labels(), state.particles())
    if store == "gray":
        state = GrayState.from_store(payload)
        return None if state is None else state.image(shape)
    if store == "edits":
        analysis = AnalysisState(labels_png=plain("analysis", _ANALYSIS[0])["labels_png"], particles_json="",
                                 shape=shape, frame=(0, shape[0]), filename="x", sha256="", source_dtype="uint8",
                                 mode="gray", segmenter="classical", params=SETTINGS.to_params(),
                                 calibration=_CALIBRATION, data_bar=None)
        return current_labels(analysis, EditsState.from_store(payload))
    state = ResultsState.from_store(payload, shape)
    return None if state is None else (state.labels(), state.particles())


_ANALYSIS: list = []
_CALIBRATION = __import__("app.analysis.calibration", fromlist=["Calibration"]).Calibration(None, "none", "")


@pytest.fixture(autouse=True)
def _remember_analysis(payloads):
    _ANALYSIS[:] = [payloads["analysis"]]


@pytest.mark.parametrize("store", STORES)
def test_each_store_reads_back_what_the_server_signed(payloads, store):
    assert read(store, payloads[store]) is not None or store == "edits"


@pytest.mark.parametrize("store, change", [
    ("source", {"kind": "demo"}), ("analysis", {"shape": [13000, 13000]}), ("analysis", {"filename": "=evil()"}),
    ("gray", {"png": "AAAA"}), ("edits", {"cursor": 0, "batches": [[{"tool": "draw", "points": [[1, 1]],
                                                                      "width_px": 1e9}]]}),
    ("results", {"n_edits": 99}),
])
def test_a_modified_store_is_refused_with_the_sentence(payloads, store, change):
    with pytest.raises(SaemiInputError, match="changed") as refused:
        read(store, tampered(store, payloads[store], **change))
    assert str(refused.value).startswith(DAMAGED_STORE)


@pytest.mark.parametrize("store", STORES)
def test_a_store_is_refused_in_another_store_with_another_key_or_when_stale(payloads, store, monkeypatch):
    other = "results" if store == "analysis" else "analysis"
    with pytest.raises(SaemiInputError, match="changed"):
        read(store, payloads[other])
    monkeypatch.setattr(config, "STORE_MAX_AGE_S", -1)
    with pytest.raises(SaemiInputError, match="expired"):
        read(store, payloads[store])
    monkeypatch.undo()
    monkeypatch.setattr(signing, "secret_key", lambda: b"another server's key")
    with pytest.raises(SaemiInputError, match="changed"):
        read(store, payloads[store])


@fuzz(200)
@given(store=st.sampled_from(STORES), data=st.data())
def test_a_token_with_any_character_changed_is_refused(payloads, store, data):
    token = payloads[store][signing.SIGNED_KEY]
    at = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.characters(codec="utf-8").filter(lambda c: c != token[at]))
    with pytest.raises(SaemiInputError, match="changed|not signed"):
        read(store, {signing.SIGNED_KEY: token[:at] + char + token[at + 1:]})


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
                     | st.text(max_size=12),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                  max_size=4), max_leaves=16)


def _payload_like(store: str, payloads) -> st.SearchStrategy:
    """The store's own keys with any JSON values, or the real values with a few replaced."""
    base = plain(store, payloads[store])
    return st.one_of(
        st.fixed_dictionaries({key: _JSON for key in base}),
        st.dictionaries(st.sampled_from(sorted(base)), _JSON, max_size=3).map(lambda c: {**base, **c}),
        _JSON,
    )


@fuzz(300)
@given(store=st.sampled_from(STORES), data=st.data())
def test_any_payload_even_signed_with_a_leaked_key_works_or_gets_the_sentence(payloads, store, data):
    """What a forger with the server's key could send: still checked for keys, types, sizes and ids."""
    forged = data.draw(_payload_like(store, payloads))
    for payload in (forged, signing.sign(store, forged)):
        with memory_cap():
            try:
                read(store, payload)
            except SaemiInputError as exc:
                assert str(exc).startswith(DAMAGED_STORE) or len(str(exc)) > 20


def test_the_generated_key_is_private_shared_and_kept(tmp_path):
    folder = tmp_path / "data"
    with multiprocessing.get_context("spawn").Pool(4) as pool:  # as gunicorn workers starting together
        keys = pool.map(signing.load_or_create_secret, [folder] * 8)
    assert len(set(keys)) == 1 and len(keys[0]) == 64
    path = folder / signing.SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signing.load_or_create_secret(folder) == keys[0]
    assert [p.name for p in folder.iterdir()] == [signing.SECRET_FILE]  # no temporary file left


# ------------------------------------------------------------------------------------- request body
def test_a_1_gb_request_body_is_refused_before_it_is_read():
    from app.webapp import create_app

    server = create_app(default_segmenter="classical").server
    sent = []

    class Body(io.RawIOBase):
        """A body that claims 1 GB and counts what the server reads of it."""

        def readable(self):
            return True

        def readinto(self, buffer):
            sent.append(len(buffer))
            buffer[:] = b" " * len(buffer)
            return len(buffer)

    environ = EnvironBuilder(path="/_dash-update-component", method="POST",
                             headers={"Content-Type": "application/json"}).get_environ()
    environ.update({"wsgi.input": Body(), "CONTENT_LENGTH": str(10**9)})
    status = []
    started = time.perf_counter()
    body = b"".join(server.wsgi_app(environ, lambda code, headers, *_: status.append(code)))
    assert status[0].startswith("413") and time.perf_counter() - started < 2.0
    assert "larger than this server accepts (150 MB; uploads up to 50 MB)" in body.decode()
    assert sum(sent) < 10**7


def test_an_upload_data_url_over_the_limit_is_refused_before_decoding():
    from app.analysis.imageio import decode_data_url

    huge = "data:image/png;base64," + "A" * 80_000_000
    with memory_cap(300 << 20), pytest.raises(SaemiInputError, match="above the limit of 50 MB"):
        decode_data_url(huge, config.MAX_UPLOAD_BYTES, "image")
    sidecar = "data:text/plain;base64," + "A" * 2_000_000
    with pytest.raises(SaemiInputError, match=r"\.txt file is about 1\.5 MB, above the limit of 1 MB"):
        decode_data_url(sidecar, config.MAX_SIDECAR_BYTES, ".txt file")


# ------------------------------------------------------------------------------ forged callback inputs
@pytest.mark.parametrize("value", [None, [], {}, "draw", 1e9, float("nan"), True, "1e9", -5])
def test_simple_callbacks_take_forged_values_without_failing(value):
    assert canvas_cb.tool_colour(value) in canvas_cb.TOOL_COLOURS.values()
    assert 1 <= canvas_cb.brush_width(value) <= 40
    patch = views_cb.overlay(results={"x": 1}, opacity=value, mode="outline", gray={"x": 1}, analysis=None,
                             trigger=ids.OVERLAY_OPACITY)["figure"]
    assert 0.0 <= patch.to_plotly_json()["operations"][0]["params"]["value"] <= 1.0


def test_forged_stores_in_callbacks_give_the_sentence_not_a_500(payloads):
    forged = {"labels_png": "x", "particles": "[]", "shape": [1, 1]}  # an unsigned store, as an old page sends
    chained = analysis_cb.results(analysis=forged, edits=None, nm_per_px=None, gray=None)
    assert chained["results"] is no_update and chained["alert"].startswith(DAMAGED_STORE)
    chained = analysis_cb.results(analysis=payloads["analysis"], edits=["not", "edits"], nm_per_px="x",
                                  gray=payloads["gray"])
    assert chained["results"] is no_update and chained["alert"]
    shown = views_cb.histogram(results=payloads["results"], analysis=payloads["analysis"], view={"quantity": []})
    assert shown["figure"] is no_update and shown["hint"]
    canvas = canvas_cb.canvas_image(results=forged, colour_mode=7)
    assert canvas["image"] is no_update and canvas["alert"].startswith(DAMAGED_STORE)
    page = {"segmenter": {"a": 1}, "diameter_px": "1e400", "split_touching": [], "min_area_px": [],
            "data_bar_mode": 5, "data_bar_rows": None, "scale_bar_label": None, "look_twice": []}
    outputs = analysis_cb.analyse(upload=None, demo_clicks=1, settings=page, filenames=None, source=None,
                                  previous=forged, trigger=ids.DEMO_BUTTON)
    assert outputs["analysis"] is no_update and outputs["alert"]


def test_canvas_edits_over_a_limit_get_a_sentence_naming_it(payloads):
    wide = json.dumps({"objects": [{"type": "image", "scaleX": 1e-9},
                                   {"type": "path", "stroke": canvas_cb.TOOL_COLOURS["draw"], "strokeWidth": 8,
                                    "path": [["M", 1, 1], ["L", 5, 5]]}]})
    edited = canvas_cb.edit(saves=1, undo_clicks=0, redo_clicks=0, json_data=wide, history=payloads["edits"],
                            analysis=payloads["analysis"], trigger=ids.CANVAS)
    assert edited["edits"] is no_update and "brush limit of 1024" in edited["alert"]
    assert np.asarray(read("edits", payloads["edits"])).shape == (256, 320)
