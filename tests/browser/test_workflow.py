"""The browser workflow in headless Chromium (dash_duo): upload, demo, histogram, overlay, canvas, download.

Run with ``pytest --headless tests/browser``. The classical segmenter keeps these tests fast.
"""

from __future__ import annotations

import io
import re
import time

import numpy as np
import pandas as pd
import pytest
import tifffile
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from app.analysis.scalebar import tesseract_available
from app.analysis.strokes import TOOL_COLOURS
from app.layout import ids
from app.webapp import create_app
from tests.conftest import DISC_CENTRES, disc_image, poll

pytestmark = pytest.mark.browser

TIMEOUT_S = 30


@pytest.fixture
def duo(dash_duo):
    """dash_duo serving a fresh app with the classical segmenter selected."""
    dash_duo.start_server(create_app(default_segmenter="classical"))
    dash_duo.wait_for_element(f"#{ids.UPLOAD}")
    return dash_duo


def wait(duo, predicate, message):
    """Wait until ``predicate()`` is truthy, failing with ``message``."""
    return poll(predicate, message, TIMEOUT_S)


def choose_files(duo, *paths):
    """Choose ``paths`` in the upload's file input, as one selection replacing the previous one.

    The input takes several files (``multiple``), and chromedriver appends to its current selection, so
    the selection is emptied first, as a new choice in the file dialog would.
    """
    field = duo.find_element(f"#{ids.UPLOAD} input[type=file]")
    duo.driver.execute_script("arguments[0].value = '';", field)
    field.send_keys("\n".join(str(path) for path in paths))


def upload(duo, path, expected_info):
    choose_files(duo, path)
    duo.wait_for_contains_text(f"#{ids.FILE_INFO}", expected_info, timeout=TIMEOUT_S)


def detected(duo) -> int | None:
    match = re.search(r"Particles detected\s+(\d+)", duo.find_element(f"#{ids.STATS_TABLE}").text)
    return int(match.group(1)) if match else None


def wait_detected(duo, count):
    wait(duo, lambda: detected(duo) == count, f"expected {count} particles, saw {detected(duo)}")


def graph(duo, graph_id, expression):
    """Evaluate ``expression`` on the plotly graph div ``gd`` of a dcc.Graph."""
    return duo.driver.execute_script(
        f"const gd = document.querySelector('#{graph_id} .js-plotly-plot'); return gd ? ({expression}) : null;"
    )


def n_bars(duo):
    return graph(duo, ids.HISTOGRAM, "gd._fullData && gd._fullData.length ? gd._fullData[0].x.length : null")


def bar_heights(duo) -> list[float] | None:
    """Heights of the histogram bars as the browser holds them."""
    # _fullData holds the decoded arrays (gd.data may keep plotly.py's base64 form)
    heights = graph(duo, ids.HISTOGRAM, "gd._fullData && gd._fullData.length ? Array.from(gd._fullData[0].y) : null")
    return None if heights is None else [float(h) for h in heights]


def axis_title(duo, axis):
    return graph(duo, ids.HISTOGRAM, f"gd.layout.{axis}.title.text")


def type_into(duo, element_id, text):
    box = duo.find_element(f"#{element_id}")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text, Keys.ENTER)


def csv_download(duo, name):
    duo.find_element(f"#{ids.DOWNLOAD_CSV_BUTTON}").click()
    path = duo.download_path.rstrip("/") + "/" + name
    wait(duo, lambda: open(path).read().count("\n") > 3, f"{name} was not downloaded")
    time.sleep(0.3)  # let the browser finish writing
    with open(path) as handle:
        return pd.read_csv(handle, comment="#")


