"""Batch uploads: .zip archives unpacked within limits, never by their paths."""

from __future__ import annotations

import time
import zipfile

import pytest

from app.analysis.archive import safe_name, unpack_uploads
from app.analysis.errors import SaemiInputError
from tests.archives import zip_bytes

LIMITS = {"max_files": 4, "max_total_bytes": 1_000, "max_file_bytes": 600}


def test_members_are_named_by_their_last_part_and_folders_and_hidden_files_are_skipped():
    data = zip_bytes({"../../etc/a.png": b"a", "run/b.TIF": b"bb", "run/b.txt": b"px", "__MACOSX/._a.png": b"x",
                 ".hidden.png": b"h", "run/": b"", "readme.doc": b"r"})
    got = unpack_uploads([("s.zip", data), ("c.jpg", b"ccc")], **LIMITS)
    assert [(f.name, f.data) for f in got.files] == [("a.png", b"a"), ("b.TIF", b"bb"), ("b.txt", b"px"),
                                                     ("c.jpg", b"ccc")]
    assert got.skipped == ["readme.doc"]
    assert all("/" not in f.name and "\\" not in f.name and ".." not in f.name for f in got.files)


@pytest.mark.parametrize(("name", "expected"), [("..\\..\\x.png", "x.png"), ("/abs/y.png", "y.png"), ("..", None),
                                                ("a/../", None), ("ok.png\x00", "ok.png")])
def test_safe_name(name, expected):
    assert safe_name(name) == expected


def test_the_total_is_checked_on_the_archive_directory_before_anything_is_unpacked():
    bomb = zip_bytes({f"{k}.png": bytes(400) for k in range(3)})  # 1,200 bytes unpacked, a few hundred packed
    assert len(bomb) < LIMITS["max_total_bytes"]
    read = []
    original = zipfile.ZipFile.open

    def spy(self, *args, **kwargs):
        read.append(args[0])
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(zipfile.ZipFile, "open", spy)
        with pytest.raises(SaemiInputError, match="more than 0 MB|archives counted unpacked"):
            unpack_uploads([("bomb.zip", bomb)], **LIMITS)
    assert read == []  # refused from the directory alone


def test_a_large_zip_bomb_is_refused_quickly():
    bomb = zip_bytes({"zeros.png": bytes(200_000_000)})
    start = time.monotonic()
    with pytest.raises(SaemiInputError, match="larger than"):
        unpack_uploads([("bomb.zip", bomb)], max_files=10, max_total_bytes=100_000_000, max_file_bytes=50_000_000)
    assert time.monotonic() - start < 2.0


def test_the_number_of_files_is_limited_across_archives_and_loose_files():
    with pytest.raises(SaemiInputError, match="more than 4 files"):
        unpack_uploads([("a.zip", zip_bytes({f"{k}.png": b"x" for k in range(3)})), ("b.png", b"y"), ("c.png", b"z")],
                       **LIMITS)


def test_a_damaged_archive_gets_a_sentence():
    with pytest.raises(SaemiInputError, match="not a readable .zip"):
        unpack_uploads([("broken.zip", b"PK\x03\x04 not really")], **LIMITS)


def test_an_encrypted_member_is_refused():
    data = bytearray(zip_bytes({"a.png": b"a"}))
    # set the "encrypted" bit in the central directory entry (general purpose flag at offset 8 of the entry)
    central = data.rfind(b"PK\x01\x02")
    data[central + 8] |= 0x1
    with pytest.raises(SaemiInputError, match="encrypted"):
        unpack_uploads([("e.zip", bytes(data))], **LIMITS)
