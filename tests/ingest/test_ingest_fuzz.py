"""Property-based fuzzing of the parser over every message form: JSON readings, JSON batches,
binary batches and raw bytes, on valid, injected and unknown topics.

The property: ``parse_message`` never raises; every reading in a message is either accepted or
refused with a one-line reason; accepted rows pass the range checks.

Examples per test: ``ROADPULSE_FUZZ_EXAMPLES`` (default 500 in the test suite).
``benchmarks/fuzz_parser.py`` runs it with 100,000 and reports the count and time.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import IngestLimits, ReadingParser
from ingest.binary_batch import HEADER, MAGIC, RECORD_DTYPE
from roadgraph.detectors import DetectorRegistry

NOW = 1_776_729_700.0
IDS = ["D1", "D2", "D3", "-47#1"]
EXAMPLES = int(os.environ.get("ROADPULSE_FUZZ_EXAMPLES", "500"))
#: Longest message stream in one example (the benchmark raises it: more payloads per example).
STREAM_MAX = int(os.environ.get("ROADPULSE_FUZZ_STREAM_MAX", "6"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
#: How many payloads the parser has seen in this process (the benchmark reports it).
PAYLOADS_SEEN = [0]

_REGISTRY = DetectorRegistry(
    detector_id=np.array(IDS, dtype=object),
    segment_index=np.arange(len(IDS), dtype=np.int32),
    lane=np.array([1, -1, -1, 0], dtype=np.int16),
    pos_m=np.full(len(IDS), np.nan, dtype=np.float32),
    kind=np.array(["loop"] * len(IDS), dtype=object),
)
_LIMITS = IngestLimits(max_payload_bytes=4096, max_batch_readings=50)

odd_ids = (
    st.sampled_from(IDS) | st.text(max_size=12) | st.sampled_from(["D1/x", "+", "#", "\x00", "D1\n", ""])
)
numbers = (
    st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(-5, 400)
    | st.sampled_from([0, 1, 30, 100, 101, -1, 1e308, 10**400])
)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=20) | odd_ids
readings = st.fixed_dictionaries(
    {},
    optional={
        "detector_id": odd_ids | scalars,
        "ts": st.floats(NOW - 10**6, NOW + 1000) | st.sampled_from(["2026-04-21T00:00:00Z", "x"]) | scalars,
        "interval_s": st.integers(-1, 4000) | scalars,
        "count": st.integers(-1, 100) | scalars,
        "occupancy_pct": st.floats(-1, 120) | scalars,
        "speed_kmh": st.none() | st.floats(-1, 300) | scalars,
        "lane": st.none() | st.integers(-2, 40) | scalars,
        "extra": scalars,
    },
)


@st.composite
def binary_batches(draw: st.DrawFn) -> bytes:
    """Mostly plausible records from a drawn seed (one draw, so fast), some fields corrupted;
    the framing sometimes cut short or lying about its counts."""
    ids = draw(st.lists(odd_ids.filter(lambda s: "\n" not in s), min_size=0, max_size=5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = int(rng.integers(0, 9))
    records = np.zeros(n, dtype=RECORD_DTYPE)
    records["id_ref"] = rng.integers(0, len(ids) + 2, n)
    records["lane"] = rng.integers(-3, 4, n)
    records["ts"] = NOW - rng.uniform(-1000, 10**5, n)
    records["interval_s"] = rng.choice([30.0, 60.0, 0.0, -5.0, 5000.0], n)
    records["count"] = rng.choice([0.0, 7.0, 2.5, -1.0, 1e9], n)
    records["occupancy_pct"] = rng.uniform(-5, 110, n)
    records["speed_kmh"] = rng.choice([np.nan, 50.0, -1.0, 900.0], n)
    corrupt = rng.random((n, 5)) < 0.15
    for j, name in enumerate(("ts", "interval_s", "count", "occupancy_pct", "speed_kmh")):
        records[name][corrupt[:, j]] = rng.choice([np.nan, np.inf, -np.inf, 1e38], int(corrupt[:, j].sum()))
    dictionary = "\n".join(ids).encode()
    payload = HEADER.pack(MAGIC, n, len(ids), len(dictionary)) + dictionary + records.tobytes()
    mangle = rng.integers(0, 6)
    if mangle == 1:
        payload = payload[: int(rng.integers(0, len(payload) + 1))]
    elif mangle == 2:
        payload = payload[:4] + struct.pack("<I", int(rng.integers(0, 2**32))) + payload[8:]
    elif mangle == 3:
        payload = payload[:8] + struct.pack("<I", int(rng.integers(0, 10))) + payload[12:]
    return payload


def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


payloads = st.one_of(
    readings.map(_json),
    st.lists(readings | scalars, max_size=8).map(_json),
    st.binary(max_size=64),
    scalars.map(_json),
    binary_batches(),
    readings.map(lambda r: _json(r).replace(b"1", b"NaN", 1)),
)
topics = st.sampled_from(
    [
        "traffic/detectors/D1",
        "traffic/detectors/D2",
        "traffic/detectors/-47%231",
        "traffic/detectors/batch",
        "traffic/detectors/batch/bin",
        "traffic/detectors/x%00",
        "traffic/detectors/",
        "traffic/detectors/a/b",
        "other/topic",
    ]
)


def _check(parser: ReadingParser, topic: str, payload: bytes) -> None:
    PAYLOADS_SEEN[0] += 1
    before = parser.accepted_total
    result = parser.parse_message(topic, payload)
    assert parser.accepted_total - before == len(result.batch)
    for rejection in result.rejections:
        assert rejection.code and rejection.reason
        assert "\n" not in rejection.reason and "\x00" not in rejection.reason
    b = result.batch
    if len(b):
        assert np.all((b.detector_index >= 0) & (b.detector_index < len(IDS)))
        assert np.all(np.isfinite(b.ts)) and np.all(b.ts <= NOW + _LIMITS.max_future_s)
        assert np.all((b.interval_s > 0) & (b.interval_s <= _LIMITS.max_interval_s))
        assert np.all((b.count >= 0) & (b.occupancy_pct >= 0) & (b.occupancy_pct <= 100))
        speed = b.speed_kmh[~np.isnan(b.speed_kmh)]
        assert np.all((speed >= 0) & (speed <= _LIMITS.max_speed_kmh))


@FUZZ_SETTINGS
@given(topic=topics, payload=payloads)
def test_parser_never_raises_and_accounts_for_everything(topic: str, payload: bytes) -> None:
    parser = ReadingParser(_REGISTRY, clock=lambda: NOW, limits=_LIMITS)
    _check(parser, topic, payload)


@FUZZ_SETTINGS
@given(messages=st.lists(st.tuples(topics, payloads), min_size=2, max_size=STREAM_MAX))
def test_a_stream_of_messages_keeps_the_parser_consistent(messages: list[tuple[str, bytes]]) -> None:
    parser = ReadingParser(_REGISTRY, clock=lambda: NOW, limits=_LIMITS)
    for i, (topic, payload) in enumerate(messages):
        _check(parser, topic, payload)
        if i == len(messages) // 2:
            parser.mark_ticked(NOW - 60)
    assert math.isfinite(parser.watermark) or parser.accepted_total == 0
