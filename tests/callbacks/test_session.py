"""Session glue and callbacks called directly: bad inputs, edits, views and downloads, no browser."""

from __future__ import annotations

import io
import json
import logging
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from app import config, session
from app.analysis import stats
from app.analysis.strokes import TOOL_COLOURS
from tests.conftest import DISC_CENTRES, DISC_RADIUS_PX, disc_image, png_bytes

SETTINGS = {"segmenter": "classical", "split_touching": True, "min_area_px": 10, "data_bar_mode": "off"}


def analyse(data: bytes, name: str) -> session.Outcome:
    return session.guarded(session.start_session, data, name, SETTINGS)


def n_detected(stores: dict, nm_per_px=None) -> int:
    results = session.compute_results(stores["analysis"], stores["gray"], stores["edits"], nm_per_px)
    return len(session.table_from_json(results["particles"]))


@pytest.fixture(scope="module")
def discs():
    """Stores after analysing the disc image."""
    return session.start_session(png_bytes(disc_image()), "discs.png", SETTINGS)


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
    assert any("page 1 of 3" in note for note in outcome.value["analysis"]["notes"])
    assert n_detected(outcome.value) == len(DISC_CENTRES)


def test_one_pixel_image_gets_a_sentence():
    outcome = analyse(png_bytes(np.full((1, 1), 128, np.uint8)), "dot.png")
    assert "1 x 1" in outcome.message


def test_all_black_image_gives_zero_counts_not_an_error():
    outcome = analyse(png_bytes(np.zeros((64, 64), np.uint8)), "black.png")
    assert outcome.message is None
    stores = outcome.value
    results = session.compute_results(stores["analysis"], stores["gray"], stores["edits"], None)
    figure, rows, _, _ = session.histogram_outputs(results, stores["analysis"], session.ViewOptions())
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
    outcome = session.guarded(session.apply_canvas, discs["edits"], discs["analysis"], payload, 640)
    assert outcome.value is None
    assert "canvas" in outcome.message


def test_unexpected_errors_are_logged_and_shown_generically(caplog):
    def broken():
        raise RuntimeError("internal detail")

    with caplog.at_level(logging.ERROR):
        outcome = session.guarded(broken)
    assert outcome.message == session.GENERIC_ERROR
    assert "internal detail" not in outcome.message
    assert "internal detail" in caplog.text


def test_model_load_errors_keep_their_sentence_and_suggest_the_classical_segmenter():
    from app.analysis.errors import ModelLoadError

    def missing_model():
        raise ModelLoadError("The model weights model/saemi_unet.keras are missing.")

    outcome = session.guarded(missing_model)
    assert "weights" in outcome.message and "classical" in outcome.message


# ---------------------------------------------------------------------------------------- analysis
def test_upload_data_url_is_analysed_with_file_info():
    import base64

    url = "data:image/png;base64," + base64.b64encode(png_bytes(disc_image())).decode()
    stores = session.run_analysis({"kind": "upload", "filename": "discs.png"}, url, SETTINGS)
    assert session.file_info(stores["analysis"]).startswith("discs.png: 320 × 256 px")
    assert n_detected(stores) == len(DISC_CENTRES)


def test_demo_is_analysed_with_its_data_bar_shown():
    stores = session.run_analysis({"kind": "demo"}, None, dict(SETTINGS, data_bar_mode="auto"))
    analysis = stores["analysis"]
    assert analysis["filename"] == "demo_sem.png"
    assert n_detected(stores) > 20
    y0, y1 = analysis["data_bar"]
    assert any(f"rows {y0}:{y1}" in note for note in analysis["notes"])
    results = session.compute_results(analysis, stores["gray"], stores["edits"], None)
    figure = session.overlay(results, stores["gray"], 0.5, "outline", analysis["data_bar"])
    assert figure.layout.shapes[0].y0 == y0 - 0.5
    assert not session.current_labels(analysis, None)[y0:y1].any()
    # a particle drawn inside the data bar does not count
    in_bar = session.apply_canvas(stores["edits"], analysis,
                                  _canvas("draw", [(100, 0.625 * (y0 + 20)), (160, 0.625 * (y0 + 20))],
                                          scale=0.625), 640)
    assert n_detected({**stores, "edits": in_bar}) == n_detected(stores)


