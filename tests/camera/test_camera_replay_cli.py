"""`roadpulse camera-replay` as the spec describes it: frames in (an image folder or a video),
one `{"topic", "payload"}` per line out, exit 2 with a one-line reason on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from camera_scenes import Car, encode, render

from roadpulse.cli import main

CAMERA = """
[camera]
id = "synth-1"
fps = 25
interval_s = 4

[camera.homography]
image = [[100, 200], [172, 200], [172, 20], [100, 20]]
ground = [[10.0, 4.0], [17.2, 4.0], [17.2, 22.0], [10.0, 22.0]]

[[camera.zones]]
id = "lane-0"
segment_id = "A0A1"
lane = 0
polygon = [[100, 90], [136, 90], [136, 170], [100, 170]]

[[camera.zones]]
id = "lane-1"
segment_id = "A0A1"
lane = 1
polygon = [[136, 90], [172, 90], [172, 170], [136, 170]]

[[camera.lines]]
id = "stop"
points = [[90, 150], [182, 150]]
direction = [0, 1]
"""
CARS = [Car(0, 30, 5.0), Car(1, 40, 4.0, shade=215), Car(0, 80, 5.0), Car(1, 120, 6.0, shade=60)]


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("footage")
    frames, _ = render(CARS, 200)
    (root / "frames").mkdir()
    for k, frame in enumerate(frames):
        # names sort in frame order; a PNG among the JPEGs is read too
        suffix = ".png" if k == 7 else ".jpg"
        data = encode(frame) if suffix == ".jpg" else cv2.imencode(".png", frame)[1].tobytes()
        (root / "frames" / f"f{k:05d}{suffix}").write_bytes(data)
    writer = cv2.VideoWriter(str(root / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (320, 240))
    for frame in frames:
        writer.write(frame)
    writer.release()
    (root / "cam.toml").write_text(CAMERA)
    return root


def _messages(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_replay_of_an_image_folder(footage: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    code = main(
        [
            "camera-replay",
            "--camera",
            str(footage / "cam.toml"),
            "--frames",
            str(footage / "frames"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    messages = _messages(out)
    assert {m["topic"] for m in messages} == {
        "traffic/cameras/synth-1/stats",
        "traffic/cameras/synth-1/health",
    }
    health = [m["payload"] for m in messages if m["topic"].endswith("/health")]
    assert health == [{"camera_id": "synth-1", "ts": 0, "status": "ok", "reasons": [], "since": 0}]
    stats = [m["payload"] for m in messages if m["topic"].endswith("/stats")]
    assert [s["ts"] for s in stats] == [4, 8]  # 200 frames at the file's 25 fps
    s = stats[0]
    assert set(s) >= {"camera_id", "ts", "interval_s", "zones", "lines", "health"}
    assert [z["zone_id"] for z in s["zones"]] == ["lane-0", "lane-1"]
    assert set(s["zones"][0]) == {"zone_id", "count", "occupancy_pct", "speed_kmh", "queue_m"}
    assert sum(z["count"] for st in stats for z in st["zones"]) == 4
    assert sum(st["lines"][0]["count"] for st in stats) == 4
    assert s["zones"][0]["speed_kmh"] == pytest.approx(45.0, rel=0.08)


def test_fps_flag_sets_the_time_axis(footage: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    args = [
        "camera-replay",
        "--camera",
        str(footage / "cam.toml"),
        "--frames",
        str(footage / "frames"),
        "--out",
        str(out),
        "--fps",
        "50",
    ]
    assert main(args) == 0
    stats = [m["payload"] for m in _messages(out) if m["topic"].endswith("/stats")]
    assert [s["ts"] for s in stats] == [4]  # 200 frames = 4 s at 50 fps


def test_replay_of_a_video_file(footage: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    args = [
        "camera-replay",
        "--camera",
        str(footage / "cam.toml"),
        "--frames",
        str(footage / "clip.avi"),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    stats = [m["payload"] for m in _messages(out) if m["topic"].endswith("/stats")]
    assert [s["ts"] for s in stats] == [4, 8]
    assert sum(z["count"] for s in stats for z in s["zones"]) == 4


def test_a_frame_that_does_not_decode_is_reported_not_fatal(footage: Path, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for k, src in enumerate(sorted((footage / "frames").iterdir())):
        data = src.read_bytes()
        if k == 100:
            data = data[:200]  # a truncated JPEG
        (frames / src.name).write_bytes(data)
    out = tmp_path / "out.jsonl"
    assert (
        main(
            [
                "camera-replay",
                "--camera",
                str(footage / "cam.toml"),
                "--frames",
                str(frames),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    messages = _messages(out)
    health = [m["payload"] for m in messages if m["topic"].endswith("/health")]
    assert health[0]["reasons"] == [] and health[1]["reasons"] == ["decoder_error"] and health[1]["ts"] == 4.0
    assert health[-1]["reasons"] == []  # and it recovers
    stats = [m["payload"] for m in messages if m["topic"].endswith("/stats")]
    assert stats[1]["health"] == {"status": "failed", "reasons": ["decoder_error"]}


@pytest.mark.parametrize(
    ("camera_text", "frames_name", "expected"),
    [
        (CAMERA.replace('id = "synth-1"', ""), "frames", "cam.toml: camera: missing required key id"),
        (CAMERA.replace("lane = 1", 'lane = "one"'), "frames", "cam.toml: camera.zones[1].lane"),
        (CAMERA.replace("[[camera.lines]]", "[[camera.lanes]]"), "frames", "unknown key 'lanes'"),
        (CAMERA, "missing", "missing: no such file or folder (--frames)"),
        (
            CAMERA.replace(
                "[[100, 200], [172, 200], [172, 20], [100, 20]]", "[[1, 1], [2, 2], [3, 3], [4, 4]]"
            ),
            "frames",
            "homography",
        ),
        (
            CAMERA.replace(
                "[[100, 90], [136, 90], [136, 170], [100, 170]]", "[[900, 900], [950, 900], [950, 950]]"
            ),
            "frames",
            "zone 'lane-0': its polygon covers no pixel",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_it(
    footage: Path, tmp_path: Path, camera_text: str, frames_name: str, expected: str
) -> None:
    cam = tmp_path / "cam.toml"
    cam.write_text(camera_text)
    frames = footage / frames_name
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "roadpulse.cli",
            "camera-replay",
            "--camera",
            str(cam),
            "--frames",
            str(frames),
            "--out",
            str(tmp_path / "o.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("roadpulse camera-replay: ")
    assert expected in lines[0]


def test_a_file_that_is_not_a_video_exits_2(tmp_path: Path, footage: Path) -> None:
    bogus = tmp_path / "notavideo.mp4"
    bogus.write_bytes(b"hello")
    code = main(
        [
            "camera-replay",
            "--camera",
            str(footage / "cam.toml"),
            "--frames",
            str(bogus),
            "--out",
            str(tmp_path / "o.jsonl"),
        ]
    )
    assert code == 2
