"""Hostile and odd inputs to the analysis core: fuzzed image files, hostile TIFF tags, decompression
bombs, forged labels, canvas JSON and stroke limits, spreadsheet formulas in the CSV header.

Every input either works or raises :class:`SaemiInputError` with a sentence, quickly, and within a
memory cap (:func:`tests.limits.memory_cap`). The property-based tests run
``FUZZ_EXAMPLES * SAEMI_FUZZ_SCALE`` cases each (``SAEMI_FUZZ_SCALE=10`` for a long run).
"""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.analysis import encoding, limits, report
from app.analysis.errors import SaemiInputError
from app.analysis.imageio import decode_image
from app.analysis.labels import sequential_labels
from app.analysis.measure import measure_particles
from app.analysis.strokes import TOOL_COLOURS, Stroke, apply_edits, parse_canvas_json
from tests.limits import fuzz_examples, memory_cap

#: Pixel limit of the fuzzed decodes: a mutated header may declare any size up to it.
FUZZ_MAX_PIXELS = 4_000_000


def fuzz(examples: int) -> settings:
    """Settings of a property-based test: ``examples`` cases (scaled), no deadline, no example database."""
    return settings(max_examples=fuzz_examples(examples), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _sentence(exc: SaemiInputError) -> str:
    message = str(exc)
    assert len(message) > 20 and message[0].isupper() and "Traceback" not in message and "/" not in message[:1]
    return message


def _png(array: np.ndarray, **params) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **params)
    return buffer.getvalue()


