"""Property tests: the parser never raises, accounts for every reading, and keeps what it accepts.

About 2,000 examples in all, so the suite stays quick; benchmarks/bench_ingest.py --fuzz runs more.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import ReadingParser
from roadgraph.detectors import DetectorRegistry

NOW = 1_776_729_700.0
IDS = ["D1", "D2", "D3"]
FIELDS = ["detector_id", "ts", "interval_s", "count", "occupancy_pct", "speed_kmh", "lane"]
# No example database: the suite must not write a .hypothesis/ folder into the repository.
PROPERTY_SETTINGS = settings(
    deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(IDS)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), children, max_size=8)
    ),
    max_leaves=20,
)
# Readings that are mostly right, so that the deeper checks get exercised too.
near_readings = st.fixed_dictionaries(
    {},
    optional={
        "detector_id": st.sampled_from(IDS) | json_scalars,
        "ts": st.integers(int(NOW) - 10**6, int(NOW) + 400) | st.floats(0, 2e9) | json_scalars,
        "interval_s": st.integers(-1, 4000) | json_scalars,
        "count": st.integers(-1, 100) | st.floats(-1, 100) | json_scalars,
        "occupancy_pct": st.floats(-1, 120) | json_scalars,
        "speed_kmh": st.floats(-1, 300) | st.none() | json_scalars,
        "lane": st.integers(-2, 40) | json_scalars,
    },
)
topics = st.sampled_from(
    ["traffic/detectors/D1", "traffic/detectors/D2", "traffic/detectors/batch"]
) | st.text(max_size=40)


def _check_result_invariants(parser: ReadingParser, result: Any, expected_items: int | None) -> None:
    batch = result.batch
    for rejection in result.rejections:
        assert rejection.code in parser.rejected_total
        assert rejection.reason and "\n" not in rejection.reason
        json.dumps(rejection.to_payload())  # always publishable
    if expected_items is not None:
        assert len(batch) + len(result.rejections) == expected_items
    assert np.all((batch.occupancy_pct >= 0) & (batch.occupancy_pct <= 100))
    assert np.all(batch.interval_s > 0)
    assert np.all(batch.count >= 0)
    assert not np.isnan(batch.ts).any()
    speed = batch.speed_kmh[~np.isnan(batch.speed_kmh)]
    assert np.all((speed >= 0) & (speed <= 250))
    assert np.all(batch.detector_index < len(IDS))


@settings(PROPERTY_SETTINGS, max_examples=600)
@given(topic=topics, payload=st.binary(max_size=300))
def test_never_raises_on_arbitrary_bytes(registry: DetectorRegistry, topic: str, payload: bytes) -> None:
    parser = ReadingParser(registry, clock=lambda: NOW)
    result = parser.parse_message(topic, payload)
    _check_result_invariants(parser, result, None)


@settings(PROPERTY_SETTINGS, max_examples=700)
@given(topic=topics, value=json_values | near_readings | st.lists(near_readings, max_size=5))
def test_never_raises_on_arbitrary_json(registry: DetectorRegistry, topic: str, value: object) -> None:
    parser = ReadingParser(registry, clock=lambda: NOW)
    result = parser.parse_message(topic, json.dumps(value).encode())
    is_array_on_batch = topic == "traffic/detectors/batch" and isinstance(value, list)
    _check_result_invariants(parser, result, len(value) if is_array_on_batch else 1)  # type: ignore[arg-type]
    assert parser.accepted_total == len(result.batch)
    assert parser.rejected_total.total() == len(result.rejections)


@settings(PROPERTY_SETTINGS, max_examples=300)
@given(items=st.lists(json_values | near_readings, max_size=6), line=st.integers(1, 10**6))
def test_parse_object_never_raises(registry: DetectorRegistry, items: list[object], line: int) -> None:
    parser = ReadingParser(registry, clock=lambda: NOW)
    result = parser.parse_object(items, topic="f.jsonl", line=line)
    _check_result_invariants(parser, result, len(items))
    assert all(r.reason.startswith(f"f.jsonl:{line}: readings[") for r in result.rejections)


def _with_plausible_count(obj: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.integers(0, int(obj["interval_s"])).map(lambda count: {**obj, "count": count})


valid_readings = st.fixed_dictionaries(
    {
        "detector_id": st.sampled_from(["D2", "D3"]),
        "ts": st.integers(946_684_800, int(NOW)) | st.floats(946_684_800, NOW),
        "interval_s": st.sampled_from([20, 30, 60, 300]),
        "occupancy_pct": st.floats(0, 100),
        "speed_kmh": st.none() | st.floats(0, 250),
    },
    optional={"lane": st.integers(0, 31)},
).flatmap(_with_plausible_count)


@settings(PROPERTY_SETTINGS, max_examples=400)
@given(obj=valid_readings)
def test_valid_readings_are_accepted_unchanged(registry: DetectorRegistry, obj: dict[str, Any]) -> None:
    parser = ReadingParser(registry, clock=lambda: NOW)
    result = parser.parse_message(f"traffic/detectors/{obj['detector_id']}", json.dumps(obj).encode())
    assert result.rejections == []
    batch = result.batch
    assert batch.detector_index[0] == IDS.index(obj["detector_id"])
    assert batch.ts[0] == float(obj["ts"])
    assert batch.count[0] == obj["count"]
    assert batch.occupancy_pct[0] == np.float32(obj["occupancy_pct"])
    if obj["speed_kmh"] is None:
        assert math.isnan(batch.speed_kmh[0])
    else:
        assert batch.speed_kmh[0] == np.float32(obj["speed_kmh"])
    assert batch.lane[0] == obj.get("lane", -1)
