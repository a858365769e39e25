"""JsonlSink: one line per message, JSON payloads inlined, the rest base64."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from publishers.jsonl_sink import JsonlSink
from publishers.message import Message
from publishers.tick_messages import TickMessages

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256))

ROUND_TRIP_CASES = [
    pytest.param(
        Message("traffic/segments/A0A1", b'{"segment_id":"A0A1","speed_kmh":31.5}', True),
        {"payload": {"segment_id": "A0A1", "speed_kmh": 31.5}},
        id="object",
    ),
    pytest.param(
        Message("traffic/detectors/batch", b'[{"a":1},{"a":2}]'),
        {"payload": [{"a": 1}, {"a": 2}]},
        id="array",
    ),
    pytest.param(Message("t/scalar", b"42"), {"payload": 42}, id="json-scalar"),
    pytest.param(
        Message("t/pretty", b'{\n  "a": "x\\ny"\n}\n'), {"payload": {"a": "x\ny"}}, id="pretty-printed"
    ),
    pytest.param(Message("t/中文", '{"name":"中山路"}'.encode()), {"payload": {"name": "中山路"}}, id="utf8"),
    pytest.param(Message('t/"odd"\\', b"{}"), {"payload": {}}, id="topic-needing-escapes"),
    pytest.param(
        Message("traffic/cameras/c1/snapshot", JPEG, True),
        {"payload_b64": base64.b64encode(JPEG).decode()},
        id="jpeg",
    ),
    pytest.param(Message("traffic/closures/C1", b"", True), {"payload_b64": ""}, id="empty-clears-retained"),
    pytest.param(
        Message("t/latin1", b'"caf\xe9"'),
        {"payload_b64": base64.b64encode(b'"caf\xe9"').decode()},
        id="not-utf8",
    ),
]


def strict_loads(line: bytes) -> Any:
    def reject(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(line, parse_constant=reject)


@pytest.mark.parametrize("validate_json", [False, True])
@pytest.mark.parametrize(("message", "expected"), ROUND_TRIP_CASES)
def test_round_trip(tmp_path: Path, message: Message, expected: dict[str, Any], validate_json: bool) -> None:
    out = tmp_path / "out.jsonl"
    with JsonlSink(out, validate_json=validate_json) as sink:
        sink.write([message])
    lines = out.read_bytes().splitlines(keepends=True)
    assert len(lines) == 1 and lines[0].endswith(b"\n")
    assert strict_loads(lines[0]) == {"topic": message.topic, **expected}


def test_validation_refuses_nan_literals(tmp_path: Path) -> None:
    """Objects and arrays are trusted unless validate_json (documented); validation catches NaN."""
    out = tmp_path / "out.jsonl"
    with JsonlSink(out, validate_json=True) as sink:
        sink.write([Message("t/nan", b"[NaN]")])
    expected = {"topic": "t/nan", "payload_b64": base64.b64encode(b"[NaN]").decode()}
    assert strict_loads(out.read_bytes()) == expected


def test_tick_messages_replay_format(tmp_path: Path, build) -> None:
    """Every line is {"topic", "payload"} with the message's JSON inlined, in order."""
    tick = TickMessages(build.network(["a", "b#1", "c"]))
    states = build.states(1776729660.0, [30.0, float("nan"), 12.0])
    messages = tick.for_tick(build.result(states, {"d": build.area(1776729660.0)}), full=True)
    out = tmp_path / "replay.jsonl"
    with JsonlSink(out) as sink:
        sink.write(messages[:2])
        sink.write(messages[2:])
        assert sink.lines_written == len(messages)
    records = [strict_loads(line) for line in out.read_bytes().splitlines()]
    assert [r["topic"] for r in records] == [m.topic for m in messages]
    assert [r["payload"] for r in records] == [json.loads(m.payload) for m in messages]
    assert all(set(r) == {"topic", "payload"} for r in records)


def test_file_is_truncated_and_flushed_on_exit(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("stale\n")
    with JsonlSink(out) as sink:
        sink.write([Message("t/a", b"{}")])
    assert out.read_bytes() == b'{"topic":"t/a","payload":{}}\n'


def test_dash_means_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    with JsonlSink("-") as sink:
        sink.write([Message("t/a", b"[1]"), Message("t/b", b"\x00")])
    assert capsysbinary.readouterr().out == (
        b'{"topic":"t/a","payload":[1]}\n{"topic":"t/b","payload_b64":"AA=="}\n'
    )


def test_write_outside_with_is_an_error(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "x.jsonl")
    with pytest.raises(RuntimeError, match="outside"):
        sink.write([Message("t", b"{}")])
