"""The user's particle diameter, from ``get_segmenter`` and ``python -m app analyze`` to the U-Net."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.analysis.errors import SaemiInputError
from app.analysis.segmentation import ClassicalSegmenter
from app.engine import SEGMENTER_CACHE_SIZE, get_segmenter
from tests.conftest import disc_image, png_bytes


@pytest.fixture
def fresh_segmenters():
    """Empty the segmenter cache before and after, so no test sees another's model folder."""
    get_segmenter.cache_clear()
    yield get_segmenter
    get_segmenter.cache_clear()


def test_the_segmenter_cache_stays_bounded_whatever_diameters_users_type(fresh_segmenters):
    first = get_segmenter("unet", diameter_px=1.5)
    for k in range(3 * SEGMENTER_CACHE_SIZE):
        get_segmenter("unet", diameter_px=2.0 + k)
    assert get_segmenter.cache_info().currsize == SEGMENTER_CACHE_SIZE
    assert get_segmenter("unet", diameter_px=1.5) is not first  # the oldest was let go


def test_get_segmenter_gives_the_diameter_to_the_unet(fresh_segmenters):
    unet = get_segmenter("unet", diameter_px=20.0)
    assert unet.name == "unet" and unet.diameter_px == 20.0
    assert get_segmenter("unet", diameter_px=20.0) is unet
    assert get_segmenter("unet").diameter_px is None
    with pytest.raises(SaemiInputError, match="positive"):
        get_segmenter("unet", diameter_px=0.0)


def test_classical_segmenter_ignores_the_diameter(fresh_segmenters):
    gray = disc_image().astype(np.float32) / 255.0
    with_diameter = get_segmenter("classical", diameter_px=20.0)
    assert isinstance(with_diameter, ClassicalSegmenter)
    np.testing.assert_array_equal(with_diameter.segment(gray), get_segmenter("classical").segment(gray))


def test_cli_runs_the_unet_at_the_given_diameter_and_records_it(tmp_path, tiny_model_dir, monkeypatch,
                                                                fresh_segmenters):
    from app import cli, engine

    monkeypatch.setenv("SAEMI_MODEL_DIR", str(tiny_model_dir))
    used = []
    real_analyze = engine.analyze_decoded

    def analyze_recording_the_segmenter(decoded, params, *, segmenter, **kwargs):
        used.append((segmenter.name, segmenter.diameter_px))
        return real_analyze(decoded, params, segmenter=segmenter, **kwargs)

    monkeypatch.setattr(engine, "analyze_decoded", analyze_recording_the_segmenter)
    image = tmp_path / "discs.png"
    image.write_bytes(png_bytes(disc_image()))
    out = tmp_path / "out"
    status = cli.main(["analyze", str(image), "--out", str(out), "--segmenter", "unet", "--diameter-px", "28",
                       "--data-bar", "off"])
    assert status == 0
    assert used == [("unet", 28.0)]
    header = [line for line in (out / "discs_particles.csv").read_text().splitlines() if line.startswith("#")]
    assert "# param_diameter_px: 28.0" in header
    assert any(line.startswith("# segmenter: unet") for line in header)
    assert pd.read_csv(out / "summary.csv", comment="#")["image"].tolist() == ["discs.png"]
