"""Particle classes in headless Chromium (dash_duo): name two classes, click particles of each on the overlay,
and read the per-class histogram, statistics and CSV.

The image is generated (:func:`tests.shapes.shapes_image`): 12 discs and 12 rods on a grid, so the class of
every particle is known. The clicks go to the image pixel at a particle's centre, placed on the page with
plotly's own axis mapping.
"""

from __future__ import annotations

import re

import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains

from app.layout import ids
from app.webapp import create_app
from tests.browser.test_workflow import csv_download, graph, type_into, upload, wait, wait_detected
from tests.shapes import shapes_image, shapes_truth

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: Particles clicked per class: fewer than the issue's five, on shapes that differ plainly.
CLICKS_PER_CLASS = 3
#: A class count may be off by this many particles (of 12). Three clicks per class teach a forest that
#: separates discs (aspect ratio 1) from rods (about 3.5) here; the unit tests find every particle right
#: with two, and the issue asks for 95% with five clicks, which on 24 particles allows one miss.
COUNT_TOLERANCE = 1


def click_pixel(duo, row, col):
    """Click the overlay at image pixel (row, col): the drag layer's top-left corner is the plot area's."""
    x, y = graph(duo, ids.OVERLAY, f"[gd._fullLayout.xaxis.l2p({col}), gd._fullLayout.yaxis.l2p({row})]")
    layer = duo.find_element(f"#{ids.OVERLAY} .nsewdrag")
    duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", layer)
    ActionChains(duo.driver).move_to_element_with_offset(layer, round(x), round(y)).click().perform()


def examples(duo) -> dict[str, int]:
    text = duo.find_element(f"#{ids.CLASS_INFO}").text
    return {name: int(count) for name, count in re.findall(r"(\w+): (\d+) examples?", text)}


def choose_class(duo, name):
    duo.driver.find_element("xpath", f"//*[@id='{ids.CLASS_ACTIVE}']//label[normalize-space()='{name}']").click()


def label_particles(duo, name, points):
    """Click each particle as ``name``, waiting for the page to settle after each click."""
    choose_class(duo, name)
    for number, (row, col) in enumerate(points, start=1):
        click_pixel(duo, row, col)
        wait(duo, lambda n=number: examples(duo).get(name) == n, f"click {number} on a {name} was not recorded")
        # the histogram and the overlay redraw after each click; a click while the overlay is redrawn is lost
        wait(duo, duo._wait_for_callbacks, "the page did not settle after a click")


def legend(duo) -> list[str]:
    """The names of the histogram's traces."""
    return graph(duo, ids.HISTOGRAM, "gd._fullData.map(t => t.name)") or []


def class_counts(duo) -> dict[str, int]:
    text = duo.find_element(f"#{ids.STATS_TABLE}").text
    return {name: int(count) for name, count in re.findall(r"(\w+): count\s+(\d+)", text)}


def test_label_classes_with_clicks_and_see_the_per_class_histogram(dash_duo, tmp_path):
    dash_duo.start_server(create_app(default_segmenter="classical"))
    dash_duo.wait_for_element(f"#{ids.UPLOAD}")
    dash_duo.find_element(f"#{ids.SPLIT_TOUCHING} input").click()  # a rod is not two touching particles
    path = tmp_path / "shapes.png"
    Image.fromarray(shapes_image()).save(path)
    upload(dash_duo, path, "shapes.png: 600 × 400 px")
    truth = shapes_truth()
    wait_detected(dash_duo, len(truth))
    wait(dash_duo, lambda: graph(dash_duo, ids.OVERLAY, "gd.data.length === 2"), "no overlay")

    type_into(dash_duo, ids.CLASS_NAMES, "sphere, rod")
    wait(dash_duo, lambda: examples(dash_duo) == {"sphere": 0, "rod": 0}, "the class names were not taken")
    spheres = [(row, col) for row, col, kind in truth if kind == "sphere"]
    rods = [(row, col) for row, col, kind in truth if kind == "rod"]
    label_particles(dash_duo, "sphere", spheres[:CLICKS_PER_CLASS])
    label_particles(dash_duo, "rod", rods[-CLICKS_PER_CLASS:])

    names = wait(dash_duo, lambda: len(legend(dash_duo)) == 2 and legend(dash_duo), "no per-class histogram")
    assert [name.split(" (n = ")[0] for name in names] == ["sphere", "rod"]
    counts = wait(dash_duo, lambda: len(class_counts(dash_duo)) == 2 and class_counts(dash_duo),
                  "no per-class statistics")
    for name in ("sphere", "rod"):
        true_count = sum(kind == name for *_, kind in truth)
        assert abs(counts[name] - true_count) <= COUNT_TOLERANCE, counts
        assert f"{name} (n = {counts[name]})" in names  # legend and table agree

    table = csv_download(dash_duo, "shapes_particles.csv")
    assert table["class"].value_counts().to_dict() == counts
