"""The Dash callbacks called as functions, with a fake callback context where they read ``ctx``."""

from __future__ import annotations

import base64
from contextvars import copy_context

import numpy as np
import pytest
from dash import Patch, no_update
from dash._callback_context import context_value
from dash._utils import AttributeDict

from app import session
from app.callbacks import analysis as analysis_cb
from app.callbacks import canvas as canvas_cb
from app.callbacks import downloads as downloads_cb
from app.callbacks import views as views_cb
from app.analysis.segmentation import ClassicalSegmenter
from app.analysis.strokes import TOOL_COLOURS
from app.layout import ids
from tests.conftest import DISC_CENTRES, disc_image, png_bytes


def triggered(prop_id: str, func, *args):
    """Run ``func(*args)`` as if ``prop_id`` (``"component.property"``) had fired it."""

    def run():
        context_value.set(AttributeDict(triggered_inputs=[{"prop_id": prop_id, "value": None}]))
        return func(*args)

    return copy_context().run(run)


def upload_url() -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(disc_image())).decode()


def analysed():
    """Outputs of the analysis callback for an upload of the disc image (``dcc.Upload(multiple=True)`` lists)."""
    return triggered(f"{ids.UPLOAD}.contents", analysis_cb.analyse, [upload_url()], 0, "classical", None,
                     ["split"], 10, "off", None, None, ["discs.png"], None)


def test_upload_fills_the_stores_and_clears_the_alert():
    source, analysis, gray, edits, info, notes, alert = analysed()
    assert source == {"kind": "upload", "filename": "discs.png"}
    assert info.startswith("discs.png: 320 × 256 px")
    assert alert == "" and edits["cursor"] == 0 and gray["png"]


def test_bad_upload_shows_the_sentence_and_keeps_the_previous_results():
    url = "data:image/png;base64," + base64.b64encode(b"hello").decode()
    outputs = triggered(f"{ids.UPLOAD}.contents", analysis_cb.analyse, url, 0, "classical", None, ["split"], 10,
                        "off", None, None, "hello.png", None)
    assert outputs[:6] == (no_update,) * 6
    assert "hello.png" in outputs[6]


def test_settings_change_without_an_image_does_nothing():
    outputs = triggered(f"{ids.MIN_AREA}.value", analysis_cb.analyse, None, 0, "classical", None, ["split"], 50,
                        "off", None, None, None, None)
    assert outputs == (no_update,) * 7


def test_settings_change_reanalyses_the_stored_source():
    source, *_ = analysed()
    outputs = triggered(f"{ids.SPLIT_TOUCHING}.value", analysis_cb.analyse, [upload_url()], 0, "classical", None,
                        [], 5000, "off", None, None, ["discs.png"], source)
    assert outputs[1]["params"]["min_area_px"] == 5000 and outputs[1]["params"]["split_touching"] is False


def test_upload_with_a_hitachi_sidecar_is_calibrated_and_a_rerun_keeps_it():
    sidecar = "data:text/plain;base64," + base64.b64encode(b"[SemImageFile]\r\nPixelSize=2.5\r\n").decode()
    contents, names = [sidecar, upload_url()], ["discs.txt", "discs.png"]
    source, analysis, *_ = triggered(f"{ids.UPLOAD}.contents", analysis_cb.analyse, contents, 0, "classical", None,
                                     ["split"], 10, "off", None, None, names, None)
    assert source["filename"] == "discs.png"
    assert analysis["calibration"]["source"] == "metadata:hitachi"
    rerun = triggered(f"{ids.MIN_AREA}.value", analysis_cb.analyse, contents, 0, "classical", None, ["split"], 50,
                      "off", None, None, names, source, analysis)
    assert rerun[1]["calibration"]["nm_per_px"] == 2.5 and rerun[1]["params"]["min_area_px"] == 50


def test_two_images_in_one_upload_get_a_sentence():
    outputs = triggered(f"{ids.UPLOAD}.contents", analysis_cb.analyse, [upload_url(), upload_url()], 0,
                        "classical", None, ["split"], 10, "off", None, None, ["a.png", "b.png"], None)
    assert outputs[:6] == (no_update,) * 6
    assert "2 images" in outputs[6] and "a.png" in outputs[6] and "b.png" in outputs[6]


@pytest.fixture
def segmenter_calls(monkeypatch):
    """Arguments of every ``get_segmenter`` call made by the session; the classical segmenter does the work."""
    calls = []

    def record(name, diameter_px=None, views=None):
        calls.append((name, diameter_px))
        return ClassicalSegmenter()

    monkeypatch.setattr(session, "get_segmenter", record)
    return calls


