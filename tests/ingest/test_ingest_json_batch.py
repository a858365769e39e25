"""The columnar JSON-array path (ingest/json_batch.py) against the per-reading validator.

Equivalence: for generated arrays mixing valid and invalid readings (the fuzz tests' strategies,
plus plausible readings with duplicates, late readings, ISO times and repeated detectors), a
stream of messages through ``parse_message`` gives the same accepted batch (rows, values, order),
the same rejections (code, reason, excerpt, order) and the same parser state afterwards as the
reference: decoding with ``json`` and validating each element one after another
(``ReadingParser._collect``, the path arrays took before). Then one test per rejection reason
through the fast path.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import IngestLimits, ParseResult, ReadingParser
from ingest._values import RefusalError
from ingest.rejections import Rejection
from roadgraph.detectors import DetectorRegistry
from tests.ingest.test_ingest_fuzz import readings as fuzz_readings
from tests.ingest.test_ingest_fuzz import scalars
from tests.ingest.test_ingest_parse_properties import json_values, near_readings

NOW = 1_776_729_700.0
TS = 1_776_729_630
BATCH = "traffic/detectors/batch"
IDS = ["D1", "D2", "D3", "-47#1", "OLD"]
SETTINGS = settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))

REGISTRY = DetectorRegistry(
    detector_id=np.array(IDS[:4], dtype=object),
    segment_index=np.arange(4, dtype=np.int32),
    lane=np.array([1, -1, -1, 0], dtype=np.int16),
    pos_m=np.full(4, np.nan, dtype=np.float32),
    kind=np.array(["loop"] * 4, dtype=object),
    ignored={"OLD": "decommissioned"},
)
# The same detectors among 200 (arrays touch few of them, as in a city).
WIDE_REGISTRY = DetectorRegistry(
    detector_id=np.array([*IDS[:4], *(f"P{i}" for i in range(196))], dtype=object),
    segment_index=np.arange(200, dtype=np.int32),
    lane=np.array([1, -1, -1, 0, *([-1] * 196)], dtype=np.int16),
    pos_m=np.full(200, np.nan, dtype=np.float32),
    kind=np.array(["loop"] * 200, dtype=object),
    ignored={"OLD": "decommissioned"},
)
LIMITS = IngestLimits(max_batch_readings=60, lateness_s=120.0)


def _reading(detector_id: Any, ts: Any, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "detector_id": detector_id,
        "ts": ts,
        "interval_s": 30,
        "count": 12,
        "occupancy_pct": 8.5,
        "speed_kmh": 42.1,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


# Plausible readings on few detectors and few times: duplicates, repeats and late ones are common.
plausible = st.builds(
    _reading,
    st.sampled_from(IDS),
    st.sampled_from([TS - 600, TS - 300, TS - 30, TS, TS + 30.5, "2026-04-21T00:00:30Z"])
    | st.integers(TS - 900, TS + 60),
    interval_s=st.sampled_from([30, 60, 20.0]),
    count=st.integers(0, 20) | st.sampled_from([0.0, 5.0]),
    occupancy_pct=st.floats(0, 100) | st.integers(0, 100),
    speed_kmh=st.none() | st.floats(0, 250) | st.just(...),
    lane=st.sampled_from([..., None, 0, 1, 2]),
)
FIELDS = ["detector_id", "ts", "interval_s", "count", "occupancy_pct", "speed_kmh", "lane"]
# A plausible reading with one field changed to an odd value (true, null, "12", 1e308, 10**30...):
# each column check alone decides these.
one_odd_field = st.builds(
    lambda r, name, value: {**r, name: value},
    plausible,
    st.sampled_from(FIELDS),
    scalars | st.sampled_from([True, False, 0, 1, 0.0, 1.0, -0.0, 2**63, 2**64, [1], {}, [[1], [2]]]),
)
elements = st.one_of(
    plausible,
    plausible,
    one_odd_field,
    one_odd_field,
    fuzz_readings,
    near_readings,
    scalars,
    json_values,
    plausible.map(lambda r: {**r, "extra": [1, {"x": None}]}),
)
# Mostly-good arrays with a few odd fields (a column check must single those out among numbers),
# and arrays of anything.
arrays = st.lists(plausible | one_odd_field, min_size=2, max_size=12) | st.lists(elements, max_size=12)


def _parser(registry: DetectorRegistry = REGISTRY) -> ReadingParser:
    return ReadingParser(registry, clock=lambda: NOW, limits=LIMITS)


def _reference(parser: ReadingParser, payload: bytes) -> ParseResult:
    """The path arrays took before ingest/json_batch.py: ``json`` decode (whole-message refusals
    as before), then each element through the validator in turn."""
    from ingest.parse import _batch_of_rows

    rejections: list[Rejection] = []
    try:
        items = parser._decode(payload)
    except RefusalError as exc:
        parser._refuse(rejections, BATCH, exc.code, exc.reason, payload)
        return ParseResult(parser._empty, rejections)
    assert isinstance(items, list)  # the generated payloads are arrays
    now = parser._clock()
    rows = parser._collect(items, BATCH, "", now + LIMITS.max_future_s, rejections, now=now)
    return ParseResult(_batch_of_rows(rows) if rows else parser._empty, rejections)


def _same_batch(a: Any, b: Any) -> None:
    assert len(a) == len(b)
    for name in a._FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)  # NaN equals NaN here


def _same_rejections(a: list[Rejection], b: list[Rejection]) -> None:
    assert [(r.topic, r.code, r.reason, r.payload_excerpt) for r in a] == [
        (r.topic, r.code, r.reason, r.payload_excerpt) for r in b
    ]


def _same_state(fast: ReadingParser, ref: ReadingParser) -> None:
    assert fast.accepted_total == ref.accepted_total
    assert fast.rejected_total == ref.rejected_total
    assert fast.skewed_readings == ref.skewed_readings
    assert fast._newest_seen == ref._newest_seen and fast._watermark == ref._watermark
    assert fast._skew_s == ref._skew_s and fast._skew_n == ref._skew_n
    for key, value in fast.export_state().items():
        np.testing.assert_array_equal(value, ref.export_state()[key], err_msg=key)


@SETTINGS
@given(
    messages=st.lists(arrays, min_size=1, max_size=4),
    tick_after=st.integers(0, 3),
    registry=st.sampled_from([REGISTRY, WIDE_REGISTRY]),
)
def test_fast_path_equals_the_per_reading_path(
    messages: list[list[Any]], tick_after: int, registry: DetectorRegistry
) -> None:
    fast, ref = _parser(registry), _parser(registry)
    for m, items in enumerate(messages):
        payload = json.dumps(items).encode()
        got, want = fast.parse_message(BATCH, payload), _reference(ref, payload)
        _same_batch(got.batch, want.batch)
        _same_rejections(got.rejections, want.rejections)
        _same_state(fast, ref)
        if m == tick_after:  # from here on, readings behind the watermark are late
            fast.mark_ticked(float(TS))
            ref.mark_ticked(float(TS))


nan_speed = plausible.map(lambda r: {**r, "speed_kmh": math.nan})


class _Id(str):
    """A str subclass: the validator refuses it (exact type), whatever its text."""


# Values only Python objects can hold: NaN, numpy scalars, subclasses of str and dict.
python_only = st.builds(
    lambda r, name, value: {**r, name: value},
    plausible,
    st.sampled_from(FIELDS),
    st.sampled_from([np.float64(30.0), np.int64(1), np.float32(8.5), _Id("D2"), math.nan]),
) | plausible.map(lambda r: type("Reading", (dict,), {})(r))


@SETTINGS
@given(
    items=st.lists(plausible | python_only | nan_speed, min_size=2, max_size=12)
    | st.lists(plausible | one_odd_field | nan_speed | python_only | elements, max_size=12)
)
def test_parse_object_arrays_equal_the_per_reading_path(items: list[Any]) -> None:
    """Already decoded arrays (files): the same, with the ``topic:line:`` prefix and float NaN."""
    fast, ref = _parser(), _parser()
    got = fast.parse_object(items, topic="readings.json", line=3)
    rejections: list[Rejection] = []
    rows = ref._collect(items, "readings.json", "readings.json:3: ", NOW + 300, rejections, now=NOW)
    from ingest.parse import _batch_of_rows

    _same_batch(got.batch, _batch_of_rows(rows) if rows else ref._empty)
    _same_rejections(got.rejections, rejections)
    _same_state(fast, ref)


@pytest.mark.parametrize(
    "payload",
    [
        b"[18446744073709551616]",  # orjson: a float; json: an int, quoted as sent
        b'[{"detector_id": "D2", "ts": 1776729630, "interval_s": 30, "count": 99999999999999999999999,'
        b' "occupancy_pct": 1}]',
        b'[{"detector_id": "D2", "ts": 1e400, "interval_s": 30, "count": 1, "occupancy_pct": 1}]',
        b'[{"detector_id": "\\ud800", "ts": 1, "interval_s": 30, "count": 1, "occupancy_pct": 1}]',
        b"[NaN]",
        b"\xef\xbb\xbf[]",
        b"[" * 2000 + b"]" * 2000,
    ],
)
def test_where_orjson_and_json_differ_json_decides(payload: bytes) -> None:
    fast, ref = _parser(), _parser()
    got = fast.parse_message(BATCH, payload)
    want = _reference(ref, payload)
    _same_batch(got.batch, want.batch)
    _same_rejections(got.rejections, want.rejections)


# ---------------------------------------------------------------------- each reason, fast path


def _refusal(element: Any, *, before: list[Any] | None = None, tick: bool = False) -> tuple[str, str]:
    """(code, reason) of the one refusal of ``element``, sent as the last of an array of good readings."""
    parser = _parser()
    if before:
        parser.parse_message(BATCH, json.dumps(before).encode())
    if tick:
        parser.mark_ticked(float(TS))
    items = [_reading("D2", TS - 60), _reading("D3", TS - 60), element]
    result = parser.parse_message(BATCH, json.dumps(items).encode())
    assert len(result.batch) == 2 and result.batch.detector_index.tolist() == [1, 2]
    (rejection,) = result.rejections
    assert rejection.reason.startswith("readings[2]: ")
    return rejection.code, rejection.reason.removeprefix("readings[2]: ")


@pytest.mark.parametrize(
    ("element", "code", "words"),
    [
        ([1, 2], "bad_shape", "expected a reading (JSON object), got an array"),
        ("x", "bad_shape", "got a string"),
        (
            {k: v for k, v in _reading("D2", TS).items() if k != "detector_id"},
            "missing_field",
            "missing required field 'detector_id'",
        ),
        (_reading("D2", ...), "missing_field", "missing required field 'ts'"),
        (_reading("D2", TS, count=None), "missing_field", "count is null"),
        (_reading("D2", TS, interval_s=...), "missing_field", "missing required field 'interval_s'"),
        (_reading("D2", TS, occupancy_pct=...), "missing_field", "'occupancy_pct'"),
        (_reading("D2", TS, count=True), "bad_type", "count must be a whole number of vehicles, got true"),
        (_reading("D2", TS, occupancy_pct="8"), "bad_type", "occupancy_pct must be a percentage"),
        (_reading("D2", TS, speed_kmh=False), "bad_type", "speed_kmh must be a number or null, got false"),
        (_reading("D2", TS, count=2.5), "bad_type", "count 2.5 is not a whole number"),
        (_reading("D2", TS, lane=1.0), "bad_type", "lane must be a whole number"),
        (_reading("D2", TS, lane=True), "bad_type", "lane must be a whole number"),
        (_reading(7, TS), "bad_type", "detector_id must be a string, got 7"),
        (_reading("D2", TS, count=-1), "out_of_range", "count -1 outside 0..30"),
        (_reading("D2", TS, count=31), "out_of_range", "count 31 outside 0..30"),
        (_reading("D2", TS, occupancy_pct=100.5), "out_of_range", "occupancy_pct 100.5 outside 0..100"),
        (_reading("D2", TS, occupancy_pct=-0.1), "out_of_range", "occupancy_pct -0.1 outside 0..100"),
        (_reading("D2", TS, speed_kmh=900), "out_of_range", "speed_kmh 900 outside 0..250"),
        (_reading("D2", TS, speed_kmh=-1), "out_of_range", "speed_kmh -1 outside 0..250"),
        (_reading("D2", TS, interval_s=0), "out_of_range", "interval_s 0 outside 0..3600"),
        (_reading("D2", TS, interval_s=4000), "out_of_range", "interval_s 4000 outside 0..3600"),
        (_reading("D2", TS, lane=40), "out_of_range", "lane 40 outside 0..31"),
        (_reading("D2", TS, lane=-1), "out_of_range", "lane -1 outside 0..31"),
        (_reading("D1", TS, lane=2), "lane_mismatch", "lane 2 disagrees with the registry"),
        (_reading("D9", TS), "unknown_detector", "unknown detector_id 'D9'"),
        (_reading("OLD", TS), "unknown_detector", "detector_id 'OLD' is not used: decommissioned"),
        (_reading("D9/+", TS), "bad_id", "is unknown and contains a character"),
        (_reading("D2", 5), "bad_timestamp", "ts 5 is before 2000-01-01T00:00:00Z"),
        (_reading("D2", TS * 1000), "bad_timestamp", "epoch milliseconds? expected seconds"),
        (_reading("D2", "yesterday"), "bad_timestamp", "ts 'yesterday' is not an ISO 8601 time"),
        (_reading("D2", "2026-04-21T00:00:30"), "bad_timestamp", "has no UTC offset"),
        (_reading("D2", str(TS)), "bad_timestamp", "epoch seconds must be a JSON number"),
        (_reading("D2", 10**400), "bad_timestamp", "-bit integer is more than 300 s ahead"),
    ],
)
def test_each_reason_through_the_fast_path(element: Any, code: str, words: str) -> None:
    got_code, reason = _refusal(element)
    assert (got_code, words in reason) == (code, True), reason
    # and exactly what the validator says of the element alone
    with pytest.raises(RefusalError) as exc:
        _parser()._validate(json.loads(json.dumps(element)), None, NOW + 300)
    assert (got_code, reason) == (exc.value.code, exc.value.reason)


def test_duplicate_inside_one_array_and_across_arrays() -> None:
    parser = _parser()
    first = parser.parse_message(BATCH, json.dumps([_reading("D2", TS), _reading("D2", TS)]).encode())
    assert len(first.batch) == 1
    expected = "readings[1]: duplicate: a reading of detector_id 'D2' with ts 1776729630 was already accepted"
    assert [(r.code, r.reason) for r in first.rejections] == [("duplicate", expected)]
    again = parser.parse_message(BATCH, json.dumps([_reading("D3", TS), _reading("D2", TS)]).encode())
    assert len(again.batch) == 1 and [r.code for r in again.rejections] == ["duplicate"]


def test_late_reading_uses_the_watermark_at_its_index() -> None:
    """A reading late only because of a newer one earlier in the same array is refused, naming
    that watermark; the same reading before the newer one is accepted."""
    parser = _parser()
    parser.parse_message(BATCH, json.dumps([_reading("D1", TS - 300)]).encode())
    parser.mark_ticked(float(TS))
    result = parser.parse_message(BATCH, json.dumps([_reading("D2", TS), _reading("D3", TS - 200)]).encode())
    assert result.batch.detector_index.tolist() == [1]
    (late,) = result.rejections
    assert late.code == "late" and "watermark 1776729510 (newest ts 1776729630" in late.reason
    other = _parser()
    other.parse_message(BATCH, json.dumps([_reading("D1", TS - 300)]).encode())
    other.mark_ticked(float(TS))
    swapped = other.parse_message(BATCH, json.dumps([_reading("D3", TS - 200), _reading("D2", TS)]).encode())
    assert len(swapped.batch) == 2 and not swapped.rejections


def test_iso_timestamps_and_missing_lanes_are_accepted_through_the_validator() -> None:
    items = [_reading("D2", "2026-04-21T00:00:30Z"), _reading("D1", TS), _reading("D3", TS, lane=2)]
    batch = _parser().parse_message(BATCH, json.dumps(items).encode()).batch
    assert batch.ts.tolist() == [TS, TS, TS]
    assert batch.lane.tolist() == [-1, 1, 2]
    assert batch.detector_index.tolist() == [1, 0, 2]


@pytest.mark.parametrize(
    "odd",
    [
        _reading(_Id("D2"), TS),
        _reading("D2", TS, interval_s=np.float64(30.0)),
        _reading("D2", np.int64(TS)),
        _reading("D2", TS, count=np.int64(3)),
        _reading("D2", TS, occupancy_pct=np.float32(8.5)),
        _reading("D2", TS, speed_kmh=np.float64(40.0)),
        _reading("D2", TS, speed_kmh=math.nan),
        type("Reading", (dict,), {})(_reading("D2", TS)),
    ],
)
def test_parse_object_refuses_python_only_values_as_the_validator_does(odd: Any) -> None:
    """Objects handed to parse_object may hold what JSON cannot: subclasses, numpy scalars, NaN."""
    items = [_reading("D3", TS), odd]
    fast, ref = _parser(), _parser()
    got = fast.parse_object(items, topic="f.json")
    rejections: list[Rejection] = []
    rows = ref._collect(items, "f.json", "", NOW + 300, rejections, now=NOW)
    assert len(got.batch) == len(rows) == 1
    _same_rejections(got.rejections, rejections)
    assert len(rejections) == 1
