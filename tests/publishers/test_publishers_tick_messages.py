"""TickMessages: payloads per spec, change detection, snapshot, indices, strict JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from congestion.types import LEVELS
from ingest.rejections import Rejection
from publishers.message import Message
from publishers.tick_messages import SNAPSHOT_COLUMNS, TickMessages, rejection_message

TS = 1776729660.0
SPEC_KEYS = [
    "segment_id",
    "ts",
    "speed_kmh",
    "free_flow_kmh",
    "tti",
    "level",
    "level_name",
    "confidence",
    "imputed",
    "sources",
    "closed",
]


def strict_loads(payload: bytes) -> Any:
    """json.loads that fails on NaN/Infinity literals (which json.loads accepts by default)."""

    def reject(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(payload, parse_constant=reject)


def segment_messages(messages: list[Message], prefix: str = "traffic/") -> dict[str, dict[str, Any]]:
    return {m.topic: strict_loads(m.payload) for m in messages if m.topic.startswith(prefix + "segments/")}


def only(messages: list[Message], topic: str) -> Message:
    found = [m for m in messages if m.topic == topic]
    assert len(found) == 1, f"{len(found)} messages on {topic}"
    return found[0]


# -- payload shape -----------------------------------------------------------------------------------

PAYLOAD_CASES = [
    pytest.param(
        dict(speed_kmh=[31.5], free_flow_kmh=48.0, level=[3], confidence=0.8, n_detectors=2),
        dict(
            speed_kmh=31.5,
            free_flow_kmh=48.0,
            tti=1.52,
            level=3,
            level_name="light",
            confidence=0.8,
            imputed=False,
            sources={"detectors": 2, "cameras": 0},
            closed=False,
        ),
        id="spec-example",
    ),
    pytest.param(
        dict(speed_kmh=[float("nan")], level=[0], confidence=0.0, n_detectors=0),
        dict(
            speed_kmh=None,
            free_flow_kmh=48.0,
            tti=None,
            level=0,
            level_name="unknown",
            confidence=0.0,
            imputed=False,
            sources={"detectors": 0, "cameras": 0},
            closed=False,
        ),
        id="unknown-nan",
    ),
    pytest.param(
        dict(speed_kmh=[0.0], level=[5], confidence=0.555, n_cameras=1, n_detectors=0),
        # tti = 48 / 0 = inf: not representable in JSON, published as null.
        dict(
            speed_kmh=0.0,
            free_flow_kmh=48.0,
            tti=None,
            level=5,
            level_name="severe",
            confidence=0.56,
            imputed=False,
            sources={"detectors": 0, "cameras": 1},
            closed=False,
        ),
        id="stopped-infinite-tti",
    ),
    pytest.param(
        dict(speed_kmh=[44.449], free_flow_kmh=52.36, confidence=0.3, imputed=True, n_detectors=0),
        dict(
            speed_kmh=44.4,
            free_flow_kmh=52.4,
            tti=1.18,
            level=1,
            level_name="smooth",
            confidence=0.3,
            imputed=True,
            sources={"detectors": 0, "cameras": 0},
            closed=False,
        ),
        id="imputed-rounding",
    ),
    pytest.param(
        dict(speed_kmh=[5.0], free_flow_kmh=60.0, level=[5], closed=True, n_detectors=3, n_cameras=2),
        dict(
            speed_kmh=5.0,
            free_flow_kmh=60.0,
            tti=12.0,
            level=5,
            level_name="severe",
            confidence=0.8,
            imputed=False,
            sources={"detectors": 3, "cameras": 2},
            closed=True,
        ),
        id="closed",
    ),
]


@pytest.mark.parametrize(("state", "expected"), PAYLOAD_CASES)
def test_segment_payload_matches_spec(build, state: dict[str, Any], expected: dict[str, Any]) -> None:
    tick = TickMessages(build.network(["A0A1"]))
    messages = tick.for_tick(build.result(build.states(TS, **state)))

    message = only(messages, "traffic/segments/A0A1")
    payload = strict_loads(message.payload)
    assert message.retain
    assert list(payload) == SPEC_KEYS
    assert payload == {"segment_id": "A0A1", "ts": 1776729660, **expected}
    assert isinstance(payload["ts"], int)


def test_fractional_tick_time_is_kept(build) -> None:
    tick = TickMessages(build.network(["a"]), snapshot=False)
    payload = strict_loads(tick.for_tick(build.result(build.states(TS + 0.5, [30.0])))[0].payload)
    assert payload["ts"] == TS + 0.5


def test_payloads_equal_json_dumps_reference(build) -> None:
    """The vectorised encoder writes byte for byte what json.dumps of a dict per segment writes."""
    rng = np.random.default_rng(7)
    n = 3000
    ids = [f"s{i}" for i in range(n - 4)] + ['q"uote', "back\\slash", "中山路-1", "tab\there"]
    speed = rng.uniform(0, 120, n).astype(np.float32)
    speed[rng.random(n) < 0.1] = np.nan
    speed[:3] = [0.0, 0.04, 119.95]
    tti = rng.uniform(1, 4, n).astype(np.float32)
    tti[5] = np.inf
    tti[6] = 12345.678  # far outlier: takes the sparse formatting path
    states = build.states(
        TS,
        speed,
        tti=tti,
        free_flow_kmh=rng.choice([40.0, 48.0, 60.0, 80.0], n),
        confidence=rng.random(n),
        imputed=rng.random(n) < 0.3,
        n_detectors=rng.integers(0, 9, n),
        n_cameras=rng.integers(0, 3, n),
        closed=rng.random(n) < 0.05,
    )
    messages = TickMessages(build.network(ids)).for_tick(build.result(states), full=True)

    def number(value: float, decimals: int) -> float | None:
        return round(float(value), decimals) if math.isfinite(value) else None

    for i, message in enumerate(messages[:n]):
        reference = {
            "segment_id": ids[i],
            "ts": 1776729660,
            "speed_kmh": number(states.speed_kmh[i], 1),
            "free_flow_kmh": number(states.free_flow_kmh[i], 1),
            "tti": number(states.tti[i], 2),
            "level": int(states.level[i]),
            "level_name": LEVELS[int(states.level[i])][0],
            "confidence": number(states.confidence[i], 2),
            "imputed": bool(states.imputed[i]),
            "sources": {"detectors": int(states.n_detectors[i]), "cameras": int(states.n_cameras[i])},
            "closed": bool(states.closed[i]),
        }
        assert message.payload == json.dumps(reference, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("segment_id", "topic"),
    [
        ("A0A1", "traffic/segments/A0A1"),
        ("-4711#2", "traffic/segments/-4711%232"),  # SUMO edge ids contain '#'
        ("a/b+c%d", "traffic/segments/a%2Fb%2Bc%25d"),
        ("中山路", "traffic/segments/中山路"),
    ],
)
def test_topic_level_escapes_mqtt_specials_and_payload_keeps_id(build, segment_id: str, topic: str) -> None:
    tick = TickMessages(build.network([segment_id, "other"]))
    message = only(tick.for_tick(build.result(build.states(TS, [30.0, 30.0]))), topic)
    assert strict_loads(message.payload)["segment_id"] == segment_id


def test_prefix_applies_to_every_topic(build) -> None:
    tick = TickMessages(build.network(["a"]), prefix="city7/")
    result = build.result(build.states(TS, [30.0]), {"north": build.area(TS)})
    topics = [m.topic for m in tick.for_tick(result)]
    assert topics == ["city7/segments/a", "city7/snapshot", "city7/index/city", "city7/index/district/north"]


def test_length_mismatch_is_an_error(build) -> None:
    tick = TickMessages(build.network(["a", "b"]))
    with pytest.raises(ValueError, match="1 segment states, the network 2 segments"):
        tick.for_tick(build.result(build.states(TS, [30.0])))


def test_level_outside_levels_is_an_error(build) -> None:
    tick = TickMessages(build.network(["a"]))
    with pytest.raises(ValueError, match="level outside"):
        tick.for_tick(build.result(build.states(TS, [30.0], level=[9])))


# -- change detection ------------------------------------------------------------------------------

IDS = ["s0", "s1", "s2", "s3"]
BASE = dict(speed_kmh=[40.0, 20.0, float("nan"), 10.0], level=[1, 3, 0, 5])


def second_tick(build, tick: TickMessages, **changes: Any) -> dict[str, dict[str, Any]]:
    """Publish BASE, then BASE with ``changes``; return the segment messages of the second tick."""
    tick.for_tick(build.result(build.states(TS, **BASE)))
    return segment_messages(tick.for_tick(build.result(build.states(TS + 60, **{**BASE, **changes}))))


@pytest.mark.parametrize(
    ("changes", "expected_ids"),
    [
        pytest.param({}, [], id="nothing-changed"),
        pytest.param({"level": [2, 3, 0, 5]}, ["s0"], id="level"),
        pytest.param({"speed_kmh": [40.9, 20.0, float("nan"), 10.0]}, [], id="speed-below-threshold"),
        pytest.param({"speed_kmh": [41.0, 20.0, float("nan"), 10.0]}, ["s0"], id="speed-at-threshold"),
        pytest.param({"speed_kmh": [40.0, 20.0, 30.0, 10.0]}, ["s2"], id="unknown-to-known"),
        pytest.param({"speed_kmh": [40.0, float("nan"), float("nan"), 10.0]}, ["s1"], id="known-to-unknown"),
        pytest.param({"imputed": [False, False, False, True]}, ["s3"], id="imputed-flag"),
        pytest.param({"closed": [False, True, False, False]}, ["s1"], id="closed-flag"),
        pytest.param({"confidence": 0.1, "n_detectors": 4, "free_flow_kmh": 50.0}, [], id="confidence-only"),
    ],
)
@pytest.mark.parametrize("snapshot", [True, False], ids=["with-snapshot", "segments-only"])
def test_change_detection(build, changes: dict[str, Any], expected_ids: list[str], snapshot: bool) -> None:
    published = second_tick(build, TickMessages(build.network(IDS), snapshot=snapshot), **changes)
    assert sorted(p["segment_id"] for p in published.values()) == expected_ids
    for payload in published.values():
        assert payload["ts"] == TS + 60


def test_slow_drift_accumulates_against_last_published_speed(build) -> None:
    tick = TickMessages(build.network(["a"]), min_speed_change_kmh=1.0)
    published = []
    for k, speed in enumerate([40.0, 40.6, 41.2, 41.5]):
        messages = tick.for_tick(build.result(build.states(TS + 60 * k, [speed], level=[1])))
        published.append([p["speed_kmh"] for p in segment_messages(messages).values()])
    # 40.6 and then 41.2 each moved < 1 km/h from their predecessor, but 41.2 is 1.2 from 40.0.
    assert published == [[40.0], [], [41.2], []]


def test_first_tick_publishes_unknown_segments_too(build) -> None:
    tick = TickMessages(build.network(IDS))
    published = segment_messages(tick.for_tick(build.result(build.states(TS, **BASE))))
    assert len(published) == 4
    assert published["traffic/segments/s2"]["level_name"] == "unknown"


def test_first_tick_can_skip_unknown_segments(build) -> None:
    tick = TickMessages(build.network(IDS), publish_initial_unknown=False)
    first = segment_messages(tick.for_tick(build.result(build.states(TS, **BASE))))
    assert sorted(first) == ["traffic/segments/s0", "traffic/segments/s1", "traffic/segments/s3"]
    # Never published, still unknown: no message; becoming known: a message.
    again = segment_messages(tick.for_tick(build.result(build.states(TS + 60, **BASE))))
    assert again == {}


def test_full_publishes_every_segment_and_resets_the_baseline(build) -> None:
    tick = TickMessages(build.network(IDS))
    tick.for_tick(build.result(build.states(TS, **BASE)))
    full = segment_messages(tick.for_tick(build.result(build.states(TS + 60, **BASE)), full=True))
    assert len(full) == 4
    nudged = {**BASE, "speed_kmh": [40.5, 20.0, float("nan"), 10.0]}
    assert segment_messages(tick.for_tick(build.result(build.states(TS + 120, **nudged)))) == {}


def test_disabled_outputs_are_not_built(build) -> None:
    tick = TickMessages(build.network(IDS), segment_states=False, snapshot=False)
    topics = [m.topic for m in tick.for_tick(build.result(build.states(TS, **BASE)))]
    assert topics == ["traffic/index/city"]
    assert (
        TickMessages(build.network(IDS), indices=False, snapshot=False)
        .for_tick(build.result(build.states(TS, **BASE)))[-1]
        .topic.startswith("traffic/segments/")
    )


def test_empty_network(build) -> None:
    messages = TickMessages(build.network([])).for_tick(build.result(build.states(TS, [])))
    snapshot = strict_loads(only(messages, "traffic/snapshot").payload)
    assert snapshot["rows"] == []


# -- snapshot ----------------------------------------------------------------------------------------


def test_snapshot_has_every_segment_every_tick(build) -> None:
    tick = TickMessages(build.network(IDS))
    states = build.states(TS, **BASE, imputed=[False, True, False, False], n_cameras=[0, 0, 0, 2])
    tick.for_tick(build.result(states))
    message = only(tick.for_tick(build.result(states)), "traffic/snapshot")  # nothing changed
    assert not message.retain
    snapshot = strict_loads(message.payload)
    assert snapshot["ts"] == 1776729660
    assert snapshot["columns"] == list(SNAPSHOT_COLUMNS)
    rows = [dict(zip(snapshot["columns"], row, strict=True)) for row in snapshot["rows"]]
    assert rows[0] == {
        "segment_id": "s0",
        "speed_kmh": 40.0,
        "free_flow_kmh": 48.0,
        "tti": 1.2,
        "confidence": 0.8,
        "level": 1,
        "imputed": False,
        "detectors": 1,
        "cameras": 0,
        "closed": False,
    }
    assert rows[2]["speed_kmh"] is None and rows[2]["tti"] is None and rows[2]["level"] == 0
    assert rows[1]["imputed"] is True and rows[3]["cameras"] == 2
    assert [r["segment_id"] for r in rows] == IDS


def test_snapshot_rows_agree_with_segment_payloads(build) -> None:
    rng = np.random.default_rng(3)
    n = 500
    speed = rng.uniform(0, 80, n)
    speed[::7] = np.nan
    states = build.states(TS, speed, confidence=rng.random(n), n_detectors=rng.integers(0, 4, n))
    messages = TickMessages(build.network([f"x{i}" for i in range(n)])).for_tick(build.result(states))
    snapshot = strict_loads(only(messages, "traffic/snapshot").payload)
    by_id = {p["segment_id"]: p for p in segment_messages(messages).values()}
    for row in snapshot["rows"]:
        r = dict(zip(snapshot["columns"], row, strict=True))
        p = by_id[r["segment_id"]]
        assert (r["speed_kmh"], r["tti"], r["level"], r["confidence"], r["detectors"]) == (
            p["speed_kmh"],
            p["tti"],
            p["level"],
            p["confidence"],
            p["sources"]["detectors"],
        )


# -- indices -----------------------------------------------------------------------------------------


def test_index_messages(build) -> None:
    districts = {
        "海曙区": build.area(TS, tpi=5.678, level=3, tti=1.456, severe_share=0.12345, known_share=0.5),
        "no data": build.area(
            TS, tpi=float("nan"), level=0, tti=float("nan"), severe_share=float("nan"), known_share=0.0
        ),
        "a/b": build.area(TS),
    }
    messages = TickMessages(build.network(["a"])).for_tick(build.result(build.states(TS, [30.0]), districts))

    city = only(messages, "traffic/index/city")
    assert city.retain
    assert strict_loads(city.payload) == {
        "ts": 1776729660,
        "tpi": 3.46,
        "level": 2,
        "level_name": "mostly_smooth",
        "tti": 1.23,
        "severe_share": 0.051,
        "known_share": 0.9,
    }
    haishu = strict_loads(only(messages, "traffic/index/district/海曙区").payload)
    assert haishu == {
        "ts": 1776729660,
        "tpi": 5.68,
        "level": 3,
        "level_name": "light",
        "tti": 1.46,
        "severe_share": 0.123,
        "known_share": 0.5,
    }
    empty = strict_loads(only(messages, "traffic/index/district/no data").payload)
    assert empty["tpi"] is None and empty["tti"] is None and empty["severe_share"] is None
    assert empty["level_name"] == "unknown"
    assert only(messages, "traffic/index/district/a%2Fb").retain


# -- strict JSON everywhere, rejections ----------------------------------------------------------------


def test_every_payload_is_strict_json(build) -> None:
    states = build.states(
        TS,
        [float("nan"), 0.0, float("inf"), 30.0],
        tti=[float("nan"), float("inf"), float("-inf"), 1.6],
        confidence=[float("nan"), 0.5, 1.0, 0.2],
        free_flow_kmh=[float("nan"), 48.0, 48.0, 48.0],
        level=[0, 5, 1, 2],
    )
    districts = {"d": build.area(TS, tpi=float("inf"), tti=float("nan"))}
    messages = TickMessages(build.network(IDS)).for_tick(build.result(states, districts), full=True)
    assert len(messages) == 4 + 1 + 2
    for message in messages:
        strict_loads(message.payload)


def test_rejection_message(build) -> None:
    rejection = Rejection(
        topic="traffic/detectors/D9",
        code="unknown_detector",
        reason="unknown detector_id 'D9'",
        payload_excerpt='{"detector_id": "D9"}',
        ts=1776729661.0,
    )
    message = rejection_message(rejection, prefix="x/")
    assert message.topic == "x/rejected"
    assert not message.retain
    assert strict_loads(message.payload) == {
        "topic": "traffic/detectors/D9",
        "reason": "unknown detector_id 'D9'",
        "code": "unknown_detector",
        "payload_excerpt": '{"detector_id": "D9"}',
        "ts": 1776729661,
    }
