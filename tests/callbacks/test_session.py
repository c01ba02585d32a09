"""Session glue called directly: bad inputs, edits, views, downloads and the typed stores, no browser."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from app import config
from app.analysis import encoding, stats
from app.analysis.errors import SaemiInputError
from app.analysis.strokes import TOOL_COLOURS
from app.analysis.view import HistogramView, ViewOptions, filter_text, nice_bin_width, stats_rows, view_results
from app.session import signing
from app.session.display import canvas_image, histogram_outputs, overlay
from app.session.downloads import labels_download, particles_download, summary_download
from app.session.edits import apply_canvas, current_labels, edit_info, redo, undo
from app.session.guard import GENERIC_ERROR, guarded
from app.session.results import calibration_text, compute_results, measure_line
from app.session.start import (
    PageSettings,
    Started,
    choose_source,
    file_info,
    keep_measured_line,
    run_analysis,
    start_from_upload,
    start_session,
)
from app.session.stores import DAMAGED_STORE, AnalysisState, EditsState, GrayState, ResultsState, Source
from tests.conftest import DISC_CENTRES, DISC_RADIUS_PX, disc_image, png_bytes
from tests.stores import plain, resigned

SETTINGS = PageSettings(segmenter="classical", split_touching=True, min_area_px=10, data_bar_mode="off")


def analyse(data: bytes, name: str):
    return guarded(start_session, data, name, SETTINGS)


def results_of(stores: Started, nm_per_px=None, edits: EditsState | None = None) -> ResultsState:
    return compute_results(stores.analysis, stores.gray, stores.edits if edits is None else edits, nm_per_px)


def n_detected(stores: Started, nm_per_px=None, edits: EditsState | None = None) -> int:
    return len(results_of(stores, nm_per_px, edits).particles())


@pytest.fixture(scope="module")
def discs() -> Started:
    """Stores after analysing the disc image."""
    return start_session(png_bytes(disc_image()), "discs.png", SETTINGS)


# ---------------------------------------------------------------------------------------- bad input
def test_empty_file_gets_a_sentence():
    outcome = analyse(b"", "empty.png")
    assert outcome.value is None
    assert "empty" in outcome.message and "empty.png" in outcome.message


def test_text_renamed_png_gets_a_sentence():
    outcome = analyse(b"particle sizes, not an image\n" * 10, "notes.png")
    assert "notes.png" in outcome.message and "not an image" in outcome.message


def test_truncated_jpeg_gets_a_sentence():
    buffer = io.BytesIO()
    Image.fromarray(disc_image()).save(buffer, format="JPEG", quality=90)
    outcome = analyse(buffer.getvalue()[: len(buffer.getvalue()) // 2], "cut.jpg")
    assert "cut.jpg" in outcome.message and "truncated" in outcome.message


def test_file_over_the_size_limit_gets_a_sentence(monkeypatch):
    monkeypatch.setattr(config, "MAX_UPLOAD_BYTES", 1000)
    outcome = analyse(png_bytes(disc_image()), "big.png")
    assert "above the limit" in outcome.message


def _png_claiming(width: int, height: int) -> bytes:
    """A 1 x 1 PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's header)."""
    data = bytearray(png_bytes(np.zeros((1, 1), np.uint8)))
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def test_decompression_bomb_is_refused_before_decoding():
    outcome = analyse(_png_claiming(60_000, 60_000), "bomb.png")
    assert "megapixels" in outcome.message and "bomb.png" in outcome.message


def test_multi_page_tiff_analyses_page_one_and_says_so():
    buffer = io.BytesIO()
    blank = np.zeros_like(disc_image())
    with tifffile.TiffWriter(buffer) as tif:
        for page in (disc_image(), blank, blank):
            tif.write(page, photometric="minisblack")
    outcome = analyse(buffer.getvalue(), "stack.tif")
    assert outcome.message is None
    assert any("page 1 of 3" in note for note in outcome.value.analysis.notes)
    assert n_detected(outcome.value) == len(DISC_CENTRES)


