"""The binary batch form: same readings and the same refusals as the JSON forms."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from ingest import ReadingParser, encode_binary_batch
from ingest.binary_batch import HEADER, MAGIC, RECORD_DTYPE
from roadgraph.detectors import DetectorRegistry

NOW = 1_776_729_700.0
TOPIC = "traffic/detectors/batch/bin"


def _parser(registry: DetectorRegistry) -> ReadingParser:
    return ReadingParser(registry, clock=lambda: NOW)


def _columns(rows: list[dict]) -> dict:
    return {
        "detector_ids": [r["detector_id"] for r in rows],
        "ts": np.array([r["ts"] for r in rows], dtype=np.float64),
        "interval_s": np.array([r["interval_s"] for r in rows], dtype=np.float32),
        "count": np.array([r["count"] for r in rows], dtype=np.float32),
        "occupancy_pct": np.array([r["occupancy_pct"] for r in rows], dtype=np.float32),
        "speed_kmh": np.array(
            [np.nan if r.get("speed_kmh") is None else r["speed_kmh"] for r in rows], np.float32
        ),
        "lane": np.array([r.get("lane", -1) for r in rows], dtype=np.int16),
    }


GOOD = [
    {
        "detector_id": "D1",
        "ts": NOW - 60,
        "interval_s": 30,
        "count": 7,
        "occupancy_pct": 11.5,
        "speed_kmh": 52.0,
    },
    {
        "detector_id": "D2",
        "ts": NOW - 60,
        "interval_s": 30,
        "count": 0,
        "occupancy_pct": 0.0,
        "speed_kmh": None,
    },
    {"detector_id": "D3", "ts": NOW - 30, "interval_s": 60, "count": 12, "occupancy_pct": 20.0, "lane": 2},
    {"detector_id": "D1", "ts": NOW - 30, "interval_s": 30, "count": 9, "occupancy_pct": 14.0, "lane": 1},
]


def test_binary_and_json_batches_give_the_same_rows(registry: DetectorRegistry) -> None:
    binary = _parser(registry).parse_message(TOPIC, encode_binary_batch(**_columns(GOOD)))
    as_json = _parser(registry).parse_message("traffic/detectors/batch", json.dumps(GOOD).encode())
    assert not binary.rejections and not as_json.rejections
    for name in ("detector_index", "ts", "interval_s", "count", "occupancy_pct", "speed_kmh", "lane"):
        np.testing.assert_array_equal(getattr(binary.batch, name), getattr(as_json.batch, name), err_msg=name)


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        ({"detector_id": "D9"}, "unknown_detector", "unknown detector_id 'D9'"),
        ({"detector_id": "X#1"}, "bad_id", "not allowed"),
        ({"count": -1}, "out_of_range", "count -1.0 outside"),
        ({"count": 2.5}, "bad_type", "not a whole number"),
        ({"occupancy_pct": 101}, "out_of_range", "occupancy_pct 101.0 outside 0..100"),
        ({"occupancy_pct": float("nan")}, "out_of_range", "occupancy_pct nan"),
        ({"speed_kmh": 900}, "out_of_range", "speed_kmh 900.0 outside"),
        ({"speed_kmh": -3}, "out_of_range", "speed_kmh -3.0"),
        ({"interval_s": 0}, "out_of_range", "interval_s 0.0 outside"),
        ({"ts": NOW + 3600}, "bad_timestamp", "ahead of the clock"),
        ({"ts": float("inf")}, "bad_timestamp", "ts inf"),
        ({"lane": 2}, "lane_mismatch", "lane 2 disagrees"),
    ],
)
def test_a_bad_record_refuses_itself_only(
    registry: DetectorRegistry, change: dict, code: str, words: str
) -> None:
    rows = [dict(r) for r in GOOD]
    rows[0].update(change)
    result = _parser(registry).parse_message(TOPIC, encode_binary_batch(**_columns(rows)))
    assert len(result.batch) == len(GOOD) - 1
    assert [(r.code, r.topic) for r in result.rejections] == [(code, TOPIC)]
    assert result.rejections[0].reason.startswith("records[0]: ")
    assert words in result.rejections[0].reason


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"RPB", "shorter than its 16-byte header"),
        (b"XXXX" + bytes(12), "must start with b'RPB1'"),
        (HEADER.pack(MAGIC, 2, 1, 2) + b"D1" + bytes(32), "announces 2 records"),
        (HEADER.pack(MAGIC, 1, 2, 2) + b"D1" + bytes(32), "announces 2 ids but the dictionary holds 1"),
        (HEADER.pack(MAGIC, 1, 1, 2) + b"\xff\xfe" + bytes(32), "dictionary is not UTF-8"),
    ],
)
def test_bad_framing_refuses_the_message(registry: DetectorRegistry, payload: bytes, words: str) -> None:
    result = _parser(registry).parse_message(TOPIC, payload)
    assert len(result.batch) == 0
    assert [r.code for r in result.rejections] == ["bad_shape"]
    assert words in result.rejections[0].reason


def test_record_pointing_outside_the_dictionary(registry: DetectorRegistry) -> None:
    record = np.zeros(1, dtype=RECORD_DTYPE)
    record["id_ref"] = 5
    payload = HEADER.pack(MAGIC, 1, 1, 2) + b"D1" + record.tobytes()
    result = _parser(registry).parse_message(TOPIC, payload)
    assert [r.code for r in result.rejections] == ["bad_shape"]
    assert "id_ref 5 outside the dictionary of 1 ids" in result.rejections[0].reason


def test_too_many_records_is_refused_whole(make_registry) -> None:
    from ingest import IngestLimits

    parser = ReadingParser(
        make_registry(["D1"]), clock=lambda: NOW, limits=IngestLimits(max_batch_readings=3)
    )
    payload = encode_binary_batch(**_columns([dict(GOOD[0], ts=NOW - 30 * k) for k in range(4)]))
    assert [r.code for r in parser.parse_message(TOPIC, payload).rejections] == ["too_large"]


def test_duplicates_between_binary_and_json_are_refused(registry: DetectorRegistry) -> None:
    parser = _parser(registry)
    first = parser.parse_message("traffic/detectors/D2", json.dumps(GOOD[1]).encode())
    assert len(first.batch) == 1
    again = parser.parse_message(TOPIC, encode_binary_batch(**_columns(GOOD + GOOD[:1])))
    assert len(again.batch) == len(GOOD) - 1
    assert [r.code for r in again.rejections] == ["duplicate", "duplicate"]
    # And the one-at-a-time path sees what the column path remembered.
    third = parser.parse_message("traffic/detectors/D3", json.dumps(GOOD[2]).encode())
    assert [r.code for r in third.rejections] == ["duplicate"]


def test_empty_batch_is_nothing(registry: DetectorRegistry) -> None:
    result = _parser(registry).parse_message(TOPIC, struct.pack("<4sIII", MAGIC, 0, 0, 0))
    assert len(result.batch) == 0 and not result.rejections


def test_an_empty_dictionary_then_one_empty_id(registry: DetectorRegistry) -> None:
    """Found by the fuzz: b"" is the dictionary of no ids and of one empty id alike."""
    parser = _parser(registry)
    assert not parser.parse_message(TOPIC, HEADER.pack(MAGIC, 0, 0, 0)).rejections
    result = parser.parse_message(TOPIC, HEADER.pack(MAGIC, 1, 1, 0) + bytes(32))
    assert [r.code for r in result.rejections] == ["unknown_detector"]