def test_upload_histogram_bin_width_and_opacity(duo, disc_png):
    upload(duo, disc_png, "discs.png: 320 × 256 px")
    wait_detected(duo, len(DISC_CENTRES))
    assert "Not calibrated" in duo.find_element(f"#{ids.CALIBRATION_INFO}").text
    wait(duo, lambda: n_bars(duo), "no histogram bars")
    assert "(px)" in axis_title(duo, "xaxis")
    # the six discs have ECDs of 27.85 to 27.87 px: one bin of 1 px, three of 0.01 px
    type_into(duo, ids.BIN_WIDTH, "1")
    wait(duo, lambda: n_bars(duo) == 1, f"bin width 1: expected 1 bar, saw {n_bars(duo)}")
    type_into(duo, ids.BIN_WIDTH, "0.01")
    wait(duo, lambda: n_bars(duo) == 3, f"bin width 0.01: expected 3 bars, saw {n_bars(duo)}")

    wait(duo, lambda: graph(duo, ids.OVERLAY, "gd.data.length === 2"), "no overlay")
    assert graph(duo, ids.OVERLAY, "gd.data[1].opacity") == pytest.approx(0.7)
    thumb = duo.find_element(f"#{ids.OVERLAY_OPACITY} [role=slider]")
    duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", thumb)
    thumb.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    wait(duo, lambda: abs(graph(duo, ids.OVERLAY, "gd.data[1].opacity") - 0.8) < 1e-6,
         "moving the opacity slider did not change the overlay")


def test_demo_button_loads_the_synthetic_demo(duo):
    assert "synthetic" in duo.find_element(".demo-row").text
    duo.find_element(f"#{ids.DEMO_BUTTON}").click()
    duo.wait_for_contains_text(f"#{ids.FILE_INFO}", "demo_sem.png: 1024 × 768 px", timeout=TIMEOUT_S)
    wait(duo, lambda: (detected(duo) or 0) > 20, "the demo image gave too few particles")
    wait(duo, lambda: n_bars(duo), "no histogram for the demo")
    info = duo.find_element(f"#{ids.CALIBRATION_INFO}").text
    if tesseract_available():
        # the demo's scale bar reads '500 nm' over 200 px (demo_images/README.md)
        assert "Pixel size 2.5 nm/px, source: scalebar:ocr" in info
        assert "(nm)" in axis_title(duo, "xaxis")
    else:
        assert "Not calibrated" in info
        assert "type the label" in duo.find_element(f"#{ids.NOTES}").text


def stroke(duo, points):
    """Drag the mouse through ``points`` (canvas display px from the canvas's top-left corner), then Save."""
    canvas = duo.find_element("canvas.upper-canvas")
    duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    actions = ActionChains(duo.driver).move_to_element_with_offset(canvas, *points[0]).click_and_hold()
    previous = points[0]
    for point in points[1:]:
        actions.move_by_offset(point[0] - previous[0], point[1] - previous[1])
        previous = point
    actions.release().perform()
    duo.find_element('button[title="Save"]').click()


def canvas_pixel(duo, x, y):
    """RGB of the drawn canvas (mask image plus strokes) at display pixel (x, y)."""
    return duo.driver.execute_script(
        "const c = document.querySelector('canvas.lower-canvas');"
        "return Array.from(c.getContext('2d').getImageData(arguments[0], arguments[1], 1, 1).data.slice(0, 3));",
        x, y,
    )


def wait_canvas_reloaded(duo, x, y, tool):
    """Wait until the stroke painted at (x, y) has been cleared by the mask image reloading."""
    colour = TOOL_COLOURS[tool]
    stroke_rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    wait(duo, lambda: canvas_pixel(duo, x, y) != stroke_rgb, "the canvas did not reload its mask")


def choose_tool(duo, tool):
    duo.find_element(f"#{ids.CANVAS_TOOL} input[value={tool}]").click()
    wait(duo, lambda: duo.find_element(f"#{ids.CANVAS_TOOL} input[value={tool}]").is_selected(), "tool not set")