def test_one_pixel_image_gets_a_sentence():
    outcome = analyse(png_bytes(np.full((1, 1), 128, np.uint8)), "dot.png")
    assert "1 x 1" in outcome.message


def test_all_black_image_gives_zero_counts_not_an_error():
    outcome = analyse(png_bytes(np.zeros((64, 64), np.uint8)), "black.png")
    assert outcome.message is None
    stores = outcome.value
    figure, rows, _, _ = histogram_outputs(results_of(stores), stores.analysis, ViewOptions())
    assert dict(rows)["Particles detected"] == "0"
    assert dict(rows)["Count (in statistics)"] == "0"
    assert any("No particles" in a.text for a in figure.layout.annotations)


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_16_bit_and_float_tiffs_are_scaled_not_clipped(dtype):
    # Values far above 255 (uint16) or far outside [0, 1] (float): clipping would make everything white.
    image = disc_image().astype(np.float64) * (250.0 if dtype == "uint16" else 7.5) + 1000.0
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image.astype(dtype))
    outcome = analyse(buffer.getvalue(), f"deep-{dtype}.tif")
    assert outcome.message is None
    assert n_detected(outcome.value) == len(DISC_CENTRES)


@pytest.mark.parametrize("payload", ["{not json", json.dumps({"objects": 5}), json.dumps([1, 2])])
def test_malformed_canvas_data_gets_a_sentence(discs, payload):
    outcome = guarded(apply_canvas, discs.edits, discs.analysis, payload, 640)
    assert outcome.value is None
    assert "canvas" in outcome.message


def test_unexpected_errors_are_logged_and_shown_generically(caplog):
    def broken():
        raise RuntimeError("internal detail")

    with caplog.at_level(logging.ERROR):
        outcome = guarded(broken)
    assert outcome.message == GENERIC_ERROR
    assert "internal detail" not in outcome.message
    assert "internal detail" in caplog.text


def test_model_load_errors_keep_their_sentence_and_suggest_the_classical_segmenter():
    from model.config import ModelLoadError

    def missing_model():
        raise ModelLoadError("The model weights model/saemi_unet.keras are missing.")

    outcome = guarded(missing_model)
    assert "weights" in outcome.message and "classical" in outcome.message


# ---------------------------------------------------------------------------------------- analysis
def test_upload_data_url_is_analysed_with_file_info():
    import base64

    url = "data:image/png;base64," + base64.b64encode(png_bytes(disc_image())).decode()
    stores = run_analysis(Source("upload", "discs.png"), url, SETTINGS)
    assert file_info(stores.analysis).startswith("discs.png: 320 × 256 px")
    assert n_detected(stores) == len(DISC_CENTRES)


def test_demo_is_analysed_with_its_data_bar_shown():
    stores = run_analysis(Source("demo", "demo_sem.png"), None, dataclasses.replace(SETTINGS, data_bar_mode="auto"))
    analysis = stores.analysis
    assert analysis.filename == "demo_sem.png"
    assert n_detected(stores) > 20
    y0, y1 = analysis.data_bar.y0, analysis.data_bar.y1
    assert any(f"rows {y0}:{y1}" in note for note in analysis.notes)
    figure = overlay(results_of(stores), stores.gray, 0.5, "outline", analysis)
    assert figure.layout.shapes[0].y0 == y0 - 0.5
    assert not current_labels(analysis, EditsState())[y0:y1].any()
    # a particle drawn inside the data bar does not count
    in_bar = apply_canvas(stores.edits, analysis,
                          _canvas("draw", [(100, 0.625 * (y0 + 20)), (160, 0.625 * (y0 + 20))], scale=0.625), 640)
    assert n_detected(stores, edits=in_bar) == n_detected(stores)


def test_settings_change_keeps_the_source_and_new_upload_replaces_it():
    current = Source("demo", "demo_sem.png")
    assert choose_source(None, "x.png", current) == current
    assert choose_source("upload", "x.png", current) == Source("upload", "x.png")
    assert choose_source("upload", ["x.txt", "x.tif"], current) == Source("upload", "x.tif")
    assert choose_source("demo", None, None) == Source("demo", "demo_sem.png")
    assert choose_source(None, None, None) is None


