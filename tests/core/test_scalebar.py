"""Scale-bar detection, length measurement and OCR of its label."""

import pytest

from app.analysis.calibration import NO_CALIBRATION
from app.analysis.databar import DataBar, detect_data_bar
from app.analysis.errors import SaemiInputError
from app.analysis.scalebar import (
    ScaleBar,
    calibration_from_scale_bar,
    find_scale_bar,
    interpret_label,
    tesseract_available,
)
from tests.core.test_databar import draw_data_bar, draw_particles

needs_tesseract = pytest.mark.skipif(
    not tesseract_available(), reason="Tesseract OCR (pytesseract + tesseract-ocr) is not installed"
)

BAR_HEIGHT_PX = 90


def micrograph_with_bar(bar_length_px, label, *, seed=0, **bar_options):
    """A 768 x 1024 particle image whose bottom 90 rows are a data bar; also the bar's x0."""
    gray = draw_particles(768, 1024, seed=seed)
    strip, bar_x0 = draw_data_bar(
        1024, BAR_HEIGHT_PX, bar_length_px=bar_length_px, label=label, **bar_options
    )
    gray[-BAR_HEIGHT_PX:] = strip
    return gray, bar_x0


@pytest.mark.parametrize("bar_length_px", [40, 137, 250, 512])
@pytest.mark.parametrize(("background", "ink"), [(0.0, 1.0), (1.0, 0.0)])
def test_bar_length_measured_exactly(bar_length_px, background, ink):
    gray, bar_x0 = micrograph_with_bar(bar_length_px, "1 µm", background=background, ink=ink)
    bar = find_scale_bar(gray, search_rows=DataBar(768 - BAR_HEIGHT_PX, 768))
    assert bar is not None
    assert bar.length_px == bar_length_px
    assert (bar.x0, bar.x1) == (bar_x0, bar_x0 + bar_length_px)
    assert 768 - 20 <= bar.y <= 768 - 15


def test_bar_found_near_the_bottom_without_a_data_bar():
    gray = draw_particles(600, 800, seed=11)
    gray[560:566, 600:760] = 1.0  # a bar drawn over the image itself
    bar = find_scale_bar(gray)
    assert bar is not None
    assert (bar.x0, bar.x1, bar.length_px) == (600, 760, 160)


def test_no_bar_in_a_plain_particle_image():
    assert find_scale_bar(draw_particles(600, 800, seed=12)) is None


SCALE_BARS = [
    (100, "100 nm", 100.0),
    (237, "200 nm", 200.0),
    (301, "500 nm", 500.0),
    (180, "1 µm", 1000.0),
    (412, "2 μm", 2000.0),
]


@needs_tesseract
@pytest.mark.parametrize(("bar_length_px", "label", "length_nm"), SCALE_BARS)
@pytest.mark.parametrize(("background", "ink", "font_px"), [(0.0, 1.0, 16), (1.0, 0.0, 20)])
def test_label_read_by_ocr_within_two_percent(
    bar_length_px, label, length_nm, background, ink, font_px
):
    gray, _ = micrograph_with_bar(
        bar_length_px, label, seed=bar_length_px, background=background, ink=ink, font_px=font_px
    )
    bar = find_scale_bar(gray, search_rows=detect_data_bar(gray))
    assert bar is not None
    assert bar.nm_per_px == pytest.approx(length_nm / bar_length_px, rel=0.02)
    calibration = calibration_from_scale_bar(bar)
    assert calibration.source == "scalebar:ocr"
    assert calibration.nm_per_px == pytest.approx(length_nm / bar_length_px, rel=0.02)


def test_without_ocr_the_bar_is_measured_and_the_label_left_to_the_user(monkeypatch):
    monkeypatch.setattr("app.analysis.scalebar.tesseract_available", lambda: False)
    gray, _ = micrograph_with_bar(250, "500 nm")
    bar = find_scale_bar(gray, search_rows=DataBar(768 - BAR_HEIGHT_PX, 768))
    assert bar.length_px == 250
    assert (bar.label_text, bar.length_nm, bar.nm_per_px) == (None, None, None)
    assert calibration_from_scale_bar(bar) == NO_CALIBRATION
    calibration = calibration_from_scale_bar(bar, user_label="500 nm")
    assert calibration.source == "scalebar:user"
    assert calibration.nm_per_px == pytest.approx(2.0)


def test_user_label_wins_over_ocr_and_is_validated():
    bar = ScaleBar(10, 210, 700, 200, "1 pm", 1000.0, 5.0)
    assert calibration_from_scale_bar(bar).nm_per_px == 5.0
    assert calibration_from_scale_bar(bar, user_label="2 µm").nm_per_px == pytest.approx(10.0)
    with pytest.raises(SaemiInputError):
        calibration_from_scale_bar(bar, user_label="two microns")


@pytest.mark.parametrize(
    ("text", "length_px", "length_nm"),
    [
        ("500 nm", 100, 500.0),
        ("500nm", 100, 500.0),
        ("1 um", 200, 1000.0),
        ("2 pm", 200, 2000.0),  # the micro sign read as p
        ("1Kkm", 180, 1000.0),  # ... or as letters
        ("5m", 150, 5000.0),  # ... or dropped
        ("l00 nm", 100, 100.0),  # a one read as l
        ("2 mm", 400, 2.0e6),
        ("Mag 50 000 x", 100, None),
    ],
)
def test_interpret_label_maps_common_misreadings(text, length_px, length_nm):
    assert interpret_label(text, length_px) == length_nm


def test_interpret_label_keeps_picometres_when_micrometres_are_implausible():
    # 500 µm over 20 px would be 25 µm per pixel, beyond any electron micrograph.
    assert interpret_label("500 pm", 20) == pytest.approx(0.5)
