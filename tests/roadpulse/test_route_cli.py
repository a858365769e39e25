"""``roadpulse route`` as a user runs it: a subprocess, JSON on stdout, exit 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from roadpulse.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
CITY = Path(__file__).resolve().parents[2] / "roadpulse" / "data" / "aguascalientes.osm.bz2"
GRID = DATA / "sumo" / "grid3.net.xml"
SMALL = DATA / "geojson" / "small.geojson"


def roadpulse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roadpulse.cli", "route", *args], capture_output=True, text=True, timeout=180
    )


def test_route_between_points_in_the_demo_city() -> None:
    out = roadpulse(
        "--network", str(CITY), "--from=-102.2901,21.8727", "--to=-102.2657,21.8700", "--alternatives", "2"
    )
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert set(body) >= {
        "duration_s",
        "distance_m",
        "segment_ids",
        "roads",
        "levels",
        "geometry",
        "alternatives",
    }
    assert body["duration_s"] > 0 and body["distance_m"] > 1000
    assert len(body["levels"]) == len(body["segment_ids"])
    assert body["roads"] and all(a != b for a, b in zip(body["roads"], body["roads"][1:], strict=False))
    coords = body["geometry"]["coordinates"]
    assert abs(coords[0][0] - -102.2901) < 0.002 and abs(coords[-1][0] - -102.2657) < 0.002
    assert body["from"]["snap_distance_m"] < 100
    assert 1 <= len(body["alternatives"]) <= 2
    for alt in body["alternatives"]:
        assert alt["segment_ids"] != body["segment_ids"]
        assert body["duration_s"] <= alt["duration_s"] <= 1.4 * body["duration_s"] + 1e-6


def test_route_between_segments_with_weights(tmp_path: Path) -> None:
    # free flow first: A0A1 -> A1A2 -> A2B2 (or the other side of the block)
    free = roadpulse("--network", str(GRID), "--from-segment", "A0A1", "--to-segment", "B2C2")
    assert free.returncode == 0, free.stderr
    first = json.loads(free.stdout)
    weights = tmp_path / "w.csv"
    # make every segment of the free-flow route after the first one very slow
    rows = "".join(f"{sid},{900.0}\n" for sid in first["segment_ids"][1:-1])
    weights.write_text("segment_id,travel_time_s\n" + rows + "B2C2,12.5\n")
    out = roadpulse(
        "--network", str(GRID), "--from-segment", "A0A1", "--to-segment", "B2C2", "--weights", str(weights)
    )
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["segment_ids"][0] == "A0A1" and body["segment_ids"][-1] == "B2C2"
    assert not set(body["segment_ids"][1:-1]) & set(first["segment_ids"][1:-1])
    assert body["duration_s"] < 900
    assert body["polyline"] is None  # grid3 has no lon/lat
    assert body["levels"][-1] >= 1  # listed segments get a level from their speed


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--network", str(SMALL), "--from=abc", "--to=121.554,29.871"], "from: expected LON,LAT"),
        (["--network", str(SMALL), "--from=121.55,91", "--to=121.554,29.871"], "not a WGS84 LON,LAT"),
        (
            ["--network", str(SMALL), "--from=121.0,29.87", "--to=121.554,29.871"],
            "more than 100 m from any road",
        ),
        (
            ["--network", str(SMALL), "--from-segment", "7", "--to-segment", "main-1"],
            "no route from segment 7",
        ),
        (
            ["--network", str(SMALL), "--from-segment", "x9", "--to-segment", "main-1"],
            "unknown segment id 'x9'",
        ),
        (["--network", str(SMALL), "--to-segment", "main-1"], "missing from"),
        (["--network", "missing.osm", "--from-segment", "a", "--to-segment", "b"], "missing.osm"),
    ],
)
def test_errors_exit_2_with_one_line(args: list[str], expected: str) -> None:
    out = roadpulse(*args)
    assert out.returncode == 2, out.stdout
    assert out.stdout == ""
    assert expected in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seg,tt\nmain-1,3\n", ":1: expected the header segment_id,travel_time_s"),
        ("segment_id,travel_time_s\nmain-1,3\nnope,4\n", ":3: unknown segment id 'nope'"),
        ("segment_id,travel_time_s\nmain-1,fast\n", ":2: travel_time_s 'fast' is not a number"),
        ("segment_id,travel_time_s\nmain-1,-3\n", ":2: travel_time_s must be > 0"),
        ("segment_id,travel_time_s\nmain-1,3,4\n", ":2: expected 2 fields"),
    ],
)
def test_bad_weights_name_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    # in-process (the same ``main`` the command runs) to keep the table fast
    weights = tmp_path / "w.csv"
    weights.write_text(text)
    args = [
        "route",
        "--network",
        str(SMALL),
        "--from-segment",
        "main-1",
        "--to-segment",
        "7",
        "--weights",
        str(weights),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{weights}{expected}" in err and len(err.strip().splitlines()) == 1
