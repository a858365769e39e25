"""Late and out-of-order readings (the watermark rule), clock skew, and ids that try to be topics."""

from __future__ import annotations

import json

from ingest import IngestLimits, ReadingParser
from roadgraph.detectors import DetectorRegistry

NOW = 1_776_729_700.0


def _msg(detector_id: str, ts: float, **extra: object) -> tuple[str, bytes]:
    reading = {"detector_id": detector_id, "ts": ts, "interval_s": 30, "count": 4, "occupancy_pct": 8.0}
    reading.update(extra)
    return f"traffic/detectors/{detector_id}", json.dumps(reading).encode()


def _codes(parser: ReadingParser, detector_id: str, ts: float) -> list[str]:
    result = parser.parse_message(*_msg(detector_id, ts))
    return ["accepted"] * len(result.batch) + [r.code for r in result.rejections]


def test_out_of_order_within_the_lateness_bound_is_accepted(registry: DetectorRegistry) -> None:
    parser = ReadingParser(registry, clock=lambda: NOW, limits=IngestLimits(lateness_s=120))
    assert _codes(parser, "D2", NOW - 30) == ["accepted"]
    parser.mark_ticked(NOW - 30)
    # Older than the tick, but within 120 s of the newest reading: still accepted (next tick).
    assert _codes(parser, "D3", NOW - 140) == ["accepted"]
    assert parser.watermark == NOW - 150


def test_behind_the_watermark_and_already_ticked_is_late(registry: DetectorRegistry) -> None:
    parser = ReadingParser(registry, clock=lambda: NOW, limits=IngestLimits(lateness_s=120))
    assert _codes(parser, "D2", NOW - 30) == ["accepted"]
    # Not ticked yet: an old reading is still useful, whatever the watermark says.
    assert _codes(parser, "D3", NOW - 600) == ["accepted"]
    parser.mark_ticked(NOW - 30)
    result = parser.parse_message(*_msg("D3", NOW - 630))
    assert [r.code for r in result.rejections] == ["late"]
    reason = result.rejections[0].reason
    assert (
        "behind the watermark" in reason and "lateness bound of 120 s" in reason and "already run" in reason
    )


def test_late_readings_in_a_json_batch_refuse_themselves_only(registry: DetectorRegistry) -> None:
    parser = ReadingParser(registry, clock=lambda: NOW, limits=IngestLimits(lateness_s=60))
    parser.parse_message(*_msg("D2", NOW - 10))
    parser.mark_ticked(NOW - 10)
    batch = [json.loads(_msg("D3", NOW - 500)[1]), json.loads(_msg("D3", NOW - 20)[1])]
    result = parser.parse_message("traffic/detectors/batch", json.dumps(batch).encode())
    assert len(result.batch) == 1
    assert [r.code for r in result.rejections] == ["late"]
    assert result.rejections[0].reason.startswith("readings[0]: late")


def test_duplicates_stay_duplicates_whatever_their_age(registry: DetectorRegistry) -> None:
    parser = ReadingParser(registry, clock=lambda: NOW)
    assert _codes(parser, "D2", NOW - 30) == ["accepted"]
    assert _codes(parser, "D2", NOW - 30) == ["duplicate"]


def test_a_detector_clock_running_ahead_is_flagged(make_registry) -> None:
    now = [NOW]
    parser = ReadingParser(
        make_registry(["FAST", "OK"]), clock=lambda: now[0], limits=IngestLimits(max_skew_s=60)
    )
    for k in range(6):
        now[0] = NOW + 30 * k
        parser.parse_message(*_msg("FAST", now[0] + 200))  # 200 s ahead, within max_future_s (300)
        parser.parse_message(*_msg("OK", now[0] - 2))  # 2 s of network delay: fine
    records = parser.clock_skew_records()
    assert [r["detector_id"] for r in records] == ["FAST"]
    assert records[0]["direction"] == "ahead" and 190 < records[0]["skew_s"] < 210
    assert parser.skewed_readings == 4  # from the third reading on
    ok = parser.skew_estimate_s("OK")
    assert ok is not None and abs(ok + 2) < 1e-6


def test_a_detector_clock_running_behind_is_flagged(make_registry) -> None:
    parser = ReadingParser(make_registry(["SLOW"]), clock=lambda: NOW)
    for k in range(4):
        parser.parse_message(*_msg("SLOW", NOW - 3600 + 30 * k))
    (record,) = parser.clock_skew_records()
    assert record["direction"] == "behind" and record["skew_s"] < -3000


def test_replay_does_not_estimate_skew(make_registry) -> None:
    limits = IngestLimits(max_future_s=float("inf"), min_ts=0)
    parser = ReadingParser(make_registry(["D"]), clock=lambda: NOW, limits=limits)
    for k in range(5):
        parser.parse_message(*_msg("D", 100.0 + 30 * k))
    assert parser.clock_skew_records() == [] and parser.skew_estimate_s("D") is None


def test_ids_with_topic_characters_travel_percent_encoded(make_registry) -> None:
    parser = ReadingParser(make_registry(["-4711#2", "a+b"]), clock=lambda: NOW)
    _topic, payload = _msg("-4711#2", NOW - 30)
    assert len(parser.parse_message("traffic/detectors/-4711%232", payload).batch) == 1
    _topic, payload = _msg("a+b", NOW - 30)
    assert len(parser.parse_message("traffic/detectors/a%2Bb", payload).batch) == 1


def test_injected_ids_are_refused_with_a_reason(registry: DetectorRegistry) -> None:
    parser = ReadingParser(registry, clock=lambda: NOW)
    cases = {
        "traffic/detectors/D1": ("D1/../D2", "topic_mismatch"),
        "traffic/detectors/x%23": ("x#", "bad_id"),
        "traffic/detectors/x%2B": ("x+", "bad_id"),
        "traffic/detectors/x%00": ("x\x00", "bad_id"),
        "traffic/detectors/x%0A": ("x\n", "bad_id"),
    }
    for topic, (detector_id, code) in cases.items():
        result = parser.parse_message(topic, _msg(detector_id, NOW - 30)[1])
        assert [r.code for r in result.rejections] == [code], topic
        assert "\n" not in result.rejections[0].reason and "\x00" not in result.rejections[0].reason
    batch = json.dumps([json.loads(_msg("D1/x", NOW)[1])]).encode()
    result = parser.parse_message("traffic/detectors/batch", batch)
    assert [r.code for r in result.rejections] == ["bad_id"]


def test_parser_state_round_trip_keeps_duplicates_and_watermark(registry: DetectorRegistry) -> None:
    parser = ReadingParser(registry, clock=lambda: NOW)
    parser.parse_message(*_msg("D2", NOW - 30))
    parser.mark_ticked(NOW - 30)
    fresh = ReadingParser(registry, clock=lambda: NOW)
    fresh.import_state(parser.export_state())
    assert _codes(fresh, "D2", NOW - 30) == ["duplicate"]
    assert fresh.watermark == parser.watermark
    assert _codes(fresh, "D3", NOW - 1000) == ["late"]
