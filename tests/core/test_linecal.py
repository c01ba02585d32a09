"""The drawn-line calibration: line geometry from plotly's relayoutData, the pixel size, the precedence."""

from __future__ import annotations

import math

import pytest

from app.analysis.calibration import NO_CALIBRATION, Calibration
from app.analysis.errors import SaemiInputError
from app.analysis.linecal import combine_calibrations, line_calibration, line_from_relayout, line_length_px

FEI = Calibration(2.5, "metadata:fei", "FEI metadata [Scan] PixelWidth = 2.5e-09 m")


def test_new_shape_list_gives_the_newest_line_and_skips_other_shapes():
    relayout = {"shapes": [
        {"type": "rect", "x0": -0.5, "y0": 700, "x1": 1023.5, "y1": 767.5},
        {"type": "line", "x0": 1, "y0": 1, "x1": 2, "y1": 2},
        {"type": "line", "x0": 813.2, "y0": 753, "x1": 1013.2, "y1": 753, "line": {"color": "#00e5ff"}},
        {"type": "path", "path": "M0,0L1,1"},
    ]}
    assert line_from_relayout(relayout) == (813.2, 753.0, 1013.2, 753.0)


def test_edited_shape_keys_give_the_line():
    relayout = {"shapes[1].x0": "10", "shapes[1].y0": 20.5, "shapes[1].x1": 40, "shapes[1].y1": 60.5}
    assert line_from_relayout(relayout) == (10.0, 20.5, 40.0, 60.5)


def test_edited_shape_keys_take_the_highest_complete_index():
    relayout = {"shapes[0].x0": 0, "shapes[0].y0": 0, "shapes[0].x1": 5, "shapes[0].y1": 0,
                "shapes[3].x0": 7, "shapes[3].y0": 1}
    assert line_from_relayout(relayout) == (0.0, 0.0, 5.0, 0.0)


@pytest.mark.parametrize("relayout", [
    None, {}, {"autosize": True}, {"xaxis.range[0]": 3, "xaxis.range[1]": 90}, {"dragmode": "drawline"},
    {"shapes": []}, {"shapes": [{"type": "rect", "x0": 0, "y0": 0, "x1": 4, "y1": 4}]},
    {"shapes[2].x0": 5, "shapes[2].x1": 9}, {"shapes": [{"type": "line", "x0": "a", "y0": 0, "x1": 1, "y1": 1}]},
])
def test_events_without_a_complete_line_give_none(relayout):
    assert line_from_relayout(relayout) is None


def test_line_length_is_euclidean():
    assert line_length_px((1.0, 2.0, 4.0, 6.0)) == pytest.approx(5.0)
    assert line_length_px((3.0, 3.0, 3.0, 3.0)) == 0.0


def test_line_calibration_divides_the_real_length_by_the_pixel_length():
    calibration = line_calibration((813.0, 753.0, 1013.0, 753.0), "500 nm")
    assert calibration.nm_per_px == pytest.approx(2.5)
    assert calibration.source == "scalebar:user"
    assert calibration.detail == "Line of 200.0 px drawn by the user = 500 nm"


@pytest.mark.parametrize("text, nm", [("1 µm", 1000.0), ("0,25um", 250.0), ("2 μm", 2000.0), ("80nm", 80.0)])
def test_line_calibration_reads_units(text, nm):
    line = (0.0, 0.0, 30.0, 40.0)  # 50 px, diagonal
    assert line_calibration(line, text).nm_per_px == pytest.approx(nm / 50.0)


@pytest.mark.parametrize("line, text, words", [
    (None, "500 nm", "No line is drawn"),
    ((0.0, 0.0, 100.0, 0.0), "", "Type the real length"),
    ((0.0, 0.0, 100.0, 0.0), None, "Type the real length"),
    ((0.0, 0.0, 100.0, 0.0), "five hundred nm", "Could not read"),
    ((0.0, 0.0, 100.0, 0.0), "500 parsecs", "Could not read"),
    ((0.0, 0.0, 100.0, 0.0), "0 nm", "greater than zero"),
    ((5.0, 5.0, 5.2, 5.0), "500 nm", "only 0.20 px long"),
])
def test_line_calibration_says_what_is_wrong(line, text, words):
    with pytest.raises(SaemiInputError, match=words):
        line_calibration(line, text)


def test_line_overrides_metadata_and_warns_when_they_disagree():
    line = line_calibration((0.0, 0.0, 100.0, 0.0), "300 nm")  # 3.0 nm/px, 20% above the FEI value
    chosen, warnings = combine_calibrations(FEI, line, None)
    assert chosen == line
    assert len(warnings) == 1
    assert "metadata:fei" in warnings[0] and "2.5 nm/px" in warnings[0] and "3 nm/px" in warnings[0]
    assert "16.7%" in warnings[0]


def test_line_agreeing_with_metadata_within_two_percent_gives_no_warning():
    line = line_calibration((0.0, 0.0, 100.0, 0.0), "252 nm")  # 0.8% above
    assert combine_calibrations(FEI, line, None) == (line, [])


def test_line_on_an_uncalibrated_image_is_used_without_warning():
    line = line_calibration((0.0, 0.0, 0.0, 40.0), "1 µm")
    assert combine_calibrations(NO_CALIBRATION, line, None) == (line, [])


def test_typed_pixel_size_wins_over_the_line_and_says_so():
    line = line_calibration((0.0, 0.0, 100.0, 0.0), "300 nm")
    chosen, warnings = combine_calibrations(FEI, line, 2.0)
    assert chosen.source == "manual" and chosen.nm_per_px == 2.0
    assert any("scalebar:user" in w and "3 nm/px" in w for w in warnings)
    assert any("metadata:fei" in w for w in warnings)
    assert "drawn line (3 nm/px) is ignored" in warnings[-1]


def test_without_a_line_the_usual_resolution_applies():
    assert combine_calibrations(FEI, None, None) == (FEI, [])
    chosen, _ = combine_calibrations(FEI, None, 4.0)
    assert chosen.source == "manual" and math.isclose(chosen.nm_per_px, 4.0)
    with pytest.raises(SaemiInputError):
        combine_calibrations(FEI, None, -1.0)