def test_settings_change_keeps_the_source_and_new_upload_replaces_it():
    current = {"kind": "demo", "filename": "demo_sem.png"}
    assert session.choose_source(None, "x.png", current) == current
    assert session.choose_source("upload", "x.png", current) == {"kind": "upload", "filename": "x.png"}
    assert session.choose_source("upload", ["x.txt", "x.tif"], current) == {"kind": "upload", "filename": "x.tif"}
    assert session.choose_source(None, None, None) is None


def _data_url(data: bytes, mime: str = "image/png") -> str:
    import base64

    return f"data:{mime};base64," + base64.b64encode(data).decode()


HITACHI_SIDECAR = "[SemImageFile]\r\nInstructName=S-4800\r\nPixelSize=2.5\r\nDataSize=320x256\r\n"


def test_hitachi_sidecar_calibrates_the_image():
    stores = session.start_session(png_bytes(disc_image()), "discs.png", SETTINGS, HITACHI_SIDECAR)
    calibration = stores["analysis"]["calibration"]
    assert calibration["source"] == "metadata:hitachi" and calibration["nm_per_px"] == 2.5
    results = session.compute_results(stores["analysis"], stores["gray"], stores["edits"], None)
    table = session.table_from_json(results["particles"])
    assert np.allclose(table["ecd_nm"], 2.5 * table["ecd_px"])
    # without the sidecar the same PNG has no pixel size
    plain = session.start_session(png_bytes(disc_image()), "discs.png", SETTINGS)
    assert plain["analysis"]["calibration"]["nm_per_px"] is None


def test_sidecar_dropped_with_the_image_in_either_order_is_read():
    image, sidecar = _data_url(png_bytes(disc_image())), _data_url(HITACHI_SIDECAR.encode(), "text/plain")
    for contents, names in (([image, sidecar], ["discs.png", "discs.txt"]),
                            ([sidecar, image], ["DISCS.TXT", "discs.png"])):
        stores = session.run_analysis({"kind": "upload", "filename": "discs.png"}, contents, SETTINGS, names)
        assert stores["analysis"]["filename"] == "discs.png"
        assert stores["analysis"]["calibration"]["source"] == "metadata:hitachi"


def test_sidecar_without_a_pixel_size_is_said_and_ignored():
    image, sidecar = _data_url(png_bytes(disc_image())), _data_url(b"operator notes\n", "text/plain")
    stores = session.start_from_upload([image, sidecar], ["discs.png", "notes.txt"], SETTINGS)
    assert stores["analysis"]["calibration"]["nm_per_px"] is None
    assert any(".txt" in note and "ignored" in note for note in stores["analysis"]["notes"])


@pytest.mark.parametrize(("names", "expected"), [
    (["a.png", "b.png"], "2 images"),
    (["a.txt"], "Only a .txt file"),
    (["a.png", "a.txt", "b.txt"], "2 .txt files"),
])
def test_upload_of_the_wrong_set_of_files_gets_a_sentence(names, expected):
    contents = [_data_url(b"x")] * len(names)
    outcome = session.guarded(session.start_from_upload, contents, names, SETTINGS)
    assert outcome.value is None and expected in outcome.message


def test_measured_line_is_kept_only_for_the_same_image(discs):
    line = {"shapes": [{"type": "line", "x0": 10.0, "y0": 5.0, "x1": 52.0, "y1": 5.0}]}
    measured = session.measure_line(discs["analysis"], line, "84 nm")
    rerun = session.start_session(png_bytes(disc_image()), "discs.png", dict(SETTINGS, min_area_px=50))
    kept = session.keep_measured_line(rerun["analysis"], measured)
    assert kept["measured_line"] == measured["measured_line"] and kept["params"]["min_area_px"] == 50
    results = session.compute_results(kept, rerun["gray"], rerun["edits"], None)
    assert results["calibration"]["nm_per_px"] == pytest.approx(2.0)
    other = session.start_session(png_bytes(disc_image(seed=1)), "other.png", SETTINGS)
    assert "measured_line" not in session.keep_measured_line(other["analysis"], measured)
    assert "measured_line" not in session.keep_measured_line(rerun["analysis"], None)


def test_minimum_area_setting_drops_small_particles():
    big = dict(SETTINGS, min_area_px=int(np.pi * DISC_RADIUS_PX**2) + 50)
    stores = session.start_session(png_bytes(disc_image()), "discs.png", big)
    assert n_detected(stores) == 0