def _jpeg(array: np.ndarray, orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(buffer, format="JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def _tiff(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **kwargs)
    return buffer.getvalue()


def _bmp(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="BMP")
    return buffer.getvalue()


_RNG = np.random.default_rng(7)
_GRAY = (_RNG.random((24, 32)) * 255).astype(np.uint8)
_RGB = (_RNG.random((24, 32, 3)) * 255).astype(np.uint8)
#: Valid files of every format SAEMI reads, as a microscope or an export would write them.
VALID_FILES = {
    "png8": _png(_GRAY),
    "png16": _png(_GRAY.astype(np.uint16) * 257),
    "png-rgb": _png(_RGB),
    "jpeg": _jpeg(_GRAY),
    "jpeg-rotated": _jpeg(_RGB, orientation=6),
    "tiff16": _tiff(_GRAY.astype(np.uint16) * 200),
    "tiff-float-deflate": _tiff(_GRAY.astype(np.float32) / 7, compression="zlib"),
    "tiff-tiled-rgb": _tiff(np.zeros((32, 32, 3), np.uint8) + _RGB[:1, :1], tile=(16, 16), photometric="rgb"),
    "tiff-miniswhite": _tiff(_GRAY, photometric="miniswhite"),
    "bmp": _bmp(_RGB),
}


def _check_decodes_or_refuses(data: bytes) -> None:
    try:
        decoded = decode_image(data, "fuzz.bin", max_pixels=FUZZ_MAX_PIXELS)
    except SaemiInputError as exc:
        _sentence(exc)
        return
    gray = decoded.gray
    assert gray.dtype == np.float32 and gray.ndim == 2 and gray.size <= FUZZ_MAX_PIXELS
    assert np.isfinite(gray).all() and gray.min() >= 0.0 and gray.max() <= 1.0


@st.composite
def mutated_files(draw):
    """A valid file with a few bytes replaced, inserted or cut, or truncated."""
    data = bytearray(VALID_FILES[draw(st.sampled_from(sorted(VALID_FILES)))])
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["replace", "replace", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "replace":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        else:
            del data[max(at, 8):]
        if not data:
            break
    return bytes(data)


@fuzz(1500)
@given(data=mutated_files())
def test_fuzzed_image_files_decode_or_get_a_sentence(data):
    with memory_cap():
        _check_decodes_or_refuses(data)



#: TIFF tags a hostile file may set to anything, and the file they are patched into.
HOSTILE_TAGS = ("ImageWidth", "ImageLength", "BitsPerSample", "Compression", "PhotometricInterpretation",
                "SamplesPerPixel", "TileWidth", "TileLength", "ImageDepth", "TileDepth", "SampleFormat",
                "PlanarConfiguration", "TileByteCounts", "TileOffsets")
_VOLUME = _tiff(np.zeros((2, 16, 16), np.uint16), volumetric=True, tile=(16, 16), compression="zlib")
_STRIPS = _tiff(np.zeros((16, 16), np.float32), compression="zlib", rowsperstrip=4)


def _patched(data: bytes, changes: dict[str, int]) -> bytes:
    """``data`` with the first value of each named tag of page 1 overwritten in place."""
    out = bytearray(data)
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        tags = tif.pages[0].tags
        for name, value in changes.items():
            tag = tags.get(name)
            if tag is None:
                continue
            code = {3: "<H", 4: "<I", 16: "<Q"}.get(int(tag.dtype))
            if code is None:
                continue
            limit = {"<H": 0xFFFF, "<I": 0xFFFFFFFF, "<Q": 2**63}[code]
            struct.pack_into(code, out, tag.valueoffset, min(value, limit))
    return bytes(out)


@fuzz(600)
@given(base=st.sampled_from([_VOLUME, _STRIPS]),
       changes=st.dictionaries(st.sampled_from(HOSTILE_TAGS),
                               st.one_of(st.integers(0, 8), st.integers(0, 70_000), st.integers(0, 2**32 - 1)),
                               min_size=1, max_size=4))
def test_tiffs_with_hostile_tags_decode_or_get_a_sentence(base, changes):
    data = _patched(base, changes)
    started = time.perf_counter()
    with memory_cap():
        _check_decodes_or_refuses(data)
    assert time.perf_counter() - started < 5.0



def test_a_tiff_depth_bomb_is_refused_from_its_header():
    """A small deflate file declaring 100 slices of 8192 x 8192 (6.7 GB once decoded)."""
    bomb = _patched(_VOLUME, {"ImageWidth": 8192, "ImageLength": 8192, "ImageDepth": 100,
                              "TileWidth": 8192, "TileLength": 8192})
    started = time.perf_counter()
    with memory_cap(), pytest.raises(SaemiInputError, match="volume 100 slices deep"):
        decode_image(bomb, "bomb.tif")
    assert time.perf_counter() - started < 1.0 and len(bomb) < 1000


def test_tiffs_with_too_many_samples_or_a_huge_decoded_size_are_refused():
    spectral = _tiff(np.zeros((16, 16, 6), np.uint8), photometric="minisblack", planarconfig="contig")
    with pytest.raises(SaemiInputError, match="6 samples per pixel, above the limit of 4"):
        decode_image(spectral, "cube.tif")
    tiles = _patched(_tiff(np.zeros((16, 16), np.uint16), tile=(16, 16)), {"TileWidth": 65536 - 16,
                                                                           "TileLength": 65536 - 16})
    with memory_cap(), pytest.raises(SaemiInputError, match="once decoded, above the limit"):
        decode_image(tiles, "tiles.tif")


def _png_bomb(side: int) -> bytes:
    """An 8-bit gray PNG of side x side black pixels, compressed row by row (a few hundred KB)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_a_13000_px_png_bomb_is_refused_as_upload_and_as_stored_labels_or_image():
    bomb = _png_bomb(13_000)
    assert len(bomb) < 400_000
    started = time.perf_counter()
    with memory_cap():
        with pytest.raises(SaemiInputError, match="above the limit of 70 megapixels"):
            decode_image(bomb, "bomb.png")
        text = base64.b64encode(bomb).decode()
        with pytest.raises(SaemiInputError, match="13000 x 13000 pixels, not the image's 320 x 256"):
            encoding.png_b64_to_labels(text, (256, 320))
        with pytest.raises(SaemiInputError, match="pixel mode L|above the limit"):
            encoding.png_b64_to_labels(text)
        with pytest.raises(SaemiInputError, match="13000 x 13000 pixels"):
            encoding.png_b64_to_gray(text, (256, 320))
    assert time.perf_counter() - started < 2.0


def test_a_32_bit_tiff_with_label_2e9_is_not_a_stored_label_image():
    forged = base64.b64encode(_tiff(np.full((256, 320), 2_000_000_000, np.uint32))).decode()
    with memory_cap(), pytest.raises(SaemiInputError, match="not a PNG"):
        encoding.png_b64_to_labels(forged, (256, 320))


def test_sparse_huge_label_ids_are_renumbered_without_a_table_as_long_as_the_largest_id():
    labels = np.zeros((256, 320), np.int64)
    labels[10:20, 10:20] = 2_000_000_000
    labels[50:60, 50:60] = 7
    started = time.perf_counter()
    with memory_cap():
        renumbered = sequential_labels(labels)
    assert time.perf_counter() - started < 1.0
    assert renumbered[15, 15] == 2 and renumbered[55, 55] == 1 and renumbered.max() == 2
    with pytest.raises(SaemiInputError, match="particle id 2000000000"):
        measure_particles(labels)


def test_feret_memory_does_not_grow_with_the_number_of_round_particles():
    """Forged ids on rings (many hull vertices each): before batching, 500 of them took 418 MB."""
    labels = np.zeros((1100, 1100), np.int32)
    rows, cols = np.mgrid[:50, :50]
    ring = np.abs(np.hypot(rows - 24.5, cols - 24.5) - 22) < 1.5
    for index in range(484):
        r, c = divmod(index, 22)
        labels[r * 50:(r + 1) * 50, c * 50:(c + 1) * 50][ring] = index + 1
    tracemalloc.start()
    try:
        table = measure_particles(labels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(table) == 484 and np.isfinite(table["feret_min_px"]).all()
    assert peak < 150e6


# ------------------------------------------------------------------------------------------- canvas
def _canvas(objects) -> str:
    return json.dumps({"objects": objects})


def test_a_brush_width_of_1e9_is_refused_before_drawing():
    forged = _canvas([{"type": "path", "stroke": TOOL_COLOURS["draw"], "strokeWidth": 1e9,
                       "path": [["M", 1, 1], ["L", 5, 5]]}])
    with pytest.raises(SaemiInputError, match="above the brush limit of 1024"):
        parse_canvas_json(forged, (8192, 8192), 640)
    with pytest.raises(SaemiInputError, match="malformed"):
        apply_edits(np.zeros((64, 64), np.int32), [[{"tool": "draw", "points": [[1, 1]], "width_px": 1e9}]])


def test_a_save_of_200k_draws_is_refused_quickly():
    path = [["M", 1, 1]] + [["L", 1 + i % 600, 1 + i // 600] for i in range(200_000)]
    forged = _canvas([{"type": "path", "stroke": TOOL_COLOURS["draw"], "strokeWidth": 40, "path": path}])
    started = time.perf_counter()
    with memory_cap(), pytest.raises(SaemiInputError, match="20000 stroke points, the limit per save"):
        parse_canvas_json(forged, (8192, 8192), 640)
    many = _canvas([{"type": "path", "stroke": TOOL_COLOURS["erase"], "strokeWidth": 4, "path": [["M", 1, 1]]}]
                   * (limits.MAX_PATHS_PER_SAVE + 1))
    with pytest.raises(SaemiInputError, match="more than 500 strokes"):
        parse_canvas_json(many, (512, 512), 640)
    assert time.perf_counter() - started < 3.0


def test_a_forged_history_of_200k_draws_is_refused_before_replaying():
    stroke = {"tool": "draw", "points": [[1.0, 1.0], [600.0, 600.0]], "width_px": 500.0}
    started = time.perf_counter()
    with pytest.raises(SaemiInputError, match="above the limit of 200"):
        apply_edits(np.zeros((8192, 8192), np.uint8)[:1024, :1024], [[stroke]] * 201)
    with pytest.raises(SaemiInputError, match="Replaying these edits would visit"):
        apply_edits(np.zeros((1024, 1024), np.int32), [[stroke] * 500] * 100)
    with pytest.raises(SaemiInputError, match="stroke points in all"):
        apply_edits(np.zeros((64, 64), np.int32), [[{**stroke, "points": [[1, 1]] * 20_000}] * 11])
    assert time.perf_counter() - started < 5.0


_NUMBERS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from([1e308, -1e308, 1e-300, 0, "12", None]))
_COMMANDS = st.lists(st.one_of(st.tuples(st.sampled_from(["M", "L", "Q"]), _NUMBERS, _NUMBERS).map(list),
                               st.lists(_NUMBERS, max_size=5), _NUMBERS), max_size=30)
_OBJECTS = st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.just("path"), "stroke": st.sampled_from([*TOOL_COLOURS.values(), "#123456", 7]),
                           "strokeWidth": _NUMBERS, "scaleX": _NUMBERS, "path": _COMMANDS}),
    st.fixed_dictionaries({"type": st.just("image"), "scaleX": _NUMBERS}),
    st.recursive(st.none() | st.booleans() | _NUMBERS | st.text(max_size=5),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                 max_leaves=10),
), max_size=8)


@fuzz(600)
@given(objects=_OBJECTS, top=st.sampled_from(["objects", "list", "text"]))
def test_fuzzed_canvas_json_applies_or_gets_a_sentence(objects, top):
    text = {"objects": _canvas(objects), "list": json.dumps(objects), "text": json.dumps(objects)[:-1]}[top]
    labels = np.zeros((48, 64), np.int32)
    labels[10:20, 10:20] = 1
    with memory_cap():
        try:
            strokes = parse_canvas_json(text, labels.shape, 640)
            edited = apply_edits(labels, [[stroke.to_dict() for stroke in strokes]])
        except SaemiInputError as exc:
            _sentence(exc)
            return
    assert all(isinstance(s, Stroke) and 0 < s.width_px <= limits.MAX_BRUSH_PX for s in strokes)
    assert edited.shape == labels.shape and edited.dtype == np.int32



# ------------------------------------------------------------------------------------- EXIF, floats
@pytest.mark.parametrize("orientation, expected", [(1, (24, 32)), (3, (24, 32)), (6, (32, 24)), (8, (32, 24))])
def test_exif_orientation_is_applied_as_pillow_and_browsers_do(orientation, expected):
    data = _jpeg(_RGB, orientation)
    decoded = decode_image(data, "rotated.jpg")
    assert decoded.shape == expected
    with Image.open(io.BytesIO(data)) as image:
        from PIL import ImageOps

        upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"), np.float64)
    luma = upright @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(decoded.gray * 255, np.clip(np.rint(luma), 0, 255), atol=1.0)


def test_float_extremes_and_nans_are_scaled_not_lost():
    extremes = np.tile(np.array([-1e308, 0.0, 1e308, np.nan], np.float64), (16, 4))
    gray = decode_image(_tiff(extremes), "extremes.tif").gray
    np.testing.assert_array_equal(gray[0, :4], [0.0, 0.5, 1.0, 0.0])
    miniswhite = np.tile(np.array([np.nan, 1.0, 3.0, np.inf], np.float32), (16, 4))
    gray = decode_image(_tiff(miniswhite, photometric="miniswhite"), "white.tif").gray
    np.testing.assert_array_equal(gray[0, :4], [0.0, 1.0, 0.0, 0.0])


def test_complex_data_is_refused_and_signed_data_is_stretched():
    with pytest.raises(SaemiInputError, match="complex numbers"):
        decode_image(_tiff(np.ones((16, 16), np.complex64)), "fft.tif")
    signed = np.tile(np.array([-300, 0, 300, 100], np.int16), (16, 4))
    np.testing.assert_allclose(decode_image(_tiff(signed), "signed.tif").gray[0, :4], [0, 0.5, 1, 2 / 3], atol=1e-6)


# ---------------------------------------------------------------------------------------------- CSV
def test_a_file_name_with_a_comma_and_a_formula_is_neutralised_in_the_csv_header():
    text = report.particles_csv(__import__("pandas").DataFrame({"area_px": [1.0]}),
                                {"file": 'x.png,=HYPERLINK("http://evil","click");@SUM(1)\t+1'})
    header = text.splitlines()[0]
    for separator in (",", ";", "\t"):
        for cell in header.split(separator)[1:]:
            assert not cell.lstrip().startswith(("=", "+", "-", "@")), cell
    assert header.startswith('# file: "x.png,')
