"""Zip archives built in memory for the tests of uploads and downloads."""

import io
import zipfile


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A deflated ``.zip`` holding ``members`` (name to content)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
