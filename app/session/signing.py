"""Signed store payloads: what the server wrote into a ``dcc.Store`` is what it reads back.

Each store's payload is written as compact JSON text, followed by a timestamp and an HMAC-SHA1 of
both (``itsdangerous.TimestampSigner``, salted with the store's name so that one store's payload is
refused in another). The browser keeps ``{"signed": "<json>.<timestamp>.<signature>"}``; nothing of
it is decoded (no base64, no PNG, no JSON) before the signature and the age are checked.

The key is ``SAEMI_SECRET_KEY``; without it, a random key is generated once into
``SAEMI_DATA_DIR/secret_key`` (mode 0600) and read back by every gunicorn worker, so that any worker
can read what another wrote. A payload older than ``SAEMI_STORE_MAX_AGE_H`` hours is refused as
expired.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from app import config
from app.analysis.errors import SaemiInputError

logger = logging.getLogger(__name__)

#: The sentence for a store payload the server cannot read back.
DAMAGED_STORE = "This page's data was changed or has expired; please reload the page and analyse the image again."
#: The only key of a signed store payload.
SIGNED_KEY = "signed"
#: File name of the generated key inside the data folder.
SECRET_FILE = "secret_key"


def damaged(reason: str) -> SaemiInputError:
    """The project's input error with :data:`DAMAGED_STORE` and the reason in brackets."""
    return SaemiInputError(DAMAGED_STORE + f" ({reason})")


def load_or_create_secret(folder: Path) -> bytes:
    """The key in ``folder/secret_key``, generated there first when it is missing.

    Several processes may call this at once: each writes a random key to a private temporary file
    and links it to the final name; the first link wins and every process reads that one back.
    """
    path = Path(folder) / SECRET_FILE
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        key = b""
    if key:
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")  # created with mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another worker linked its key first; use that one
    finally:
        os.unlink(temporary)
    logger.info("Generated the key that signs the page's data in %s", path)
    return path.read_bytes().strip()


@functools.cache
def secret_key() -> bytes:
    """``SAEMI_SECRET_KEY``, else the key generated once into the data folder (read once per process)."""
    if config.SECRET_KEY:
        return config.SECRET_KEY.encode("utf-8")
    return load_or_create_secret(config.data_dir())


def _signer(store: str) -> TimestampSigner:
    return TimestampSigner(secret_key(), salt=f"saemi.store.{store}")


def sign(store: str, payload: Mapping[str, Any]) -> dict[str, str]:
    """``{"signed": token}`` for the JSON-ready ``payload`` of the store called ``store``."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return {SIGNED_KEY: _signer(store).sign(text.encode("utf-8")).decode("utf-8")}


def verify(store: str, stored: Any) -> Any:
    """The payload that :func:`sign` wrote for ``store``, after checking its signature and age.

    Raises
    ------
    SaemiInputError
        With :data:`DAMAGED_STORE`, for a payload this server did not sign for this store, a
        modified one, or one older than ``SAEMI_STORE_MAX_AGE_H``.
    """
    token = stored.get(SIGNED_KEY) if isinstance(stored, Mapping) and len(stored) == 1 else None
    if not isinstance(token, str):
        raise damaged(f"the {store} data is not signed by this server")
    try:
        raw = _signer(store).unsign(token.encode("utf-8"), max_age=config.STORE_MAX_AGE_S)
    except SignatureExpired as exc:
        raise damaged(f"the {store} data has expired") from exc
    except (BadSignature, UnicodeError) as exc:
        raise damaged(f"the {store} data was changed") from exc
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # only a payload signed with a leaked key gets here
        raise damaged(f"the {store} data cannot be read") from exc
