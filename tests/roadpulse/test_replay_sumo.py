"""`roadpulse replay --full` on SUMO scenarios built here: SUMO is the ground truth.

The scenarios: a signalised 4×4 grid and a real city (OSM via netconvert), each with a quiet
first third then a peak, loops on about half the edges. Checked: a state for every segment at
every tick with valid levels and fields, the city index at every tick, and that the engine's
speeds on looped edges track SUMO's edge speeds (a loose bound here; the accuracy targets live in
the benchmarks of issue #3).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from benchmarks.sumo_scenarios import build_city_scenario, build_grid_scenario, read_edgedata, sumo_available

pytestmark = [
    pytest.mark.sumo,
    pytest.mark.skipif(
        not sumo_available(), reason="SUMO (eclipse-sumo) is not installed: pip install '.[dev]'"
    ),
]

ROADPULSE = [sys.executable, "-m", "roadpulse.cli"]
VALID_LEVEL_NAMES = {0: "unknown", 1: "smooth", 2: "mostly_smooth", 3: "light", 4: "moderate", 5: "severe"}


CITY_OSM = Path(__file__).resolve().parents[1] / "data" / "osm" / "aguascalientes.osm.bz2"


@pytest.fixture(scope="module", params=["grid", "city"])
def scenario(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A signalised 4×4 grid, and a real city (the Aguascalientes OSM extract via netconvert)."""
    if request.param == "grid":
        return build_grid_scenario(tmp_path_factory.mktemp("sumo-grid"), grid_n=4, duration_s=1800, seed=3)
    return build_city_scenario(CITY_OSM, tmp_path_factory.mktemp("sumo-city"), duration_s=1800, seed=3)


FULL_60 = ("--tick-s", "60", "--full")


def _replay(scenario, readings: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """``roadpulse replay [flags]`` of ``readings`` on the scenario's network."""
    return subprocess.run(
        [
            *ROADPULSE,
            "replay",
            "--network",
            str(scenario.net),
            "--detectors",
            str(scenario.detectors),
            "--readings",
            str(readings),
            "--out",
            str(out),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def replay_out(scenario) -> list[dict]:
    out = scenario.workdir / "out.jsonl"
    proc = _replay(scenario, scenario.readings, out, *FULL_60)
    assert proc.returncode == 0, proc.stderr
    assert "replay done" in proc.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def _edge_ids(net: Path) -> set[str]:
    import xml.etree.ElementTree as ET

    return {e.get("id") for e in ET.parse(net).getroot().iter("edge") if e.get("function") is None}


def test_every_segment_has_a_valid_state_at_every_tick(scenario, replay_out) -> None:
    states = [m for m in replay_out if m["topic"].startswith("traffic/segments/")]
    by_tick: dict[float, set[str]] = defaultdict(set)
    for m in states:
        p = m["payload"]
        # Ids in topics are percent-encoded (SUMO ids contain '#', a wildcard in MQTT).
        assert m["topic"] == "traffic/segments/" + p["segment_id"].replace("%", "%25").replace("#", "%23")
        assert "#" not in m["topic"] and "+" not in m["topic"]
        assert p["level"] in VALID_LEVEL_NAMES and p["level_name"] == VALID_LEVEL_NAMES[p["level"]]
        assert 0.0 <= p["confidence"] <= 1.0
        assert set(p["sources"]) >= {"detectors", "cameras"}
        if p["level"] == 0:
            assert p["speed_kmh"] is None and p["tti"] is None
        else:
            assert p["speed_kmh"] > 0 and p["tti"] > 0
        by_tick[p["ts"]].add(p["segment_id"])
    ticks = sorted(by_tick)
    # Ticks on multiples of 60 s from the first reading (ts 60) to the last (ts 1800).
    assert ticks == [60.0 * k for k in range(1, 31)]
    edges = _edge_ids(scenario.net)
    for t in ticks:
        assert by_tick[t] == edges, f"tick {t}: missing {sorted(edges - by_tick[t])[:5]}"


def test_city_index_every_tick(replay_out) -> None:
    index = [m["payload"] for m in replay_out if m["topic"] == "traffic/index/city"]
    assert len(index) == 30
    for p in index:
        assert set(p) >= {"ts", "tpi", "level", "level_name", "tti", "severe_share"}
        assert p["tpi"] is None or 0.0 <= p["tpi"] <= 10.0


def test_looped_edges_known_and_close_to_sumo_truth(scenario, replay_out) -> None:
    """Looped edges are known whenever their loops saw traffic; speeds are in SUMO's range."""
    truth = read_edgedata(scenario.edgedata_60)
    errors = []
    known_looped = 0
    for m in replay_out:
        if not m["topic"].startswith("traffic/segments/"):
            continue
        p = m["payload"]
        if p["segment_id"] not in scenario.loop_edges:
            continue
        if p["level"] > 0:
            known_looped += 1
            assert p["sources"]["detectors"] >= 1 or p["confidence"] < 1.0
        key = (float(p["ts"]), p["segment_id"])
        if p["speed_kmh"] is not None and key in truth:
            errors.append(abs(p["speed_kmh"] - truth[key]))
    assert known_looped > 0.5 * 30 * len(scenario.loop_edges)
    assert errors, "no looped edge could be compared with SUMO's edgeData"
    mae = sum(errors) / len(errors)
    print(f"looped-edge speed MAE vs SUMO edgeData (60 s): {mae:.1f} km/h over {len(errors)} pairs")
    # Spot speeds at 70% of a signalised link overstate the link's travel speed; issue #3 models
    # that. Here the bound only catches a broken pipeline (units, wrong segment, wrong tick).
    assert math.isfinite(mae) and mae < 25.0


def test_replay_without_full_publishes_changes_only(scenario, tmp_path: Path) -> None:
    out = tmp_path / "changes.jsonl"
    proc = _replay(scenario, scenario.readings, out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    states = [m for m in lines if m["topic"].startswith("traffic/segments/")]
    assert 0 < len(states) < 30 * len(_edge_ids(scenario.net))
    assert sum(m["topic"] == "traffic/snapshot" for m in lines) == 30


def test_replay_reads_sumo_induction_loop_output_directly(scenario, replay_out, tmp_path: Path) -> None:
    """`--readings e1.xml` (SUMO's own output) replays exactly as the converted JSONL does."""
    out = tmp_path / "from-e1.jsonl"
    proc = _replay(scenario, scenario.e1_output, out, *FULL_60)
    assert proc.returncode == 0, proc.stderr
    assert "SUMO induction-loop output" in proc.stderr
    assert [json.loads(line) for line in out.read_text().splitlines()] == replay_out


def test_replay_of_a_broken_xml_file_names_it(scenario, tmp_path: Path) -> None:
    bad = tmp_path / "e1.xml"
    bad.write_text("<detector><interval begin='0' end='60' id='x'")
    proc = _replay(scenario, bad, tmp_path / "o.jsonl", *FULL_60)
    assert proc.returncode == 2 and f"{bad}: not valid XML" in proc.stderr, proc.stderr