def test_store_payloads_are_compact_strings_not_pixel_lists(discs):
    for value in discs["analysis"].values():
        assert not (isinstance(value, list) and value and isinstance(value[0], list))
    assert isinstance(discs["analysis"]["labels_png"], str)
    assert len(json.dumps(discs)) < 200_000


# ------------------------------------------------------------------------------------------- edits
def _canvas(tool: str, points, width=8.0, scale=2.0) -> str:
    """dash-canvas JSON: the mask image at ``scale`` display px per image px and one stroke."""
    path = [["M", *points[0]]] + [["L", *p] for p in points[1:]]
    return json.dumps({"objects": [
        {"type": "image", "left": 0, "top": 0, "scaleX": scale, "scaleY": scale, "width": 320, "height": 256},
        {"type": "path", "stroke": TOOL_COLOURS[tool], "strokeWidth": width, "path": path},
    ]})


def test_draw_remove_erase_change_the_count_and_undo_redo_replay(discs):
    analysis, gray = discs["analysis"], discs["gray"]
    edits = session.new_edits()
    n0 = len(DISC_CENTRES)
    # canvas px = 2 x image px; row 120 is empty between the disc rows
    edits = session.apply_canvas(edits, analysis, _canvas("draw", [(200, 240), (260, 240)]), 640)
    assert n_detected({"analysis": analysis, "gray": gray, "edits": edits}) == n0 + 1
    edits = session.apply_canvas(edits, analysis, _canvas("remove", [(120, 120), (124, 122)]), 640)
    assert n_detected({"analysis": analysis, "gray": gray, "edits": edits}) == n0
    # a vertical cut through the disc at (row 180, col 160) splits it in two
    edits = session.apply_canvas(edits, analysis, _canvas("erase", [(320, 300), (320, 420)]), 640)
    assert n_detected({"analysis": analysis, "gray": gray, "edits": edits}) == n0 + 1
    undone = session.undo(edits)
    assert n_detected({"analysis": analysis, "gray": gray, "edits": undone}) == n0
    assert n_detected({"analysis": analysis, "gray": gray, "edits": session.redo(undone)}) == n0 + 1
    # a new edit after an undo drops the undone one
    branched = session.apply_canvas(undone, analysis, _canvas("draw", [(200, 240), (260, 240)]), 640)
    assert branched["cursor"] == len(branched["batches"]) == 3
    assert session.redo(branched)["cursor"] == 3


def test_stroke_maps_onto_full_resolution_pixels(discs):
    analysis = discs["analysis"]
    edits = session.apply_canvas(session.new_edits(), analysis, _canvas("draw", [(200, 240), (260, 240)]), 640)
    labels = session.current_labels(analysis, edits)
    new = labels == labels.max()
    rows, cols = np.nonzero(new)
    assert abs(rows.mean() - 120) < 1 and cols.min() >= 97 and cols.max() <= 133


def test_canvas_image_changes_with_every_edit_version(discs):
    results = session.compute_results(discs["analysis"], discs["gray"], discs["edits"], None)
    first = session.canvas_image(results, "colour")
    again = session.canvas_image({**results, "version": 1}, "colour")
    assert first.startswith("data:image/png;base64,") and first != again


def test_no_strokes_is_a_sentence(discs):
    empty = json.dumps({"objects": [{"type": "image", "scaleX": 2}]})
    outcome = session.guarded(session.apply_canvas, discs["edits"], discs["analysis"], empty, 640)
    assert "No strokes" in outcome.message


# -------------------------------------------------------------------------------------------- views
def test_bin_width_changes_the_number_of_bars(discs):
    results = session.compute_results(discs["analysis"], discs["gray"], discs["edits"], None)
    # areas of the six discs: 609 and 610 px
    wide, *_ = session.histogram_outputs(results, discs["analysis"],
                                         session.ViewOptions(quantity="area", bin_width=200))
    narrow, *_ = session.histogram_outputs(results, discs["analysis"],
                                           session.ViewOptions(quantity="area", bin_width=0.5))
    assert len(wide.data[0].x) == 1 and len(narrow.data[0].x) == 3


def test_manual_pixel_size_switches_units_to_nm(discs):
    results = session.compute_results(discs["analysis"], discs["gray"], discs["edits"], 2.0)
    assert results["calibration"]["source"] == "manual"
    figure, rows, hint, _ = session.histogram_outputs(results, discs["analysis"], session.ViewOptions())
    assert "(nm)" in figure.layout.xaxis.title.text
    assert dict(rows)["Mean"].endswith(" nm")
    table = session.table_from_json(results["particles"])
    assert np.allclose(table["ecd_nm"], 2.0 * table["ecd_px"])
    assert "2 nm/px" in " ".join(session.calibration_text(results))


