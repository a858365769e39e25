"""10,000 malformed messages through a real broker: 10,000 reasons on ``traffic/rejected``, and
the engine keeps ticking and keeps accepting the valid readings sent among them."""

from __future__ import annotations

import json
import struct
import threading
import time
from collections import Counter

import paho.mqtt.client as paho

from tests.ingest.live_helpers import LiveEngine, grid_with_detectors, reading, settings_for

N_MALFORMED = 10_000
N_VALID = 200


def _reading_dict(detector_id: str, ts: float, **changes: object) -> dict[str, object]:
    r: dict[str, object] = {
        "detector_id": detector_id,
        "ts": ts,
        "interval_s": 30,
        "count": 5,
        "occupancy_pct": 10.0,
        "speed_kmh": 50.0,
    }
    r.update(changes)
    return r


def malformed(i: int, ts: float) -> tuple[str, bytes, str]:
    """(topic suffix, payload, expected code): each refused whole, with one rejection."""
    d = f"D{i % 20}"
    kind = i % 16
    dumps = json.dumps
    if kind == 0:
        return d, b"not json {" + str(i).encode(), "bad_json"
    if kind == 1:
        return d, dumps(_reading_dict(d, ts, count="ten")).encode(), "bad_type"
    if kind == 2:
        return d, dumps(_reading_dict(d, ts)).replace('"count": 5', '"count": NaN').encode(), "bad_json"
    if kind == 3:
        text = dumps(_reading_dict(d, ts)).replace('"occupancy_pct": 10.0', '"occupancy_pct": Infinity')
        return d, text.encode(), "bad_json"
    if kind == 4:
        return d, dumps(_reading_dict(d, ts, count=-3)).encode(), "out_of_range"
    if kind == 5:
        return d, dumps(_reading_dict(d, ts, occupancy_pct=140)).encode(), "out_of_range"
    if kind == 6:
        return d, dumps(_reading_dict(d, ts, speed_kmh=900)).encode(), "out_of_range"
    if kind == 7:
        return d, b'{"detector_id": "' + b"x" * 5000 + b'"}', "too_large"
    if kind == 8:
        return "D999", dumps(_reading_dict("D999", ts)).encode(), "unknown_detector"
    if kind == 9:  # injection: a path in the id, sent on a per-detector topic
        return d, dumps(_reading_dict(f"{d}/health", ts)).encode(), "topic_mismatch"
    if kind == 10:  # a wildcard, percent-encoded in the topic as it must be
        return "X%23", dumps(_reading_dict("X#", ts)).encode(), "bad_id"
    if kind == 11:  # NUL in the id
        return "X%00", dumps(_reading_dict("X\u0000", ts)).encode(), "bad_id"
    if kind == 12:  # topic and payload disagree
        return "D1", dumps(_reading_dict("D2", ts)).encode(), "topic_mismatch"
    if kind == 13:
        return "batch", b'{"not": "an array"}', "bad_shape"
    if kind == 14:
        return "batch/bin", b"XXXX" + struct.pack("<III", 1, 1, 2) + b"D1" + bytes(32), "bad_shape"
    no_ts = _reading_dict(d, ts)
    del no_ts["ts"]
    return d, dumps(no_ts).encode(), "missing_field"


def test_ten_thousand_malformed_messages_give_ten_thousand_reasons(mqtt_broker) -> None:
    network, detectors = grid_with_detectors(40)
    settings = settings_for(mqtt_broker.port, tick_s=1, **{"ingest.max_payload_bytes": 4096})
    prefix = settings["mqtt"]["prefix"]
    rejected: list[dict[str, object]] = []
    all_in = threading.Event()

    def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
        rejected.append(json.loads(msg.payload))
        if len(rejected) >= N_MALFORMED:
            all_in.set()

    listener = paho.Client(paho.CallbackAPIVersion.VERSION2)
    listener.on_message = on_message
    listener.connect(mqtt_broker.host, mqtt_broker.port)
    listener.subscribe(f"{prefix}rejected", qos=1)
    listener.loop_start()
    engine = LiveEngine(network, detectors, settings)
    try:
        engine.wait_connected()
        engine.wait_ticks(1)
        ticks_before = engine.ticks
        publisher = paho.Client(paho.CallbackAPIVersion.VERSION2)
        publisher.max_inflight_messages_set(500)
        publisher.connect(mqtt_broker.host, mqtt_broker.port)
        publisher.loop_start()
        now = time.time()
        expected: Counter[str] = Counter()
        infos = []
        valid_sent = 0
        for i in range(N_MALFORMED):
            suffix, payload, code = malformed(i, now - 30)
            expected[code] += 1
            infos.append(publisher.publish(f"{prefix}detectors/{suffix}", payload, qos=1))
            if i % (N_MALFORMED // N_VALID) == 0 and valid_sent < N_VALID:
                # Valid readings among the garbage: distinct (detector, ts), all must be accepted.
                det = f"D{valid_sent % 40}"
                ts = now - 60 - valid_sent // 40
                infos.append(publisher.publish(f"{prefix}detectors/{det}", reading(det, ts), qos=1))
                valid_sent += 1
        for info in infos:
            info.wait_for_publish(timeout=60)
        publisher.disconnect()
        publisher.loop_stop()
        assert all_in.wait(60), f"only {len(rejected)} rejections arrived"
        time.sleep(0.5)  # anything beyond 10,000 would show now
        engine.wait_ticks(2)
        assert engine.ticks >= ticks_before + 2  # it kept scoring
    finally:
        pipeline = engine.stop()
        listener.loop_stop()
        listener.disconnect()

    assert len(rejected) == N_MALFORMED
    got = Counter(str(r["code"]) for r in rejected)
    assert got == expected
    assert all(isinstance(r["reason"], str) and r["reason"] for r in rejected)
    assert {r["topic"] for r in rejected if r["code"] == "bad_id"} == {
        f"{prefix}detectors/X%23",
        f"{prefix}detectors/X%00",
    }
    assert pipeline.counters.rejected == N_MALFORMED
    assert pipeline.counters.accepted == valid_sent == N_VALID
