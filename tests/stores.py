"""Signed store payloads in tests: read them, and change them with or without the server's key."""

from __future__ import annotations

import json
from typing import Any

from app.session import signing


def plain(store: str, payload: Any) -> Any:
    """The JSON payload inside a signed store (checked as the server checks it)."""
    return signing.verify(store, payload)


def resigned(store: str, payload: Any, **changes: Any) -> dict[str, str]:
    """The payload with ``changes``, signed again with the server's key: reaches the checks behind the signature."""
    return signing.sign(store, {**plain(store, payload), **changes})


def tampered(store: str, payload: Any, **changes: Any) -> dict[str, str]:
    """The payload with ``changes`` but its old signature, as a browser without the key could forge it."""
    text, timestamp, signature = payload[signing.SIGNED_KEY].rsplit(".", 2)
    changed = json.dumps({**json.loads(text), **changes}, separators=(",", ":"), ensure_ascii=False)
    return {signing.SIGNED_KEY: f"{changed}.{timestamp}.{signature}"}
