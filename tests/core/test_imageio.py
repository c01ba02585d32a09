"""Decoding of every supported format and a clear sentence for every bad input."""

import io

import numpy as np
import pytest
import tifffile
from PIL import Image

from app.analysis.errors import SaemiInputError
from app.analysis.imageio import decode_data_url, decode_image, is_tiff


def _png(array, mode=None):
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _ramp(dtype=np.uint8, top=255):
    return np.linspace(0, top, 40 * 30).reshape(30, 40).astype(dtype)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF"])
def test_gray_8bit_formats_round_trip(fmt):
    array = _ramp()
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    decoded = decode_image(buf.getvalue(), f"x.{fmt.lower()}")
    assert decoded.shape == (30, 40)
    assert decoded.gray.dtype == np.float32
    tolerance = 3 / 255 if fmt == "JPEG" else 1e-6
    np.testing.assert_allclose(decoded.gray, array / 255.0, atol=tolerance)


def test_rgb_rgba_and_palette_become_luma():
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 1] = 200  # pure green
    expected = 0.587 * 200 / 255
    assert decode_image(_png(rgb), "rgb.png").gray[0, 0] == pytest.approx(expected, abs=1 / 255)
    rgba = np.dstack([rgb, np.full((20, 20), 17, np.uint8)])
    decoded = decode_image(_png(rgba), "rgba.png")
    assert decoded.mode == "rgba"
    assert decoded.gray[0, 0] == pytest.approx(expected, abs=1 / 255)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE)
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    decoded = decode_image(buf.getvalue(), "pal.png")
    assert decoded.mode == "palette"
    assert decoded.gray[0, 0] == pytest.approx(expected, abs=2 / 255)


def test_16bit_tiff_uses_full_range_without_clipping():
    array = np.linspace(100, 4095, 64 * 64).reshape(64, 64).astype(np.uint16)  # 12-bit detector counts
    buf = io.BytesIO()
    tifffile.imwrite(buf, array)
    decoded = decode_image(buf.getvalue(), "deep.tif")
    assert decoded.source_dtype == "uint16"
    assert decoded.gray.min() == pytest.approx(0.0)
    assert decoded.gray.max() == pytest.approx(1.0)
    assert np.all(np.diff(decoded.gray.ravel()) >= 0)  # order preserved, nothing clipped flat
    assert any("scaled" in note for note in decoded.notes)


def test_16bit_png_and_float_tiff():
    array = _ramp(np.uint16, 60000)
    decoded = decode_image(_png(array), "deep.png")
    assert decoded.gray.max() == pytest.approx(1.0) and decoded.gray.min() == pytest.approx(0.0)
    floats = np.linspace(-2.5, 7.5, 32 * 32, dtype=np.float32).reshape(32, 32)
    buf = io.BytesIO()
    tifffile.imwrite(buf, floats)
    decoded = decode_image(buf.getvalue(), "float.tif")
    np.testing.assert_allclose(decoded.gray, (floats + 2.5) / 10.0, atol=1e-6)


def test_rgb_tiff_and_multipage_tiff_note():
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as writer:
        for page in (_ramp(), _ramp() // 2, _ramp() // 4):
            writer.write(page)
    decoded = decode_image(buf.getvalue(), "stack.tif")
    assert decoded.n_pages == 3
    assert decoded.shape == (30, 40)
    assert "page 1 of 3" in decoded.notes[0]
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.dstack([_ramp()] * 3), photometric="rgb")
    decoded = decode_image(buf.getvalue(), "rgb.tif")
    assert decoded.mode == "rgb" and decoded.shape == (30, 40)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "empty"),
        (b"hello, I am a text file, not an image\n" * 5, "not an image"),
        (b"II*\x00" + b"\x00" * 40, "TIFF"),
    ],
)
def test_bad_bytes_give_sentences(data, fragment):
    with pytest.raises(SaemiInputError, match=fragment):
        decode_image(data, "bad.png")


def test_truncated_jpeg():
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((200, 200)) * 255).astype(np.uint8)).save(buf, "JPEG")
    with pytest.raises(SaemiInputError, match="truncated"):
        decode_image(buf.getvalue()[: len(buf.getvalue()) // 2], "cut.jpg")


def test_size_limits_checked_before_decoding():
    data = _png(_ramp())
    with pytest.raises(SaemiInputError, match="above the limit"):
        decode_image(data, "big.png", max_bytes=10)
    # A decompression bomb: a tiny file declaring 20000 x 20000 pixels.
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < 200_000
    with pytest.raises(SaemiInputError, match="megapixels"):
        decode_image(bomb.getvalue(), "bomb.png", max_pixels=70_000_000 // 2)


def test_tiny_image_is_refused_and_black_image_is_not():
    with pytest.raises(SaemiInputError, match="1 x 1 pixels"):
        decode_image(_png(np.zeros((1, 1), np.uint8)), "dot.png")
    decoded = decode_image(_png(np.zeros((50, 50), np.uint8)), "black.png")
    assert decoded.gray.max() == 0.0


def test_data_url():
    assert decode_data_url("data:image/png;base64,aGVsbG8=") == b"hello"
    with pytest.raises(SaemiInputError):
        decode_data_url("not a data url")
    with pytest.raises(SaemiInputError):
        decode_data_url("data:image/png;base64,@@@")


def test_bilevel_tiff_and_all_nan_tiff():
    bits = np.zeros((40, 40), bool)
    bits[10:20, 10:20] = True
    buf = io.BytesIO()
    tifffile.imwrite(buf, bits)
    decoded = decode_image(buf.getvalue(), "bits.tif")
    # tifffile stores bilevel images as MINISWHITE (0 = white), so the True square is shown black.
    assert decoded.gray[15, 15] == 0.0 and decoded.gray[0, 0] == 1.0
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.full((20, 20), np.nan, np.float32))
    with pytest.raises(SaemiInputError, match="no valid intensities"):
        decode_image(buf.getvalue(), "nan.tif")


def test_tiff_signature_in_both_byte_orders_and_bigtiff():
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((8, 8), np.uint8))
    assert is_tiff(buffer.getvalue())
    assert all(is_tiff(magic) for magic in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"))
    assert not is_tiff(b"\x89PNG\r\n") and not is_tiff(b"") and not is_tiff(b"II")
