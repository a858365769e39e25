"""The worker pool: many cameras over a few processes; a decoder that aborts its process or hangs
takes down only its own camera, which is restarted with backoff and reported unhealthy, while the
other cameras keep producing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from camera_faulty_sources import FPS
from camera_scenes import Car, encode, render

from camera.config import CameraConfig, Zone
from camera.worker import CameraJob, CameraSupervisor, Snapshot

ZONE = (Zone("z", "A0A1", 0, ((0.0, 40.0), (159.0, 40.0), (159.0, 80.0), (0.0, 80.0))),)


def _job(camera_id: str, source: str) -> CameraJob:
    config = CameraConfig(id=camera_id, fps=FPS, interval_s=2.0, zones=ZONE, fps_given=True)
    return CameraJob(config, source_factory=f"camera_faulty_sources:{source}", realtime=True)


@pytest.mark.slow
def test_an_aborting_and_a_hanging_source_take_down_only_their_own_camera() -> None:
    jobs = [
        _job("good-a", "steady"),
        _job("aborts", "aborting"),
        _job("good-b", "steady"),
        _job("hangs", "hanging"),
    ]
    got: dict[str, list] = {j.config.id: [] for j in jobs}

    def collect(camera_id: str, item) -> None:
        got[camera_id].append(item)

    # Two processes, cameras dealt round-robin: good-a and good-b share one, the aborting and the
    # hanging camera the other. The abort (frame 30) kills that worker: the hanging camera is an
    # innocent bystander there and is restarted at once, from where it was, until it hangs itself
    # (frame 40).
    supervisor = CameraSupervisor(jobs, collect, processes=2, hang_after_s=2.0, max_backoff_s=4.0)
    supervisor.run(duration_s=40)
    assert supervisor.finished
    assert supervisor.stats.crashes == 1 and supervisor.stats.hangs == 1

    def outputs(camera_id: str, kind: str) -> list[dict]:
        return [o.payload for o in got[camera_id] if not isinstance(o, Snapshot) and o.kind == kind]

    for good in ("good-a", "good-b"):
        stats = outputs(good, "stats")
        assert [s["ts"] for s in stats] == [2, 4, 6, 8]  # every interval, none lost
        assert all(s["health"]["status"] == "ok" for s in stats)
        assert [h["status"] for h in outputs(good, "health")] == ["ok"]
        assert any(isinstance(o, Snapshot) and o.jpeg[:2] == b"\xff\xd8" for o in got[good])
    for bad, why in (("aborts", "crashed (signal 6 SIGABRT) at frame 30"), ("hangs", "hung")):
        health = outputs(bad, "health")
        failed = [h for h in health if h["status"] != "ok"]
        assert (
            len(failed) == 1 and failed[0]["status"] == "failed" and failed[0]["reasons"] == ["decoder_error"]
        )
        assert why in failed[0]["detail"]
        assert health[-1]["status"] == "ok" and health.index(failed[0]) < len(health) - 1  # back, and said so
        assert outputs(bad, "stats")[-1]["ts"] == 8  # and it went on to the end of its footage
    assert [e.split(":")[0] for e in supervisor.stats.events] == ["camera aborts", "camera hangs"]


def test_camera_worker_command_runs_folder_cameras(tmp_path: Path) -> None:
    frames, _ = render([Car(0, 10, 5.0), Car(1, 30, 4.0, shade=215)], 100)
    cams = []
    for k in range(3):
        folder = tmp_path / f"cam{k}"
        folder.mkdir()
        for i, frame in enumerate(frames):
            (folder / f"{i:04d}.jpg").write_bytes(encode(frame))
        toml = tmp_path / f"cam{k}.toml"
        toml.write_text(
            f'[camera]\nid = "cam-{k}"\nsource = "cam{k}"\nfps = 25\ninterval_s = 2\n'
            '[[camera.zones]]\nid = "z"\nsegment_id = "S"\n'
            "polygon = [[100, 90], [136, 90], [136, 170], [100, 170]]\n"
        )
        cams += ["--camera", str(toml)]
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "roadpulse.cli",
            "camera-worker",
            *cams,
            "--processes",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 camera(s) over 2 process(es)" in proc.stderr
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    stats_topics = sorted({m["topic"] for m in messages if m["topic"].endswith("/stats")})
    assert stats_topics == [f"traffic/cameras/cam-{k}/stats" for k in range(3)]
    readings = [r for m in messages if m["topic"] == "traffic/detectors/batch" for r in m["payload"]]
    assert {r["detector_id"] for r in readings} == {"cam-0:z", "cam-1:z", "cam-2:z"}
    assert sum(r["count"] for r in readings if r["detector_id"] == "cam-0:z") == 1  # lane 0


def test_a_stream_that_is_down_is_reported_and_retried_with_backoff() -> None:
    config = CameraConfig(id="down", source="http://127.0.0.1:9/stream.mjpg", fps=25.0, zones=ZONE)
    reports: list[dict] = []
    supervisor = CameraSupervisor(
        [CameraJob(config)], lambda _id, item: reports.append(item.payload), processes=1, max_backoff_s=2.0
    )
    supervisor.run(duration_s=5.0)
    assert not supervisor.finished  # a stream is never given up
    assert len(reports) >= 2 and all(r["reasons"] == ["no_frames"] for r in reports)
    assert "cannot be opened" in reports[0]["detail"] and "retrying in 1 s" in reports[0]["detail"]
    assert "retrying in 2 s" in reports[1]["detail"]
