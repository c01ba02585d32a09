"""Canvas strokes, compact encodings and CSV reports."""

import io
import json

import numpy as np
import pandas as pd
import pytest

from app.analysis.encoding import (
    gray_to_png_b64,
    labels_to_png_b64,
    png_b64_to_gray,
    png_b64_to_labels,
)
from app.analysis.errors import SaemiInputError
from app.analysis.report import neutralise_cell, particles_csv
from app.analysis.strokes import TOOL_COLOURS, Stroke, apply_edits, apply_stroke, parse_canvas_json


def _canvas(paths, image_scale=None):
    objects = []
    if image_scale is not None:
        objects.append({"type": "image", "scaleX": image_scale, "scaleY": image_scale})
    for tool, pts, width in paths:
        path = [["M", *pts[0]]] + [["L", *p] for p in pts[1:]]
        objects.append({"type": "path", "stroke": TOOL_COLOURS[tool], "strokeWidth": width, "path": path})
    return json.dumps({"objects": objects})


def test_canvas_coordinates_map_to_full_resolution():
    # A 2000-px-wide image shown on a 500-px canvas: scale 0.25.
    js = _canvas([("draw", [(100, 50), (200, 50)], 4)], image_scale=0.25)
    (stroke,) = parse_canvas_json(js, (1500, 2000), canvas_width_px=500)
    assert stroke.points_xy == ((400.0, 200.0), (800.0, 200.0))
    assert stroke.width_px == 16.0
    # Without an image object the canvas width decides.
    (stroke,) = parse_canvas_json(_canvas([("erase", [(10, 10)], 2)]), (300, 1000), canvas_width_px=500)
    assert stroke.points_xy == ((20.0, 20.0),) and stroke.tool == "erase"


@pytest.mark.parametrize("bad", ["", "{not json", json.dumps({"objects": 5}), json.dumps([1, 2]),
                                 json.dumps({"objects": [{"type": "path", "stroke": "#ff0000",
                                                          "path": [["M", "x", None]]}]})])
def test_malformed_canvas_data_is_a_sentence(bad):
    with pytest.raises(SaemiInputError, match="canvas"):
        parse_canvas_json(bad, (100, 100), 100)


def _two_particles():
    labels = np.zeros((60, 100), np.int32)
    labels[10:30, 10:30] = 1
    labels[10:30, 60:90] = 2
    return labels


def test_draw_adds_a_particle_without_touching_others():
    labels = _two_particles()
    out = apply_stroke(labels, Stroke("draw", ((40.0, 45.0), (50.0, 45.0)), 6.0))
    assert out.max() == 3
    assert (out == 1).sum() == (labels == 1).sum()
    # Drawing over an existing particle adds only its background pixels.
    out = apply_stroke(labels, Stroke("draw", ((20.0, 20.0),), 4.0))
    assert out.max() == 2


def test_remove_deletes_every_touched_particle_and_erase_cuts():
    labels = _two_particles()
    out = apply_stroke(labels, Stroke("remove", ((25.0, 20.0), (70.0, 20.0)), 2.0))
    assert out.max() == 0
    cut = apply_stroke(labels, Stroke("erase", ((75.0, 0.0), (75.0, 59.0)), 4.0))
    assert len(np.unique(cut)) - 1 == 3  # particle 2 cut in two
    assert (cut > 0).sum() < (labels > 0).sum()


def test_apply_edits_replays_batches_and_rejects_garbage():
    labels = _two_particles()
    edits = [[Stroke("remove", ((20.0, 20.0),), 2.0).to_dict()],
             [Stroke("draw", ((45.0, 45.0),), 8.0).to_dict()]]
    out = apply_edits(labels, edits)
    assert out.max() == 2 and out[20, 20] == 0
    with pytest.raises(SaemiInputError):
        apply_edits(labels, [[{"tool": "explode", "points": [[1, 1]], "width_px": 3}]])


def test_label_and_gray_encodings_are_lossless():
    labels = np.arange(64 * 80, dtype=np.int32).reshape(64, 80) % 40000
    assert np.array_equal(png_b64_to_labels(labels_to_png_b64(labels)), labels)
    gray = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    np.testing.assert_allclose(png_b64_to_gray(gray_to_png_b64(gray)), gray, atol=0.5 / 255 + 1e-6)
    with pytest.raises(SaemiInputError):
        png_b64_to_labels("!!!")


def test_particles_csv_has_provenance_and_defused_formulas():
    table = pd.DataFrame({"particle_id": [1, 2], "area_px": [10.0, -3.0], "note": ["=1+1", "ok"]})
    text = particles_csv(table, {"file": "=cmd|' /C calc'!A0", "nm_per_px": "2.5\nevil"})
    lines = text.splitlines()
    assert lines[0] == "# file: '=cmd|' /C calc'!A0"
    assert lines[1] == "# nm_per_px: 2.5 evil"
    frame = pd.read_csv(io.StringIO(text), comment="#")
    assert list(frame["particle_id"]) == [1, 2]
    assert frame["area_px"].tolist() == [10.0, -3.0]
    assert frame["note"].tolist() == ["'=1+1", "ok"]
    assert neutralise_cell("@SUM(A1)") == "'@SUM(A1)"
