"""Small helpers for validation: the internal "invalid" signal and how values appear in reasons.

Reasons quote values the way they appear in JSON (``true``, ``null``, ``'D9'``), so the person reading
``traffic/rejected`` can find them in the detector's payload.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

#: Longest string value quoted in a reason; longer ones are cut with an ellipsis.
_QUOTE_CHARS = 40


class RefusalError(Exception):
    """Raised inside the parser when a message or reading is refused; never escapes it."""

    __slots__ = ("code", "reason")

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class NonFiniteJsonError(ValueError):
    """``NaN``/``Infinity`` in a payload: Python's json accepts them, JSON (RFC 8259) does not."""


def refuse_constant(name: str) -> Any:
    """``parse_constant`` hook for ``json.JSONDecoder``: refuse NaN, Infinity and -Infinity."""
    raise NonFiniteJsonError(f"{name} is not valid JSON (send null or leave the field out)")


def show(value: object) -> str:
    """A value as it would be spelled in the JSON payload, short enough for a one-line reason."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        # Huge ints cannot always be turned into text (Python's digit limit); say how big instead.
        return repr(value) if abs(value) < 10**30 else f"a {value.bit_length()}-bit integer"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= _QUOTE_CHARS else value[:_QUOTE_CHARS] + "…")
    return describe(value)


def describe(value: object) -> str:
    """The JSON type of a value, with an article: ``an object``, ``a string``."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def excerpt_source(value: object) -> str:
    """Text to excerpt for a rejected element of an already-decoded array (JSON where possible)."""
    try:
        return json.dumps(value, ensure_ascii=False, default=repr)
    except (ValueError, TypeError, RecursionError):
        return describe(value)


def parse_iso_ts(text: str) -> float:
    """Epoch seconds from an ISO 8601 time that carries a UTC offset; `RefusalError` otherwise."""
    if len(text) > 64:
        raise RefusalError("bad_timestamp", f"ts {show(text)} is too long for an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        hint = " (epoch seconds must be a JSON number, not a string)" if _is_number_text(text) else ""
        reason = f"ts {show(text)} is not an ISO 8601 time such as '2026-04-21T08:00:30+08:00'{hint}"
        raise RefusalError("bad_timestamp", reason) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        reason = f"ts {show(text)} has no UTC offset (append 'Z' or e.g. '+08:00')"
        raise RefusalError("bad_timestamp", reason)
    try:
        return moment.timestamp()
    except (OverflowError, ValueError):  # e.g. year 1 with a positive offset
        raise RefusalError("bad_timestamp", f"ts {show(text)} is outside the representable range") from None


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
