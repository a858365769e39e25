"""`roadpulse replay` publishes detector health and incidents, as the live engine would.

A three-segment arterial (GeoJSON) with a loop per lane: an hour of steady traffic, in which one
loop gets stuck at 30 minutes and the right lane of the middle segment is blocked upstream of its
loop at 40 minutes (its traffic moves to the other lane).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROADPULSE = [sys.executable, "-m", "roadpulse.cli"]


def _write_inputs(work: Path) -> tuple[Path, Path, Path]:
    coords = [[121.550 + 0.003 * k, 29.87] for k in range(4)]
    features = [
        {
            "type": "Feature",
            "id": f"art-{k}",
            "geometry": {"type": "LineString", "coordinates": [coords[k], coords[k + 1]]},
            "properties": {"lanes": 2, "road_class": "arterial", "speed_limit_kmh": 60, "oneway": True},
        }
        for k in range(3)
    ]
    net = work / "arterial.geojson"
    net.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    det = work / "detectors.csv"
    det.write_text(
        "detector_id,segment_id,lane\n"
        + "".join(f"L{k}{ln},art-{k},{ln}\n" for k in range(3) for ln in range(2))
    )
    rng = np.random.default_rng(4)
    lines = []
    for minute in range(1, 61):
        ts = 1_776_729_600 + 60 * minute
        for k in range(3):
            counts = rng.poisson([7.0, 6.0])
            if k == 1 and minute > 40:  # lane 0 blocked before its loop: its traffic moves over
                counts = np.array([0, rng.poisson(13.0)])
            for ln in range(2):
                c = int(counts[ln])
                occ = round(0.55 * c + rng.uniform(0, 0.3), 2) if c else 0.0
                speed = round(float(rng.uniform(44, 50)), 1) if c else None
                if k == 2 and ln == 1 and minute > 30:  # a stuck loop: the same reading forever
                    c, occ, speed = 5, 2.9, 47.0
                lines.append(
                    json.dumps(
                        {
                            "detector_id": f"L{k}{ln}",
                            "ts": ts,
                            "interval_s": 60,
                            "count": c,
                            "occupancy_pct": occ,
                            "speed_kmh": speed,
                            "lane": ln,
                        }
                    )
                )
    readings = work / "readings.jsonl"
    readings.write_text("\n".join(lines) + "\n")
    return net, det, readings


def test_replay_output_carries_health_and_incident_messages(tmp_path: Path) -> None:
    net, det, readings = _write_inputs(tmp_path)
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [
            *ROADPULSE,
            "replay",
            "--network",
            str(net),
            "--detectors",
            str(det),
            "--readings",
            str(readings),
            "--out",
            str(out),
            "--tick-s",
            "60",
            "--full",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    health = [m for m in messages if m["topic"].endswith("/health")]
    incidents = [m for m in messages if m["topic"].startswith("traffic/incidents/")]

    # Every detector's health at the first tick, then changes only.
    first = {m["payload"]["detector_id"] for m in health[:6]}
    assert first == {f"L{k}{ln}" for k in range(3) for ln in range(2)}
    assert all(m["payload"]["status"] == "ok" for m in health[:6])
    stuck = [m["payload"] for m in health[6:] if m["payload"]["detector_id"] == "L21"]
    assert stuck and stuck[0]["status"] == "constant" and stuck[0]["since"] > 1_776_729_600 + 1800
    assert {m["payload"]["detector_id"] for m in health[6:]} == {"L21"}  # nobody else blamed

    # The blocked lane: an incident on art-1 within five minutes of the block.
    active = [m["payload"] for m in incidents if m["payload"]["status"] == "active"]
    assert [p["segment_id"] for p in active] == ["art-1"]
    inc = active[0]
    block = 1_776_729_600 + 60 * 41
    assert block - 60 <= inc["start"] <= block + 60
    assert inc["source"] == "detector" and inc["end"] is None
    assert incidents[0]["topic"] == f"traffic/incidents/{inc['incident_id']}"
    assert inc["lon"] is not None and inc["lat"] is not None
    # Reported within five minutes: count the ticks (snapshots) before the incident message.
    position = messages.index(incidents[0])
    ticks_before = [m["payload"]["ts"] for m in messages[:position] if m["topic"] == "traffic/snapshot"]
    assert ticks_before[-1] - block <= 300