def test_canvas_tools_change_the_particle_count(duo, disc_png):
    upload(duo, disc_png, "discs.png")
    n = len(DISC_CENTRES)
    wait_detected(duo, n)
    # the canvas shows the 320-px-wide image 640 px wide: canvas px = 2 x image px
    wait(duo, lambda: sum(canvas_pixel(duo, 120, 120)) > 0, "the mask image did not load")
    stroke(duo, [(200, 240), (215, 240), (230, 240), (245, 240), (260, 240)])  # empty row 120
    wait_detected(duo, n + 1)
    wait_canvas_reloaded(duo, 230, 240, "draw")
    choose_tool(duo, "remove")
    stroke(duo, [(116, 120), (120, 120), (124, 120)])  # inside the disc at (60, 60)
    wait_detected(duo, n)
    wait_canvas_reloaded(duo, 120, 120, "remove")
    choose_tool(duo, "erase")
    stroke(duo, [(320, 300), (320, 330), (320, 360), (320, 390), (320, 420)])  # cuts the disc at (180, 160)
    wait_detected(duo, n + 1)
    duo.find_element(f"#{ids.UNDO}").click()
    wait_detected(duo, n)
    duo.find_element(f"#{ids.REDO}").click()
    wait_detected(duo, n + 1)


def test_download_csv_rows(duo, disc_png):
    upload(duo, disc_png, "discs.png")
    wait_detected(duo, len(DISC_CENTRES))
    table = csv_download(duo, "discs_particles.csv")
    assert len(table) == len(DISC_CENTRES)
    assert {"particle_id", "area_px", "ecd_px", "centroid_x_px", "centroid_y_px", "touches_edge"} <= set(table.columns)
    assert table["area_px"].between(500, 700).all()


def test_manual_pixel_size_quantity_and_weighting(duo, disc_png):
    upload(duo, disc_png, "discs.png")
    wait_detected(duo, len(DISC_CENTRES))
    wait(duo, lambda: "(px)" in (axis_title(duo, "xaxis") or ""), "histogram not in px")
    type_into(duo, ids.NM_PER_PX, "2")
    wait(duo, lambda: "(nm)" in (axis_title(duo, "xaxis") or ""), "manual pixel size did not switch to nm")
    assert "source: manual" in duo.find_element(f"#{ids.CALIBRATION_INFO}").text
    table = csv_download(duo, "discs_particles.csv")
    assert np.allclose(table["ecd_nm"], 2.0 * table["ecd_px"], rtol=1e-4)

    duo.select_dcc_dropdown(f"#{ids.QUANTITY}", "Area")
    wait(duo, lambda: "Area (nm²)" in (axis_title(duo, "xaxis") or ""), "quantity selector had no effect")
    assert axis_title(duo, "yaxis") == "Particles"
    number_heights = bar_heights(duo)
    assert sum(number_heights) == len(DISC_CENTRES)
    duo.find_element(f"#{ids.BASIS} input[value=volume]").click()
    wait(duo, lambda: "volume" in (axis_title(duo, "yaxis") or ""), "weighting selector had no effect")
    wait(duo, lambda: bar_heights(duo) and bar_heights(duo) != number_heights,
         f"volume weighting left the bar heights at {number_heights}")
    assert sum(bar_heights(duo)) == pytest.approx(100.0)  # percent of the volume, not particle counts


def test_microscope_calibration_source_is_shown(duo, tmp_path):
    text = "[Scan]\r\nPixelWidth=2.5e-09\r\nPixelHeight=2.5e-09\r\n[Image]\r\nResolutionX=320\r\nResolutionY=256\r\n"
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, disc_image(), extratags=[(34682, "s", 0, text, True)])
    path = tmp_path / "fei.tif"
    path.write_bytes(buffer.getvalue())
    upload(duo, path, "fei.tif: 320 × 256 px")
    wait(duo, lambda: "metadata:fei" in duo.find_element(f"#{ids.CALIBRATION_INFO}").text,
         "the FEI calibration source is not shown")
    assert "2.5 nm/px" in duo.find_element(f"#{ids.CALIBRATION_INFO}").text
    wait(duo, lambda: "(nm)" in (axis_title(duo, "xaxis") or ""), "calibrated histogram not in nm")