def test_page_settings_become_the_analysis_parameters():
    params = PageSettings(segmenter="unet", diameter_px=20, split_touching=False, min_area_px=None,
                          data_bar_mode="manual", data_bar_rows=" 700:768 ", scale_bar_label=" 500 nm ",
                          look_twice=True).to_params()
    assert (params.segmenter, params.diameter_px, params.split_touching, params.min_area_px) == ("unet", 20.0,
                                                                                                  False, 0)
    assert params.scale_bar_label == "500 nm" and params.views == 2
    assert PageSettings().to_params().segmenter == "classical" and PageSettings().to_params().views is None
    outcome = guarded(PageSettings(data_bar_mode="manual", data_bar_rows="  ").to_params)
    assert "data-bar rows" in outcome.message


def _data_url(data: bytes, mime: str = "image/png") -> str:
    import base64

    return f"data:{mime};base64," + base64.b64encode(data).decode()


HITACHI_SIDECAR = "[SemImageFile]\r\nInstructName=S-4800\r\nPixelSize=2.5\r\nDataSize=320x256\r\n"


def test_hitachi_sidecar_calibrates_the_image():
    stores = start_session(png_bytes(disc_image()), "discs.png", SETTINGS, HITACHI_SIDECAR)
    calibration = stores.analysis.calibration
    assert calibration.source == "metadata:hitachi" and calibration.nm_per_px == 2.5
    table = results_of(stores).particles()
    assert np.allclose(table["ecd_nm"], 2.5 * table["ecd_px"])
    # without the sidecar the same PNG has no pixel size
    plain = start_session(png_bytes(disc_image()), "discs.png", SETTINGS)
    assert plain.analysis.calibration.nm_per_px is None


def test_sidecar_dropped_with_the_image_in_either_order_is_read():
    image, sidecar = _data_url(png_bytes(disc_image())), _data_url(HITACHI_SIDECAR.encode(), "text/plain")
    for contents, names in (([image, sidecar], ["discs.png", "discs.txt"]),
                            ([sidecar, image], ["DISCS.TXT", "discs.png"])):
        stores = run_analysis(Source("upload", "discs.png"), contents, SETTINGS, names)
        assert stores.analysis.filename == "discs.png"
        assert stores.analysis.calibration.source == "metadata:hitachi"


def test_sidecar_without_a_pixel_size_is_said_and_ignored():
    image, sidecar = _data_url(png_bytes(disc_image())), _data_url(b"operator notes\n", "text/plain")
    stores = start_from_upload([image, sidecar], ["discs.png", "notes.txt"], SETTINGS)
    assert stores.analysis.calibration.nm_per_px is None
    assert any(".txt" in note and "ignored" in note for note in stores.analysis.notes)


@pytest.mark.parametrize(("names", "expected"), [
    (["a.png", "b.png"], "2 images"),
    (["a.txt"], "Only a .txt file"),
    (["a.png", "a.txt", "b.txt"], "2 .txt files"),
])
def test_upload_of_the_wrong_set_of_files_gets_a_sentence(names, expected):
    contents = [_data_url(b"x")] * len(names)
    outcome = guarded(start_from_upload, contents, names, SETTINGS)
    assert outcome.value is None and expected in outcome.message


def test_measured_line_is_kept_only_for_the_same_image(discs):
    line = {"shapes": [{"type": "line", "x0": 10.0, "y0": 5.0, "x1": 52.0, "y1": 5.0}]}
    measured = measure_line(discs.analysis, line, "84 nm")
    assert measured.measured_line is not None and measured.measured_line.line_px == (10.0, 5.0, 52.0, 5.0)
    rerun = start_session(png_bytes(disc_image()), "discs.png", dataclasses.replace(SETTINGS, min_area_px=50))
    kept = keep_measured_line(rerun.analysis, measured)
    assert kept.measured_line == measured.measured_line and kept.params.min_area_px == 50
    results = compute_results(kept, rerun.gray, rerun.edits, None)
    assert results.calibration.nm_per_px == pytest.approx(2.0)
    other = start_session(png_bytes(disc_image(seed=1)), "other.png", SETTINGS)
    assert keep_measured_line(other.analysis, measured).measured_line is None
    assert keep_measured_line(rerun.analysis, None).measured_line is None


