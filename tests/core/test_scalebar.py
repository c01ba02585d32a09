"""Scale-bar detection, length measurement and OCR of its label."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from app.analysis.calibration import NO_CALIBRATION, parse_length
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
    calibration = calibration_from_scale_bar(bar)
    if bar.nm_per_px is None and "m" in label and "nm" not in label:
        # Tesseract reads this font's micro sign at these sizes as 4, 8 or "&": not a deliberate
        # confusion, so the image is left uncalibrated, with a sentence, and never calibrated wrong.
        assert calibration.nm_per_px is None and "scale bar" in calibration.warning
        return
    assert bar.nm_per_px == pytest.approx(length_nm / bar_length_px, rel=0.02)
    assert calibration.source == "scalebar:ocr"
    assert calibration.nm_per_px == pytest.approx(length_nm / bar_length_px, rel=0.02)


def test_without_ocr_the_bar_is_measured_and_the_label_left_to_the_user(monkeypatch):
    monkeypatch.setattr("app.analysis.scalebar.tesseract_available", lambda: False)
    gray, _ = micrograph_with_bar(250, "500 nm")
    bar = find_scale_bar(gray, search_rows=DataBar(768 - BAR_HEIGHT_PX, 768))
    assert bar.length_px == 250
    assert (bar.label_text, bar.length_nm, bar.nm_per_px) == (None, None, None)
    unread = calibration_from_scale_bar(bar)
    assert (unread.nm_per_px, unread.source) == (None, NO_CALIBRATION.source)
    assert "250 px" in unread.warning and "could not be read" in unread.warning
    assert (unread.scale_bar.x0, unread.scale_bar.x1) == (bar.x0, bar.x1)
    calibration = calibration_from_scale_bar(bar, user_label="500 nm")
    assert calibration.source == "scalebar:user"
    assert calibration.nm_per_px == pytest.approx(2.0)


def test_user_label_wins_over_ocr_and_is_validated():
    bar = ScaleBar(10, 210, 700, 200, "1 pm", 1000.0, 5.0, ocr_confidence=90.0)
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
        ("2 am", 200, 2000.0),  # ... or as a
        ("1km", 180, 1000.0),  # ... or as k
        ("l00 nm", 100, 100.0),  # a one read as l
        ("1O0 nm", 100, 100.0),  # a zero read as O
        ("-200 nm-", 100, 200.0),  # the dashes around a label
        ("1Kkm", 180, None),  # letters that are no deliberate confusion
        ("5m", 150, None),  # a lone m: µm, mm, or nm misread
        ("200m", 49, None),  # "20 nm" read with the n as 0
        ("2 mm", 400, None),  # millimetres or micrometres: the user is asked
        ("00 nm", 100, None),  # no scale bar is labelled 00
        ("0 µm", 100, None),
        ("050 nm", 100, None),
        ("200 nm 5 kV", 100, None),  # more than one number and unit
        ("Mag 50 000 x", 100, None),
    ],
)
def test_interpret_label_maps_only_the_deliberate_confusions(text, length_px, length_nm):
    assert interpret_label(text, length_px) == length_nm


def test_interpret_label_keeps_picometres_when_micrometres_are_implausible():
    # 500 µm over 20 px would be 25 µm per pixel, beyond any electron micrograph.
    assert interpret_label("500 pm", 20) == pytest.approx(0.5)


# Real figures: bar styles, readings to confirm, and a second source to cross-check.

def _strip(width, height, *, background=0.0):
    """A flat data-bar strip to draw on, 2-D float in [0, 1]."""
    return np.full((height, width), background, np.float32)


def _text(gray, xy, text, size_px, value):
    """Draw ``text`` with its top-left at ``xy`` (DejaVu Sans) into ``gray`` in place."""
    image = Image.fromarray(np.uint8(gray * 255))
    ImageDraw.Draw(image).text(xy, text, fill=int(value * 255), font=ImageFont.truetype("DejaVuSans.ttf", size_px))
    gray[:] = np.asarray(image, np.float32) / 255.0


def _micrograph(strip):
    """Particles above ``strip`` (the data bar)."""
    height, width = strip.shape
    gray = draw_particles(600, width, seed=5)
    gray[-height:] = strip
    return gray, DataBar(600 - height, 600)


@needs_tesseract
def test_a_line_with_end_ticks_is_measured_from_tick_to_tick():
    strip = _strip(800, 90)
    strip[60:62, 500:700] = 1.0
    strip[52:70, 500:502] = 1.0
    strip[52:70, 698:700] = 1.0
    _text(strip, (560, 22), "500 nm", 24, 1.0)
    gray, bar_rows = _micrograph(strip)
    bar = find_scale_bar(gray, search_rows=bar_rows)
    assert (bar.x0, bar.x1, bar.style) == (500, 700, "ticks")
    assert bar.nm_per_px == pytest.approx(2.5)


@needs_tesseract
def test_dashes_around_the_label_are_one_bar():
    strip = _strip(800, 90)
    strip[44:48, 400:520] = 1.0
    strip[44:48, 640:760] = 1.0
    _text(strip, (535, 32), "200 nm", 24, 1.0)
    gray, bar_rows = _micrograph(strip)
    bar = find_scale_bar(gray, search_rows=bar_rows)
    assert (bar.x0, bar.x1, bar.style) == (400, 760, "dashes")
    assert bar.nm_per_px == pytest.approx(200 / 360)


@needs_tesseract
def test_the_frame_lines_of_a_data_bar_table_are_not_the_bar():
    strip = _strip(800, 90)
    strip[2:4, 0:790] = 1.0  # the table: a top line and cell walls through the whole strip
    for x in (0, 263, 520, 788):
        strip[2:88, x : x + 2] = 1.0
    strip[86:88, 0:790] = 1.0
    strip[64:68, 560:660] = 1.0  # the scale bar, 100 px
    _text(strip, (570, 30), "200 nm", 24, 1.0)
    gray, bar_rows = _micrograph(strip)
    bar = find_scale_bar(gray, search_rows=bar_rows)
    assert (bar.x0, bar.x1) == (560, 660)
    assert bar.nm_per_px == pytest.approx(2.0)


@needs_tesseract
def test_a_panel_letter_next_to_the_bar_is_not_its_label():
    gray = draw_particles(600, 800, seed=21)
    gray[520:600] = 0.0
    _text(gray, (20, 540), "(b)", 30, 1.0)
    gray[580:586, 80:280] = 1.0
    _text(gray, (130, 548), "1 µm", 24, 1.0)
    bar = find_scale_bar(gray)
    assert (bar.x0, bar.x1) == (80, 280)
    assert bar.nm_per_px == pytest.approx(5.0)


def _bar_reading(monkeypatch, text, confidence):
    """A rendered bar whose label OCR reads as ``text`` at ``confidence``."""
    monkeypatch.setattr("app.analysis.scalebar._ocr", lambda *args: (text, confidence))
    monkeypatch.setattr("app.analysis.scalebar.tesseract_available", lambda: True)
    gray, _ = micrograph_with_bar(250, "500 nm")
    return find_scale_bar(gray, search_rows=DataBar(768 - BAR_HEIGHT_PX, 768))


@pytest.mark.parametrize(
    ("text", "nm_per_px"),
    [("500 nm", 2.0), ("5OO nm", 2.0), ("l um", 4.0), ("1pm", 4.0), ("1 am", 4.0), ("1 µm", 4.0)],
)
def test_a_clean_confident_reading_is_applied(monkeypatch, text, nm_per_px):
    bar = _bar_reading(monkeypatch, text, 91.0)
    calibration = calibration_from_scale_bar(bar)
    assert calibration.source == "scalebar:ocr"
    assert calibration.nm_per_px == pytest.approx(nm_per_px)
    assert calibration.scale_bar.label_text == text and calibration.scale_bar.ocr_confidence == 91.0


def test_a_clean_reading_at_low_confidence_is_only_suggested(monkeypatch):
    bar = _bar_reading(monkeypatch, "200 am", 15.0)  # below the floor even when enlargements agree
    calibration = calibration_from_scale_bar(bar)
    assert calibration.nm_per_px is None
    assert bar.suggestion == "200 µm"
    assert "'200 µm'" in calibration.warning and "15%" in calibration.warning
    assert "Scale-bar label" in calibration.warning


@pytest.mark.parametrize("text", ["00 nm", "0 µm", "2OO0 x", "nm"])
def test_a_reading_that_is_not_a_length_leaves_the_image_uncalibrated(monkeypatch, text):
    bar = _bar_reading(monkeypatch, text, 95.0)
    calibration = calibration_from_scale_bar(bar)
    assert calibration.nm_per_px is None and bar.suggestion is None
    assert repr(text) in calibration.warning and "250 px" in calibration.warning


def test_00_nm_still_measures_the_particles(monkeypatch):
    """An unreadable label costs the calibration, never the segmentation."""
    from app.analysis.imageio import decode_image
    from app.analysis.pipeline import AnalysisParams, analyze_decoded, summary_row
    from app.analysis.segmentation import ClassicalSegmenter

    monkeypatch.setattr("app.analysis.scalebar._ocr", lambda *args: ("00 nm", 96.0))
    monkeypatch.setattr("app.analysis.scalebar.tesseract_available", lambda: True)
    gray, _ = micrograph_with_bar(250, "500 nm")
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(gray * 255)).save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue(), "zero.png")
    result = analyze_decoded(decoded, AnalysisParams(), segmenter=ClassicalSegmenter())
    assert len(result.particles) > 10
    assert result.calibration.nm_per_px is None
    assert "'00 nm'" in result.calibration.warning
    assert any("'00 nm'" in note for note in result.notes)
    row = summary_row("zero.png", result.particles, result.params, result.calibration, decoded.shape, result.frame)
    assert row["calibration_source"] == "none" and "'00 nm'" in row["calibration_warning"]
    provenance = result.provenance()
    assert provenance["scale_bar_label_text"] == "00 nm" and provenance["scale_bar_ocr_confidence"] == "96"
    assert provenance["scale_bar_px"].startswith(f"columns {result.calibration.scale_bar.x0}:")


def test_a_failure_while_reading_the_bar_never_stops_the_analysis(monkeypatch):
    from app.analysis.imageio import decode_image
    from app.analysis.pipeline import AnalysisParams, decide_calibration

    def broken(*args, **kwargs):
        raise RuntimeError("tesseract crashed")

    monkeypatch.setattr("app.analysis.scalebar.find_scale_bar", broken)
    gray, _ = micrograph_with_bar(250, "500 nm")
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(gray * 255)).save(buffer, format="PNG")
    calibration, bar, notes = decide_calibration(decode_image(buffer.getvalue(), "x.png"), AnalysisParams(), None)
    assert calibration.nm_per_px is None and bar is None
    assert "could not be read" in calibration.warning and notes


def _field_width_case(monkeypatch, field_nm_per_px):
    from app.analysis.calibration import Calibration
    from app.analysis.imageio import decode_image
    from app.analysis.pipeline import AnalysisParams, decide_calibration

    monkeypatch.setattr("app.analysis.scalebar._ocr", lambda *args: ("500 nm", 93.0))
    monkeypatch.setattr("app.analysis.scalebar.tesseract_available", lambda: True)
    monkeypatch.setattr(
        "app.analysis.scalebar.field_width_calibration",
        lambda gray, data_bar: Calibration(field_nm_per_px, "databar:field_width", "HFW 2.048 µm over 1024 px"),
    )
    gray, _ = micrograph_with_bar(250, "500 nm")
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(gray * 255)).save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue(), "fw.png")
    return decide_calibration(decoded, AnalysisParams(), DataBar(768 - BAR_HEIGHT_PX, 768))


def test_field_width_and_scale_bar_that_disagree_by_20_percent_are_both_shown(monkeypatch):
    calibration, _, notes = _field_width_case(monkeypatch, 2.4)  # the bar says 2.0 nm/px
    assert calibration.nm_per_px is None  # neither is chosen
    assert "2 nm/px" in calibration.warning and "2.4 nm/px" in calibration.warning
    assert "20.0% apart" in calibration.warning and "Neither is used" in calibration.warning
    assert calibration.warning in " ".join(notes)


def test_field_width_that_agrees_confirms_the_scale_bar(monkeypatch):
    calibration, _, _ = _field_width_case(monkeypatch, 2.01)
    assert calibration.source == "scalebar:ocr" and calibration.nm_per_px == pytest.approx(2.0)
    assert "confirmed by the data bar's field width" in calibration.detail and calibration.warning == ""


@needs_tesseract
def test_field_width_read_from_a_rendered_data_bar():
    from app.analysis.scalebar import field_width_calibration

    strip = _strip(1024, 60)
    _text(strip, (20, 15), "HV 10.00 kV   HFW 2.98 µm   WD 5.1 mm", 26, 1.0)
    gray, bar_rows = _micrograph(strip)
    calibration = field_width_calibration(gray, bar_rows)
    assert calibration.source == "databar:field_width"
    assert calibration.nm_per_px == pytest.approx(2980 / 1024)


@needs_tesseract
def test_the_tesseract_program_runs_single_threaded_unless_the_deployment_says_otherwise(monkeypatch):
    # Without tesserocr each reading starts the program; its OpenMP threads only spin on a label,
    # and beside the segmenter they tripled the CPU time.
    import os
    import subprocess

    from app.analysis import scalebar

    seen = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        seen.append(os.environ.get("OMP_THREAD_LIMIT"))
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(scalebar, "_in_process_ocr", lambda: False)
    monkeypatch.delenv("OMP_THREAD_LIMIT", raising=False)
    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    tesseract_available.cache_clear()
    try:
        gray, _ = micrograph_with_bar(200, "500 nm")
        assert find_scale_bar(gray).length_nm == 500
        assert seen and set(seen) == {"1"}
        monkeypatch.setenv("OMP_THREAD_LIMIT", "4")
        tesseract_available.cache_clear()
        seen.clear()
        find_scale_bar(gray)
        assert seen and set(seen) == {"4"}
    finally:
        tesseract_available.cache_clear()


@needs_tesseract
@pytest.mark.parametrize("label", ["500 nm", "2 µm", "20 nm"])
def test_the_engine_in_this_process_reads_labels_as_the_tesseract_program_does(monkeypatch, label):
    from app.analysis import scalebar

    if not scalebar._in_process_ocr():
        pytest.skip("tesserocr or Tesseract's English data is not installed")
    gray, _ = micrograph_with_bar(200, label)
    in_process = find_scale_bar(gray)
    monkeypatch.setattr(scalebar, "_in_process_ocr", lambda: False)
    program = find_scale_bar(gray)
    # the same reading, up to the case of a letter (on a smoothed page the two engines read the
    # micro sign of "2 µm" as "k" and "K")
    assert in_process.label_text.lower() == program.label_text.lower()
    # both applied (confidences differ between Tesseract versions: 63 and 76 for "2 µm")
    assert in_process.length_nm == program.length_nm == parse_length(label)


@pytest.mark.parametrize(
    ("text", "length_nm"),
    [("200 nin", 200.0), ("200ntr", 200.0), ("50 nnt", 50.0), ("100 nrn", 100.0), ("200n™", 200.0)],
)
def test_the_m_of_nm_split_into_two_glyphs_is_still_nm(text, length_nm):
    assert interpret_label(text, 100) == length_nm


@pytest.mark.parametrize("text", ["200 nice", "5 na", "10 nmm", "2 urn"])
def test_other_letters_after_n_are_not_a_unit(text):
    assert interpret_label(text, 100) is None


def test_the_cleaned_label_crop_keeps_only_the_glyphs_of_its_line():
    from scipy import ndimage

    from app.analysis.scalebar import _bar_candidates, _cleaned_crop, _label_boxes

    region = _strip(300, 80)
    region[60:66, 40:240] = 1.0  # the bar
    _text(region, (90, 28), "200 nm", 22, 1.0)
    region[10:34, 170:200] = 1.0  # a particle reaching into the label's crop from above
    candidates, labels, boxes = _bar_candidates(region > 0.5)
    bar = max(candidates, key=lambda candidate: candidate.length_px)
    line = _label_boxes(bar, labels, boxes)[0]
    margin = max(2, line.height // 3)
    cleaned = _cleaned_crop(region, labels, boxes, line, margin, bar.indices)
    crop = region[line.r0 - margin : line.r1 + margin, line.c0 - margin : line.c1 + margin]
    assert cleaned is not None and cleaned.shape == crop.shape
    glyphs = np.isin(labels[line.r0 - margin : line.r1 + margin, line.c0 - margin : line.c1 + margin],
                     [i for i in range(1, len(boxes) + 1) if i not in bar.indices
                      and boxes[i - 1].r0 >= line.r0 and boxes[i - 1].r1 <= line.r1
                      and boxes[i - 1].c0 >= line.c0 and boxes[i - 1].c1 <= line.c1])
    assert np.array_equal(cleaned[glyphs], crop[glyphs])  # the text is untouched
    assert cleaned.sum() < crop.sum() - 20  # the particle is painted over with the background
    assert cleaned[~ndimage.binary_dilation(glyphs, iterations=2)].max() == 0.0


@needs_tesseract
def test_a_label_with_a_particle_reaching_into_its_crop_is_read():
    strip = _strip(800, 90)
    strip[70:76, 300:500] = 1.0
    _text(strip, (360, 30), "200 nm", 24, 1.0)
    strip[0:32, 446:470] = 1.0  # a bright particle cut by the data bar, reaching down to the label
    gray, bar_rows = _micrograph(strip)
    bar = find_scale_bar(gray, search_rows=bar_rows)
    assert (bar.x0, bar.x1) == (300, 500)
    assert bar.nm_per_px == pytest.approx(1.0)


@needs_tesseract
def test_a_thick_bar_four_and_a_half_times_longer_than_high_is_a_bar():
    gray = draw_particles(600, 800, seed=31)
    gray[500:600] = 1.0
    gray[560:580, 560:650] = 0.0  # 90 x 20 px
    _text(gray, (565, 522), "100 nm", 22, 0.0)
    bar = find_scale_bar(gray)
    assert (bar.x0, bar.x1, bar.style) == (560, 650, "solid")
    assert bar.nm_per_px == pytest.approx(100 / 90)


def test_a_block_three_times_longer_than_high_is_not_a_bar():
    gray = draw_particles(600, 800, seed=32)
    gray[500:600] = 1.0
    gray[550:580, 560:650] = 0.0  # 90 x 30 px: a box, not a bar
    assert find_scale_bar(gray) is None


@pytest.mark.parametrize(("text", "length_nm"), [("100.nm", 100.0), ("10-nm", 10.0), ("200:nm", 200.0)])
def test_a_speck_between_number_and_unit_is_ignored(text, length_nm):
    assert interpret_label(text, 100) == length_nm


@pytest.mark.parametrize("text", ["10 -nm", "10.,nm", "10--nm"])
def test_more_than_one_speck_between_number_and_unit_is_not_a_length(text):
    assert interpret_label(text, 100) is None


def _read_with(monkeypatch, crop_height, text, confidence):
    """``_read_label`` on a blank crop ``crop_height`` rows high, OCR reading ``text`` on every page."""
    from app.analysis.scalebar import _read_label

    pages = []

    def fake_ocr(crop, bright_text, scale, smooth=False):
        pages.append(scale if not smooth else -scale)
        return text, confidence

    monkeypatch.setattr("app.analysis.scalebar._ocr", fake_ocr)
    return _read_label(np.zeros((crop_height, 3 * crop_height), np.float32), True, 100), pages


def test_two_enlargements_that_agree_accept_a_reading(monkeypatch):
    from app.analysis.scalebar import MIN_AGREED_CONFIDENCE, MIN_OCR_CONFIDENCE

    assert MIN_AGREED_CONFIDENCE + 10 < MIN_OCR_CONFIDENCE
    reading, pages = _read_with(monkeypatch, 12, "200 nm", MIN_AGREED_CONFIDENCE + 10)
    assert reading.accepted and reading.length_nm == 200.0
    assert len(pages) == 2


def test_a_crop_taller_than_the_targets_is_not_agreed_with_itself(monkeypatch):
    # 100 rows: the enlargements to 36, 48 and 64 rows are all the crop itself; only the
    # reductions are other pages, so a reading agreed there has been made twice on different pixels.
    from app.analysis.scalebar import MIN_AGREED_CONFIDENCE

    reading, pages = _read_with(monkeypatch, 100, "200 nm", MIN_AGREED_CONFIDENCE + 10)
    assert pages[:2] == [1.0, 0.48]
    assert reading.accepted
    reading, pages = _read_with(monkeypatch, 100, "200 nm", MIN_AGREED_CONFIDENCE - 5)
    assert not reading.accepted
    assert len(pages) == len(set(pages)) == 8  # 1.0, 0.48, 0.36 and 0.64, sharp and smoothed


def test_specks_of_noise_beside_a_label_do_not_stretch_its_line():
    from app.analysis.scalebar import _Box, _grow_line

    letters = [_Box(100, 128, 374, 386), _Box(100, 128, 392, 411), _Box(104, 128, 425, 443)]
    specks = [_Box(110, 113, 345, 348), _Box(118, 121, 452, 455), _Box(125, 128, 413, 415)]
    line = _grow_line(letters[0], letters + specks)
    assert (line.r0, line.r1, line.c0, line.c1) == (100, 128, 374, 443)


@needs_tesseract
def test_a_label_fainter_than_its_bar_on_a_panel_of_its_own_is_read():
    gray = 0.35 + 0.2 * draw_particles(600, 800, seed=41)
    gray[500:600, 480:800] = 0.75  # a light panel holding the bar and its label
    gray[545:550, 500:620] = 0.0  # the bar, black, 120 px
    _text(gray, (640, 532), "1 µm", 22, 0.3)  # its label, grey: no mark at the image's threshold
    bar = find_scale_bar(gray)
    assert (bar.x0, bar.x1) == (500, 620)
    assert bar.nm_per_px == pytest.approx(1000 / 120)


def test_a_smoothed_page_has_fewer_specks_than_a_sharp_one():
    from scipy import ndimage

    from app.analysis.scalebar import _ocr_page

    crop = _strip(120, 30, background=0.5)
    _text(crop, (8, 4), "200 nm", 18, 1.0)
    noise = np.random.default_rng(3).random(crop.shape)
    crop[noise > 0.93] = 0.95  # salt noise, as on a TEM background
    sharp = np.asarray(_ocr_page(crop, True, 2.0)) == 0
    smooth = np.asarray(_ocr_page(crop, True, 2.0, smooth=True)) == 0
    assert ndimage.label(smooth)[1] < ndimage.label(sharp)[1]


@needs_tesseract
def test_a_bar_paler_than_the_particles_is_found_for_the_label_next_to_it():
    gray = np.full((600, 800), 0.6, np.float32)
    gray[470:500, 600:640] = 0.0  # a black particle: the strongest contrast in the searched rows
    gray[560:566, 100:250] = 0.33  # the bar, grey: past a third of that contrast, not a half
    _text(gray, (130, 528), "500 nm", 24, 0.33)
    bar = find_scale_bar(gray)
    assert (bar.x0, bar.x1) == (100, 250)
    assert bar.nm_per_px == pytest.approx(500 / 150)


def test_a_faint_mark_without_a_label_is_not_a_bar():
    gray = np.full((600, 800), 0.6, np.float32)
    gray[470:500, 600:640] = 0.0
    gray[560:566, 100:250] = 0.33  # a pale streak, nothing written next to it
    assert find_scale_bar(gray) is None


@needs_tesseract
def test_a_bar_that_its_label_touches_is_split_from_the_letters():
    strip = _strip(800, 90)
    _text(strip, (360, 30), "500 nm", 24, 1.0)
    # a one-pixel line right under the letters: they all touch it and outweigh it
    strip[53:54, 350:470] = 1.0
    gray, bar_rows = _micrograph(strip)
    bar = find_scale_bar(gray, search_rows=bar_rows)
    assert (bar.x0, bar.x1, bar.style) == (350, 470, "touching")
    assert bar.nm_per_px == pytest.approx(500 / 120)


def _split(mask):
    """``_split_touching_label`` on the one component of ``mask``: the candidates and the boxes."""
    from scipy import ndimage

    from app.analysis.scalebar import MIN_LENGTH_PX, _Box, _split_touching_label

    labels, _ = ndimage.label(mask)
    boxes = [_Box(r.start, r.stop, c.start, c.stop) for r, c in ndimage.find_objects(labels)]
    long_runs = ndimage.binary_opening(mask, structure=np.ones((1, MIN_LENGTH_PX), bool))
    return _split_touching_label(1, labels, boxes, long_runs), boxes


def test_a_run_through_a_blob_of_text_is_not_split_off_as_a_bar():
    mask = np.zeros((40, 200), bool)
    for i, x in enumerate(range(40, 104, 8)):
        mask[10:20, x : x + 5] = True  # strokes of merged letters, wider than the run under them,
        mask[10 if i % 2 else 19, x + 5 : x + 8] = True  # joined by short bridges ...
    mask[20:23, 60:95] = True  # ... a run of 35 px at their foot
    assert _split(mask)[0] == []


def test_letters_as_much_below_as_above_a_line_are_not_split_off():
    mask = np.zeros((60, 200), bool)
    mask[30:32, 40:140] = True  # the line
    mask[14:30, 60:64] = True  # a stroke above
    mask[32:48, 100:104] = True  # and one as long below: a cross, not a label over a bar
    assert _split(mask)[0] == []


def test_a_line_with_a_letter_on_it_is_split():
    mask = np.zeros((60, 200), bool)
    mask[30:32, 40:140] = True
    mask[14:30, 60:64] = True  # the stem of a letter standing on the line
    mask[32:34, 61:63] = True  # its tail crossing it
    (bar,), boxes = _split(mask)
    assert (bar.box.c0, bar.box.c1, bar.box.r0, bar.box.r1, bar.style) == (40, 140, 30, 32, "touching")
    assert (14, 30, 60, 64) in [(b.r0, b.r1, b.c0, b.c1) for b in boxes]  # the letter, on its own


@needs_tesseract
def test_a_letter_whose_tail_touches_a_thick_bar_is_read_with_its_label():
    strip = _strip(800, 90)
    _text(strip, (360, 20), "2 µm", 28, 1.0)
    bottom = np.flatnonzero((strip > 0.5).any(axis=1))[-1]
    # the tail of the µ touches the bar, which outweighs it: the bar would keep the µ and paint it over
    strip[bottom + 1 : bottom + 9, 340:500] = 1.0
    gray, bar_rows = _micrograph(strip)
    bar = find_scale_bar(gray, search_rows=bar_rows)
    assert (bar.x0, bar.x1, bar.style) == (340, 500, "touching")
    assert bar.y == 600 - 90 + bottom + 5  # the bar's own middle row, not that of bar and letter
    assert bar.nm_per_px == pytest.approx(2000 / 160)


def test_a_letter_standing_on_a_thick_bar_becomes_a_mark_of_its_own():
    from app.analysis.scalebar import _bar_candidates

    mask = np.zeros((60, 200), bool)
    mask[30:38, 40:140] = True  # the bar, 8 rows thick
    mask[14:30, 60:64] = True  # a letter's stem standing on it
    (bar,), _, boxes = _bar_candidates(mask)
    assert (bar.box.r0, bar.box.r1, bar.box.c0, bar.box.c1, bar.style) == (30, 38, 40, 140, "touching")
    assert (14, 30, 60, 64) in [(b.r0, b.r1, b.c0, b.c1) for b in boxes]


def test_a_short_bar_with_a_letter_on_it_keeps_the_letter():
    from app.analysis.scalebar import _bar_candidates

    mask = np.zeros((60, 200), bool)
    mask[30:34, 40:65] = True  # 25 px: too short to be split from a letter
    mask[22:30, 50:52] = True
    (bar,), _, _ = _bar_candidates(mask)
    assert (bar.box.r0, bar.box.r1, bar.box.c0, bar.box.c1, bar.style) == (22, 34, 40, 65, "solid")
