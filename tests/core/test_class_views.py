"""Views split by particle class: one image's (``class_views``) and a sample's pooled (``pooled_class_views``,
``class_report``), on hand-built particle tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.analysis.quality import ImageMeasures
from app.analysis.samples import ImageRecord, class_records, class_report, pooled_class_views, record_classes
from app.analysis.view import ViewOptions, class_stats_rows, class_views, view_results

SHAPE = (200, 200)


def table(ecd_px, classes, edge=None) -> pd.DataFrame:
    """A particle table with the columns the views read."""
    ecd = np.asarray(ecd_px, dtype=float)
    n = len(ecd)
    return pd.DataFrame({"particle_id": np.arange(1, n + 1), "ecd_px": ecd, "ecd_nm": 2 * ecd,
                         "area_px": np.pi * ecd**2 / 4, "circularity": np.full(n, 0.9),
                         "touches_edge": np.zeros(n, bool) if edge is None else np.asarray(edge),
                         "bbox_min_row": np.full(n, 50), "bbox_max_row": np.full(n, 60),
                         "bbox_min_col": np.full(n, 50), "bbox_max_col": np.full(n, 60),
                         "class": classes})


def record(name, sample, particles, classes=()) -> ImageRecord:
    measures = ImageMeasures(sharpness=1.0, saturated_fraction=0.0, n_particles=len(particles),
                             median_aspect_ratio=1.0, coverage=0.1, nm_per_px=2.0)
    return ImageRecord(name, sample, particles, 2.0, SHAPE, (0, SHAPE[0]), measures, classes=tuple(classes))


def test_class_views_split_the_particles_of_the_whole_view():
    particles = table([10, 11, 12, 30, 31, 32, 33], ["a", "a", "a", "b", "b", "b", "b"],
                      edge=[False, False, True, False, False, False, False])
    whole = view_results(particles, calibrated=False, image_shape=SHAPE, frame=(0, 200), view=ViewOptions())
    views = class_views(particles, calibrated=False, image_shape=SHAPE, frame=(0, 200), view=ViewOptions(),
                        names=("b", "a", "c"))
    assert list(views) == ["b", "a", "c"]
    assert [v.summary["count"] for v in views.values()] == [4, 2, 0]  # the edge particle of "a" is left out
    assert sum(v.summary["count"] for v in views.values()) == whole.summary["count"]
    assert {v.bin_width for v in views.values()} == {whole.bin_width}
    rows = dict(class_stats_rows(views))
    assert rows["b: count"] == "4" and rows["b: D50"] == "31.5 px" and rows["c: count"] == "0"


def test_a_samples_pool_is_split_by_class_in_the_order_the_classes_were_named():
    first = record("x1", "s", table([10, 12, 40], ["small", "small", "large"]), ("large", "small"))
    second = record("x2", "s", table([11, 42, 44], ["small", "large", "large"]), ("large", "small"))
    plain = record("x3", "s", table([20, 21], ["", ""]).drop(columns="class"))
    assert record_classes([first, second, plain]) == ["large", "small"]
    views = pooled_class_views([first, second, plain], ViewOptions())
    assert list(views) == ["large", "small"]
    assert views["large"].summary["count"] == 3 and views["small"].summary["count"] == 3
    assert views["small"].unit == "nm" and views["small"].summary["d50"] == pytest.approx(22.0)
    assert pooled_class_views([plain], ViewOptions()) == {}

    parts = class_records([first, second, plain])
    assert [r.sample for r in parts["small"]] == ["s · small", "s · small"]
    rows, comparisons = class_report([first, second, record("y1", "t", table([9, 10, 11], ["small"] * 3))],
                                     n_boot=50)
    assert {(row["sample"], row["class"], row["n_particles"]) for row in rows} == {
        ("s · large", "large", 3), ("s · small", "small", 3), ("t · small", "small", 3),
        ("t · large", "large", 0)}  # sample t has no large particle: said, and compared with nothing
    assert [(c["sample_a"], c["sample_b"], c["class"]) for c in comparisons] == [("s · small", "t · small", "small")]