def test_minimum_area_setting_drops_small_particles():
    big = dataclasses.replace(SETTINGS, min_area_px=int(np.pi * DISC_RADIUS_PX**2) + 50)
    stores = start_session(png_bytes(disc_image()), "discs.png", big)
    assert n_detected(stores) == 0


def test_store_payloads_are_compact_strings_not_pixel_lists(discs):
    payload = plain("analysis", discs.analysis.to_store())
    for value in payload.values():
        assert not (isinstance(value, list) and value and isinstance(value[0], list))
    assert isinstance(payload["labels_png"], str)
    assert len(json.dumps({name: store.to_store() for name, store in discs._asdict().items()})) < 200_000


# ------------------------------------------------------------------------------------------- stores
def _json_round_trip(payload):
    """What the browser hands back: the payload through JSON."""
    return json.loads(json.dumps(payload))


def test_analysis_state_round_trips_through_its_store(discs):
    analysis = discs.analysis
    assert AnalysisState.from_store(analysis.to_store()) == analysis
    assert AnalysisState.from_store(_json_round_trip(analysis.to_store())) == analysis
    # with a measured line and a data bar too
    measured = measure_line(analysis, {"shapes": [{"type": "line", "x0": 10.0, "y0": 5.0, "x1": 52.0,
                                                   "y1": 5.0}]}, "84 nm")
    assert measured.measured_line.calibration is not None
    assert AnalysisState.from_store(_json_round_trip(measured.to_store())) == measured
    assert AnalysisState.from_store(None) is None and AnalysisState.from_store({}) is None
    np.testing.assert_array_equal(AnalysisState.from_store(analysis.to_store()).labels(), analysis.labels())
    pd.testing.assert_frame_equal(AnalysisState.from_store(analysis.to_store()).particles(), analysis.particles())


def test_analysis_state_with_a_data_bar_round_trips():
    from app.analysis.databar import DataBar

    stores = start_session(png_bytes(disc_image()), "discs.png",
                           dataclasses.replace(SETTINGS, data_bar_mode="manual", data_bar_rows="230:256"))
    assert stores.analysis.data_bar == DataBar(230, 256)
    assert plain("analysis", stores.analysis.to_store())["data_bar"] == [230, 256]
    assert AnalysisState.from_store(_json_round_trip(stores.analysis.to_store())) == stores.analysis


def test_edits_state_round_trips_through_its_store(discs):
    edits = apply_canvas(EditsState(), discs.analysis, _canvas("draw", [(200, 240), (260, 240)]), 640)
    edits = undo(apply_canvas(edits, discs.analysis, _canvas("remove", [(120, 120), (124, 122)]), 640))
    assert (edits.cursor, len(edits.batches), edits.version) == (1, 2, 3)
    assert EditsState.from_store(edits.to_store()) == edits
    assert EditsState.from_store(_json_round_trip(edits.to_store())) == edits
    assert EditsState.from_store(EditsState().to_store()) == EditsState()


def test_other_stores_round_trip(discs):
    assert Source.from_store(Source("upload", "discs.png").to_store()) == Source("upload", "discs.png")
    assert Source.from_store(None) is None
    assert GrayState.from_store(_json_round_trip(discs.gray.to_store())) == discs.gray
    results = results_of(discs, nm_per_px=2.0)
    assert ResultsState.from_store(_json_round_trip(results.to_store()), discs.analysis.shape) == results


def _damaged(match_reason: str = ""):
    return pytest.raises(SaemiInputError, match=re.escape(DAMAGED_STORE) + ".*" + match_reason)


@pytest.mark.parametrize("payload", ["a string", [1, 2, 3], 42, {"cursor": 0}, {"signed": 42}])
def test_a_store_the_server_did_not_sign_is_damaged(payload):
    with _damaged("not signed by this server"):
        AnalysisState.from_store(payload)
    with _damaged("not signed by this server"):
        EditsState.from_store(payload)
    with _damaged("not signed by this server"):
        ResultsState.from_store(payload)


