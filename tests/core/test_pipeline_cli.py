"""The shared pipeline and the ``python -m app analyze`` command on generated images."""

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from app.analysis.errors import SaemiInputError
from app.analysis.imageio import decode_image
from app.analysis.pipeline import AnalysisParams, analyze_decoded, remeasure
from app.analysis.segmentation import ClassicalSegmenter
from app.config import REPO_ROOT
from model.synthetic import generate_sample


def _png_bytes(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def sample():
    return generate_sample(3, 384, 512, modality="sem", arrangement="isolated", data_bar=True,
                           scale_bar=True, letters=False, shape="round", n_particles=25,
                           median_diameter_px=24)


def test_pipeline_counts_particles_and_excludes_the_data_bar(sample):
    decoded = decode_image(_png_bytes(sample.image), "synthetic.png")
    params = AnalysisParams(segmenter="classical", nm_per_px=2.0)
    result = analyze_decoded(decoded, params, segmenter=ClassicalSegmenter())
    true_count = int(sample.labels.max())
    assert abs(len(result.particles) - true_count) <= max(2, 0.1 * true_count)
    assert result.data_bar is not None
    y0, y1 = sample.data_bar_rows
    assert abs(result.data_bar.y0 - y0) <= 3
    assert result.label_image[result.data_bar.y0 : result.data_bar.y1].max() == 0
    assert result.calibration.source == "manual" and result.calibration.nm_per_px == 2.0
    assert "ecd_nm" in result.particles.columns
    np.testing.assert_allclose(result.particles["ecd_nm"], 2.0 * result.particles["ecd_px"])
    prov = result.provenance()
    assert prov["sha256"] == decoded.sha256 and prov["param_nm_per_px"] == "2.0"
    summary = result.summary()
    assert summary["n_particles"] == int((~result.particles["touches_edge"]).sum())
    assert summary["calibration_source"] == "manual"


def test_scale_bar_is_read_while_the_segmenter_works(sample, monkeypatch):
    """The scale-bar search (OCR) overlaps segmentation: here it only proceeds once the segmenter
    has started, which never happens if the two run one after the other."""
    import threading

    from app.analysis import pipeline

    segmenting = threading.Event()
    real_find = pipeline._scalebar.find_scale_bar

    def find_scale_bar(*args, **kwargs):
        assert segmenting.wait(timeout=20), "the scale bar was searched before segmentation started"
        return real_find(*args, **kwargs)

    class SignallingSegmenter(ClassicalSegmenter):
        def segment(self, gray, progress=None, notes=None):
            segmenting.set()
            return super().segment(gray, progress=progress, notes=notes)

    monkeypatch.setattr(pipeline._scalebar, "find_scale_bar", find_scale_bar)
    decoded = decode_image(_png_bytes(sample.image), "synthetic.png")
    result = analyze_decoded(decoded, AnalysisParams(), segmenter=SignallingSegmenter())
    assert result.scale_bar is not None and len(result.particles) > 0


def test_the_segmenters_notes_reach_the_result(sample):
    """A sentence the segmenter has about its result joins the result's notes, which the page lists and
    the CLI prints."""

    class DoubtfulSegmenter(ClassicalSegmenter):
        def segment(self, gray, progress=None, notes=None):
            notes.append("The particle size was hard to estimate.")
            return super().segment(gray, progress=progress, notes=notes)

    decoded = decode_image(_png_bytes(sample.image), "synthetic.png")
    result = analyze_decoded(decoded, AnalysisParams(), segmenter=DoubtfulSegmenter())
    assert "The particle size was hard to estimate." in result.notes
    assert len(result.particles) > 0


def test_no_split_merges_and_min_area_drops():
    touching = generate_sample(5, 256, 256, modality="tem", arrangement="touching", data_bar=False,
                               scale_bar=False, letters=False, shape="round", n_particles=12,
                               median_diameter_px=30)
    decoded = decode_image(_png_bytes(touching.image), "t.png")
    split = analyze_decoded(decoded, AnalysisParams(), segmenter=ClassicalSegmenter())
    merged = analyze_decoded(decoded, AnalysisParams(split_touching=False), segmenter=ClassicalSegmenter())
    assert len(merged.particles) < len(split.particles)
    huge_min = analyze_decoded(decoded, AnalysisParams(min_area_px=10**6), segmenter=ClassicalSegmenter())
    assert len(huge_min.particles) == 0


def test_black_image_is_an_empty_result_not_an_error():
    decoded = decode_image(_png_bytes(np.zeros((64, 64), np.uint8)), "black.png")
    result = analyze_decoded(decoded, AnalysisParams(), segmenter=ClassicalSegmenter())
    assert len(result.particles) == 0 and "area_px" in result.particles.columns
    assert result.summary()["n_particles"] == 0


def test_remeasure_after_edit(sample):
    decoded = decode_image(_png_bytes(sample.image), "s.png")
    result = analyze_decoded(decoded, AnalysisParams(), segmenter=ClassicalSegmenter())
    edited = result.label_image.copy()
    edited[edited == 1] = 0
    labels, table = remeasure(edited, decoded.gray, result.params, result.calibration, result.data_bar)
    assert len(table) == len(result.particles) - 1
    assert labels.max() == len(table)
    assert list(table["particle_id"]) == list(range(1, len(table) + 1))


def test_params_validation():
    with pytest.raises(SaemiInputError):
        AnalysisParams(nm_per_px=-1.0)
    with pytest.raises(SaemiInputError):
        AnalysisParams.from_dict({"min_area_px": "many"})
    assert AnalysisParams.from_dict({"min_area_px": "12", "junk": 1}).min_area_px == 12


def test_cli_writes_labels_csvs_and_reports_bad_files(tmp_path, sample):
    good = tmp_path / "good.png"
    good.write_bytes(_png_bytes(sample.image))
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "app", "analyze", str(good), str(bad), "--out", str(out),
         "--segmenter", "classical", "--min-area", "5", "--nm-per-px", "1.5"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "notes.png" in proc.stderr and "not an image" in proc.stderr
    labels = np.array(Image.open(out / "good_labels.png"))
    assert labels.shape == sample.image.shape and labels.dtype == np.uint16
    table = pd.read_csv(out / "good_particles.csv", comment="#")
    assert len(table) == labels.max()
    for column in ("particle_id", "area_px", "ecd_px", "centroid_x_px", "centroid_y_px", "touches_edge",
                   "ecd_nm"):
        assert column in table.columns
    header = (out / "good_particles.csv").read_text().splitlines()[:20]
    assert any(line.startswith("# sha256:") for line in header)
    assert any(line.startswith("# param_min_area_px: 5") for line in header)
    summary = pd.read_csv(out / "summary.csv", comment="#")
    assert list(summary["image"]) == ["good.png"]
    assert summary.loc[0, "nm_per_px"] == 1.5
    assert summary.loc[0, "calibration_source"] == "manual"


def test_cli_survives_unexpected_failures_and_duplicate_names(tmp_path, sample, monkeypatch, capsys):
    from app import cli

    first = tmp_path / "a" / "same.png"
    second = tmp_path / "b" / "same.png"
    third = tmp_path / "boom.png"
    for path in (first, second, third):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(_png_bytes(sample.image))
    from app import batch

    real = batch.analyze_file

    def flaky(data, name, *args, **kwargs):
        if name == "boom.png":
            raise RuntimeError("simulated bug")
        return real(data, name, *args, **kwargs)

    monkeypatch.setattr(batch, "analyze_file", flaky)
    out = tmp_path / "out"
    status = cli.main(["analyze", str(third), str(first), str(second), "--out", str(out),
                       "--segmenter", "classical", "--workers", "0"])  # in this process, where the patch is
    assert status == 1
    errors = capsys.readouterr().err
    assert "boom.png: SAEMI failed on this file unexpectedly" in errors
    assert f"{second}: skipped" in errors
    summary = pd.read_csv(out / "summary.csv", comment="#")
    assert list(summary["image"]) == ["same.png"]
    assert (out / "same_labels.png").is_file() and not (out / "boom_labels.png").exists()


@pytest.mark.parametrize("diameter_px", [0, 0.0, -8.0, float("nan"), float("inf"), "twenty", True])
def test_bad_particle_diameters_are_refused_with_a_sentence(diameter_px):
    with pytest.raises(SaemiInputError, match="typical particle diameter must be a positive number of pixels"):
        AnalysisParams(segmenter="unet", diameter_px=diameter_px)


def test_diameter_from_settings_must_be_a_number():
    with pytest.raises(SaemiInputError, match="must be numbers"):
        AnalysisParams.from_dict({"diameter_px": "about twenty"})
    with pytest.raises(SaemiInputError, match="typical particle diameter"):
        AnalysisParams.from_dict({"diameter_px": "-3"})
    assert AnalysisParams.from_dict({"diameter_px": "18.5"}).diameter_px == 18.5
    assert AnalysisParams.from_dict({"diameter_px": None}).diameter_px is None


def test_given_diameter_is_recorded_in_the_provenance():
    decoded = decode_image(_png_bytes(np.zeros((48, 48), np.uint8)), "blank.png")
    params = AnalysisParams(diameter_px=20.0)
    assert AnalysisParams.from_dict(params.to_dict()) == params
    given = analyze_decoded(decoded, params, segmenter=ClassicalSegmenter()).provenance()
    assert given["param_diameter_px"] == "20.0"
    automatic = analyze_decoded(decoded, AnalysisParams(), segmenter=ClassicalSegmenter()).provenance()
    assert automatic["param_diameter_px"] == ""


@pytest.mark.parametrize("diameter", ["0", "-4", "nan"])
def test_cli_refuses_a_bad_diameter_in_one_line(tmp_path, capsys, diameter):
    from app import cli

    image = tmp_path / "blank.png"
    image.write_bytes(_png_bytes(np.zeros((32, 32), np.uint8)))
    out = tmp_path / "out"
    status = cli.main(["analyze", str(image), "--out", str(out), "--segmenter", "unet", "--diameter-px", diameter])
    errors = capsys.readouterr().err
    assert status == 2
    assert errors.startswith("error: The typical particle diameter must be a positive number of pixels")
    assert errors.count("\n") == 1 and "Traceback" not in errors
    assert not out.exists()


def test_views_are_recorded_in_the_provenance():
    decoded = decode_image(_png_bytes(np.zeros((48, 48), np.uint8)), "blank.png")
    params = AnalysisParams.from_dict({"views": "2"})
    assert params.views == 2 and AnalysisParams.from_dict(params.to_dict()) == params
    assert analyze_decoded(decoded, params, segmenter=ClassicalSegmenter()).provenance()["param_views"] == "2"
    assert analyze_decoded(decoded, AnalysisParams(), segmenter=ClassicalSegmenter()).provenance()["param_views"] == ""


def test_cli_passes_views_to_the_unet_and_refuses_a_bad_number_in_one_line(tmp_path, capsys, monkeypatch):
    from app import cli, engine

    image = tmp_path / "blank.png"
    image.write_bytes(_png_bytes(np.zeros((32, 32), np.uint8)))
    out = tmp_path / "out"
    status = cli.main(["analyze", str(image), "--out", str(out), "--segmenter", "unet", "--views", "5"])
    errors = capsys.readouterr().err
    assert status == 2 and not out.exists()
    assert errors == "error: The number of network views must be a whole number from 1 to 4; got 5.\n"
    asked = []

    def record(name, diameter_px=None, views=None, model_dir=None):
        asked.append((name, views))
        return ClassicalSegmenter()

    monkeypatch.setattr(engine, "get_segmenter", record)
    assert cli.main(["analyze", str(image), "--out", str(out), "--segmenter", "unet", "--views", "2"]) == 0
    assert asked == [("unet", 2)]
    assert "# param_views: 2\n" in (out / "blank_particles.csv").read_text()
