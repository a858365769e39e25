"""`roadpulse demo` publishes segment states, a city index and its scripted incident over MQTT."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from roadpulse.config import defaults
from roadpulse.demo import demo_layout
from roadpulse.inputs import load_inputs
from tests.roadpulse.mqtt_listener import Listener


def _incident_area_ids() -> set[str]:
    """Segment ids of the demo's scripted incident segment and its immediate neighbours."""
    settings = defaults()
    network, _ = load_inputs(settings)
    _, plan = demo_layout(settings, network)
    s = plan.incident_segment
    succ_ptr, succ_idx = network.successors_csr()
    pred_ptr, pred_idx = network.predecessors_csr()
    area = {
        s,
        *succ_idx[succ_ptr[s] : succ_ptr[s + 1]].tolist(),
        *pred_idx[pred_ptr[s] : pred_ptr[s + 1]].tolist(),
    }
    return {str(network.segments.segment_id[i]) for i in area}


def test_demo_publishes_states_city_index_and_detects_its_incident(mqtt_broker) -> None:
    # The scripted incident starts at 08:12 local, 102 simulated minutes after the demo's 06:30
    # start: 51 s of wall time at the default ×120 (at ×300 the live ingest falls behind on a
    # loaded two-core machine and segments go stale); detection needs 5 ticks (2.5 s) after it.
    incident_area = _incident_area_ids()
    listener = Listener(
        mqtt_broker.host,
        mqtt_broker.port,
        ["traffic/segments/#", "traffic/index/city", "traffic/incidents/#"],
    )
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
            "70",
            "--speedup",
            "120",
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
        _, incident = listener.wait_for(
            lambda t, p: (
                t.startswith("traffic/incidents/")
                and p.get("status") == "active"
                and p.get("segment_id") in incident_area
            ),
            timeout_s=60,
        )
        assert incident["source"] == "detector" and incident["severity"] >= 2
        out, _ = proc.communicate(timeout=90)
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