@pytest.mark.parametrize("payload", ["a string", [1, 2, 3], 42])
def test_a_signed_store_that_is_not_an_object_is_damaged(payload):
    with _damaged("not an object"):
        AnalysisState.from_store(signing.sign("analysis", payload))
    with _damaged("not an object"):
        EditsState.from_store(signing.sign("edits", payload))
    with _damaged("not an object"):
        ResultsState.from_store(signing.sign("results", payload))


@pytest.mark.parametrize("key", ["labels_png", "particles", "shape", "calibration", "params", "sha256"])
def test_an_analysis_store_missing_a_key_is_damaged(discs, key):
    payload = plain("analysis", discs.analysis.to_store())
    del payload[key]
    with _damaged(key):
        AnalysisState.from_store(signing.sign("analysis", payload))


def test_a_results_store_missing_a_key_is_damaged(discs):
    payload = plain("results", results_of(discs).to_store())
    del payload["labels_png"]
    with _damaged("labels_png"):
        ResultsState.from_store(signing.sign("results", payload))


def test_an_edit_cursor_past_the_last_edit_is_damaged(discs):
    edits = apply_canvas(EditsState(), discs.analysis, _canvas("draw", [(200, 240), (260, 240)]), 640)
    with _damaged("past the last edit"):
        EditsState.from_store(resigned("edits", edits.to_store(), cursor=2))
    with _damaged("past the last edit"):
        EditsState.from_store(signing.sign("edits", {"batches": [], "cursor": 1, "version": 0}))
    with _damaged("cursor"):
        EditsState.from_store(resigned("edits", edits.to_store(), cursor=-1))


def test_a_label_image_of_the_wrong_size_is_damaged(discs):
    small = encoding.labels_to_png_b64(np.zeros((10, 12), np.int32))
    payload = resigned("analysis", discs.analysis.to_store(), labels_png=small)
    analysis = AnalysisState.from_store(payload)  # the size is checked when the labels are read
    with _damaged("12 x 10 pixels"):
        analysis.labels()
    with _damaged("12 x 10 pixels"):
        current_labels(analysis, EditsState())
    results = ResultsState.from_store(resigned("results", results_of(discs).to_store(), labels_png=small),
                                      discs.analysis.shape)
    with _damaged("12 x 10 pixels"):
        results.labels()
    # a damaged store reaching the guard becomes the sentence, not a crash
    assert guarded(analysis.labels).message.startswith(DAMAGED_STORE)


def test_out_of_range_sizes_in_the_analysis_store_are_damaged(discs):
    payload = discs.analysis.to_store()
    with _damaged("pair of whole numbers"):
        AnalysisState.from_store(resigned("analysis", payload, shape=[256]))
    with _damaged("out of range"):
        AnalysisState.from_store(resigned("analysis", payload, frame=[0, 999]))
    with _damaged("outside the image"):
        AnalysisState.from_store(resigned("analysis", payload, data_bar=[250, 300]))
    with _damaged("out of range"):
        AnalysisState.from_store(resigned("analysis", payload, shape=[13_000, 13_000], frame=[0, 13_000]))


# ------------------------------------------------------------------------------------------- edits
def _canvas(tool: str, points, width=8.0, scale=2.0) -> str:
    """dash-canvas JSON: the mask image at ``scale`` display px per image px and one stroke."""
    path = [["M", *points[0]]] + [["L", *p] for p in points[1:]]
    return json.dumps({"objects": [
        {"type": "image", "left": 0, "top": 0, "scaleX": scale, "scaleY": scale, "width": 320, "height": 256},
        {"type": "path", "stroke": TOOL_COLOURS[tool], "strokeWidth": width, "path": path},
    ]})


def test_empty_edit_history_is_the_old_new_edits_payload():
    assert plain("edits", EditsState().to_store()) == {"batches": [], "cursor": 0, "version": 0}
    assert EditsState.from_store(None) == EditsState() == EditsState.from_store({})
    assert edit_info(EditsState()) == "0 edit(s) applied."