def test_quantity_and_weighting_change_the_histogram(discs):
    results = session.compute_results(discs["analysis"], discs["gray"], discs["edits"], None)
    ecd, *_ = session.histogram_outputs(results, discs["analysis"], session.ViewOptions())
    area, *_ = session.histogram_outputs(results, discs["analysis"],
                                         session.ViewOptions(quantity="area", basis="volume"))
    assert "Equivalent" in ecd.layout.xaxis.title.text and "Area (px²)" in area.layout.xaxis.title.text
    assert ecd.layout.yaxis.title.text == "Particles" and "volume" in area.layout.yaxis.title.text


def test_small_count_statistics_carry_the_confidence_interval_note(discs):
    results = session.compute_results(discs["analysis"], discs["gray"], discs["edits"], None)
    # the largest of the six discs is filtered out: five particles in the statistics
    table = session.table_from_json(results["particles"])
    cut = float(table["ecd_px"].max()) - 1e-9
    _, rows, _, _ = session.histogram_outputs(results, discs["analysis"], session.ViewOptions(max_ecd=cut))
    rows = dict(rows)
    assert rows["Count (in statistics)"] == "5"
    assert "Only 5 particles" in rows["Note"] and "confidence" in rows["Note"]


def test_no_confidence_interval_note_for_a_large_count():
    values = np.linspace(10.0, 50.0, 60)
    view = session.HistogramView(values=values, weights=None, bin_width=1.0, label="ECD", unit="px",
                                 basis="number", summary=stats.summarize(values), n_detected=60, n_edge=0,
                                 removed={})
    assert "Note" not in dict(session.stats_rows(view))


def test_filters_report_what_they_removed(discs):
    results = session.compute_results(discs["analysis"], discs["gray"], discs["edits"], None)
    view = session.view_results(results, discs["analysis"], session.ViewOptions(min_ecd=1000))
    assert view.summary["count"] == 0
    assert "minimum ECD: 6" in session.filter_text(view)


# ----------------------------------------------------------------------------------------- downloads
def test_particle_csv_has_provenance_and_one_row_per_particle(discs):
    results = session.compute_results(discs["analysis"], discs["gray"], discs["edits"], 2.5)
    payload = session.particles_download(discs["analysis"], results, session.ViewOptions())
    assert payload["filename"] == "discs_particles.csv"
    text = payload["content"]
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(discs["analysis"]["sha256"] in line for line in header)
    assert any("calibration_source: manual" in line for line in header)
    table = pd.read_csv(io.StringIO(text), comment="#")
    assert len(table) == len(DISC_CENTRES)
    assert {"particle_id", "area_px", "ecd_px", "centroid_x_px", "centroid_y_px", "touches_edge",
            "ecd_nm"} <= set(table.columns)


def test_label_png_download_round_trips(discs):
    import base64

    results = session.compute_results(discs["analysis"], discs["gray"], discs["edits"], None)
    payload = session.labels_download(discs["analysis"], results)
    with Image.open(io.BytesIO(base64.b64decode(payload["content"]))) as image:
        labels = np.asarray(image)
    assert labels.dtype == np.uint16 and labels.shape == (256, 320) and labels.max() == len(DISC_CENTRES)


def test_summary_csv_has_calibration_columns(discs):
    results = session.compute_results(discs["analysis"], discs["gray"], discs["edits"], 2.0)
    payload = session.summary_download(discs["analysis"], results, session.ViewOptions())
    table = pd.read_csv(io.StringIO(payload["content"]), comment="#")
    assert table.loc[0, "n_particles"] == len(DISC_CENTRES)
    assert table.loc[0, "calibration_source"] == "manual" and table.loc[0, "nm_per_px"] == 2.0
    assert "mean_ecd_nm" in table.columns


def test_automatic_bin_width_is_round_and_not_absurdly_narrow():
    assert session.nice_bin_width(np.linspace(10, 110, 500)) == 5.0
    assert session.nice_bin_width(np.array([27.85, 27.86, 27.87])) == 0.5
    assert session.nice_bin_width(np.array([])) == 1.0
