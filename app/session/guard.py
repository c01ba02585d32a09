"""Failures turned into one sentence for the user; the details go to the server log only."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.analysis.errors import SaemiInputError
from model.config import ModelLoadError

logger = logging.getLogger(__name__)

#: Shown when something unexpected fails; the details go to the server log only.
GENERIC_ERROR = "Something went wrong on the server while handling that request; please try again."


@dataclass
class Outcome:
    """Result of :func:`guarded`: a value, or a message for the user (never both)."""

    value: Any = None
    message: str | None = None


def guarded(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Outcome:
    """Call ``func`` and turn failures into a sentence for the user.

    A :class:`SaemiInputError` keeps its own sentence, a :class:`~model.config.ModelLoadError` too (with
    advice to use the classical segmenter); anything else is logged with its traceback and replaced by
    :data:`GENERIC_ERROR`, so the server keeps serving.
    """
    try:
        return Outcome(value=func(*args, **kwargs))
    except SaemiInputError as exc:
        return Outcome(message=str(exc))
    except ModelLoadError as exc:
        logger.exception("The segmentation model could not be loaded")
        return Outcome(message=f"{exc} Choose the classical segmenter meanwhile.")
    except Exception:  # noqa: BLE001 - last line of defence for the server; logged in full
        logger.exception("Unexpected failure in %s", getattr(func, "__name__", func))
        return Outcome(message=GENERIC_ERROR)
