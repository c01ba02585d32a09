"""Detection of the burned-in data bar, and the user's override of it."""

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from app.analysis.databar import DataBar, detect_data_bar, parse_data_bar_spec
from app.analysis.errors import SaemiInputError


def draw_particles(height, width, *, seed, dark_background=False, noise=0.05):
    """Bright discs on a noisy grey background, or on a flat black one."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width]
    gray = np.full((height, width), 0.0 if dark_background else 0.35, np.float32)
    if not dark_background:
        gray += rng.normal(0.0, noise, gray.shape).astype(np.float32)
    for _ in range(40):
        cy, cx, radius = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(6, 25)
        gray[(rows - cy) ** 2 + (cols - cx) ** 2 < radius**2] = rng.uniform(0.6, 0.9)
    return np.clip(gray, 0.0, 1.0)


def draw_data_bar(
    width, bar_height_px, *, bar_length_px, label, background=0.0, ink=1.0, font_px=20
):
    """A microscope-style strip: instrument text, a filled scale bar and its label above it.

    Returns the strip as a float array and the bar's first column.
    """
    strip = Image.new("L", (width, bar_height_px), round(background * 255))
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default(size=font_px)
    fill = round(ink * 255)
    bar_x0 = width // 2 - bar_length_px // 2
    bar_y = bar_height_px - 20
    draw.rectangle([bar_x0, bar_y, bar_x0 + bar_length_px - 1, bar_y + 5], fill=fill)
    draw.text((bar_x0, bar_y - font_px - 8), label, fill=fill, font=font)
    draw.text((10, 8), "HV 10.0 kV  WD 5.1 mm  mag 50 000 x", fill=fill, font=font)
    return np.asarray(strip, np.float32) / 255.0, bar_x0


def with_data_bar(gray, bar_height_px, *, top=False, **bar_options):
    """Replace the bottom (or top) rows of ``gray`` by a data bar."""
    options = {"bar_length_px": 200, "label": "1 µm", **bar_options}
    strip, _ = draw_data_bar(gray.shape[1], bar_height_px, **options)
    out = gray.copy()
    if top:
        out[:bar_height_px] = strip
    else:
        out[-bar_height_px:] = strip
    return out


@pytest.mark.parametrize("bar_height_px", [40, 90])
@pytest.mark.parametrize(("background", "ink"), [(0.0, 1.0), (1.0, 0.0)])
def test_bottom_bar_found_exactly(bar_height_px, background, ink):
    gray = with_data_bar(
        draw_particles(768, 1024, seed=bar_height_px), bar_height_px, background=background, ink=ink
    )
    assert detect_data_bar(gray) == DataBar(768 - bar_height_px, 768)


def test_top_bar_found():
    gray = with_data_bar(draw_particles(600, 800, seed=3), 70, top=True)
    assert detect_data_bar(gray) == DataBar(0, 70)


def test_fei_height_sets_the_bar_without_detection():
    gray = draw_particles(768, 1024, seed=4)  # no visible bar at all
    assert detect_data_bar(gray, fei_height_px=700) == DataBar(700, 768)
    assert detect_data_bar(gray, fei_height_px=768) is None


@pytest.mark.parametrize("seed", range(4))
def test_no_bar_on_particles_over_noise(seed):
    assert detect_data_bar(draw_particles(600, 800, seed=seed)) is None


@pytest.mark.parametrize("seed", range(4))
def test_no_bar_on_particles_over_flat_black(seed):
    assert detect_data_bar(draw_particles(600, 800, seed=seed, dark_background=True)) is None


def test_no_bar_when_the_bottom_is_empty_black_background():
    gray = draw_particles(600, 800, seed=7, dark_background=True)
    gray[520:] = 0.0
    gray[550:575, 100:130] = 0.8  # one particle in the empty band
    assert detect_data_bar(gray) is None


@pytest.mark.parametrize(
    "gray",
    [
        np.random.default_rng(1).uniform(0.0, 1.0, (400, 500)),
        np.clip(0.5 + np.random.default_rng(2).normal(0.0, 0.004, (400, 500)), 0.0, 1.0),
        np.tile(np.linspace(0.0, 1.0, 400)[:, None], (1, 500)),
        np.zeros((400, 500)),
    ],
    ids=["noise", "faint-noise", "gradient", "flat"],
)
def test_no_bar_on_plain_images(gray):
    assert detect_data_bar(gray.astype(np.float32)) is None


def test_blank_strip_without_text_is_not_a_bar():
    gray = draw_particles(600, 800, seed=5)
    gray[540:] = 0.0
    assert detect_data_bar(gray) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("700:768", DataBar(700, 768)),
        ("700:", DataBar(700, 768)),
        ("-68:", DataBar(700, 768)),
        (" 0 : 40 ", DataBar(0, 40)),
        ("700:9999", DataBar(700, 768)),
        ("off", None),
        ("OFF", None),
    ],
)
def test_parse_data_bar_spec(text, expected):
    assert parse_data_bar_spec(text, 768) == expected


@pytest.mark.parametrize("text", ["bottom", "700", "700-768", "768:700", "0:768", ":"])
def test_parse_data_bar_spec_rejects_with_a_sentence(text):
    with pytest.raises(SaemiInputError, match=r"\."):
        parse_data_bar_spec(text, 768)


@pytest.mark.parametrize("seed", range(3))
def test_white_bar_below_particles_on_a_flat_dark_background(seed):
    # An SEM image whose background is one flat dark value: its rows are as uniform as the bar's,
    # and only the change of value tells where the bar starts.
    gray = draw_particles(600, 800, seed=seed, dark_background=True) * 0.5 + 0.12
    gray = with_data_bar(gray, 50, background=1.0, ink=0.0)
    assert detect_data_bar(gray) == DataBar(550, 600)


def test_a_flat_dark_band_at_the_bottom_is_still_not_a_bar():
    gray = draw_particles(600, 800, seed=7, dark_background=True) * 0.5 + 0.12
    gray[520:] = 0.12  # an empty band of the image's own flat value, nothing printed in it
    gray[550:575, 100:130] = 0.5
    assert detect_data_bar(gray) is None
