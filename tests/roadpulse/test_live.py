"""`roadpulse run` end to end against a real broker: readings in, states and indices out.

The engine runs as a subprocess (as a user would start it); the test publishes readings with a
paho client and reads what the engine publishes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from tests.roadpulse.mqtt_listener import Listener

NETWORK = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "A0A1",
            "properties": {
                "name": "Zhongshan Rd",
                "lanes": 2,
                "road_class": "arterial",
                "speed_limit_kmh": 60,
            },
            "geometry": {"type": "LineString", "coordinates": [[121.550, 29.870], [121.555, 29.870]]},
        },
        {
            "type": "Feature",
            "id": "A1A2",
            "properties": {
                "name": "Zhongshan Rd",
                "lanes": 2,
                "road_class": "arterial",
                "speed_limit_kmh": 60,
            },
            "geometry": {"type": "LineString", "coordinates": [[121.555, 29.870], [121.560, 29.870]]},
        },
    ],
}
DETECTORS = "detector_id,segment_id,lane\nD1,A0A1,0\nD2,A0A1,1\nD3,A1A2,0\n"


@pytest.fixture
def engine(mqtt_broker, tmp_path: Path):
    net = tmp_path / "net.geojson"
    net.write_text(json.dumps(NETWORK))
    det = tmp_path / "det.csv"
    det.write_text(DETECTORS)
    cfg = tmp_path / "config.toml"
    prefix = f"t{os.getpid()}/"
    cfg.write_text(f'[mqtt]\nprefix = "{prefix}"\nclient_id = "rp-test-{os.getpid()}"\n')
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "roadpulse.cli",
            "run",
            "--config",
            str(cfg),
            "--network",
            str(net),
            "--detectors",
            str(det),
            "--broker",
            f"{mqtt_broker.host}:{mqtt_broker.port}",
            "--tick-s",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield proc, prefix
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"engine did not stop on SIGTERM:\n{out}")
    assert proc.returncode == 0, out


def _publisher(mqtt_broker) -> paho.Client:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{os.getpid()}")
    client.connect(mqtt_broker.host, mqtt_broker.port)
    client.loop_start()
    return client


def test_readings_in_states_out_bad_input_rejected(mqtt_broker, engine) -> None:
    proc, prefix = engine
    listener = Listener(
        mqtt_broker.host, mqtt_broker.port, [f"{prefix}segments/#", f"{prefix}index/#", f"{prefix}rejected"]
    )
    pub = _publisher(mqtt_broker)
    try:
        # Readings arrive until the engine is up; each round uses a new ts (no duplicates).
        deadline = time.monotonic() + 30
        got = None
        while got is None and time.monotonic() < deadline:
            now = int(time.time())
            for d, speed in (("D1", 20.0), ("D2", 22.0)):
                reading = {
                    "detector_id": d,
                    "ts": now,
                    "interval_s": 30,
                    "count": 10,
                    "occupancy_pct": 25.0,
                    "speed_kmh": speed,
                }
                pub.publish(f"{prefix}detectors/{d}", json.dumps(reading), qos=1)
            try:
                got = listener.wait_for(
                    lambda t, p: t == f"{prefix}segments/A0A1" and p.get("level", 0) > 0, timeout_s=2.5
                )
            except AssertionError:
                continue
        assert got is not None, "no segment state for A0A1"
        _, state = got
        assert 19.0 <= state["speed_kmh"] <= 23.0, state
        assert state["level"] == 4  # harmonic mean 20.95 km/h against 54 km/h free flow: ratio 0.39
        _, city = listener.wait_for(lambda t, p: t == f"{prefix}index/city", timeout_s=10)
        assert 0.0 <= city["tpi"] <= 10.0

        # Bad input: each yields a reason on traffic/rejected, and the engine keeps scoring.
        pub.publish(f"{prefix}detectors/D1", b"{not json", qos=1)
        _, rej = listener.wait_for(lambda t, p: t == f"{prefix}rejected", timeout_s=10)
        assert rej["topic"] == f"{prefix}detectors/D1" and rej["reason"]
        bad = {
            "detector_id": "D1",
            "ts": int(time.time()),
            "interval_s": 30,
            "count": 3,
            "occupancy_pct": 140,
        }
        pub.publish(f"{prefix}detectors/D1", json.dumps(bad), qos=1)
        _, rej = listener.wait_for(
            lambda t, p: t == f"{prefix}rejected" and "occupancy" in p["reason"], timeout_s=10
        )
        assert "140" in rej["reason"]
        unknown = {
            "detector_id": "D9",
            "ts": int(time.time()),
            "interval_s": 30,
            "count": 3,
            "occupancy_pct": 4,
        }
        pub.publish(f"{prefix}detectors/batch", json.dumps([unknown]), qos=1)
        _, rej = listener.wait_for(
            lambda t, p: t == f"{prefix}rejected" and "D9" in p["reason"], timeout_s=10
        )

        fast = {
            "detector_id": "D3",
            "ts": int(time.time()) + 1,
            "interval_s": 30,
            "count": 5,
            "occupancy_pct": 3.0,
            "speed_kmh": 55.0,
        }
        pub.publish(f"{prefix}detectors/batch", json.dumps([fast]), qos=1)
        _, state = listener.wait_for(
            lambda t, p: t == f"{prefix}segments/A1A2" and p.get("level") == 1, timeout_s=15
        )
        assert state["speed_kmh"] == pytest.approx(55.0, abs=0.5)
        assert proc.poll() is None, "engine exited"
    finally:
        pub.loop_stop()
        pub.disconnect()
        listener.close()


def test_bad_network_file_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.net.xml"
    bad.write_text("<net><edge id='a'")
    proc = subprocess.run(
        [sys.executable, "-m", "roadpulse.cli", "run", "--network", str(bad), "--broker", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_tick_publishes_snapshot_and_indices_before_segment_states() -> None:
    """One message with every segment reaches snapshot readers before the up to
    one-per-segment retained states; the segment states keep their order."""
    from publishers.message import Message
    from roadpulse.live import _snapshot_first

    messages = [
        Message("p/segments/a", b"1", True),
        Message("p/segments/b", b"2", True),
        Message("p/snapshot", b"s"),
        Message("p/index/city", b"i", True),
        Message("p/detectors/D1/health", b"h", True),
    ]
    topics = [m.topic for m in _snapshot_first(messages, "p/")]
    assert topics == ["p/snapshot", "p/index/city", "p/detectors/D1/health", "p/segments/a", "p/segments/b"]
