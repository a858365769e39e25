"""`roadpulse demo` publishes segment states and a city index over MQTT within a minute."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.roadpulse.mqtt_listener import Listener


def test_demo_publishes_states_and_city_index(mqtt_broker) -> None:
    listener = Listener(mqtt_broker.host, mqtt_broker.port, ["traffic/segments/#", "traffic/index/city"])
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "roadpulse.cli",
            "demo",
            "--broker",
            f"{mqtt_broker.host}:{mqtt_broker.port}",
            "--duration",
            "40",
            "--speedup",
            "300",
            "--no-screen",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _, state = listener.wait_for(
            lambda t, p: t.startswith("traffic/segments/") and p["level"] > 0, timeout_s=55
        )
        assert state["speed_kmh"] > 0 and 1 <= state["level"] <= 5
        _, city = listener.wait_for(
            lambda t, p: t == "traffic/index/city" and p["tpi"] is not None, timeout_s=55
        )
        assert 0.0 <= city["tpi"] <= 10.0
        assert time.monotonic() - started < 60
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()
    assert proc.returncode == 0, out
    assert f"using the configured broker at {mqtt_broker.host}:{mqtt_broker.port}" in out
    assert "city TPI" in out
    assert "rejected" in out


@pytest.mark.parametrize("speedup", ["0", "x"])
def test_demo_bad_flag_exits_2(speedup: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "roadpulse.cli", "demo", "--speedup", speedup, "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "speed" in proc.stderr