def test_typed_diameter_reaches_the_segmenter_and_the_csv_header(segmenter_calls):
    outputs = triggered(f"{ids.DIAMETER_PX}.value", analysis_cb.analyse, [upload_url()], 0, "unet", 20,
                        ["split"], 10, "off", None, None, ["discs.png"], {"kind": "upload", "filename": "discs.png"})
    assert outputs[6] == ""
    assert segmenter_calls == [("unet", 20.0)]
    _, analysis, gray, edits, *_ = outputs
    assert analysis["params"]["diameter_px"] == 20.0
    results, *_ = analysis_cb.results(analysis, edits, None, gray)
    csv, _ = triggered(f"{ids.DOWNLOAD_CSV_BUTTON}.n_clicks", downloads_cb.download, 1, 0, 0, analysis, results,
                       "exclude")
    assert "# param_diameter_px: 20.0\n" in csv["content"]


@pytest.mark.parametrize("ticked, views", [(["twice"], 2), ([], None)])
def test_look_twice_asks_the_unet_for_two_views_and_is_recorded(monkeypatch, ticked, views):
    asked = []

    def record(name, diameter_px=None, views=None):
        asked.append((name, views))
        return ClassicalSegmenter()

    monkeypatch.setattr(session, "get_segmenter", record)
    outputs = triggered(f"{ids.VIEWS}.value", analysis_cb.analyse, [upload_url()], 0, "unet", None, ["split"], 10,
                        "off", None, None, ["discs.png"], {"kind": "upload", "filename": "discs.png"}, None, ticked)
    assert outputs[6] == "" and asked == [("unet", views)]
    _, analysis, gray, edits, *_ = outputs
    assert analysis["params"]["views"] == views
    results, *_ = analysis_cb.results(analysis, edits, None, gray)
    csv, _ = triggered(f"{ids.DOWNLOAD_CSV_BUTTON}.n_clicks", downloads_cb.download, 1, 0, 0, analysis, results,
                       "exclude")
    assert f"# param_views: {views or ''}\n" in csv["content"]


def test_empty_diameter_lets_the_unet_estimate_it(segmenter_calls):
    triggered(f"{ids.UPLOAD}.contents", analysis_cb.analyse, [upload_url()], 0, "unet", None, ["split"], 10,
              "off", None, None, ["discs.png"], None)
    assert segmenter_calls == [("unet", None)]


@pytest.mark.parametrize("diameter_px", [0, -12.5])
def test_bad_diameter_gets_a_sentence_and_segments_nothing(segmenter_calls, diameter_px):
    outputs = triggered(f"{ids.DIAMETER_PX}.value", analysis_cb.analyse, [upload_url()], 0, "unet", diameter_px,
                        ["split"], 10, "off", None, None, ["discs.png"], {"kind": "upload", "filename": "discs.png"})
    assert outputs[:6] == (no_update,) * 6
    assert outputs[6].startswith("The typical particle diameter must be a positive number of pixels")
    assert segmenter_calls == []


def test_segmentation_change_keeps_the_line_drawn_on_the_same_image():
    from app.callbacks import linecal as linecal_cb

    source, analysis, *_ = analysed()
    line = {"shapes": [{"type": "line", "x0": 10.0, "y0": 5.0, "x1": 52.0, "y1": 5.0}]}
    measured = linecal_cb.measure(line, "84 nm", analysis)
    assert measured["measured_line"]["calibration"]["nm_per_px"] == 2.0
    rerun = triggered(f"{ids.MIN_AREA}.value", analysis_cb.analyse, [upload_url()], 0, "classical", None,
                      ["split"], 50, "off", None, None, ["discs.png"], source, measured)
    assert rerun[1]["params"]["min_area_px"] == 50
    assert rerun[1]["measured_line"] == measured["measured_line"]
    results, *_ = analysis_cb.results(rerun[1], rerun[3], None, rerun[2])
    assert results["calibration"] == {**measured["measured_line"]["calibration"], "source": "scalebar:user"}
    table = session.table_from_json(results["particles"])
    assert np.allclose(table["ecd_nm"], 2.0 * table["ecd_px"])
    # a different image does not inherit the line
    other = {**measured, "sha256": "0" * 64}
    fresh = triggered(f"{ids.MIN_AREA}.value", analysis_cb.analyse, [upload_url()], 0, "classical", None,
                      ["split"], 50, "off", None, None, ["discs.png"], source, other)
    assert "measured_line" not in fresh[1]


