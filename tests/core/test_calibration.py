"""Pixel size from vendor TIFF metadata, sidecar files, and the choice between sources."""

import io

import numpy as np
import pytest
import tifffile
from PIL import Image

from app.analysis.calibration import (
    NO_CALIBRATION,
    Calibration,
    FileMetadata,
    fei_image_height_px,
    parse_length,
    parse_sidecar,
    read_file_metadata,
    read_metadata_calibration,
    resolve_calibration,
    tiff_fei_image_height_px,
)
from app.analysis.errors import SaemiInputError

IMAGE = np.zeros((96, 128), np.uint8)


def tiff_bytes(**kwargs) -> bytes:
    """Write ``IMAGE`` as a TIFF with the given tifffile.imwrite options."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, IMAGE, **kwargs)
    return buffer.getvalue()


FEI_TEXT = (
    "[User]\r\nDate=11/21/2026\r\n"
    "[Beam]\r\nHV=10000\r\n"
    "[Scan]\r\nPixelWidth=2.5e-09\r\nPixelHeight=2.5e-09\r\n"
    "[Image]\r\nResolutionX=128\r\nResolutionY=80\r\n"
)


def fei_tiff(tag: int = 34682, text: str = FEI_TEXT) -> bytes:
    return tiff_bytes(extratags=[(tag, "s", 0, text, True)])


def zeiss_tiff(image_pixel_size: str, encoding: str = "utf-8") -> bytes:
    # CZ_SEM: a few unnamed values, then alternating upper-case key lines and "Name = value unit".
    text = (
        "0\r\n1\r\n"
        "AP_PIXEL_SIZE\r\nPixel Size = 9.9 nm\r\n"
        f"AP_IMAGE_PIXEL_SIZE\r\nImage Pixel Size = {image_pixel_size}\r\n"
        "AP_WD\r\nWD = 5.1 mm\r\n"
    )
    return tiff_bytes(extratags=[(34118, "B", 0, text.encode(encoding), True)])


@pytest.mark.parametrize("tag", [34680, 34682])
def test_fei_pixel_width_in_metres_becomes_nm(tag):
    calibration = read_metadata_calibration(fei_tiff(tag), "fei.tif")
    assert calibration.source == "metadata:fei"
    assert calibration.nm_per_px == pytest.approx(2.5)
    assert "PixelWidth" in calibration.detail


def test_fei_image_height_is_resolution_y():
    assert fei_image_height_px(fei_tiff()) == 80
    assert fei_image_height_px(tiff_bytes()) is None
    assert fei_image_height_px(b"\x89PNG not a tiff") is None
    assert fei_image_height_px(b"II*\x00 damaged") is None


def test_one_parse_serves_calibration_and_data_bar_height(monkeypatch):
    opened = []
    real = tifffile.TiffFile
    monkeypatch.setattr(tifffile, "TiffFile", lambda *args, **kwargs: opened.append(1) or real(*args, **kwargs))
    fei = read_file_metadata(fei_tiff(), "fei.tif")
    assert len(opened) == 1
    assert fei.calibration == read_metadata_calibration(fei_tiff(), "fei.tif") and fei.calibration.nm_per_px
    assert fei.fei_image_height_px == 80
    with tifffile.TiffFile(io.BytesIO(fei_tiff())) as tif:
        assert tiff_fei_image_height_px(tif) == 80
    plain = read_file_metadata(tiff_bytes(), "plain.tif")
    assert plain == FileMetadata(NO_CALIBRATION, None)
    jeol = read_file_metadata(tiff_bytes(), "jeol.tif", sidecar_text=JEOL_TEXT)
    assert jeol.calibration == read_metadata_calibration(tiff_bytes(), "jeol.tif", sidecar_text=JEOL_TEXT)
    assert jeol.calibration.nm_per_px is not None


@pytest.mark.parametrize(
    ("value", "encoding", "expected_nm"),
    [
        ("1.234 nm", "utf-8", 1.234),
        ("0.5 µm", "utf-8", 500.0),
        ("0.5 µm", "cp1252", 500.0),
        ("750 pm", "utf-8", 0.75),
    ],
)
def test_zeiss_uses_image_pixel_size_with_its_unit(value, encoding, expected_nm):
    calibration = read_metadata_calibration(zeiss_tiff(value, encoding), "zeiss.tif")
    assert calibration.source == "metadata:zeiss"
    # 9.9 nm would mean the detector "Pixel Size" was taken instead.
    assert calibration.nm_per_px == pytest.approx(expected_nm)


def test_tescan_pixel_size_x_in_metres():
    text = (
        b"\x01\x00\x02binary header[MAIN]\r\nDevice=MIRA3\r\n"
        b"PixelSizeX=1.5e-08\r\nPixelSizeY=1.5e-08\r\n"
    )
    calibration = read_metadata_calibration(
        tiff_bytes(extratags=[(50431, "B", 0, text, True)]), "tescan.tif"
    )
    assert calibration.source == "metadata:tescan"
    assert calibration.nm_per_px == pytest.approx(15.0)


def test_resolution_tags_in_centimetres():
    px_per_cm = 1.0 / 2.5e-6  # 25 nm per pixel
    data = tiff_bytes(resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER")
    calibration = read_metadata_calibration(data, "plain.tif")
    assert calibration.source == "metadata:tiff"
    assert calibration.nm_per_px == pytest.approx(25.0)


def test_resolution_tags_in_inches():
    px_per_inch = 2.54e7 / 4.0  # 4 nm per pixel
    data = tiff_bytes(resolution=(px_per_inch, px_per_inch), resolutionunit="INCH")
    assert read_metadata_calibration(data, "plain.tif").nm_per_px == pytest.approx(4.0)


def test_print_resolution_is_not_a_pixel_size():
    data = tiff_bytes(resolution=(300, 300), resolutionunit="INCH")
    assert read_metadata_calibration(data, "print.tif") == NO_CALIBRATION


@pytest.mark.parametrize(
    ("unit", "px_per_unit", "expected_nm"),
    [("nm", 0.4, 2.5), ("micron", 80.0, 12.5), ("\\u00B5m", 80.0, 12.5), ("um", 200.0, 5.0)],
)
def test_imagej_calibration(unit, px_per_unit, expected_nm):
    data = tiff_bytes(imagej=True, resolution=(px_per_unit, px_per_unit), metadata={"unit": unit})
    calibration = read_metadata_calibration(data, "imagej.tif")
    assert calibration.source == "metadata:tiff"
    assert calibration.nm_per_px == pytest.approx(expected_nm)


def test_imagej_pixel_unit_is_uncalibrated():
    data = tiff_bytes(imagej=True, resolution=(1.0, 1.0), metadata={"unit": "pixel"})
    assert read_metadata_calibration(data, "imagej.tif") == NO_CALIBRATION


def test_vendor_metadata_wins_over_resolution_tags():
    data = tiff_bytes(
        resolution=(1.0 / 2.5e-6, 1.0 / 2.5e-6),
        resolutionunit="CENTIMETER",
        extratags=[(34682, "s", 0, FEI_TEXT, True)],
    )
    assert read_metadata_calibration(data, "fei.tif").source == "metadata:fei"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x89PNG\r\n\x1a\n", b"II*\x00garbage", fei_tiff(text="[Scan]\nPixelWidth=banana\n")],
)
def test_odd_or_missing_metadata_gives_no_calibration(data):
    assert read_metadata_calibration(data, "odd.tif") == NO_CALIBRATION


JEOL_TEXT = """$CM_FORMAT JEOL/SEM
$CM_VERSION 1.0
$CM_INSTRUMENT 6500F
$CM_FULL_SIZE 1280 960
$CM_MAG 20000
$$SM_MICRON_BAR 160
$$SM_MICRON_MARKER 1um
"""

HITACHI_TEXT = """[SemImageFile]
InstructName=SU8010
SerialNumber=1234
DataSize=1280x960
PixelSize=3.96875
Magnification=30000
"""


def test_jeol_sidecar_bar_length_over_bar_pixels():
    calibration = parse_sidecar(JEOL_TEXT)
    assert calibration.source == "metadata:jeol"
    assert calibration.nm_per_px == pytest.approx(1000.0 / 160.0)


def test_jeol_sidecar_rescaled_to_a_smaller_saved_image():
    calibration = parse_sidecar(JEOL_TEXT, image_width_px=640)
    assert calibration.nm_per_px == pytest.approx(2 * 1000.0 / 160.0)


def test_hitachi_sidecar_pixel_size_in_nm():
    calibration = parse_sidecar(HITACHI_TEXT)
    assert calibration.source == "metadata:hitachi"
    assert calibration.nm_per_px == pytest.approx(3.96875)


def test_sidecar_applies_when_the_tiff_has_no_vendor_tags():
    calibration = read_metadata_calibration(tiff_bytes(), "jeol.tif", sidecar_text=JEOL_TEXT)
    assert calibration.source == "metadata:jeol"
    # IMAGE is 128 px wide against a full size of 1280 px: ten full-size pixels per saved pixel.
    assert calibration.nm_per_px == pytest.approx(10 * 1000.0 / 160.0)


def test_sidecar_without_known_keys_is_uncalibrated():
    assert parse_sidecar("hello=world\n$$SM_MICRON_MARKER banana\n") == NO_CALIBRATION


@pytest.mark.parametrize(
    ("text", "nm"),
    [
        ("200 nm", 200.0),
        ("1 µm", 1000.0),
        ("5 μm", 5000.0),
        ("0.5um", 500.0),
        ("500 pm", 0.5),
        ("2 mm", 2.0e6),
        ("2,5 nm", 2.5),
    ],
)
def test_parse_length(text, nm):
    assert parse_length(text) == pytest.approx(nm)


@pytest.mark.parametrize("text", ["", "nm", "200", "200 parsecs", "-5 nm", "0 nm"])
def test_parse_length_rejects_with_a_sentence(text):
    with pytest.raises(SaemiInputError, match=r"\."):
        parse_length(text)


FEI = Calibration(2.5, "metadata:fei", "FEI")
OCR = Calibration(2.6, "scalebar:ocr", "OCR")
OCR_CLOSE = Calibration(2.52, "scalebar:ocr", "OCR")


def test_resolve_prefers_manual_then_metadata_then_scale_bar():
    assert resolve_calibration([OCR, FEI], None)[0] == FEI
    assert resolve_calibration([OCR], None)[0] == OCR
    chosen, _ = resolve_calibration([OCR, FEI], 3.0)
    assert chosen.source == "manual"
    assert chosen.nm_per_px == 3.0
    assert resolve_calibration([NO_CALIBRATION], None) == (NO_CALIBRATION, [])


def test_disagreement_over_two_percent_warns_with_both_values():
    chosen, warnings = resolve_calibration([OCR, FEI], None)
    assert chosen == FEI
    assert len(warnings) == 1
    assert "2.6 nm/px" in warnings[0]
    assert "2.5 nm/px" in warnings[0]
    assert "scalebar:ocr" in warnings[0] and "metadata:fei" in warnings[0]


def test_agreement_within_two_percent_is_silent():
    assert resolve_calibration([OCR_CLOSE, FEI], None)[1] == []


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_resolve_rejects_a_bad_manual_value(bad):
    with pytest.raises(SaemiInputError):
        resolve_calibration([FEI], bad)


def test_jeol_sidecar_next_to_a_jpeg_uses_the_jpeg_width():
    buffer = io.BytesIO()
    Image.new("L", (640, 480)).save(buffer, format="JPEG")
    calibration = read_metadata_calibration(buffer.getvalue(), "jeol.jpg", sidecar_text=JEOL_TEXT)
    assert calibration.source == "metadata:jeol"
    assert calibration.nm_per_px == pytest.approx(2 * 1000.0 / 160.0)
