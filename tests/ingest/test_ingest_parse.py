"""ReadingParser: every validation rule of the spec, batches, duplicates, counters."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from ingest import IngestLimits, ParseResult, ReadingParser
from roadgraph.detectors import DetectorRegistry

NOW = 1_776_729_700.0  # the parser's wall clock in these tests: 2026-04-21T00:01:40Z
TS = 1_776_729_630  # 2026-04-21T00:00:30Z
TOPIC_D1 = "traffic/detectors/D1"
TOPIC_D2 = "traffic/detectors/D2"
BATCH = "traffic/detectors/batch"


def reading(**changes: Any) -> dict[str, Any]:
    """The spec's example reading for D2 (no lane fixed in the registry), with changes; a value
    of ``...`` removes the field."""
    base: dict[str, Any] = {
        "detector_id": "D2",
        "ts": TS,
        "interval_s": 30,
        "count": 12,
        "occupancy_pct": 8.5,
        "speed_kmh": 42.1,
        "lane": 1,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def encode(obj: object) -> bytes:
    return json.dumps(obj).encode()


@pytest.fixture
def parser(registry: DetectorRegistry) -> ReadingParser:
    return ReadingParser(registry, clock=lambda: NOW)


def only_rejection(result: ParseResult) -> tuple[str, str]:
    assert len(result.batch) == 0
    assert len(result.rejections) == 1, result.rejections
    rejection = result.rejections[0]
    assert "\n" not in rejection.reason
    return rejection.code, rejection.reason


# ---------------------------------------------------------------------- accepted readings


def test_spec_example_is_accepted_with_every_column(parser: ReadingParser) -> None:
    result = parser.parse_message(TOPIC_D2, encode(reading()))
    assert result.rejections == []
    batch = result.batch
    assert len(batch) == 1
    assert batch.detector_index.tolist() == [1]
    assert batch.ts.tolist() == [TS]
    assert batch.interval_s.tolist() == [30.0]
    assert batch.count.tolist() == [12.0]
    assert batch.occupancy_pct[0] == pytest.approx(8.5)
    assert batch.speed_kmh[0] == pytest.approx(42.1, rel=1e-6)
    assert batch.lane.tolist() == [1]
    assert parser.accepted_total == 1
    assert parser.rejected_total.total() == 0


ACCEPTED = [
    ("speed null", TOPIC_D2, reading(speed_kmh=None), {"speed_kmh": math.nan}),
    ("speed absent", TOPIC_D2, reading(speed_kmh=...), {"speed_kmh": math.nan}),
    ("lane absent, registry has none", TOPIC_D2, reading(lane=...), {"lane": -1}),
    ("lane absent, registry fixes it", TOPIC_D1, reading(detector_id="D1", lane=...), {"lane": 1}),
    ("lane agrees with registry", TOPIC_D1, reading(detector_id="D1", lane=1), {"lane": 1}),
    ("lane null", TOPIC_D2, reading(lane=None), {"lane": -1}),
    ("count as whole float", TOPIC_D2, reading(count=12.0), {"count": 12.0}),
    ("zero count and occupancy", TOPIC_D2, reading(count=0, occupancy_pct=0, speed_kmh=0), {"count": 0.0}),
    ("fractional ts", TOPIC_D2, reading(ts=TS + 0.25), {"ts": TS + 0.25}),
    ("ISO ts with Z", TOPIC_D2, reading(ts="2026-04-21T00:00:30Z"), {"ts": TS}),
    ("ISO ts with +08:00", TOPIC_D2, reading(ts="2026-04-21T08:00:30+08:00"), {"ts": TS}),
    ("ISO ts with fraction", TOPIC_D2, reading(ts="2026-04-21T00:00:30.5+00:00"), {"ts": TS + 0.5}),
    ("ts at the future limit", TOPIC_D2, reading(ts=NOW + 300), {"ts": NOW + 300}),
    ("extra fields ignored", TOPIC_D2, reading(vendor="acme", quality=0.9), {"count": 12.0}),
    ("float interval", TOPIC_D2, reading(interval_s=20.5, count=20), {"interval_s": 20.5}),
    ("count at plausibility limit", TOPIC_D2, reading(interval_s=30, count=30), {"count": 30.0}),
    ("occupancy 100", TOPIC_D2, reading(occupancy_pct=100), {"occupancy_pct": 100.0}),
]


@pytest.mark.parametrize(
    ("topic", "obj", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
def test_accepted(parser: ReadingParser, topic: str, obj: dict[str, Any], expected: dict[str, float]) -> None:
    result = parser.parse_message(topic, encode(obj))
    assert result.rejections == []
    assert len(result.batch) == 1
    for column, value in expected.items():
        got = float(getattr(result.batch, column)[0])
        if math.isnan(value):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(value, rel=1e-6)


# ---------------------------------------------------------------------- refused readings

# (id, topic, payload (object to encode, or raw bytes), code, substrings the reason must contain)
REFUSED: list[tuple[str, str, object, str, tuple[str, ...]]] = [
    # topics
    (
        "other prefix",
        "city/detectors/D2",
        reading(),
        "unknown_topic",
        ("'city/detectors/D2'", "traffic/detectors/"),
    ),
    (
        "not a detector topic",
        "traffic/cameras/c1/frame",
        reading(),
        "unknown_topic",
        ("traffic/cameras/c1/frame",),
    ),
    ("two levels", "traffic/detectors/D2/health", reading(), "unknown_topic", ("D2/health",)),
    ("empty id", "traffic/detectors/", reading(), "unknown_topic", ("traffic/detectors/'",)),
    # payload encoding
    ("not JSON", TOPIC_D2, b"{detector_id: D2}", "bad_json", ("invalid JSON at column 2",)),
    (
        "JSON error on line 2",
        TOPIC_D2,
        b'{"detector_id": "D2",\n  oops}',
        "bad_json",
        ("invalid JSON at line 2 column 3",),
    ),
    ("number too long", TOPIC_D2, b'{"count": 1' + b"0" * 5000 + b"}", "bad_json", ("too many digits",)),
    ("empty payload", TOPIC_D2, b"", "bad_json", ("invalid JSON",)),
    ("not UTF-8", TOPIC_D2, b'{"detector_id": "D\xff2"}', "bad_json", ("not UTF-8", "0xff", "offset 18")),
    ("UTF-16", TOPIC_D2, json.dumps(reading()).encode("utf-16"), "bad_json", ("not UTF-8",)),
    ("NaN literal", TOPIC_D2, b'{"detector_id": "D2", "occupancy_pct": NaN}', "bad_json", ("NaN", "null")),
    ("Infinity literal", TOPIC_D2, b'{"speed_kmh": Infinity}', "bad_json", ("Infinity",)),
    ("-Infinity literal", TOPIC_D2, b'{"detector_id": "D2", "ts": -Infinity}', "bad_json", ("-Infinity",)),
    ("deep nesting", TOPIC_D2, b"[" * 100_000, "bad_json", ("nested too deeply",)),
    ("array on single topic", TOPIC_D2, [reading()], "bad_shape", ("JSON object", "an array")),
    ("number payload", TOPIC_D2, 5, "bad_shape", ("JSON object", "a number")),
    ("object on batch topic", BATCH, reading(), "bad_shape", ("JSON array", BATCH, "an object")),
    # detector_id
    ("detector_id missing", TOPIC_D2, reading(detector_id=...), "missing_field", ("'detector_id'",)),
    ("detector_id null", TOPIC_D2, reading(detector_id=None), "missing_field", ("detector_id is null",)),
    ("detector_id number", TOPIC_D2, reading(detector_id=2), "bad_type", ("detector_id", "string", "got 2")),
    ("detector_id vs topic", "traffic/detectors/D3", reading(), "topic_mismatch", ("'D2'", "'D3'")),
    (
        "unknown detector",
        "traffic/detectors/D9",
        reading(detector_id="D9"),
        "unknown_detector",
        ("unknown detector_id 'D9'",),
    ),
    # ts
    ("ts missing", TOPIC_D2, reading(ts=...), "missing_field", ("'ts'",)),
    ("ts boolean", TOPIC_D2, reading(ts=True), "bad_type", ("ts", "got true")),
    ("ts array", TOPIC_D2, reading(ts=[TS]), "bad_type", ("ts", "an array")),
    ("ts before 2000", TOPIC_D2, reading(ts=17_767), "bad_timestamp", ("ts 17767", "before 2000-01-01")),
    ("ts negative", TOPIC_D2, reading(ts=-5), "bad_timestamp", ("ts -5", "before 2000")),
    ("ts in the future", TOPIC_D2, reading(ts=NOW + 301), "bad_timestamp", ("ts 1776730001", "300 s ahead")),
    (
        "ts in milliseconds",
        TOPIC_D2,
        reading(ts=TS * 1000),
        "bad_timestamp",
        ("ts 1776729630000", "milliseconds"),
    ),
    (
        "ts huge int",
        TOPIC_D2,
        b'{"detector_id": "D2", "ts": 1' + b"0" * 400 + b"}",
        "bad_timestamp",
        ("bit integer", "ahead"),
    ),
    ("ts overflowing float", TOPIC_D2, b'{"detector_id": "D2", "ts": 1e400}', "bad_timestamp", ("ts inf",)),
    (
        "ISO without offset",
        TOPIC_D2,
        reading(ts="2026-04-21T00:00:30"),
        "bad_timestamp",
        ("'2026-04-21T00:00:30'", "no UTC offset"),
    ),
    ("ISO date only", TOPIC_D2, reading(ts="2026-04-21"), "bad_timestamp", ("no UTC offset",)),
    ("ts not a time", TOPIC_D2, reading(ts="yesterday"), "bad_timestamp", ("'yesterday'", "ISO 8601")),
    ("ts digits as string", TOPIC_D2, reading(ts=str(TS)), "bad_timestamp", ("'1776729630'", "JSON number")),
    ("ISO ts too old", TOPIC_D2, reading(ts="1999-12-31T23:59:59Z"), "bad_timestamp", ("before 2000",)),
    ("ISO ts in the future", TOPIC_D2, reading(ts="2030-01-01T00:00:00Z"), "bad_timestamp", ("ahead",)),
    # interval_s
    ("interval missing", TOPIC_D2, reading(interval_s=...), "missing_field", ("'interval_s'",)),
    ("interval zero", TOPIC_D2, reading(interval_s=0), "out_of_range", ("interval_s 0 outside 0..3600",)),
    ("interval negative", TOPIC_D2, reading(interval_s=-30), "out_of_range", ("interval_s -30",)),
    ("interval too long", TOPIC_D2, reading(interval_s=3601), "out_of_range", ("interval_s 3601 outside",)),
    ("interval string", TOPIC_D2, reading(interval_s="30"), "bad_type", ("interval_s", "'30'")),
    ("interval boolean", TOPIC_D2, reading(interval_s=True), "bad_type", ("interval_s", "got true")),
    # count
    ("count missing", TOPIC_D2, reading(count=...), "missing_field", ("'count'",)),
    ("count null", TOPIC_D2, reading(count=None), "missing_field", ("count is null",)),
    ("count negative", TOPIC_D2, reading(count=-1), "out_of_range", ("count -1 outside 0..30",)),
    (
        "count implausible",
        TOPIC_D2,
        reading(count=31),
        "out_of_range",
        ("count 31 outside 0..30", "interval_s 30"),
    ),
    ("count fractional", TOPIC_D2, reading(count=12.5), "bad_type", ("count 12.5", "whole number")),
    ("count string", TOPIC_D2, reading(count="12"), "bad_type", ("count", "'12'")),
    ("count boolean", TOPIC_D2, reading(count=False), "bad_type", ("count", "got false")),
    # occupancy_pct
    ("occupancy missing", TOPIC_D2, reading(occupancy_pct=...), "missing_field", ("'occupancy_pct'",)),
    (
        "occupancy 140",
        TOPIC_D2,
        reading(occupancy_pct=140),
        "out_of_range",
        ("occupancy_pct 140 outside 0..100",),
    ),
    ("occupancy negative", TOPIC_D2, reading(occupancy_pct=-0.5), "out_of_range", ("occupancy_pct -0.5",)),
    ("occupancy string", TOPIC_D2, reading(occupancy_pct="8.5"), "bad_type", ("occupancy_pct", "'8.5'")),
    ("occupancy boolean", TOPIC_D2, reading(occupancy_pct=True), "bad_type", ("occupancy_pct", "true")),
    (
        "occupancy overflow",
        TOPIC_D2,
        b'{"detector_id": "D2", "ts": 1776729630, "interval_s": 30, "count": 1, "occupancy_pct": 1e999}',
        "out_of_range",
        ("occupancy_pct inf",),
    ),
    # speed_kmh
    ("speed negative", TOPIC_D2, reading(speed_kmh=-1), "out_of_range", ("speed_kmh -1 outside 0..250",)),
    ("speed too high", TOPIC_D2, reading(speed_kmh=251), "out_of_range", ("speed_kmh 251",)),
    ("speed string", TOPIC_D2, reading(speed_kmh="42"), "bad_type", ("speed_kmh", "'42'")),
    ("speed boolean", TOPIC_D2, reading(speed_kmh=True), "bad_type", ("speed_kmh", "true")),
    # lane
    ("lane negative", TOPIC_D2, reading(lane=-1), "out_of_range", ("lane -1 outside 0..31",)),
    ("lane too high", TOPIC_D2, reading(lane=32), "out_of_range", ("lane 32",)),
    ("lane fractional", TOPIC_D2, reading(lane=1.5), "bad_type", ("lane", "1.5")),
    ("lane string", TOPIC_D2, reading(lane="1"), "bad_type", ("lane", "'1'")),
    ("lane boolean", TOPIC_D2, reading(lane=True), "bad_type", ("lane", "true")),
    (
        "lane vs registry",
        "traffic/detectors/D1",
        reading(detector_id="D1", lane=2),
        "lane_mismatch",
        ("lane 2", "'D1'", "lane 1"),
    ),
]


@pytest.mark.parametrize(
    ("topic", "payload", "code", "fragments"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused(
    parser: ReadingParser, topic: str, payload: object, code: str, fragments: tuple[str, ...]
) -> None:
    raw = payload if isinstance(payload, bytes) else encode(payload)
    got_code, reason = only_rejection(parser.parse_message(topic, raw))
    assert got_code == code, reason
    for fragment in fragments:
        assert fragment in reason
    assert parser.rejected_total == {code: 1}
    assert parser.accepted_total == 0


def test_rejection_carries_topic_excerpt_and_wall_clock(parser: ReadingParser) -> None:
    payload = encode(reading(occupancy_pct=140))
    rejection = parser.parse_message(TOPIC_D2, payload).rejections[0]
    assert rejection.topic == TOPIC_D2
    assert rejection.payload_excerpt == payload.decode()
    assert rejection.ts == NOW
    assert rejection.to_payload()["reason"] == "occupancy_pct 140 outside 0..100"


def test_payload_over_the_limit_is_refused_before_decoding(registry: DetectorRegistry) -> None:
    parser = ReadingParser(registry, limits=IngestLimits(max_payload_bytes=64), clock=lambda: NOW)
    code, reason = only_rejection(parser.parse_message(TOPIC_D2, encode(reading())))
    assert code == "too_large"
    assert "exceeds the limit of 64" in reason


def test_limits_are_configurable(registry: DetectorRegistry) -> None:
    limits = IngestLimits(max_interval_s=60, max_speed_kmh=130, max_veh_per_s_per_lane=2, max_future_s=0)
    parser = ReadingParser(registry, limits=limits, clock=lambda: NOW)
    assert len(parser.parse_message(TOPIC_D2, encode(reading(count=60))).batch) == 1
    for obj, fragment in [
        (reading(ts=TS + 1, interval_s=61), "interval_s 61 outside 0..60"),
        (reading(ts=TS + 2, speed_kmh=131), "speed_kmh 131 outside 0..130"),
        (reading(ts=NOW + 1), "more than 0 s ahead"),
    ]:
        assert fragment in only_rejection(parser.parse_message(TOPIC_D2, encode(obj)))[1]


def test_min_ts_can_be_lowered_for_simulation_seconds(registry: DetectorRegistry) -> None:
    parser = ReadingParser(registry, limits=IngestLimits(min_ts=0), clock=lambda: NOW)
    assert parser.parse_message(TOPIC_D2, encode(reading(ts=60))).batch.ts.tolist() == [60.0]


@pytest.mark.parametrize(
    "kwargs", [{"max_payload_bytes": 0}, {"max_interval_s": 0}, {"max_future_s": -1}, {"max_lane": 40_000}]
)
def test_invalid_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="IngestLimits"):
        IngestLimits(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- batches


def test_batch_with_mixed_elements_rejects_only_the_bad_ones(parser: ReadingParser) -> None:
    items = [
        reading(),
        reading(detector_id="D3", occupancy_pct=140),
        "D3,1776729630,30",
        reading(detector_id="D3", ts="2026-04-21T00:00:30Z", lane=None),
        reading(),  # same detector and ts as element 0
        reading(detector_id="D9"),
    ]
    result = parser.parse_message(BATCH, encode(items))
    assert result.batch.detector_index.tolist() == [1, 2]
    assert result.batch.ts.tolist() == [TS, TS]
    assert result.batch.lane.tolist() == [1, -1]
    got = [(r.code, r.reason) for r in result.rejections]
    assert got == [
        ("out_of_range", "readings[1]: occupancy_pct 140 outside 0..100"),
        ("bad_shape", "readings[2]: expected a reading (JSON object), got a string"),
        (
            "duplicate",
            "readings[4]: duplicate: a reading of detector_id 'D2' with ts 1776729630 was already accepted",
        ),
        ("unknown_detector", "readings[5]: unknown detector_id 'D9'"),
    ]
    assert all(r.topic == BATCH for r in result.rejections)
    assert json.loads(result.rejections[0].payload_excerpt)["occupancy_pct"] == 140
    assert parser.accepted_total == 2
    assert parser.rejected_total == {"out_of_range": 1, "bad_shape": 1, "duplicate": 1, "unknown_detector": 1}


def test_batch_columns_have_the_engine_dtypes(parser: ReadingParser) -> None:
    items = [reading(detector_id=d, ts=TS + i) for i, d in enumerate(["D1", "D2", "D3"]) if d != "D1"]
    batch = parser.parse_message(BATCH, encode(items)).batch
    assert [getattr(batch, f).dtype for f in batch._FIELDS] == [
        np.int32,
        np.float64,
        np.float32,
        np.float32,
        np.float32,
        np.float32,
        np.int16,
    ]
    assert batch.ts.flags.c_contiguous


def test_batch_over_the_reading_limit_is_refused_whole(registry: DetectorRegistry) -> None:
    parser = ReadingParser(registry, limits=IngestLimits(max_batch_readings=3), clock=lambda: NOW)
    items = [reading(ts=TS + i) for i in range(4)]
    code, reason = only_rejection(parser.parse_message(BATCH, encode(items)))
    assert code == "too_large"
    assert "batch of 4 readings exceeds the limit of 3" in reason
    assert parser.accepted_total == 0


def test_empty_batch_is_neither_accepted_nor_refused(parser: ReadingParser) -> None:
    result = parser.parse_message(BATCH, b"[]")
    assert len(result.batch) == 0
    assert result.rejections == []


def test_batch_with_bad_json_is_refused_once(parser: ReadingParser) -> None:
    code, reason = only_rejection(parser.parse_message(BATCH, b'[{"detector_id": "D2"},'))
    assert code == "bad_json"
    assert reason.startswith("invalid JSON at column 24")


def test_batch_element_detector_id_is_not_checked_against_the_topic(parser: ReadingParser) -> None:
    items = [reading(detector_id="D1", lane=...), reading(detector_id="D3")]
    assert len(parser.parse_message(BATCH, encode(items)).batch) == 2


# ---------------------------------------------------------------------- duplicates


def test_same_reading_twice_is_accepted_once(parser: ReadingParser) -> None:
    payload = encode(reading())
    assert len(parser.parse_message(TOPIC_D2, payload).batch) == 1
    code, reason = only_rejection(parser.parse_message(TOPIC_D2, payload))
    assert code == "duplicate"
    assert "'D2'" in reason and "1776729630" in reason
    assert parser.accepted_total == 1
    assert parser.rejected_total == {"duplicate": 1}


def test_duplicate_detection_compares_times_not_spellings(parser: ReadingParser) -> None:
    assert len(parser.parse_message(TOPIC_D2, encode(reading(ts=TS))).batch) == 1
    for same in ("2026-04-21T08:00:30+08:00", float(TS)):
        result = parser.parse_message(TOPIC_D2, encode(reading(ts=same, count=3)))
        assert only_rejection(result)[0] == "duplicate"


def test_late_readings_are_accepted_and_their_repeats_are_not(parser: ReadingParser) -> None:
    def accepted(ts: float) -> bool:
        return len(parser.parse_message(TOPIC_D2, encode(reading(ts=ts))).batch) == 1

    assert [accepted(t) for t in (TS, TS + 30, TS - 30, TS, TS - 30, TS + 30, TS + 60)] == [
        True,
        True,
        True,
        False,
        False,
        False,
        True,
    ]


def test_same_ts_on_different_detectors_is_not_a_duplicate(parser: ReadingParser) -> None:
    batch = parser.parse_message(BATCH, encode([reading(), reading(detector_id="D3")])).batch
    assert batch.detector_index.tolist() == [1, 2]


def test_refused_reading_does_not_count_as_seen(parser: ReadingParser) -> None:
    parser.parse_message(TOPIC_D2, encode(reading(occupancy_pct=140)))
    assert len(parser.parse_message(TOPIC_D2, encode(reading())).batch) == 1


def test_duplicate_memory_is_bounded_per_detector(registry: DetectorRegistry) -> None:
    parser = ReadingParser(registry, limits=IngestLimits(duplicate_memory=2), clock=lambda: NOW)
    for t in (TS, TS + 30, TS + 60):
        assert len(parser.parse_message(TOPIC_D2, encode(reading(ts=t))).batch) == 1
    # TS + 60 is the newest and TS + 30 is still remembered ...
    assert only_rejection(parser.parse_message(TOPIC_D2, encode(reading(ts=TS + 60))))[0] == "duplicate"
    assert only_rejection(parser.parse_message(TOPIC_D2, encode(reading(ts=TS + 30))))[0] == "duplicate"
    # ... but TS fell out of the two-entry memory, so a very late repeat is accepted again (documented).
    assert len(parser.parse_message(TOPIC_D2, encode(reading(ts=TS))).batch) == 1


# ---------------------------------------------------------------------- parse_object (file sources)


def test_parse_object_names_origin_and_line(parser: ReadingParser) -> None:
    result = parser.parse_object(reading(occupancy_pct=140), topic="day1.json", line=7)
    code, reason = only_rejection(result)
    assert (code, reason) == ("out_of_range", "day1.json:7: occupancy_pct 140 outside 0..100")
    assert result.rejections[0].topic == "day1.json"


def test_parse_object_accepts_a_reading_and_an_array(parser: ReadingParser) -> None:
    assert parser.parse_object(reading(), topic="x.json").batch.detector_index.tolist() == [1]
    result = parser.parse_object([reading(detector_id="D3"), {"detector_id": 3}], topic="x.json", line=2)
    assert result.batch.detector_index.tolist() == [2]
    assert [r.reason for r in result.rejections] == [
        "x.json:2: readings[1]: detector_id must be a string, got 3"
    ]
    dup = parser.parse_object(reading(), topic="x.json", line=9)
    assert only_rejection(dup)[1].startswith("x.json:9: duplicate")


def test_parse_object_checks_the_topic_detector(parser: ReadingParser) -> None:
    assert only_rejection(parser.parse_object(reading(), topic="traffic/detectors/D3"))[0] == "topic_mismatch"


@pytest.mark.parametrize(
    ("obj", "code", "fragment"),
    [
        (reading(occupancy_pct=math.nan), "out_of_range", "occupancy_pct nan"),
        (reading(ts=math.nan), "bad_timestamp", "ts nan is not a time"),
        (reading(count=math.inf), "out_of_range", "count inf"),
        (reading(speed_kmh=np.float32(4.0)), "bad_type", "float32"),
        ("a string", "bad_shape", "got a string"),
        (None, "bad_shape", "got null"),
    ],
    ids=["nan occupancy", "nan ts", "inf count", "numpy scalar", "string", "none"],
)
def test_parse_object_refuses_non_json_values(
    parser: ReadingParser, obj: object, code: str, fragment: str
) -> None:
    got_code, reason = only_rejection(parser.parse_object(obj, topic="mem"))
    assert got_code == code
    assert fragment in reason


def test_parse_object_refuses_oversized_arrays(registry: DetectorRegistry) -> None:
    parser = ReadingParser(registry, limits=IngestLimits(max_batch_readings=1), clock=lambda: NOW)
    code, reason = only_rejection(parser.parse_object([reading(), reading()], topic="f.json", line=1))
    assert code == "too_large"
    assert reason.startswith("f.json:1: batch of 2 readings")


def test_reading_of_an_ignored_detector_says_why_it_is_not_used() -> None:
    registry = DetectorRegistry(
        detector_id=np.array(["D1"], dtype=object),
        segment_index=np.zeros(1, dtype=np.int32),
        lane=np.full(1, -1, dtype=np.int16),
        pos_m=np.full(1, np.nan, dtype=np.float32),
        kind=np.array(["loop"], dtype=object),
        ignored={"S1": "lane 'e_0' does not admit passenger cars (loops.add.xml:4)"},
    )
    parser = ReadingParser(registry, clock=lambda: 1_776_729_700.0)
    reading = {"detector_id": "S1", "ts": 1_776_729_630, "interval_s": 30, "count": 0, "occupancy_pct": 0}
    result = parser.parse_message("traffic/detectors/S1", json.dumps(reading).encode())
    (rejection,) = result.rejections
    assert rejection.code == "unknown_detector"
    assert rejection.reason == (
        "detector_id 'S1' is not used: lane 'e_0' does not admit passenger cars (loops.add.xml:4)"
    )