def test_draw_remove_erase_change_the_count_and_undo_redo_replay(discs):
    edits = EditsState()
    n0 = len(DISC_CENTRES)
    # canvas px = 2 x image px; row 120 is empty between the disc rows
    edits = apply_canvas(edits, discs.analysis, _canvas("draw", [(200, 240), (260, 240)]), 640)
    assert n_detected(discs, edits=edits) == n0 + 1
    edits = apply_canvas(edits, discs.analysis, _canvas("remove", [(120, 120), (124, 122)]), 640)
    assert n_detected(discs, edits=edits) == n0
    # a vertical cut through the disc at (row 180, col 160) splits it in two
    edits = apply_canvas(edits, discs.analysis, _canvas("erase", [(320, 300), (320, 420)]), 640)
    assert n_detected(discs, edits=edits) == n0 + 1
    undone = undo(edits)
    assert n_detected(discs, edits=undone) == n0
    assert edit_info(undone) == "2 edit(s) applied, 1 can be redone."
    assert n_detected(discs, edits=redo(undone)) == n0 + 1
    # a new edit after an undo drops the undone one
    branched = apply_canvas(undone, discs.analysis, _canvas("draw", [(200, 240), (260, 240)]), 640)
    assert branched.cursor == len(branched.batches) == 3
    assert redo(branched).cursor == 3
    assert undo(EditsState()).cursor == 0


def test_stroke_maps_onto_full_resolution_pixels(discs):
    edits = apply_canvas(EditsState(), discs.analysis, _canvas("draw", [(200, 240), (260, 240)]), 640)
    labels = current_labels(discs.analysis, edits)
    new = labels == labels.max()
    rows, cols = np.nonzero(new)
    assert abs(rows.mean() - 120) < 1 and cols.min() >= 97 and cols.max() <= 133


def test_canvas_image_changes_with_every_edit_version(discs):
    results = results_of(discs)
    first = canvas_image(results, "colour")
    again = canvas_image(dataclasses.replace(results, version=1), "colour")
    assert first.startswith("data:image/png;base64,") and first != again


def test_no_strokes_is_a_sentence(discs):
    empty = json.dumps({"objects": [{"type": "image", "scaleX": 2}]})
    outcome = guarded(apply_canvas, discs.edits, discs.analysis, empty, 640)
    assert "No strokes" in outcome.message


# -------------------------------------------------------------------------------------------- views
def test_bin_width_changes_the_number_of_bars(discs):
    results = results_of(discs)
    # areas of the six discs: 609 and 610 px
    wide, *_ = histogram_outputs(results, discs.analysis, ViewOptions(quantity="area", bin_width=200))
    narrow, *_ = histogram_outputs(results, discs.analysis, ViewOptions(quantity="area", bin_width=0.5))
    assert len(wide.data[0].x) == 1 and len(narrow.data[0].x) == 3


def test_manual_pixel_size_switches_units_to_nm(discs):
    results = results_of(discs, nm_per_px=2.0)
    assert results.calibration.source == "manual"
    figure, rows, hint, _ = histogram_outputs(results, discs.analysis, ViewOptions())
    assert "(nm)" in figure.layout.xaxis.title.text
    assert dict(rows)["Mean"].endswith(" nm")
    table = results.particles()
    assert np.allclose(table["ecd_nm"], 2.0 * table["ecd_px"])
    assert "2 nm/px" in " ".join(calibration_text(results))


def test_quantity_and_weighting_change_the_histogram(discs):
    results = results_of(discs)
    ecd, *_ = histogram_outputs(results, discs.analysis, ViewOptions())
    area, *_ = histogram_outputs(results, discs.analysis, ViewOptions(quantity="area", basis="volume"))
    assert "Equivalent" in ecd.layout.xaxis.title.text and "Area (px²)" in area.layout.xaxis.title.text
    assert ecd.layout.yaxis.title.text == "Particles" and "volume" in area.layout.yaxis.title.text


