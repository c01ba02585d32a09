"""Tests of per-particle measurement on hand-built label images."""

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from scipy.spatial import Delaunay
from skimage.draw import disk, ellipse
from skimage.measure import label, regionprops_table

from app.analysis.errors import SaemiInputError
from app.analysis.measure import (
    NM_COLUMNS,
    PX_COLUMNS,
    ecd_from_area,
    measure_particles,
)


def rectangle_labels(height_px, width_px, shape=(80, 90), top=10, left=12):
    labels = np.zeros(shape, dtype=np.int32)
    labels[top : top + height_px, left : left + width_px] = 1
    return labels


def random_blobs(seed, shape=(160, 200)):
    rng = np.random.default_rng(seed)
    mask = ndi.gaussian_filter(rng.random(shape), 2.0) > 0.52
    return label(mask)


@pytest.mark.parametrize("height_px, width_px", [(3, 20), (12, 12), (25, 7), (1, 1), (1, 9)])
def test_rectangle_feret_is_diagonal_and_short_side(height_px, width_px):
    df = measure_particles(rectangle_labels(height_px, width_px))
    assert df.loc[0, "feret_max_px"] == pytest.approx(np.hypot(height_px, width_px), abs=1e-9)
    assert df.loc[0, "feret_min_px"] == pytest.approx(min(height_px, width_px), abs=1e-9)
    assert df.loc[0, "area_px"] == height_px * width_px
    assert df.loc[0, "solidity"] == pytest.approx(1.0)


def test_rotated_rectangle_min_feret_is_its_width():
    labels = np.zeros((120, 120), dtype=np.int32)
    rr, cc = ellipse(60, 60, 40, 8, rotation=np.radians(30))  # elongated, tilted
    labels[rr, cc] = 1
    df = measure_particles(labels)
    assert df.loc[0, "feret_min_px"] == pytest.approx(16, abs=1.5)
    assert df.loc[0, "feret_max_px"] == pytest.approx(80, abs=1.5)


@pytest.mark.parametrize("radius", [4, 10, 30])
def test_disc_feret_both_near_diameter(radius):
    labels = np.zeros((100, 100), dtype=np.int32)
    rr, cc = disk((50, 50), radius)
    labels[rr, cc] = 3
    df = measure_particles(labels)
    assert df.loc[0, "particle_id"] == 3
    assert df.loc[0, "feret_max_px"] == pytest.approx(2 * radius, abs=1.5)
    assert df.loc[0, "feret_min_px"] == pytest.approx(2 * radius, abs=1.5)
    assert df.loc[0, "ecd_px"] == pytest.approx(2 * radius, abs=1.0)
    assert df.loc[0, "solidity"] == pytest.approx(1.0)
    assert df.loc[0, "circularity"] > 0.85


def test_feret_max_matches_skimage_on_random_shapes():
    labels = random_blobs(0)
    df = measure_particles(labels)
    reference = regionprops_table(labels, properties=("label", "feret_diameter_max"))
    np.testing.assert_array_equal(df["particle_id"], reference["label"])
    difference = df["feret_max_px"].to_numpy() - reference["feret_diameter_max"]
    # Union of pixel squares versus skimage's contour through pixel-edge midpoints of a convex
    # image that may hold a few pixels more: within a pixel, and larger on average.
    assert np.abs(difference).max() <= 1.0
    assert 0.0 < np.median(difference) < 0.75
    assert (df["feret_min_px"] <= df["feret_max_px"]).all()


def test_moment_properties_match_regionprops():
    labels = random_blobs(1)
    intensity = np.random.default_rng(2).random(labels.shape)
    df = measure_particles(labels, intensity_image=intensity)
    reference = regionprops_table(
        labels,
        intensity_image=intensity,
        properties=(
            "area", "perimeter", "axis_major_length", "axis_minor_length",
            "orientation", "centroid", "intensity_mean", "bbox",
        ),
    )
    pairs = {
        "area_px": reference["area"],
        "perimeter_px": reference["perimeter"],
        "major_axis_px": reference["axis_major_length"],
        "minor_axis_px": reference["axis_minor_length"],
        "centroid_y_px": reference["centroid-0"],
        "centroid_x_px": reference["centroid-1"],
        "mean_intensity": reference["intensity_mean"],
        "bbox_h_px": reference["bbox-2"] - reference["bbox-0"],
        "bbox_w_px": reference["bbox-3"] - reference["bbox-1"],
    }
    for column, expected in pairs.items():
        np.testing.assert_allclose(df[column], expected, atol=1e-9, err_msg=column)
    # An axis at +90 degrees is the same as one at -90 degrees.
    turn = df["orientation_deg"].to_numpy() - np.degrees(reference["orientation"])
    np.testing.assert_allclose((turn + 90.0) % 180.0 - 90.0, 0.0, atol=1e-9)


