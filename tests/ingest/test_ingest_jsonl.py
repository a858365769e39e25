"""iter_jsonl_readings: recorded readings, bad lines named by path:line, gzip, missing files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ingest import IngestLimits, ParseResult, ReadingParser, iter_jsonl_readings
from roadgraph.detectors import DetectorRegistry

NOW = 1_776_729_700.0
TS = 1_776_729_630


def line(detector_id: str = "D2", ts: float = TS, **changes: object) -> str:
    obj = {"detector_id": detector_id, "ts": ts, "interval_s": 30, "count": 12, "occupancy_pct": 8.5}
    obj.update(changes)
    return json.dumps(obj)


LINES = [
    line("D2"),  # 1
    "",  # 2: blank
    line("D3"),  # 3
    "{not json",  # 4
    line("D3", occupancy_pct=140),  # 5
    "   ",  # 6: blank
    line("D2", ts=TS + 30) + "\r",  # 7: CRLF line ending
    line("D2"),  # 8: duplicate of line 1
    "[1, 2]",  # 9
    line("D9"),  # 10
]


@pytest.fixture
def parser(registry: DetectorRegistry) -> ReadingParser:
    return ReadingParser(registry, clock=lambda: NOW)


def _write(path: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def _collect(results: list[ParseResult]) -> tuple[list[tuple[int, float]], list[tuple[str, str]]]:
    rows = [
        (int(d), float(t)) for r in results for d, t in zip(r.batch.detector_index, r.batch.ts, strict=True)
    ]
    rejections = [(x.code, x.reason) for r in results for x in r.rejections]
    return rows, rejections


@pytest.mark.parametrize("name", ["readings.jsonl", "readings.jsonl.gz"])
def test_good_lines_become_rows_and_bad_lines_name_path_and_line(
    parser: ReadingParser, tmp_path: Path, name: str
) -> None:
    path = _write(tmp_path / name, LINES)
    rows, rejections = _collect(list(iter_jsonl_readings(path, parser)))
    assert rows == [(1, TS), (2, TS), (1, TS + 30)]
    p = str(path)
    assert rejections == [
        ("bad_json", f"{p}:4: invalid JSON at column 2: Expecting property name enclosed in double quotes"),
        ("out_of_range", f"{p}:5: occupancy_pct 140 outside 0..100"),
        (
            "duplicate",
            f"{p}:8: duplicate: a reading of detector_id 'D2' with ts 1776729630 was already accepted",
        ),
        ("bad_shape", f"{p}:9: expected a reading (JSON object), got an array"),
        ("unknown_detector", f"{p}:10: unknown detector_id 'D9'"),
    ]
    assert parser.accepted_total == 3
    assert parser.rejected_total.total() == 5


def test_rejections_carry_the_path_and_the_line_text(parser: ReadingParser, tmp_path: Path) -> None:
    path = _write(tmp_path / "r.jsonl", [line("D3", occupancy_pct=140)])
    (result,) = iter_jsonl_readings(path, parser)
    (rejection,) = result.rejections
    assert rejection.topic == str(path)
    assert json.loads(rejection.payload_excerpt)["occupancy_pct"] == 140


def test_chunks_keep_line_numbers(parser: ReadingParser, tmp_path: Path) -> None:
    path = _write(tmp_path / "r.jsonl", LINES)
    results = list(iter_jsonl_readings(path, parser, chunk_readings=3))
    assert len(results) == 4  # 10 lines in chunks of 3
    rows, rejections = _collect(results)
    assert rows == [(1, TS), (2, TS), (1, TS + 30)]
    assert [reason.split(": ")[0].rsplit(":", 1)[1] for _, reason in rejections] == ["4", "5", "8", "9", "10"]


def test_empty_file_yields_nothing(parser: ReadingParser, tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert list(iter_jsonl_readings(path, parser)) == []


def test_non_utf8_and_oversized_lines_are_refused(registry: DetectorRegistry, tmp_path: Path) -> None:
    parser = ReadingParser(registry, limits=IngestLimits(max_payload_bytes=200), clock=lambda: NOW)
    path = tmp_path / "r.jsonl"
    too_long = line("D2", note="x" * 300).encode()
    path.write_bytes(b'{"detector_id": "D\xe92"}\n' + too_long + b"\n" + line("D3").encode())
    rows, rejections = _collect(list(iter_jsonl_readings(path, parser)))
    assert rows == [(2, TS)]
    assert rejections[0][0] == "bad_json" and rejections[0][1].startswith(f"{path}:1: payload is not UTF-8")
    assert rejections[1][0] == "too_large" and rejections[1][1].startswith(f"{path}:2: line of ")


def test_missing_file_raises_at_the_call_naming_the_path(parser: ReadingParser, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError) as info:
        iter_jsonl_readings(missing, parser)
    assert str(missing) in str(info.value)


def test_directory_raises_oserror_naming_the_path(parser: ReadingParser, tmp_path: Path) -> None:
    with pytest.raises(OSError, match=str(tmp_path)):
        iter_jsonl_readings(tmp_path, parser)


@pytest.mark.parametrize(
    "data",
    [b"this is not gzip data at all\n", gzip.compress(("\n".join(LINES) + "\n").encode())[:-12]],
    ids=["not gzip", "truncated gzip"],
)
def test_corrupt_gzip_raises_oserror_naming_the_path(
    parser: ReadingParser, tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "r.jsonl.gz"
    path.write_bytes(data)
    with pytest.raises(OSError, match=r"r\.jsonl\.gz"):
        list(iter_jsonl_readings(path, parser))


def test_chunk_size_must_be_positive(parser: ReadingParser, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk_readings"):
        iter_jsonl_readings(_write(tmp_path / "r.jsonl", LINES), parser, chunk_readings=0)