def test_results_histogram_overlay_chain():
    _, analysis, gray, edits, *_ = analysed()
    results, calibration_info, edit_info, _ = analysis_cb.results(analysis, edits, None, gray)
    assert "Not calibrated" in calibration_info[0].children
    figure, table, hint, _ = views_cb.histogram(results, "ecd", "number", None, "exclude", None, None, None, analysis)
    assert sum(figure.data[0].customdata[:, 2]) == len(DISC_CENTRES)
    overlay, alert = triggered(f"{ids.STORE_RESULTS}.data", views_cb.overlay, results, 0.5, "outline", gray,
                               analysis)
    assert overlay.data[1].opacity == 0.5 and alert is no_update
    image, alert = canvas_cb.canvas_image(results, "colour")
    assert image.startswith("data:image/png;base64,") and alert is no_update


def test_overlay_and_canvas_failures_show_a_sentence():
    _, analysis, gray, edits, *_ = analysed()
    results, *_ = analysis_cb.results(analysis, edits, None, gray)
    broken = {**results, "labels_png": "not a png"}
    figure, alert = triggered(f"{ids.STORE_RESULTS}.data", views_cb.overlay, broken, 0.5, "outline", gray, analysis)
    assert figure is no_update and "damaged" in alert
    image, alert = triggered(f"{ids.STORE_RESULTS}.data", canvas_cb.canvas_image, broken, "colour")
    assert image is no_update and "damaged" in alert


def test_opacity_change_patches_the_figure_without_redrawing():
    _, analysis, gray, edits, *_ = analysed()
    results, *_ = analysis_cb.results(analysis, edits, None, gray)
    patch, alert = triggered(f"{ids.OVERLAY_OPACITY}.value", views_cb.overlay, results, 0.8, "outline", gray,
                             analysis)
    assert isinstance(patch, Patch) and alert is no_update
    assert patch.to_plotly_json()["operations"][0]["params"]["value"] == 0.8


def test_canvas_save_then_undo_and_redo():
    _, analysis, _, edits, *_ = analysed()
    import json

    canvas = json.dumps({"objects": [{"type": "image", "scaleX": 2.0},
                                     {"type": "path", "stroke": TOOL_COLOURS["draw"], "strokeWidth": 8,
                                      "path": [["M", 200, 240], ["L", 260, 240]]}]})
    edits, alert = triggered(f"{ids.CANVAS}.trigger", canvas_cb.edit, 1, 0, 0, canvas, edits, analysis)
    assert edits["cursor"] == 1 and alert == ""
    undone, _ = triggered(f"{ids.UNDO}.n_clicks", canvas_cb.edit, 1, 1, 0, canvas, edits, analysis)
    assert undone["cursor"] == 0
    redone, _ = triggered(f"{ids.REDO}.n_clicks", canvas_cb.edit, 1, 1, 1, canvas, undone, analysis)
    assert redone["cursor"] == 1
    kept, alert = triggered(f"{ids.CANVAS}.trigger", canvas_cb.edit, 2, 1, 1, "{broken", redone, analysis)
    assert kept is no_update and "canvas" in alert


def test_tool_sets_the_line_colour():
    assert canvas_cb.tool_colour("erase") == TOOL_COLOURS["erase"]
    assert canvas_cb.tool_colour("remove") == TOOL_COLOURS["remove"]


def test_download_buttons_send_the_right_files():
    _, analysis, gray, edits, *_ = analysed()
    results, *_ = analysis_cb.results(analysis, edits, None, gray)
    csv, _ = triggered(f"{ids.DOWNLOAD_CSV_BUTTON}.n_clicks", downloads_cb.download, 1, 0, 0, analysis, results,
                       "exclude")
    labels, _ = triggered(f"{ids.DOWNLOAD_LABELS_BUTTON}.n_clicks", downloads_cb.download, 1, 1, 0, analysis,
                          results, "exclude")
    assert csv["filename"].endswith("_particles.csv") and csv["content"].startswith("#")
    assert labels["filename"].endswith("_labels.png") and labels["base64"] is True
    nothing, alert = triggered(f"{ids.DOWNLOAD_CSV_BUTTON}.n_clicks", downloads_cb.download, 1, 0, 0, None, None,
                               "exclude")
    assert nothing is no_update and "upload" in alert.lower()


def test_every_app_gets_all_callbacks():
    from app.webapp import create_app

    first, second = create_app(default_segmenter="classical"), create_app(default_segmenter="classical")
    assert len(first.callback_map) == len(second.callback_map) == 12
