"""The `roadpulse` command's bad-input paths: exit status 2 and one line naming what is wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

NET = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "S1",
            "properties": {"road_class": "arterial"},
            "geometry": {"type": "LineString", "coordinates": [[121.55, 29.87], [121.56, 29.87]]},
        },
    ],
}


def roadpulse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roadpulse.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    net = tmp_path / "net.geojson"
    net.write_text(json.dumps(NET))
    det = tmp_path / "det.csv"
    det.write_text("detector_id,segment_id\nD1,S1\n")
    readings = tmp_path / "r.jsonl"
    readings.write_text(
        '{"detector_id":"D1","ts":60,"interval_s":60,"count":5,"occupancy_pct":4,"speed_kmh":50}\n'
        "not json\n"
        '{"detector_id":"D7","ts":60,"interval_s":60,"count":5,"occupancy_pct":4}\n'
    )
    return {"net": net, "det": det, "readings": readings, "dir": tmp_path}


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_replay_writes_states_and_rejections(files: dict[str, Path]) -> None:
    out = files["dir"] / "out.jsonl"
    proc = roadpulse(
        "replay",
        "--network",
        str(files["net"]),
        "--detectors",
        str(files["det"]),
        "--readings",
        str(files["readings"]),
        "--out",
        str(out),
        "--full",
    )
    assert proc.returncode == 0, proc.stderr
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    rejected = [m["payload"]["reason"] for m in messages if m["topic"] == "traffic/rejected"]
    assert any(":2:" in r for r in rejected), rejected  # the line number of the non-JSON line
    assert any("D7" in r for r in rejected), rejected
    (state,) = [m["payload"] for m in messages if m["topic"] == "traffic/segments/S1"]
    assert state["ts"] == 60 and state["speed_kmh"] == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("setup", "needles"),
    [
        ("missing_network", ["nope.geojson"]),
        ("bad_detector_line", ["det.csv:3", "segment_id", "S9"]),
        ("missing_readings", ["missing.jsonl", "not found"]),
        ("bad_config_key", ["cfg.toml", "engine.tick"]),
    ],
)
def test_replay_bad_inputs(files: dict[str, Path], setup: str, needles: list[str]) -> None:
    args = {
        "--network": str(files["net"]),
        "--detectors": str(files["det"]),
        "--readings": str(files["readings"]),
        "--out": str(files["dir"] / "o.jsonl"),
    }
    if setup == "missing_network":
        args["--network"] = str(files["dir"] / "nope.geojson")
    elif setup == "bad_detector_line":
        files["det"].write_text("detector_id,segment_id\nD1,S1\nD2,S9\n")
    elif setup == "missing_readings":
        args["--readings"] = str(files["dir"] / "missing.jsonl")
    elif setup == "bad_config_key":
        cfg = files["dir"] / "cfg.toml"
        cfg.write_text("[engine]\ntick = 5\n")
        args["--config"] = str(cfg)
    flat = [x for pair in args.items() for x in pair]
    _one_line_error(roadpulse("replay", *flat), *needles)


def test_route_and_camera_replay_name_a_missing_file() -> None:
    # route is built (issue #8): a missing network file is bad input, named in one line.
    _one_line_error(roadpulse("route", "--network", "x.osm", "--from", "1,2", "--to", "3,4"), "x.osm")
    # camera-replay is built (issue #5): a missing camera file is bad input, named in one line.
    _one_line_error(
        roadpulse("camera-replay", "--camera", "c.toml", "--frames", "d", "--out", "o"),
        "c.toml: camera file not found",
    )


def test_config_reference_and_check(files: dict[str, Path]) -> None:
    proc = roadpulse("config")
    assert proc.returncode == 0 and "`engine.tick_s`" in proc.stdout
    good = files["dir"] / "good.toml"
    good.write_text("[engine]\ntick_s = 30\n")
    assert roadpulse("config", "--check", str(good)).returncode == 0