def test_hitachi_sidecar_dropped_with_the_image_calibrates_it(duo, tmp_path, disc_png):
    sidecar = tmp_path / "discs.txt"
    sidecar.write_text("[SemImageFile]\nInstructName=S-4800\nPixelSize=2.5\n")
    choose_files(duo, disc_png, sidecar)
    duo.wait_for_contains_text(f"#{ids.FILE_INFO}", "discs.png: 320 × 256 px", timeout=TIMEOUT_S)
    wait(duo, lambda: "metadata:hitachi" in duo.find_element(f"#{ids.CALIBRATION_INFO}").text,
         "the Hitachi sidecar calibration is not shown")
    assert "2.5 nm/px" in duo.find_element(f"#{ids.CALIBRATION_INFO}").text


def test_bad_upload_shows_a_sentence_and_the_app_keeps_serving(duo, tmp_path, disc_png):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image\n" * 20)
    choose_files(duo, bad)
    duo.wait_for_contains_text(f"#{ids.ALERT}", "notes.png", timeout=TIMEOUT_S)
    assert duo.find_element(f"#{ids.ALERT}").get_attribute("role") == "alert"
    upload(duo, disc_png, "discs.png")
    wait_detected(duo, len(DISC_CENTRES))
    assert duo.find_element(f"#{ids.ALERT}").text == ""


def test_a_segmenters_note_is_listed_on_the_page(dash_duo, monkeypatch, disc_png):
    """What the segmenter says about its result reaches the user: the sentence is listed under the
    image's notes."""
    from app import engine
    from app.analysis.segmentation import ClassicalSegmenter

    sentence = "The particle size was hard to estimate: the U-Net worked with particles about 28 px across."

    class DoubtfulSegmenter(ClassicalSegmenter):
        def segment(self, gray, *, progress=None, notes=None):
            notes.append(sentence)
            return super().segment(gray, progress=progress, notes=notes)

    monkeypatch.setattr(engine, "get_segmenter",
                        lambda name, diameter_px=None, views=None, model_dir=None: DoubtfulSegmenter())
    dash_duo.start_server(create_app(default_segmenter="classical"))
    dash_duo.wait_for_element(f"#{ids.UPLOAD}")
    upload(dash_duo, disc_png, "discs.png")
    wait_detected(dash_duo, len(DISC_CENTRES))
    dash_duo.wait_for_contains_text(f"#{ids.NOTES}", "hard to estimate", timeout=TIMEOUT_S)
    assert sentence in [item.text for item in dash_duo.find_elements(f"#{ids.NOTES} li")]


def test_look_twice_reruns_the_analysis_with_two_views(dash_duo, monkeypatch, disc_png):
    """Ticking "Look twice" reruns the image with the U-Net's two-view option."""
    from app import engine
    from app.analysis.segmentation import ClassicalSegmenter

    asked = []

    def record(name, diameter_px=None, views=None, model_dir=None):
        asked.append(views)
        return ClassicalSegmenter()

    monkeypatch.setattr(engine, "get_segmenter", record)
    dash_duo.start_server(create_app(default_segmenter="classical"))
    dash_duo.wait_for_element(f"#{ids.UPLOAD}")
    upload(dash_duo, disc_png, "discs.png")
    wait_detected(dash_duo, len(DISC_CENTRES))
    assert asked == [None]
    dash_duo.find_element(f"#{ids.VIEWS} input[type='checkbox']").click()
    wait(dash_duo, lambda: asked[-1:] == [2], "ticking the box did not rerun the analysis with two views")
    wait_detected(dash_duo, len(DISC_CENTRES))
