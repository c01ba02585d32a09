"""Failures turned into one sentence for the user; the details go to the server log only."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.analysis.errors import SaemiInputError
from model.config import ModelLoadError

logger = logging.getLogger(__name__)

#: Shown when something unexpected fails; the details go to the server log only.
GENERIC_ERROR = "Something went wrong on the server while handling that request; please try again."

#: An absolute path (POSIX or Windows) of at least two parts, not inside a word such as ``nm/px``.
_PATH = re.compile(r"(?<![\w.:/\\])(?:[A-Za-z]:)?(?:[\\/][^\s\\/'\"()<>:,;]+){2,}")
#: A bracketed detail that a library wrote, such as ``(JSONDecodeError: Expecting value ...)``.
_DETAIL = re.compile(r"\s*\([^()]*\)")


def public_text(message: str, *, drop_details: bool = False) -> str:
    """``message`` as the page may show it: each absolute server path is cut to its last part.

    With ``drop_details``, bracketed details (a library's own words) are removed too.

    Examples
    --------
    >>> public_text("The file /srv/saemi/model/config.json is missing (nm/px kept).")
    'The file config.json is missing (nm/px kept).'
    >>> public_text("The weights are corrupted (BadZipFile: /srv/x/w.keras).", drop_details=True)
    'The weights are corrupted.'
    """
    text = _PATH.sub(lambda match: re.split(r"[\\/]", match.group(0))[-1], message)
    return _DETAIL.sub("", text) if drop_details else text


@dataclass
class Outcome:
    """Result of :func:`guarded`: a value, or a message for the user (never both)."""

    value: Any = None
    message: str | None = None


def guarded(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Outcome:
    """Call ``func`` and turn failures into a sentence for the user.

    A :class:`SaemiInputError` keeps its own sentence, a :class:`~model.config.ModelLoadError` too (with
    advice to use the classical segmenter, and without the library's details); anything else is logged
    with its traceback and replaced by :data:`GENERIC_ERROR`, so the server keeps serving. No sentence
    shown carries a server path (:func:`public_text`).
    """
    try:
        return Outcome(value=func(*args, **kwargs))
    except SaemiInputError as exc:
        return Outcome(message=public_text(str(exc)))
    except ModelLoadError as exc:
        logger.exception("The segmentation model could not be loaded")
        return Outcome(message=f"{public_text(str(exc), drop_details=True)} Choose the classical segmenter meanwhile.")
    except Exception:  # noqa: BLE001 - last line of defence for the server; logged in full
        logger.exception("Unexpected failure in %s", getattr(func, "__name__", func))
        return Outcome(message=GENERIC_ERROR)
