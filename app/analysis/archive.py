"""The files of one batch upload: loose files and the members of ``.zip`` archives, within limits.

Limits on the number of files and their total size are checked on a ``.zip``'s directory, before any
member is unpacked, and again on the bytes actually read (a directory can lie). Member names are cut
to their last part and never used as paths, so an archive cannot write outside its place
(no path traversal); folders, hidden files and macOS resource forks are skipped.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field

from app.analysis.errors import SaemiInputError
from app.analysis.limits import MAX_ZIP_MEMBERS

#: File endings taken from an upload: images, and the JEOL/Hitachi ``.txt`` saved beside an image.
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
SIDECAR_SUFFIX = ".txt"


@dataclass(frozen=True)
class UploadedFile:
    """One file of an upload: its name (last part only) and content."""

    name: str
    data: bytes


@dataclass
class Unpacked:
    """The files taken from an upload, and the names skipped (not an image or a ``.txt``)."""

    files: list[UploadedFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def safe_name(name: str) -> str | None:
    """The last part of an archive member's or upload's name, or None for folders, hidden files and
    resource forks.

    Examples
    --------
    >>> safe_name("../../etc/evil.png"), safe_name("run1\\\\a.tif"), safe_name("__MACOSX/._a.png")
    ('evil.png', 'a.tif', None)
    """
    text = str(name).replace("\\", "/")
    parts = [part for part in text.split("/") if part]
    if not parts or "__MACOSX" in parts:
        return None
    last = "".join(ch for ch in parts[-1] if ch.isprintable()).strip()
    if not last or last.startswith("."):
        return None
    return last


def _wanted(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(IMAGE_SUFFIXES) or lower.endswith(SIDECAR_SUFFIX)


class _Budget:
    """Counts files and bytes against the batch limits."""

    def __init__(self, max_files: int, max_total_bytes: int) -> None:
        self.max_files, self.max_total_bytes = max_files, max_total_bytes
        self.files, self.total_bytes = 0, 0

    def take(self, n_files: int, n_bytes: int) -> None:
        self.files += n_files
        self.total_bytes += n_bytes
        if self.files > self.max_files:
            raise SaemiInputError(f"This upload holds more than {self.max_files} files; a batch takes at most "
                                  f"{self.max_files}. Split it into several batches.")
        if self.total_bytes > self.max_total_bytes:
            raise SaemiInputError(f"This upload holds more than {self.max_total_bytes / 1e6:.0f} MB of files "
                                  f"(archives counted unpacked); a batch takes at most "
                                  f"{self.max_total_bytes / 1e6:.0f} MB. Split it into several batches.")


def _unzip(data: bytes, archive_name: str, budget: _Budget, max_file_bytes: int, out: Unpacked) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError) as exc:
        raise SaemiInputError(f"'{archive_name}' is not a readable .zip archive.") from exc
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise SaemiInputError(f"'{archive_name}' holds {len(members)} entries; at most {MAX_ZIP_MEMBERS} are read.")
        chosen = []
        for info in members:
            name = None if info.is_dir() else safe_name(info.filename)
            if name is None:
                continue
            if not _wanted(name):
                out.skipped.append(name)
                continue
            if info.flag_bits & 0x1:
                raise SaemiInputError(f"'{name}' in '{archive_name}' is encrypted; SAEMI reads unencrypted archives.")
            if info.file_size > max_file_bytes:
                raise SaemiInputError(f"'{name}' in '{archive_name}' is larger than {max_file_bytes / 1e6:.0f} MB.")
            chosen.append((name, info))
        budget.take(len(chosen), sum(info.file_size for _, info in chosen))  # before unpacking anything
        for name, info in chosen:
            try:
                with archive.open(info) as member:
                    content = member.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                raise SaemiInputError(f"'{name}' in '{archive_name}' cannot be unpacked.") from exc
            if len(content) != info.file_size:  # the directory lied about the size
                raise SaemiInputError(f"'{name}' in '{archive_name}' is not the size its archive says.")
            out.files.append(UploadedFile(name, content))


def unpack_uploads(uploads: Iterable[tuple[str, bytes]], *, max_files: int, max_total_bytes: int,
                   max_file_bytes: int) -> Unpacked:
    """The images and ``.txt`` files of an upload, with each ``.zip`` replaced by its members.

    Parameters
    ----------
    uploads : iterable of (name, bytes)
        The files as uploaded.
    max_files, max_total_bytes : int
        Limits for the whole upload, archives counted by their members (unpacked sizes).
    max_file_bytes : int
        Largest single file.

    Raises
    ------
    SaemiInputError
        When a limit is passed, or an archive cannot be read. Archives inside archives are not opened.

    Examples
    --------
    >>> buffer = io.BytesIO()
    >>> with zipfile.ZipFile(buffer, "w") as z:
    ...     z.writestr("../a.png", b"x"); z.writestr("notes.doc", b"y")
    >>> got = unpack_uploads([("s.zip", buffer.getvalue())], max_files=5, max_total_bytes=10, max_file_bytes=10)
    >>> [f.name for f in got.files], got.skipped
    (['a.png'], ['notes.doc'])
    """
    out = Unpacked()
    budget = _Budget(max_files, max_total_bytes)
    for raw_name, data in uploads:
        name = safe_name(raw_name)
        if name is None:
            continue
        if name.lower().endswith(".zip"):
            _unzip(data, name, budget, max_file_bytes, out)
        elif not _wanted(name):
            out.skipped.append(name)
        elif len(data) > max_file_bytes:
            raise SaemiInputError(f"'{name}' is larger than {max_file_bytes / 1e6:.0f} MB.")
        else:
            budget.take(1, len(data))
            out.files.append(UploadedFile(name, data))
    return out
