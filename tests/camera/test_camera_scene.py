"""The analysis on a rendered road whose truth is exact: occupancy, counts, speeds through the
homography, counting lines, queues, stopped and wrong-way vehicles, and the health checks."""

from __future__ import annotations

import numpy as np
import pytest
from camera_scenes import Car, encode, render, scene_camera, zone_truth

from camera.analyzer import AnalysisSettings, CameraAnalyzer, Output
from camera.faults import FAULT_REASONS, faulty_frames

FPS = 25.0
TRAFFIC = [
    Car(0, 30, 5.0),  # 45 km/h
    Car(1, 40, 4.0, shade=215),  # 36 km/h, a light car on a grey road
    Car(0, 80, 5.0),
    Car(1, 120, 6.0, shade=60),  # 54 km/h
    Car(0, 140, 5.0, shade=200),
    Car(0, 170, 3.0),  # 27 km/h
]


def _run(config, frames, settings=None) -> tuple[CameraAnalyzer, list[Output]]:
    analyzer = CameraAnalyzer(config, settings)
    out: list[Output] = []
    for i, frame in enumerate(frames):
        out.extend(analyzer.process_bytes(i / FPS, encode(frame)))
    out.extend(analyzer.flush(len(frames) / FPS))
    return analyzer, out


@pytest.fixture(scope="module")
def traffic():
    frames, boxes = render(TRAFFIC, 300)
    return frames, boxes


def test_occupancy_counts_speeds_and_lines_match_the_rendered_truth(traffic) -> None:
    frames, boxes = traffic
    config = scene_camera(zone_y=(90.0, 170.0))
    _, out = _run(config, frames)
    stats = [o.payload for o in out if o.kind == "stats"]
    assert [s["ts"] for s in stats] == [4, 8, 12]
    assert all(s["health"] == {"status": "ok", "reasons": []} for s in stats)
    truth = zone_truth(config, boxes)
    for s in stats:
        end = int(s["ts"] * FPS)
        measured = range(max(end - int(4 * FPS), int(FPS)), end)  # after the 1 s warm-up
        for z in s["zones"]:
            frac = np.asarray(truth[z["zone_id"]])[list(measured)]
            expected = 100.0 * float((frac >= config.occupied_fraction).mean())
            assert z["occupancy_pct"] == pytest.approx(expected, abs=5.0), (s["ts"], z)
    count = {zid: sum(z["count"] for s in stats for z in s["zones"] if z["zone_id"] == zid) for zid in truth}
    assert count == {"lane-0": 4, "lane-1": 2}
    assert sum(s["lines"][0]["count"] for s in stats) == 6
    speeds = [z["speed_kmh"] for s in stats for z in s["zones"] if z["speed_kmh"] is not None]
    # Each interval's harmonic mean lies between the slowest and fastest car that passed.
    assert speeds and all(26.0 <= v <= 56.0 for v in speeds)
    first = {z["zone_id"]: z["speed_kmh"] for z in stats[0]["zones"]}
    assert first["lane-0"] == pytest.approx(45.0, rel=0.08) and first["lane-1"] == pytest.approx(
        36.0, rel=0.08
    )
    assert [o.payload["status"] for o in out if o.kind == "health"] == ["ok"]  # the first state only
    assert not [o for o in out if o.kind == "incident"]


def test_a_queue_and_stopped_vehicles_then_a_wrong_way_driver() -> None:
    cars = [
        Car(0, 10, 5.0, stop_y=178),  # stops at the zone's downstream end
        Car(0, 40, 5.0, stop_y=128),  # and one behind it: 9.7 m of queue
        Car(1, 60, -4.0, start_y=290, shade=210),  # up the wrong lane
    ]
    frames, _ = render(cars, 250)
    _, out = _run(scene_camera(), frames, AnalysisSettings(stopped_after_s=3.0))
    stats = [o.payload for o in out if o.kind == "stats"]
    queue = [z["queue_m"] for s in stats for z in s["zones"] if z["zone_id"] == "lane-0"]
    assert max(queue) == pytest.approx(9.7, abs=1.0)
    incidents = [o.payload for o in out if o.kind == "incident"]
    stopped = [i for i in incidents if i["type"] == "stopped_vehicle" and i["status"] == "active"]
    assert len(stopped) == 2 and all(i["source"] == "camera" and i["segment_id"] == "A0A1" for i in stopped)
    wrong = [i for i in incidents if i["type"] == "wrong_way"]
    assert wrong and wrong[0]["status"] == "active" and "lane-1" in wrong[0]["incident_id"]
    assert {
        "incident_id",
        "type",
        "segment_id",
        "lon",
        "lat",
        "start",
        "end",
        "status",
        "source",
        "severity",
        "description",
    } <= set(wrong[0])


@pytest.mark.parametrize("fault", list(FAULT_REASONS))
def test_synthetic_faults_are_flagged_within_two_seconds(traffic, fault: str) -> None:
    frames, _ = traffic
    start = 100  # 4 s of healthy footage first
    _, out = _run(scene_camera(), list(faulty_frames(frames, fault, start)))
    reason = FAULT_REASONS[fault]
    flagged = [o.payload["ts"] for o in out if o.kind == "health" and reason in o.payload["reasons"]]
    assert flagged, f"{fault} never reported as {reason}"
    assert start / FPS <= flagged[0] <= start / FPS + 2.0
    # nothing before the fault
    early = [o.payload for o in out if o.kind == "health" and o.payload["ts"] < start / FPS]
    assert [(h["ts"], h["status"]) for h in early] == [(0, "ok")]
    # and the interval that holds the fault says so, and would feed nothing into congestion
    stats = [o.payload for o in out if o.kind == "stats" and o.payload["ts"] > start / FPS]
    assert reason in stats[0]["health"]["reasons"] and stats[0]["health"]["status"] != "ok"


def test_a_healthy_feed_is_never_flagged(traffic) -> None:
    frames, _ = traffic
    _, out = _run(scene_camera(), frames + frames[::-1])
    assert [(o.payload["ts"], o.payload["reasons"]) for o in out if o.kind == "health"] == [(0, [])]
    assert all(o.payload["health"]["status"] == "ok" for o in out if o.kind == "stats")