def test_derived_columns_follow_their_definitions():
    labels = random_blobs(3)
    df = measure_particles(labels)
    np.testing.assert_allclose(df["ecd_px"], np.sqrt(4 * df["area_px"] / np.pi))
    assert np.array_equal(df["ecd_px"].to_numpy(), ecd_from_area(df["area_px"]))
    finite = df["minor_axis_px"] > 0
    np.testing.assert_allclose(
        df.loc[finite, "aspect_ratio"],
        df.loc[finite, "major_axis_px"] / df.loc[finite, "minor_axis_px"],
    )
    assert (df.loc[finite, "aspect_ratio"] >= 1).all()
    raw = 4 * np.pi * df["area_px"] / df["perimeter_px"] ** 2
    np.testing.assert_allclose(df["circularity"], np.minimum(raw, 1.0))
    assert ((df["solidity"] > 0) & (df["solidity"] <= 1)).all()


def test_solidity_of_an_l_shape():
    labels = np.zeros((30, 30), dtype=np.int32)
    labels[5:15, 5:7] = 1  # 10 x 2 vertical bar
    labels[13:15, 7:15] = 1  # 2 x 8 foot
    df = measure_particles(labels)
    # Count the pixel centres inside the hull of the particle's centres directly.
    ys, xs = np.mgrid[0:30, 0:30]
    points = np.argwhere(labels > 0)
    inside = Delaunay(points).find_simplex(np.c_[ys.ravel(), xs.ravel()], tol=1e-9) >= 0
    assert df.loc[0, "solidity"] == pytest.approx(36 / inside.sum())


def test_physical_units_scale_pixel_columns():
    labels = random_blobs(4)
    df = measure_particles(labels, nm_per_px=2.5)
    for name, (source, power) in NM_COLUMNS.items():
        np.testing.assert_allclose(df[name], df[source] * 2.5**power, err_msg=name)
    assert "area_nm2" not in measure_particles(labels).columns


def test_edge_flags_follow_the_frame():
    labels = np.zeros((50, 60), dtype=np.int32)
    labels[0:3, 20:25] = 1  # top row of the image
    labels[20:25, 0:3] = 2  # left column
    labels[20:25, 57:60] = 3  # right column
    labels[20:25, 20:25] = 4  # inside
    labels[8:12, 30:34] = 5  # starts at row 8, the first row of frame (8, 40)
    labels[36:40, 40:44] = 6  # reaches row 39, the last row of frame (8, 40)
    default = measure_particles(labels).set_index("particle_id")["touches_edge"]
    assert default.to_dict() == {1: True, 2: True, 3: True, 4: False, 5: False, 6: False}
    framed = measure_particles(labels, frame=(8, 40)).set_index("particle_id")["touches_edge"]
    assert framed.to_dict() == {1: True, 2: True, 3: True, 4: False, 5: True, 6: True}


def test_rows_sorted_by_id_with_gaps():
    labels = np.zeros((40, 40), dtype=np.int32)
    labels[2:6, 2:6] = 17
    labels[10:20, 10:12] = 4
    labels[30:32, 30:39] = 9
    df = measure_particles(labels)
    assert df["particle_id"].tolist() == [4, 9, 17]
    assert df["area_px"].tolist() == [20, 18, 16]


def test_empty_image_gives_typed_empty_frame():
    df = measure_particles(np.zeros((20, 30), dtype=np.uint16), nm_per_px=1.0)
    assert len(df) == 0
    assert list(df.columns) == list(PX_COLUMNS) + list(NM_COLUMNS)
    for name, dtype in PX_COLUMNS.items():
        assert df[name].dtype == np.dtype(dtype), name
    assert all(df[name].dtype == np.float64 for name in NM_COLUMNS)


def test_columns_and_dtypes_of_a_nonempty_result():
    df = measure_particles(random_blobs(5).astype(np.uint16))
    assert list(df.columns) == list(PX_COLUMNS)
    assert df.dtypes.to_dict() == {name: np.dtype(dtype) for name, dtype in PX_COLUMNS.items()}
    assert df["mean_intensity"].isna().all()


def test_skipping_feret_leaves_nan():
    df = measure_particles(random_blobs(6), include_feret=False)
    assert df["feret_max_px"].isna().all() and df["feret_min_px"].isna().all()
    assert df["area_px"].notna().all()


def test_bad_arguments_are_refused():
    labels = rectangle_labels(3, 3)
    with pytest.raises(SaemiInputError, match="pixel size"):
        measure_particles(labels, nm_per_px=-1.0)
    with pytest.raises(SaemiInputError, match="rows"):
        measure_particles(labels, frame=(10, 500))
    with pytest.raises(ValueError):
        measure_particles(labels.astype(float))
    with pytest.raises(ValueError):
        measure_particles(labels, intensity_image=np.zeros((2, 2)))


def test_result_is_a_dataframe_indexed_from_zero():
    df = measure_particles(random_blobs(7))
    assert isinstance(df, pd.DataFrame)
    assert df.index.tolist() == list(range(len(df)))


def test_ecd_from_area_is_the_diameter_of_the_disc_of_that_area():
    areas_px = np.arange(0, 5000)
    ecd_px = ecd_from_area(areas_px)
    assert ecd_px.dtype == np.float64 and ecd_px.shape == areas_px.shape
    np.testing.assert_allclose(np.pi / 4 * ecd_px**2, areas_px, rtol=1e-12)
    # Bit for bit the same as the other way of writing it (4 = 2**2 scales exactly).
    assert np.array_equal(ecd_px, 2.0 * np.sqrt(areas_px / np.pi))
    assert ecd_from_area(np.pi) == 2.0
