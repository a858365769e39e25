"""Write messages to a JSON Lines file: what ``roadpulse replay`` produces.

One line per message, in the order given::

    {"topic":"traffic/segments/A0A1","payload":{"segment_id":"A0A1","ts":1776729660,…}}

The payload — already UTF-8 JSON for every JSON topic — is inlined as it is, not decoded and
re-encoded, so the file holds the very bytes the live engine would publish. A payload that is not
JSON (a camera snapshot's JPEG, or the empty payload that clears a retained topic) is written as
base64 under ``payload_b64`` instead: ``{"topic":"…","payload_b64":"/9j/4AAQ…"}``.

Telling JSON from not-JSON must not cost a parse per message (a ``--full`` replay writes a million
per tick): a payload that starts with ``{`` or ``[`` and ends with ``}`` or ``]`` is trusted to be
JSON, as every JSON payload in the spec is an object or array; any other payload is checked with
``json.loads``. Pass ``validate_json=True`` to check every payload. Payloads with raw line breaks
(pretty-printed JSON) are re-encoded compactly so each message stays on one line.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from .message import Message

_BUFFER_BYTES = 1 << 20


class JsonlSink:
    """A context manager writing messages to ``path`` (``-`` for stdout), one JSON line each.

    Output is buffered and flushed on exit; the file is created or truncated on entry.
    """

    def __init__(self, path: str | Path, *, validate_json: bool = False) -> None:
        self.path = path
        self.validate_json = validate_json
        self.lines_written = 0
        self._file: BinaryIO | None = None
        self._owns_file = False

    def __enter__(self) -> Self:
        if str(self.path) == "-":
            self._file = sys.stdout.buffer
        else:
            # Closed in __exit__: the file lives as long as the context.
            self._file = open(self.path, "wb", buffering=_BUFFER_BYTES)
            self._owns_file = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        if self._owns_file:
            file.close()
        else:
            file.flush()

    def write(self, messages: Iterable[Message]) -> None:
        """Append one line per message."""
        if self._file is None:
            raise RuntimeError("JsonlSink.write() outside its `with` block")
        validate = self.validate_json
        lines: list[bytes] = []
        append = lines.append
        for message in messages:
            topic, payload = message.topic, message.payload
            # Inline fast path for the common case (a million segment states per --full tick);
            # anything unusual goes through line().
            if (
                not validate
                and payload[:1] in _OPENERS
                and payload[-1:] in _CLOSERS
                and b"\n" not in payload
                and b"\r" not in payload
                and _plain(topic)
            ):
                append(b'{"topic":"%s","payload":%s}\n' % (topic.encode(), payload))
            else:
                append(self.line(message, validate_json=validate))
        self._file.write(b"".join(lines))
        self.lines_written += len(lines)

    @staticmethod
    def line(message: Message, *, validate_json: bool = False) -> bytes:
        """The line (newline included) that stands for ``message``."""
        topic = _json_string(message.topic)
        payload = message.payload
        if _is_json(payload, validate_json):
            if b"\n" in payload or b"\r" in payload:
                payload = json.dumps(json.loads(payload), separators=(",", ":"), ensure_ascii=False).encode()
            return b'{"topic":%s,"payload":%s}\n' % (topic, payload)
        return b'{"topic":%s,"payload_b64":"%s"}\n' % (topic, base64.b64encode(payload))


_OPENERS = (b"{", b"[")
_CLOSERS = (b"}", b"]")


def _plain(text: str) -> bool:
    """True when ``text`` needs no escaping inside a JSON string (true of nearly every topic)."""
    return text.isprintable() and '"' not in text and "\\" not in text


def _json_string(text: str) -> bytes:
    if _plain(text):
        return b'"%s"' % text.encode()
    return json.dumps(text, ensure_ascii=False).encode()


def _is_json(payload: bytes, validate: bool) -> bool:
    if not validate and payload[:1] in _OPENERS and payload[-1:] in _CLOSERS:
        return True
    try:
        # UTF-8 only (json.loads would also take UTF-16/32 bytes, which would corrupt the file),
        # and strict: NaN/Infinity literals are not JSON.
        json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
        return False
    return True


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
