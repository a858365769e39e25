"""Recorded readings from a JSONL file (one reading per line, as on MQTT), plain or gzip-compressed."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from ingest.parse import ParseResult, ReadingParser

#: Read buffer for plain files; large sequential reads are what makes line iteration fast.
_BUFFER_BYTES = 1 << 20


def iter_jsonl_readings(
    path: str | os.PathLike[str], parser: ReadingParser, *, chunk_readings: int = 50_000
) -> Iterator[ParseResult]:
    """Yield one `ParseResult` per ``chunk_readings`` lines of ``path`` (``.gz`` is decompressed).

    Blank lines are skipped; a bad line becomes a `Rejection` whose reason starts ``path:line:``.
    The file is opened before this returns, so a missing or unreadable file raises
    `FileNotFoundError` / `OSError` (naming the path) at the call, not at the first ``next``.
    A corrupt or truncated ``.gz`` raises `OSError` naming the path while iterating.
    """
    if chunk_readings < 1:
        raise ValueError(f"chunk_readings must be at least 1, got {chunk_readings}")
    source = os.fspath(path)
    # Opened here rather than in the generator so errors surface at the call; the generator's
    # `with` closes the file.
    stream: io.BufferedIOBase
    if Path(source).suffix == ".gz":
        stream = gzip.open(source, "rb")  # noqa: SIM115
    else:
        stream = io.BufferedReader(io.FileIO(source, "r"), buffer_size=_BUFFER_BYTES)
    return _iter_chunks(stream, source, parser, chunk_readings)


def _iter_chunks(
    stream: io.BufferedIOBase, source: str, parser: ReadingParser, chunk_lines: int
) -> Iterator[ParseResult]:
    with stream:
        first_line = 1
        while True:
            try:
                lines = list(islice(stream, chunk_lines))
            except (EOFError, zlib.error) as exc:  # gzip reports truncation/corruption this way
                raise OSError(f"{source}: corrupt or truncated gzip data ({exc})") from None
            except OSError as exc:
                raise OSError(f"{source}: cannot read: {exc}") from exc
            if not lines:
                return
            yield parser.parse_lines(lines, source=source, first_line=first_line)
            first_line += len(lines)