def test_small_count_statistics_carry_the_confidence_interval_note(discs):
    results = results_of(discs)
    # the largest of the six discs is filtered out: five particles in the statistics
    table = results.particles()
    cut = float(table["ecd_px"].max()) - 1e-9
    _, rows, _, _ = histogram_outputs(results, discs.analysis, ViewOptions(max_ecd=cut))
    rows = dict(rows)
    assert rows["Count (in statistics)"] == "5"
    assert "Only 5 particles" in rows["Note"] and "confidence" in rows["Note"]


def test_no_confidence_interval_note_for_a_large_count():
    values = np.linspace(10.0, 50.0, 60)
    view = HistogramView(values=values, weights=None, bin_width=1.0, label="ECD", unit="px", basis="number",
                         summary=stats.summarize(values), n_detected=60, n_edge=0, removed={})
    assert "Note" not in dict(stats_rows(view))


def test_filters_report_what_they_removed(discs):
    results = results_of(discs)
    view = view_results(results.particles(), calibrated=results.calibrated, image_shape=discs.analysis.shape,
                        frame=discs.analysis.frame, view=ViewOptions(min_ecd=1000))
    assert view.summary["count"] == 0
    assert "minimum ECD: 6" in filter_text(view)
    assert histogram_outputs(results, discs.analysis, ViewOptions(min_ecd=1000)).filters == filter_text(view)


# ----------------------------------------------------------------------------------------- downloads
def test_particle_csv_has_provenance_and_one_row_per_particle(discs):
    results = results_of(discs, nm_per_px=2.5)
    payload = particles_download(discs.analysis, results, "exclude")
    assert payload["filename"] == "discs_particles.csv"
    text = payload["content"]
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(discs.analysis.sha256 in line for line in header)
    assert any("calibration_source: manual" in line for line in header)
    assert any(line.startswith("# outline_convention: a particle's edge is where the blurred image is halfway")
               for line in header)
    table = pd.read_csv(io.StringIO(text), comment="#")
    assert len(table) == len(DISC_CENTRES)
    assert {"particle_id", "area_px", "ecd_px", "centroid_x_px", "centroid_y_px", "touches_edge",
            "ecd_nm"} <= set(table.columns)


def test_a_download_names_a_server_side_model_by_its_folder_only(discs):
    """An image of a batch analysed with a tuned model carries the model's folder on the server in its
    settings; the single-image downloads show the folder's name, never the server's path."""
    server_path = "/srv/saemi/batches/b0123/models/t4567"
    analysis = dataclasses.replace(discs.analysis, params=dataclasses.replace(discs.analysis.params,
                                                                              model_dir=server_path))
    results = results_of(discs, nm_per_px=2.5)
    for payload in (particles_download(analysis, results, "exclude"), summary_download(analysis, results, "exclude")):
        assert "# param_model_dir: t4567\n" in payload["content"] and "/srv/saemi" not in payload["content"]


def test_label_png_download_round_trips(discs):
    import base64

    payload = labels_download(discs.analysis, results_of(discs))
    with Image.open(io.BytesIO(base64.b64decode(payload["content"]))) as image:
        labels = np.asarray(image)
    assert labels.dtype == np.uint16 and labels.shape == (256, 320) and labels.max() == len(DISC_CENTRES)


def test_summary_csv_has_calibration_columns(discs):
    results = results_of(discs, nm_per_px=2.0)
    payload = summary_download(discs.analysis, results, "exclude")
    table = pd.read_csv(io.StringIO(payload["content"]), comment="#")
    assert table.loc[0, "n_particles"] == len(DISC_CENTRES)
    assert table.loc[0, "calibration_source"] == "manual" and table.loc[0, "nm_per_px"] == 2.0
    assert "mean_ecd_nm" in table.columns


def test_automatic_bin_width_is_round_and_not_absurdly_narrow():
    assert nice_bin_width(np.linspace(10, 110, 500)) == 5.0
    assert nice_bin_width(np.array([27.85, 27.86, 27.87])) == 0.5
    assert nice_bin_width(np.array([])) == 1.0
