"""Calibration by a line drawn on the overlay: the callbacks called as functions, then in headless Chromium.

Only the last test needs a browser (``pytest --headless``); the others call the callbacks directly.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from dash import Patch, no_update
from selenium.webdriver.common.action_chains import ActionChains

from app.analysis.view import ViewOptions
from app.callbacks import analysis as analysis_cb
from app.callbacks import linecal as linecal_cb
from app.callbacks import views as views_cb
from app.layout import ids
from app.session.display import histogram_outputs
from app.session.start import PageSettings, start_session
from app.session.stores import AnalysisState, ResultsState, table_from_json
from app.webapp import create_app
from tests.conftest import disc_image, png_bytes, poll
from tests.stores import plain

TIMEOUT_S = 30
#: A horizontal line of 42 px: "84 nm" along it means 2 nm/px.
LINE_SHAPES = {"shapes": [{"type": "line", "x0": 10.0, "y0": 5.0, "x1": 52.0, "y1": 5.0}]}


@pytest.fixture(scope="module")
def stores():
    """Store payloads (as the browser keeps them) of the disc image analysed with the classical segmenter
    (uncalibrated)."""
    settings = PageSettings(segmenter="classical", split_touching=True, min_area_px=10, data_bar_mode="off")
    started = start_session(png_bytes(disc_image()), "discs.png", settings)
    return {name: store.to_store() for name, store in started._asdict().items()}


def measure(relayout, length_text, analysis):
    """The analysis store after the line-calibration callback (``no_update`` when nothing changed)."""
    outputs = linecal_cb.measure(relayout=relayout, length_text=length_text, analysis=analysis)
    assert outputs["alert"] is no_update
    return outputs["analysis"]


def results_of(analysis, gray, nm_per_px=None):
    """The results store and calibration panel lines, from the results callback."""
    outputs = analysis_cb.results(analysis=analysis, edits=None, nm_per_px=nm_per_px, gray=gray)
    assert outputs["alert"] is no_update
    return outputs["results"], [div.children for div in outputs["calibration"]]


def test_drawn_line_and_length_calibrate_the_results(stores):
    analysis, gray = stores["analysis"], stores["gray"]
    assert plain("analysis", analysis)["calibration"]["nm_per_px"] is None
    updated = measure(LINE_SHAPES, "84 nm", analysis)
    results, info = results_of(updated, gray)
    assert plain("results", results)["calibration"]["source"] == "scalebar:user"
    assert plain("results", results)["calibration"]["nm_per_px"] == pytest.approx(2.0)
    assert "source: scalebar:user" in info[0]
    assert info[1] == "Line of 42.0 px drawn by the user = 84 nm"
    table = table_from_json(plain("results", results)["particles"])
    assert np.allclose(table["ecd_nm"], 2.0 * table["ecd_px"])
    state = AnalysisState.from_store(updated)
    _figure, rows, _hint, _filters = histogram_outputs(ResultsState.from_store(results, state.shape), state,
                                                       ViewOptions())
    assert dict(rows)["Median"].endswith(" nm")

    # a zoom afterwards keeps the line; nothing changes, so nothing is recomputed
    assert measure({"xaxis.range[0]": 3.0}, "84 nm", updated) is no_update
    # moving an end point of the stored line (index keys) recalibrates with the new length
    moved = measure({"shapes[0].x0": 10.0, "shapes[0].y0": 5.0, "shapes[0].x1": 31.0,
                     "shapes[0].y1": 5.0}, "84 nm", updated)
    assert plain("results", results_of(moved, gray)[0])["calibration"]["nm_per_px"] == pytest.approx(4.0)


def test_missing_line_or_bad_length_is_said_in_the_calibration_panel(stores):
    analysis, gray = stores["analysis"], stores["gray"]
    no_line = measure({"autosize": True}, "500 nm", analysis)
    results, info = results_of(no_line, gray)
    assert plain("results", results)["calibration"]["source"] == "none"
    assert any("No line is drawn" in line for line in info)

    bad = measure(LINE_SHAPES, "half a micron", analysis)
    results, info = results_of(bad, gray)
    assert plain("results", results)["calibration"]["source"] == "none"
    assert any("Could not read 'half a micron' as a length" in line for line in info)


def test_typed_pixel_size_wins_over_the_drawn_line(stores):
    updated = measure(LINE_SHAPES, "84 nm", stores["analysis"])
    results, info = results_of(updated, stores["gray"], nm_per_px=3.0)
    assert plain("results", results)["calibration"]["source"] == "manual"
    assert plain("results", results)["calibration"]["nm_per_px"] == 3.0
    assert any("drawn line (2 nm/px) is ignored" in line for line in info)
    table = table_from_json(plain("results", results)["particles"])
    assert np.allclose(table["ecd_nm"], 3.0 * table["ecd_px"])


def test_overlay_draws_the_stored_line_and_follows_the_drag_mode(stores):
    updated = measure(LINE_SHAPES, "84 nm", stores["analysis"])
    results, _ = results_of(updated, stores["gray"])
    outputs = views_cb.overlay(results=results, opacity=0.7, mode="outline", gray=stores["gray"], analysis=updated,
                               drag_mode="drawline", trigger=ids.STORE_RESULTS)
    figure = outputs["figure"]
    assert outputs["alert"] is no_update
    lines = [shape for shape in figure.layout.shapes if shape.type == "line"]
    assert [(s.x0, s.y0, s.x1, s.y1) for s in lines] == [(10.0, 5.0, 52.0, 5.0)]
    assert figure.layout.dragmode == "drawline"
    patch = linecal_cb.drag_mode("drawline")
    assert isinstance(patch, Patch)
    assert patch.to_plotly_json()["operations"][0]["params"]["value"] == "drawline"
    assert linecal_cb.drag_mode("anything else").to_plotly_json()["operations"][0]["params"]["value"] == "zoom"


# ------------------------------------------------------------------------------------------------ browser
def wait(predicate, message):
    return poll(predicate, message, TIMEOUT_S)


def overlay_js(duo, expression):
    return duo.driver.execute_script(
        f"const gd = document.querySelector('#{ids.OVERLAY} .js-plotly-plot'); return gd ? ({expression}) : null;"
    )


def median_text(duo):
    match = re.search(r"Median\s+([0-9.e+-]+) (nm|px)", duo.find_element(f"#{ids.STATS_TABLE}").text)
    return (float(match.group(1)), match.group(2)) if match else None


@pytest.mark.browser
def test_draw_a_line_over_the_demo_scale_bar(dash_duo):
    dash_duo.start_server(create_app(default_segmenter="classical"))
    dash_duo.find_element(f"#{ids.DEMO_BUTTON}").click()
    dash_duo.wait_for_contains_text(f"#{ids.FILE_INFO}", "demo_sem.png", timeout=TIMEOUT_S)
    wait(lambda: median_text(dash_duo), "no statistics for the demo")
    wait(lambda: overlay_js(dash_duo, "gd.data.length === 2"), "no overlay")
    median_before, unit_before = median_text(dash_duo)
    calibration_before = dash_duo.find_element(f"#{ids.CALIBRATION_INFO}").text
    nm_per_px_before = 1.0
    if unit_before == "nm":
        nm_per_px_before = float(re.search(r"Pixel size ([0-9.e+-]+) nm/px", calibration_before).group(1))
    median_px = median_before / nm_per_px_before

    dash_duo.find_element(f"#{ids.LINE_MODE} input[value=drawline]").click()
    wait(lambda: overlay_js(dash_duo, "gd._fullLayout.dragmode === 'drawline'"), "drag mode not switched")
    # the demo's scale bar '500 nm' spans image x 813-1012 at row 753; draw along it on the drag layer,
    # whose top-left corner is the plot area's (Selenium 4.2 measures offsets from there)
    start = overlay_js(dash_duo, "[gd._fullLayout.xaxis.l2p(812.5), gd._fullLayout.yaxis.l2p(753)]")
    end = overlay_js(dash_duo, "[gd._fullLayout.xaxis.l2p(1012.5), gd._fullLayout.yaxis.l2p(753)]")
    drag = dash_duo.find_element(f"#{ids.OVERLAY} .nsewdrag")
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", drag)
    (ActionChains(dash_duo.driver).move_to_element_with_offset(drag, round(start[0]), round(start[1]))
     .click_and_hold().move_by_offset(round((end[0] - start[0]) / 2), 0)
     .move_by_offset(round(end[0] - start[0]) - round((end[0] - start[0]) / 2), 0).release().perform())
    line = wait(lambda: overlay_js(dash_duo, "(gd.layout.shapes || []).filter(s => s.type === 'line')"
                                             ".map(s => [s.x0, s.y0, s.x1, s.y1]).pop()"), "no line was drawn")
    length_px = float(np.hypot(line[2] - line[0], line[3] - line[1]))
    assert length_px == pytest.approx(200.0, rel=0.03)

    box = dash_duo.find_element(f"#{ids.LINE_LENGTH}")
    box.send_keys("500 nm\n")
    wait(lambda: "source: scalebar:user" in dash_duo.find_element(f"#{ids.CALIBRATION_INFO}").text,
         "the line calibration is not shown")
    text = dash_duo.find_element(f"#{ids.CALIBRATION_INFO}").text
    nm_per_px = 500.0 / length_px
    assert f"Pixel size {nm_per_px:.4g} nm/px" in text
    assert f"Line of {length_px:.1f} px drawn by the user = 500 nm" in text
    wait(lambda: "(nm)" in (dash_duo.driver.execute_script(
        f"return document.querySelector('#{ids.HISTOGRAM} .js-plotly-plot').layout.xaxis.title.text") or ""),
         "histogram not in nm")
    wait(lambda: median_text(dash_duo)[1] == "nm"
         and median_text(dash_duo)[0] == pytest.approx(median_px * nm_per_px, rel=2e-3),
         f"median not rescaled: {median_text(dash_duo)} vs {median_px * nm_per_px:.4g} nm")
    # the line stays on the redrawn overlay, still in drawing mode
    assert overlay_js(dash_duo, "gd.layout.dragmode") == "drawline"
