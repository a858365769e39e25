"""Incident detection and detector health on SUMO ground truth.

What it measures (issue #3), each through the same code path as ``roadpulse replay --full
--tick-s 60`` (``roadpulse.replay.run_replay``, in-process):

1. **False incidents** per hour per 100 segments on incident-free runs with a quiet first third
   and a peak (target ≤ 1): every incident reported is false.
2. **Detection delay** of a lane-blocking incident: a vehicle stopped on the rightmost lane of a
   busy multi-lane edge with loops (one-lane where a network has none) for 20 minutes from a
   quarter into the peak, at three positions along the edge (upstream and downstream of its
   loop at 70 %). Delay = the tick at which the first incident on that edge is published − the
   stop's start (target ≤ 5 minutes). Incidents elsewhere in these runs are counted too.
3. **Detector health on injected faults** (tuned runs): the incident-free readings with a third
   of the detectors given a fault from the peak on (stuck values, occupancy 0 with flow,
   implausibly high occupancy, dropouts, switched off); the confusion matrix of injected fault
   vs. the status published, and the healthy detectors wrongly flagged.

Runs come in six sets (``RUNS``), reported apart: ``tuned`` (the runs the thresholds were
chosen on), ``held-out-1`` to ``held-out-5`` (other grid sizes, link lengths, demand, signal
programs, cities, stop positions and choice of blocked edge; held-out-2 was built after the
detector was frozen and measured once; its false alarms were then looked at to design the lane
test's queue memory, and held-out-3 was built after that to measure it; held-out-4 after the
reverse was left out of the downstream station, to measure that and the lane drop; held-out-5
after the lane test was kept out of queues). The blocked edge is
the busiest (from the incident-free run's loop counts) or, for some held-out runs, the one
nearest the centre among the busier half (the very nearest may carry no traffic worth the name:
an obstacle there blocks nobody).
Scenarios use ``benchmarks/sumo_scenarios.py``; the blocked variants rerun SUMO on the same
network, demand and loops with one extra stopped vehicle.

    .venv/bin/python benchmarks/bench_incidents.py [--quick] [--set tuned|held-out-1|...|held-out-5]
        [--reuse] [--no-health] [--override incidents.lane_alpha=1e-3 ...]

``--reuse`` replays the scenarios already built (SUMO takes minutes; replays take about a minute
in all). Prints tables and writes ``benchmarks/out/incidents.json`` (``incidents_{set}.json``
for a subset or without health) and PNGs (``incidents_timeline_*.png``,
``incidents_false_alarms.png``, ``health_confusion.png``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.sumo_scenarios import (
    Scenario,
    _run,
    build_city_scenario,
    build_grid_scenario,
    read_edgedata,
    sumo_binary,
)
from roadgraph.detector_load import load_detectors
from roadgraph.load import load_network
from roadpulse.config import load_config
from roadpulse.replay import run_replay

OUT = Path(__file__).resolve().parent / "out"
CITY_OSM = Path(__file__).resolve().parents[1] / "tests" / "data" / "osm" / "aguascalientes.osm.bz2"
FAULTS = ("constant", "zero_occupancy_with_flow", "high_occupancy", "insufficient_data", "card_off")
BLOCK_S = 1200


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


def busiest_edge(scenario: Scenario) -> tuple[str, float]:
    """The multi-lane looped edge (≥ 80 m) with the most vehicles counted in the peak, and its
    length."""
    counts, lanes_of, length_of = _peak_counts(scenario)
    ok = _blockable(counts, lanes_of, length_of)
    best = max(ok, key=lambda e: counts[e])
    return best, length_of[best]


def central_busy_edge(scenario: Scenario) -> tuple[str, float]:
    """Held-out runs block another edge than the tuned ones: among multi-lane looped edges
    (≥ 80 m) at least as busy in the peak as the median of them, the one nearest the centre of
    the network (as ``sumo_scenarios``' own blocker, which ignores traffic)."""
    root = ET.parse(scenario.net).getroot()
    xy = {j.get("id"): (float(j.get("x", "0")), float(j.get("y", "0"))) for j in root.iter("junction")}
    cx = sum(x for x, _ in xy.values()) / len(xy)
    cy = sum(y for _, y in xy.values()) / len(xy)
    ends: dict[str, tuple[str, str]] = {}
    for edge in root.iter("edge"):
        if not edge.get("function"):
            ends[str(edge.get("id"))] = (str(edge.get("from")), str(edge.get("to")))
    counts, lanes_of, length_of = _peak_counts(scenario)
    ok = _blockable(counts, lanes_of, length_of)
    floor = float(np.median([counts[e] for e in ok]))

    def dist(e: str) -> float:
        (x0, y0), (x1, y1) = xy[ends[e][0]], xy[ends[e][1]]
        return float(((x0 + x1) / 2 - cx) ** 2 + ((y0 + y1) / 2 - cy) ** 2)

    best = min((e for e in ok if counts[e] >= floor), key=dist)
    return best, length_of[best]


def _blockable(counts: dict[str, float], lanes_of: dict[str, int], length_of: dict[str, float]) -> list[str]:
    """Looped edges of 80 m or more with traffic: multi-lane ones (a lane blocked, traffic
    squeezing past), else, on networks with none (West Oakland), single-lane ones (the road
    blocked)."""
    long = [e for e in counts if length_of.get(e, 0) >= 80 and counts[e] > 0]
    multi = [e for e in long if lanes_of.get(e, 0) >= 2]
    return multi or long


def _peak_counts(scenario: Scenario) -> tuple[dict[str, float], dict[str, int], dict[str, float]]:
    """Vehicles counted per edge in the peak, lanes and length per edge."""
    lanes_of: dict[str, int] = {}
    length_of: dict[str, float] = {}
    for edge in ET.parse(scenario.net).getroot().iter("edge"):
        if edge.get("function"):
            continue
        lanes = [ln for ln in edge.iter("lane") if "passenger" not in ln.get("disallow", "")]
        if lanes:
            lanes_of[str(edge.get("id"))] = len(lanes)
            length_of[str(edge.get("id"))] = float(lanes[0].get("length", "0"))
    counts: dict[str, float] = defaultdict(float)
    with open(scenario.readings, encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r["ts"] > scenario.peak_start_s:
                lane_id = r["detector_id"][len("e1_") :]
                counts[lane_id.rsplit("_", 1)[0]] += r["count"]
    return counts, lanes_of, length_of


def reuse_or_build(work: Path, net_name: str, build: Any, reuse: bool, duration_s: int = 3600) -> Scenario:
    """The scenario in ``work`` when ``reuse`` and its readings exist (SUMO runs take minutes),
    else ``build()``."""
    if reuse and (work / "readings.jsonl").exists():
        return Scenario(
            workdir=work,
            net=work / net_name,
            detectors=work / "loops.add.xml",
            e1_output=work / "e1.xml",
            readings=work / "readings.jsonl",
            edgedata_300=work / "edgedata300.xml",
            edgedata_60=work / "edgedata60.xml",
            duration_s=duration_s,
            loop_edges=frozenset(),
        )
    result: Scenario = build()
    return result


def with_blocker(
    free: Scenario, work: Path, edge: str, length_m: float, rel_pos: float, *, reuse: bool = False
) -> Scenario:
    """Rerun ``free``'s SUMO run with a vehicle stopped on lane 0 of ``edge`` at ``rel_pos``."""
    work.mkdir(parents=True, exist_ok=True)
    for name in ("quiet.rou.xml", "peak.rou.xml", "loops.add.xml"):
        shutil.copy(free.workdir / name, work / name)
    start = int(free.peak_start_s + (free.duration_s - free.peak_start_s) // 4)
    end = min(start + BLOCK_S, free.duration_s - 60)
    pos = round(length_m * rel_pos, 1)
    (work / "blocker.rou.xml").write_text(
        "<routes>\n"
        f'  <vehicle id="blocker" depart="{start}" departLane="0" departPos="{max(pos - 5.0, 0):.1f}" '
        'departSpeed="0">\n'
        f'    <route edges="{edge}"/>\n'
        f'    <stop lane="{edge}_0" endPos="{pos:.1f}" duration="{end - start}"/>\n'
        "  </vehicle>\n"
        "</routes>\n"
    )
    (work / "truth.add.xml").write_text(
        '<additional>\n  <edgeData id="truth60" period="60" file="edgedata60.xml" excludeEmpty="true"/>\n'
        "</additional>\n"
    )
    routes = ",".join(str(work / n) for n in ("quiet.rou.xml", "peak.rou.xml", "blocker.rou.xml"))
    readings = work / "readings.jsonl"
    done = replace(
        free,
        workdir=work,
        detectors=work / "loops.add.xml",
        e1_output=work / "e1.xml",
        readings=readings,
        edgedata_60=work / "edgedata60.xml",
        blocked={
            "edge": edge,
            "lane": f"{edge}_0",
            "pos_m": pos,
            "start_s": float(start),
            "end_s": float(end),
        },
    )
    if reuse and readings.exists():
        return done
    _run(
        [
            str(sumo_binary("sumo")),
            "-n",
            str(free.net),
            "-r",
            routes,
            "-a",
            f"{work / 'loops.add.xml'},{work / 'truth.add.xml'}",
            "--begin",
            "0",
            "--end",
            str(free.duration_s),
            "--no-step-log",
            "--no-warnings",
            "--time-to-teleport",
            "300",
            "--seed",
            "1",
        ],
        work,
    )
    from ingest.sumo_e1 import convert_e1

    with open(readings, "w", encoding="utf-8") as fh:
        convert_e1(work / "e1.xml", fh)
    return done


# --------------------------------------------------------------------------------------------
# Replay and what it published
# --------------------------------------------------------------------------------------------


#: ``--override section.key=value`` settings for every replay (None: the defaults).
OVERRIDES: dict[str, Any] = {}


def replay(scenario: Scenario, readings: Path, out: Path) -> tuple[list[dict[str, Any]], float]:
    """``roadpulse replay --full --tick-s 60`` in-process; the messages, each with the tick it
    was published at (``_tick``), and the seconds the replay took."""
    network = load_network(scenario.net)
    detectors = load_detectors(scenario.detectors, network)
    started = time.perf_counter()
    run_replay(
        network,
        detectors,
        load_config(None, overrides=OVERRIDES),
        readings_path=readings,
        out_path=out,
        tick_s=60.0,
        full=True,
    )
    seconds = time.perf_counter() - started
    messages = []
    tick = float("nan")
    with open(out, encoding="utf-8") as fh:
        for line in fh:
            m = json.loads(line)
            if m["topic"] == "traffic/snapshot":
                tick = float(m["payload"]["ts"])
            if (
                "/incidents/" in m["topic"]
                or m["topic"].endswith("/health")
                or (m["topic"].startswith("traffic/segments/"))
            ):
                m["_tick"] = tick
                messages.append(m)
    return messages, seconds


def detectors_pos(detectors: Path, edge: str) -> float:
    """Position (m) of ``edge``'s loops in a SUMO additional file (lane 0's; NaN if none)."""
    for loop in ET.parse(detectors).getroot().iter("inductionLoop"):
        if loop.get("lane") == f"{edge}_0":
            return float(loop.get("pos", "nan"))
    return float("nan")


def lane_counts(readings: Path, edge: str, t0: float, t1: float) -> dict[str, tuple[float, float]]:
    """{lane: (vehicles counted, mean occupancy %)} of ``edge``'s loops (``e1_{edge}_{lane}``, as
    ``sumo_scenarios.write_loops`` names them) over readings with t0 < ts ≤ t1: what the blocked
    edge's loops saw, to set beside the incident-free run's."""
    prefix = f'"e1_{edge}_'
    sums: dict[str, list[float]] = {}
    with open(readings, encoding="utf-8") as fh:
        for line in fh:
            if prefix not in line:
                continue
            r = json.loads(line)
            if t0 < float(r["ts"]) <= t1:
                acc = sums.setdefault(str(r["detector_id"]).rsplit("_", 1)[1], [0.0, 0.0, 0.0])
                acc[0] += float(r["count"] or 0)
                acc[1] += float(r["occupancy_pct"] or 0.0)
                acc[2] += 1
    return {lane: (a[0], a[1] / a[2]) for lane, a in sorted(sums.items())}


def _lanes_text(lanes: dict[str, tuple[float, float]]) -> str:
    return " ".join(f"{c:.0f}/{o:.0f}" for c, o in lanes.values()) or "-"


def incidents_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """First (active) message of each incident, with the tick it was published at."""
    seen: dict[str, dict[str, Any]] = {}
    for m in messages:
        if "/incidents/" in m["topic"] and m["payload"]["status"] == "active":
            seen.setdefault(m["payload"]["incident_id"], {**m["payload"], "published": m["_tick"]})
    return list(seen.values())


# --------------------------------------------------------------------------------------------
# Health faults
# --------------------------------------------------------------------------------------------


def inject_faults(readings: Path, out: Path, fault_from: float, seed: int) -> dict[str, str]:
    """Copy ``readings`` to ``out`` with a third of the detectors faulty from ``fault_from``;
    return {detector_id: fault} (the others are healthy)."""
    rows = [json.loads(line) for line in readings.read_text().splitlines()]
    ids = sorted({r["detector_id"] for r in rows})
    rng = random.Random(seed)
    faulty = rng.sample(ids, len(ids) // 3)
    fault_of = {d: FAULTS[k % len(FAULTS)] for k, d in enumerate(faulty)}
    stuck: dict[str, dict[str, Any]] = {}
    kept = []
    for r in rows:
        fault = fault_of.get(r["detector_id"])
        if fault is None or r["ts"] <= fault_from:
            kept.append(r)
            continue
        if fault == "constant":
            # The first non-empty reading after the fault, repeated.
            if r["detector_id"] not in stuck and (r["count"] or r["occupancy_pct"]):
                stuck[r["detector_id"]] = {k: r[k] for k in ("count", "occupancy_pct", "speed_kmh")}
            r = {**r, **stuck.get(r["detector_id"], {"count": 4, "occupancy_pct": 3.1, "speed_kmh": 41.0})}
        elif fault == "zero_occupancy_with_flow":
            r = {**r, "occupancy_pct": 0.0, "count": max(r["count"], 4)}
        elif fault == "high_occupancy":
            r = {**r, "occupancy_pct": round(rng.uniform(70, 98), 1), "count": max(r["count"], 12)}
        elif fault == "insufficient_data":
            if rng.random() < 0.7:
                continue
        elif fault == "card_off":
            r = {**r, "count": 0, "occupancy_pct": 0.0, "speed_kmh": None}
        kept.append(r)
    out.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return fault_of


def health_confusion(
    messages: list[dict[str, Any]], fault_of: dict[str, str], fault_from: float
) -> tuple[dict[str, dict[str, int]], dict[str, Any]]:
    """Rows: injected fault (or ``healthy``); columns: the status diagnosed after ``fault_from``
    (the first non-ok status published for the detector, ``ok`` if none)."""
    first_bad: dict[str, tuple[str, float]] = {}
    all_ids = set()
    for m in messages:
        if not m["topic"].endswith("/health"):
            continue
        p = m["payload"]
        all_ids.add(p["detector_id"])
        if m["_tick"] > fault_from and p["status"] not in ("ok", "no_data"):
            first_bad.setdefault(p["detector_id"], (p["status"], m["_tick"]))
    matrix: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    delays: dict[str, list[float]] = defaultdict(list)
    for d in sorted(all_ids):
        truth = fault_of.get(d, "healthy")
        status, tick = first_bad.get(d, ("ok", float("nan")))
        matrix[truth][status] += 1
        if status != "ok":
            delays[truth].append(tick - fault_from)
    stats = {
        "healthy": sum(matrix["healthy"].values()),
        "healthy_flagged": sum(v for k, v in matrix["healthy"].items() if k != "ok"),
        "median_delay_s": {f: float(np.median(v)) for f, v in delays.items() if f != "healthy"},
    }
    return {k: dict(v) for k, v in matrix.items()}, stats


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def plot_timeline(
    path: Path, scenario: Scenario, messages: list[dict[str, Any]], detected: float | None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert scenario.blocked is not None
    edge = str(scenario.blocked["edge"])
    truth = read_edgedata(scenario.edgedata_60)
    tt = sorted(t for (t, e) in truth if e == edge)
    est = [
        (m["_tick"], m["payload"]["speed_kmh"])
        for m in messages
        if m["topic"].startswith("traffic/segments/") and m["payload"]["segment_id"] == edge
    ]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(tt, [truth[(t, edge)] for t in tt], label="SUMO edge speed (1 min)", color="0.4")
    ax.plot([t for t, _ in est], [v if v is not None else np.nan for _, v in est], label="roadpulse speed")
    ax.axvspan(
        float(str(scenario.blocked["start_s"])),
        float(str(scenario.blocked["end_s"])),
        color="red",
        alpha=0.12,
        label="lane blocked",
    )
    if detected is not None:
        ax.axvline(detected, color="red", linestyle="--", label="incident published")
    ax.set_xlabel("simulation time (s)")
    ax.set_ylabel("km/h")
    ax.set_title(f"{path.stem}: edge {edge}, stop at {scenario.blocked['pos_m']} m")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_false_alarms(path: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = [r["run"] for r in rows]
    ax.bar(names, [r["false_per_h_per_100"] for r in rows], color="tab:blue")
    ax.axhline(1.0, color="red", linestyle="--", label="target ≤ 1")
    ax.set_ylabel("false incidents / h / 100 segments")
    ax.tick_params(axis="x", labelrotation=20, labelsize=7)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(path: Path, matrix: dict[str, dict[str, int]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ["healthy", *FAULTS]
    cols = sorted({c for r in matrix.values() for c in r} | {"ok", *FAULTS}, key=lambda c: (c != "ok", c))
    grid = np.array([[matrix.get(r, {}).get(c, 0) for c in cols] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.imshow(grid / np.maximum(grid.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, str(int(grid[i, j])), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xlabel("diagnosed")
    ax.set_ylabel("injected")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------


#: Runs the thresholds were tuned on, and held-out runs (other grid sizes, link lengths, demand
#: and signal programs, another city, other blocking positions and another choice of blocked
#: edge) that were only ever measured. (set, name, kind, build options, blocking positions,
#: which edge)
RUNS: list[tuple[str, str, str, dict[str, Any], tuple[float, ...], str]] = [
    (
        "tuned",
        "grid5 seed 3",
        "grid",
        {"grid_n": 5, "peak_period_s": 0.4, "seed": 3},
        (0.5, 0.65, 0.9),
        "busiest",
    ),
    (
        "tuned",
        "grid5 seed 4",
        "grid",
        {"grid_n": 5, "peak_period_s": 0.4, "seed": 4},
        (0.5, 0.65, 0.9),
        "busiest",
    ),
    (
        "tuned",
        "city seed 3",
        "city",
        {"osm": "aguascalientes.osm.bz2", "peak_period_s": 0.5, "seed": 3},
        (0.5, 0.65, 0.9),
        "busiest",
    ),
    (
        "held-out-1",
        "grid4 250 m seed 7",
        "grid",
        {"grid_n": 4, "length_m": 250.0, "peak_period_s": 0.3, "seed": 7},
        (0.3, 0.5, 0.8),
        "central",
    ),
    (
        "held-out-1",
        "grid6 actuated seed 9",
        "grid",
        {"grid_n": 6, "peak_period_s": 0.25, "seed": 9, "tls_type": "actuated"},
        (0.3, 0.5, 0.8),
        "central",
    ),
    (
        "held-out-1",
        "city seed 8",
        "city",
        {"osm": "aguascalientes.osm.bz2", "peak_period_s": 0.4, "seed": 8},
        (0.3, 0.5, 0.8),
        "central",
    ),
    (
        "held-out-1",
        "West Oakland seed 5",
        "city",
        {"osm": "West-Oakland.osm.bz2", "peak_period_s": 0.5, "seed": 5},
        (0.3, 0.5, 0.8),
        "busiest",
    ),
    (
        "held-out-2",
        "grid5 220 m incoming seed 21",
        "grid",
        {"grid_n": 5, "length_m": 220.0, "peak_period_s": 0.35, "seed": 21, "tls_layout": "incoming"},
        (0.4, 0.5, 0.75),
        "busiest",
    ),
    (
        "held-out-2",
        "grid4 seed 23",
        "grid",
        {"grid_n": 4, "peak_period_s": 0.4, "seed": 23},
        (0.4, 0.5, 0.75),
        "busiest",
    ),
    (
        "held-out-2",
        "city seed 21",
        "city",
        {"osm": "aguascalientes.osm.bz2", "peak_period_s": 0.45, "seed": 21},
        (0.4, 0.5, 0.75),
        "busiest",
    ),
    # Built after the lane test's queue memory was chosen (on held-out-2's false alarms, which
    # were looked at for it): measured once for that change.
    (
        "held-out-3",
        "grid4 seed 41",
        "grid",
        {"grid_n": 4, "peak_period_s": 0.35, "seed": 41},
        (0.45, 0.6, 0.85),
        "busiest",
    ),
    (
        "held-out-3",
        "grid5 200 m seed 42",
        "grid",
        {"grid_n": 5, "length_m": 200.0, "peak_period_s": 0.4, "seed": 42},
        (0.45, 0.6, 0.85),
        "central",
    ),
    (
        "held-out-3",
        "grid6 actuated seed 43",
        "grid",
        {"grid_n": 6, "peak_period_s": 0.3, "seed": 43, "tls_type": "actuated"},
        (0.45, 0.6, 0.85),
        "busiest",
    ),
    (
        "held-out-3",
        "West Oakland seed 44",
        "city",
        {"osm": "West-Oakland.osm.bz2", "peak_period_s": 0.45, "seed": 44},
        (0.45, 0.6, 0.85),
        "central",
    ),
    # Built after the reverse was left out of the downstream station (chosen on the four sets
    # above, all of which had been looked at): measured once for it, and for the looser lane
    # drop it made room for.
    (
        "held-out-4",
        "grid5 180 m seed 51",
        "grid",
        {"grid_n": 5, "length_m": 180.0, "peak_period_s": 0.35, "seed": 51},
        (0.35, 0.55, 0.8),
        "busiest",
    ),
    (
        "held-out-4",
        "grid4 3 lanes seed 52",
        "grid",
        {"grid_n": 4, "lanes": 3, "peak_period_s": 0.4, "seed": 52},
        (0.35, 0.55, 0.8),
        "central",
    ),
    (
        "held-out-4",
        "grid6 100 s seed 53",
        "grid",
        {"grid_n": 6, "peak_period_s": 0.28, "seed": 53, "tls_cycle_s": 100},
        (0.35, 0.55, 0.8),
        "busiest",
    ),
    (
        "held-out-4",
        "city seed 54",
        "city",
        {"osm": "aguascalientes.osm.bz2", "peak_period_s": 0.45, "seed": 54},
        (0.35, 0.55, 0.8),
        "central",
    ),
    # Built after the lane test was kept out of queues (chosen on held-out-4's grid false
    # alarms, all lane incidents in stop-and-go traffic): measured once for it.
    (
        "held-out-5",
        "grid5 200 m actuated seed 61",
        "grid",
        {"grid_n": 5, "length_m": 200.0, "peak_period_s": 0.4, "seed": 61, "tls_type": "actuated"},
        (0.4, 0.6, 0.85),
        "busiest",
    ),
    (
        "held-out-5",
        "grid4 3 lanes 120 s seed 62",
        "grid",
        {"grid_n": 4, "lanes": 3, "peak_period_s": 0.35, "seed": 62, "tls_cycle_s": 120},
        (0.4, 0.6, 0.85),
        "central",
    ),
    (
        "held-out-5",
        "grid6 160 m incoming seed 63",
        "grid",
        {"grid_n": 6, "length_m": 160.0, "peak_period_s": 0.3, "seed": 63, "tls_layout": "incoming"},
        (0.4, 0.6, 0.85),
        "busiest",
    ),
    (
        "held-out-5",
        "West Oakland seed 64",
        "city",
        {"osm": "West-Oakland.osm.bz2", "peak_period_s": 0.5, "seed": 64},
        (0.4, 0.6, 0.85),
        "busiest",
    ),
]
SETS = ("tuned", "held-out-1", "held-out-2", "held-out-3", "held-out-4", "held-out-5")


def build_run(kind: str, opts: dict[str, Any], work: Path, reuse: bool) -> Scenario:
    opts = dict(opts)
    if kind == "grid":

        def grid() -> Scenario:
            return build_grid_scenario(work, duration_s=3600, **opts)

        return reuse_or_build(work, "grid.net.xml", grid, reuse)
    osm = CITY_OSM.parent / str(opts.pop("osm"))

    def city() -> Scenario:
        return build_city_scenario(osm, work, duration_s=3600, **opts)

    return reuse_or_build(work, "city.net.xml", city, reuse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the grids only")
    parser.add_argument("--set", choices=(*SETS, "all"), default="all", help="which runs")
    parser.add_argument("--work", default=str(OUT / "incident_scenarios"), help="scenario folder")
    parser.add_argument("--reuse", action="store_true", help="reuse scenarios already in --work (no SUMO)")
    parser.add_argument("--no-health", action="store_true", help="skip the injected detector faults")
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE", help="e.g. incidents.lane_alpha=1e-3"
    )
    args = parser.parse_args()
    for item in args.override:
        key, _, value = item.partition("=")
        OVERRIDES[key] = json.loads(value) if value not in ("true", "false") else value == "true"
    work = Path(args.work)
    OUT.mkdir(parents=True, exist_ok=True)

    fa_rows: list[dict[str, Any]] = []
    block_rows: list[dict[str, Any]] = []
    confusion_total: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    health_rows: list[dict[str, Any]] = []
    for which, name, kind, opts, positions, choose in RUNS:
        if args.set not in ("all", which) or (args.quick and kind != "grid"):
            continue
        slug_run = name.replace(" ", "-").replace("seed-", "s")
        free = build_run(kind, opts, work / slug_run, args.reuse)
        n_segments = len(load_network(free.net))
        msgs, secs = replay(free, free.readings, free.workdir / "out.jsonl")
        incs = incidents_of(msgs)
        hours = free.duration_s / 3600
        fa_rows.append(
            {
                "set": which,
                "run": f"{name} (no incident)",
                "segments": n_segments,
                "hours": hours,
                "incidents": len(incs),
                "false_per_h_per_100": len(incs) / hours / n_segments * 100,
                "replay_s": secs,
                "incident_segments": [i["segment_id"] for i in incs],
            }
        )
        edge, length = busiest_edge(free) if choose == "busiest" else central_busy_edge(free)
        # The incident-free side of the first-5-minutes comparison: one edge and (the stop
        # starts at the same time at every position) one window per run, read once.
        loop_pos = detectors_pos(free.detectors, edge)
        free_lanes_at: dict[float, dict[str, tuple[float, float]]] = {}
        for rel in positions:
            tag = f"{name} block@{int(rel * 100)}%"
            blocked = with_blocker(
                free, free.workdir / f"block{int(rel * 100)}", edge, length, rel, reuse=args.reuse
            )
            msgs_b, _ = replay(blocked, blocked.readings, blocked.workdir / "out.jsonl")
            incs_b = incidents_of(msgs_b)
            assert blocked.blocked is not None
            start = float(str(blocked.blocked["start_s"]))
            on_edge = [i for i in incs_b if i["segment_id"] == edge and i["published"] >= start]
            detected = min((i["published"] for i in on_edge), default=None)
            others = [i for i in incs_b if i["segment_id"] != edge]
            # What the loops saw in the first 5 minutes, beside the incident-free run.
            window = (start, start + 300.0)
            if start not in free_lanes_at:
                free_lanes_at[start] = lane_counts(free.readings, edge, *window)
            block_rows.append(
                {
                    "set": which,
                    "run": tag,
                    "edge": edge,
                    "stop_start_s": start,
                    "detected_at_s": detected,
                    "delay_s": None if detected is None else detected - start,
                    "reported_start_s": min((i["start"] for i in on_edge), default=None),
                    "cause": on_edge[0]["description"].split(": ", 1)[1] if on_edge else None,
                    "other_incidents": len(others),
                    "segments": n_segments,
                    "stop_pos_m": blocked.blocked["pos_m"],
                    "loop_pos_m": loop_pos,
                    "first_5_min_lanes_free": free_lanes_at[start],
                    "first_5_min_lanes_blocked": lane_counts(blocked.readings, edge, *window),
                }
            )
            slug = tag.replace(" ", "_").replace("@", "").replace("%", "")
            plot_timeline(OUT / f"incidents_timeline_{slug}.png", blocked, msgs_b, detected)

        if args.no_health or which != "tuned":
            continue
        # Detector health on injected faults (the incident-free readings).
        fault_from = free.peak_start_s
        faulty = free.workdir / "readings_faulty.jsonl"
        fault_of = inject_faults(free.readings, faulty, fault_from, seed=11)
        msgs_h, _ = replay(free, faulty, free.workdir / "out_faulty.jsonl")
        matrix, stats = health_confusion(msgs_h, fault_of, fault_from)
        for fault, by_status in matrix.items():
            for c, v in by_status.items():
                confusion_total[fault][c] += v
        health_rows.append({"run": name, **stats, "matrix": matrix})

    # ---- tables ----
    pooled: dict[str, float] = {}
    for which in SETS:
        rows = [r for r in fa_rows if r["set"] == which]
        if not rows:
            continue
        print(f"\n[{which}] False incidents on incident-free runs (target ≤ 1 per hour per 100 segments)")
        print(f"{'run':34} {'segments':>8} {'incidents':>9} {'per h per 100':>13}")
        for r in rows:
            print(f"{r['run']:34} {r['segments']:8d} {r['incidents']:9d} {r['false_per_h_per_100']:13.2f}")
        total_inc = sum(r["incidents"] for r in rows)
        total_seg_h = sum(r["segments"] * r["hours"] for r in rows)
        pooled[which] = total_inc / total_seg_h * 100
        print(f"{'pooled':34} {'':8} {total_inc:9d} {pooled[which]:13.2f}")

        print(f"\n[{which}] Lane-blocking incident: detection delay (target ≤ 300 s)")
        print(
            f"{'run':34} {'edge':>14} {'delay s':>8} {'other incidents':>15} {'stop':>5}  "
            f"{'first 5 min, lanes count/occ %: no incident -> blocked':<40}  cause"
        )
        brows = [r for r in block_rows if r["set"] == which]
        for r in brows:
            delay = "missed" if r["delay_s"] is None else f"{r['delay_s']:.0f}"
            stop_m, loop_m = float(r["stop_pos_m"]), float(r["loop_pos_m"])
            side = "?" if math.isnan(loop_m) else "up" if stop_m < loop_m else "down"
            free_lanes, blocked_lanes = r["first_5_min_lanes_free"], r["first_5_min_lanes_blocked"]
            lanes = f"{_lanes_text(free_lanes)} -> {_lanes_text(blocked_lanes)}"
            print(
                f"{r['run']:34} {r['edge']:>14} {delay:>8} {r['other_incidents']:15d} {side:>5}  "
                f"{lanes:<40}  {(r['cause'] or '')[:60]}"
            )
        print("stop: the stopped vehicle up- or downstream of the edge's loops")
        hit = sum(1 for r in brows if r["delay_s"] is not None and r["delay_s"] <= 300)
        print(f"detected within 5 minutes: {hit} of {len(brows)}")

    if health_rows:
        print("\nDetector health on injected faults (first non-ok status after the fault starts)")
        columns = sorted(
            {c for row in confusion_total.values() for c in row} | {"ok"}, key=lambda c: (c != "ok", c)
        )
        corner = "injected \\ diagnosed"
        print(f"{corner:26}" + "".join(f"{c[:12]:>13}" for c in columns))
        for fault in ["healthy", *FAULTS]:
            print(f"{fault:26}" + "".join(f"{confusion_total[fault].get(c, 0):13d}" for c in columns))
        for h in health_rows:
            print(
                f"  {h['run']}: healthy detectors flagged {h['healthy_flagged']}/{h['healthy']}; "
                f"median time to diagnosis (s): {h['median_delay_s']}"
            )
        plot_confusion(OUT / "health_confusion.png", {k: dict(v) for k, v in confusion_total.items()})

    plot_false_alarms(OUT / "incidents_false_alarms.png", fa_rows)
    result = {
        "false_alarms": fa_rows,
        "false_per_h_per_100_pooled": pooled,
        "blocking": block_rows,
        "health": health_rows,
        "health_confusion": {k: dict(v) for k, v in confusion_total.items()},
    }
    name = "incidents.json" if args.set == "all" and not args.no_health else f"incidents_{args.set}.json"
    (OUT / name).write_text(json.dumps(result, indent=1))
    print(f"\nwrote {OUT / name} and PNGs in {OUT}")


if __name__ == "__main__":
    main()
