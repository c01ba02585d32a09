"""The Dash callbacks called as functions; ``trigger=`` names the control that fired, as Dash would."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from dash import Patch, no_update

from app import engine
from app.analysis.segmentation import ClassicalSegmenter
from app.analysis.strokes import TOOL_COLOURS
from app.callbacks import analysis as analysis_cb
from app.callbacks import canvas as canvas_cb
from app.callbacks import downloads as downloads_cb
from app.callbacks import linecal as linecal_cb
from app.callbacks import views as views_cb
from app.layout import ids
from app.session.stores import DAMAGED_STORE, Source, table_from_json
from tests.conftest import DISC_CENTRES, disc_image, png_bytes
from tests.stores import plain, resigned

#: What the analysis callback's outputs hold when nothing changes.
UNCHANGED = dict.fromkeys(analysis_cb.ANALYSE_OUTPUTS, no_update)
#: The stores and panels the analysis callback fills (all its outputs but the alert).
STORE_OUTPUTS = ("source", "analysis", "gray", "edits", "file_info", "notes")
#: The histogram controls as the page sends them.
VIEW = {"quantity": "ecd", "basis": "number", "bin_width": None, "edge_mode": "exclude", "min_ecd": None,
        "max_ecd": None, "min_circularity": None}


def settings(segmenter="classical", diameter_px=None, split=("split",), min_area_px=10, look_twice=()):
    """The segmentation controls as the page sends them (checklists give lists)."""
    return {"segmenter": segmenter, "diameter_px": diameter_px, "split_touching": list(split),
            "min_area_px": min_area_px, "data_bar_mode": "off", "data_bar_rows": None, "scale_bar_label": None,
            "look_twice": list(look_twice)}


def analyse(trigger, upload, page_settings, filenames, source=None, previous=None):
    return analysis_cb.analyse(upload=upload, demo_clicks=0, settings=page_settings, filenames=filenames,
                               source=source, previous=previous, trigger=trigger)


def upload_url() -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(disc_image())).decode()


def analysed() -> dict:
    """Outputs of the analysis callback for an upload of the disc image (``dcc.Upload(multiple=True)`` lists)."""
    return analyse(ids.UPLOAD, [upload_url()], settings(), ["discs.png"])


def results_of(outputs: dict, nm_per_px=None) -> dict:
    return analysis_cb.results(analysis=outputs["analysis"], edits=outputs["edits"], nm_per_px=nm_per_px,
                               gray=outputs["gray"])


def download(trigger, analysis, results, edge_mode="exclude") -> dict:
    return downloads_cb.download(csv_clicks=1, labels_clicks=0, summary_clicks=0, analysis=analysis,
                                 results=results, edge_mode=edge_mode, trigger=trigger)


def test_upload_fills_the_stores_and_clears_the_alert():
    outputs = analysed()
    assert set(outputs) == set(analysis_cb.ANALYSE_OUTPUTS)
    assert plain("source", outputs["source"]) == {"kind": "upload", "filename": "discs.png"}
    assert outputs["file_info"].startswith("discs.png: 320 × 256 px")
    assert outputs["alert"] == "" and plain("edits", outputs["edits"])["cursor"] == 0
    assert plain("gray", outputs["gray"])["png"]


def test_bad_upload_shows_the_sentence_and_keeps_the_previous_results():
    url = "data:image/png;base64," + base64.b64encode(b"hello").decode()
    outputs = analyse(ids.UPLOAD, url, settings(), "hello.png")
    assert {name: outputs[name] for name in STORE_OUTPUTS} == {name: no_update for name in STORE_OUTPUTS}
    assert "hello.png" in outputs["alert"]


def test_settings_change_without_an_image_does_nothing():
    assert analyse(ids.MIN_AREA, None, settings(min_area_px=50), None) == UNCHANGED


def test_settings_change_reanalyses_the_stored_source():
    source = analysed()["source"]
    outputs = analyse(ids.SPLIT_TOUCHING, [upload_url()], settings(split=(), min_area_px=5000), ["discs.png"],
                      source)
    params = plain("analysis", outputs["analysis"])["params"]
    assert params["min_area_px"] == 5000 and params["split_touching"] is False


def test_upload_with_a_hitachi_sidecar_is_calibrated_and_a_rerun_keeps_it():
    sidecar = "data:text/plain;base64," + base64.b64encode(b"[SemImageFile]\r\nPixelSize=2.5\r\n").decode()
    contents, names = [sidecar, upload_url()], ["discs.txt", "discs.png"]
    first = analyse(ids.UPLOAD, contents, settings(), names)
    assert plain("source", first["source"])["filename"] == "discs.png"
    assert plain("analysis", first["analysis"])["calibration"]["source"] == "metadata:hitachi"
    rerun = analyse(ids.MIN_AREA, contents, settings(min_area_px=50), names, first["source"], first["analysis"])
    rerun_store = plain("analysis", rerun["analysis"])
    assert rerun_store["calibration"]["nm_per_px"] == 2.5 and rerun_store["params"]["min_area_px"] == 50


def test_two_images_in_one_upload_get_a_sentence():
    outputs = analyse(ids.UPLOAD, [upload_url(), upload_url()], settings(), ["a.png", "b.png"])
    assert {name: outputs[name] for name in STORE_OUTPUTS} == {name: no_update for name in STORE_OUTPUTS}
    assert "2 images" in outputs["alert"] and "a.png" in outputs["alert"] and "b.png" in outputs["alert"]


def test_demo_button_analyses_the_demo():
    outputs = analysis_cb.analyse(upload=None, demo_clicks=1, settings=settings(), filenames=None, source=None,
                                  previous=None, trigger=ids.DEMO_BUTTON)
    assert outputs["alert"] == ""
    assert plain("source", outputs["source"]) == {"kind": "demo", "filename": "demo_sem.png"}
    assert outputs["file_info"].startswith("demo_sem.png")


@pytest.fixture
def segmenter_calls(monkeypatch):
    """Arguments of every ``get_segmenter`` call made by the engine; the classical segmenter does the work."""
    calls = []

    def record(name, diameter_px=None, views=None, model_dir=None):
        calls.append((name, diameter_px))
        return ClassicalSegmenter()

    monkeypatch.setattr(engine, "get_segmenter", record)
    return calls


def test_typed_diameter_reaches_the_segmenter_and_the_csv_header(segmenter_calls):
    outputs = analyse(ids.DIAMETER_PX, [upload_url()], settings("unet", 20), ["discs.png"],
                      Source("upload", "discs.png").to_store())
    assert outputs["alert"] == ""
    assert segmenter_calls == [("unet", 20.0)]
    assert plain("analysis", outputs["analysis"])["params"]["diameter_px"] == 20.0
    results = results_of(outputs)["results"]
    csv = download(ids.DOWNLOAD_CSV_BUTTON, outputs["analysis"], results)["file"]
    assert "# param_diameter_px: 20.0\n" in csv["content"]


@pytest.mark.parametrize("ticked, views", [(["twice"], 2), ([], None)])
def test_look_twice_asks_the_unet_for_two_views_and_is_recorded(monkeypatch, ticked, views):
    asked = []

    def record(name, diameter_px=None, views=None, model_dir=None):
        asked.append((name, views))
        return ClassicalSegmenter()

    monkeypatch.setattr(engine, "get_segmenter", record)
    outputs = analyse(ids.VIEWS, [upload_url()], settings("unet", look_twice=ticked), ["discs.png"],
                      Source("upload", "discs.png").to_store())
    assert outputs["alert"] == "" and asked == [("unet", views)]
    assert plain("analysis", outputs["analysis"])["params"]["views"] == views
    results = results_of(outputs)["results"]
    csv = download(ids.DOWNLOAD_CSV_BUTTON, outputs["analysis"], results)["file"]
    assert f"# param_views: {views or ''}\n" in csv["content"]


def test_an_empty_diameter_gives_the_unet_none_so_it_looks_at_every_size(segmenter_calls):
    analyse(ids.UPLOAD, [upload_url()], settings("unet"), ["discs.png"])
    assert segmenter_calls == [("unet", None)]


@pytest.mark.parametrize("diameter_px", [0, -12.5])
def test_bad_diameter_gets_a_sentence_and_segments_nothing(segmenter_calls, diameter_px):
    outputs = analyse(ids.DIAMETER_PX, [upload_url()], settings("unet", diameter_px), ["discs.png"],
                      Source("upload", "discs.png").to_store())
    assert {name: outputs[name] for name in STORE_OUTPUTS} == {name: no_update for name in STORE_OUTPUTS}
    assert outputs["alert"].startswith("The typical particle diameter must be a positive number of pixels")
    assert segmenter_calls == []


def test_segmentation_change_keeps_the_line_drawn_on_the_same_image():
    first = analysed()
    line = {"shapes": [{"type": "line", "x0": 10.0, "y0": 5.0, "x1": 52.0, "y1": 5.0}]}
    measured = linecal_cb.measure(relayout=line, length_text="84 nm", analysis=first["analysis"])
    assert measured["alert"] is no_update
    measured = measured["analysis"]
    line_store = plain("analysis", measured)["measured_line"]
    assert line_store["calibration"]["nm_per_px"] == 2.0
    rerun = analyse(ids.MIN_AREA, [upload_url()], settings(min_area_px=50), ["discs.png"], first["source"],
                    measured)
    assert plain("analysis", rerun["analysis"])["params"]["min_area_px"] == 50
    assert plain("analysis", rerun["analysis"])["measured_line"] == line_store
    results = plain("results", results_of(rerun)["results"])
    assert results["calibration"] == {**line_store["calibration"], "source": "scalebar:user"}
    table = table_from_json(results["particles"])
    assert np.allclose(table["ecd_nm"], 2.0 * table["ecd_px"])
    # a different image does not inherit the line
    other = resigned("analysis", measured, sha256="0" * 64)
    fresh = analyse(ids.MIN_AREA, [upload_url()], settings(min_area_px=50), ["discs.png"], first["source"], other)
    assert plain("analysis", fresh["analysis"])["measured_line"] is None


def test_results_histogram_overlay_chain():
    outputs = analysed()
    chained = results_of(outputs)
    results = chained["results"]
    assert chained["alert"] is no_update and chained["edit_info"] == "0 edit(s) applied."
    assert "Not calibrated" in chained["calibration"][0].children
    shown = views_cb.histogram(results=results, analysis=outputs["analysis"], view=VIEW)
    assert sum(shown["figure"].data[0].customdata[:, 2]) == len(DISC_CENTRES)
    assert "Particles detected" in str(shown["table"]) and shown["hint"].startswith("Bins of")
    drawn = views_cb.overlay(results=results, opacity=0.5, mode="outline", gray=outputs["gray"],
                             analysis=outputs["analysis"], trigger=ids.STORE_RESULTS)
    assert drawn["figure"].data[1].opacity == 0.5 and drawn["alert"] is no_update
    canvas = canvas_cb.canvas_image(results=results, colour_mode="colour")
    assert canvas["image"].startswith("data:image/png;base64,") and canvas["alert"] is no_update


def test_overlay_and_canvas_failures_show_a_sentence():
    outputs = analysed()
    results = results_of(outputs)["results"]
    broken = resigned("results", results, labels_png="not a png")
    drawn = views_cb.overlay(results=broken, opacity=0.5, mode="outline", gray=outputs["gray"],
                             analysis=outputs["analysis"], trigger=ids.STORE_RESULTS)
    assert drawn["figure"] is no_update and "damaged" in drawn["alert"]
    canvas = canvas_cb.canvas_image(results=broken, colour_mode="colour")
    assert canvas["image"] is no_update and "damaged" in canvas["alert"]


def test_damaged_stores_get_the_sentence_not_a_crash():
    outputs = analysed()
    damaged = resigned("analysis", outputs["analysis"], shape="a lot")
    chained = analysis_cb.results(analysis=damaged, edits=outputs["edits"], nm_per_px=None, gray=outputs["gray"])
    assert chained["results"] is no_update and chained["alert"].startswith(DAMAGED_STORE)
    past_the_end = resigned("edits", outputs["edits"], cursor=3)
    chained = analysis_cb.results(analysis=outputs["analysis"], edits=past_the_end, nm_per_px=None,
                                  gray=outputs["gray"])
    assert chained["results"] is no_update and chained["alert"].startswith(DAMAGED_STORE)
    results = results_of(outputs)["results"]
    shown = views_cb.histogram(results=results, analysis=damaged, view=VIEW)
    assert shown["figure"] is no_update and shown["hint"].startswith(DAMAGED_STORE)
    sent = download(ids.DOWNLOAD_CSV_BUTTON, "not a store", results)
    assert sent["file"] is no_update and sent["alert"].startswith(DAMAGED_STORE)


def test_opacity_change_patches_the_figure_without_redrawing():
    outputs = analysed()
    results = results_of(outputs)["results"]
    drawn = views_cb.overlay(results=results, opacity=0.8, mode="outline", gray=outputs["gray"],
                             analysis=outputs["analysis"], trigger=ids.OVERLAY_OPACITY)
    patch = drawn["figure"]
    assert isinstance(patch, Patch) and drawn["alert"] is no_update
    assert patch.to_plotly_json()["operations"][0]["params"]["value"] == 0.8


def test_canvas_save_then_undo_and_redo():
    outputs = analysed()
    analysis, edits = outputs["analysis"], outputs["edits"]
    canvas = json.dumps({"objects": [{"type": "image", "scaleX": 2.0},
                                     {"type": "path", "stroke": TOOL_COLOURS["draw"], "strokeWidth": 8,
                                      "path": [["M", 200, 240], ["L", 260, 240]]}]})

    def edit(trigger, json_data, history, clicks=(1, 0, 0)):
        return canvas_cb.edit(saves=clicks[0], undo_clicks=clicks[1], redo_clicks=clicks[2], json_data=json_data,
                              history=history, analysis=analysis, trigger=trigger)

    saved = edit(ids.CANVAS, canvas, edits)
    assert plain("edits", saved["edits"])["cursor"] == 1 and saved["alert"] == ""
    undone = edit(ids.UNDO, canvas, saved["edits"], (1, 1, 0))["edits"]
    assert plain("edits", undone)["cursor"] == 0
    redone = edit(ids.REDO, canvas, undone, (1, 1, 1))["edits"]
    assert plain("edits", redone)["cursor"] == 1
    kept = edit(ids.CANVAS, "{broken", redone, (2, 1, 1))
    assert kept["edits"] is no_update and "canvas" in kept["alert"]
    before = canvas_cb.edit(saves=1, undo_clicks=0, redo_clicks=0, json_data=canvas, history=None, analysis=None,
                            trigger=ids.CANVAS)
    assert before["edits"] is no_update and "Upload an image" in before["alert"]


def test_tool_sets_the_line_colour():
    assert canvas_cb.tool_colour("erase") == TOOL_COLOURS["erase"]
    assert canvas_cb.tool_colour("remove") == TOOL_COLOURS["remove"]


def test_download_buttons_send_the_right_files():
    outputs = analysed()
    analysis, results = outputs["analysis"], results_of(outputs)["results"]
    csv = download(ids.DOWNLOAD_CSV_BUTTON, analysis, results)
    labels = download(ids.DOWNLOAD_LABELS_BUTTON, analysis, results)
    summary = download(ids.DOWNLOAD_SUMMARY_BUTTON, analysis, results)
    assert csv["alert"] == "" and csv["file"]["filename"].endswith("_particles.csv")
    assert csv["file"]["content"].startswith("#")
    assert labels["file"]["filename"].endswith("_labels.png") and labels["file"]["base64"] is True
    assert summary["file"]["filename"].endswith("_summary.csv")
    nothing = download(ids.DOWNLOAD_CSV_BUTTON, None, None)
    assert nothing["file"] is no_update and "upload" in nothing["alert"].lower()


def test_every_app_gets_all_callbacks():
    from app.webapp import create_app

    first, second = create_app(default_segmenter="classical"), create_app(default_segmenter="classical")
    assert len(first.callback_map) == len(second.callback_map) == 25  # 13 single-image view, 7 samples view, 5 teach
