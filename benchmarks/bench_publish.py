"""How fast one tick becomes messages: ``TickMessages.for_tick`` against plain ``json.dumps``.

    .venv/bin/python benchmarks/bench_publish.py [--sizes 100000 1000000] [--repeat 3]

Every figure is the best of ``--repeat`` runs (wall and CPU time of this process; ratios use CPU
time, which a busy shared machine disturbs less) on a synthetic network (ids like SUMO's ``123#0``,
10 % of segments unknown). The baseline, measured in the same run on the same states, is the
obvious implementation: a dict per segment from the arrays, ``json.dumps``, ``encode``, a
``Message`` — what ``for_tick(full=True)`` replaces for the segment topics. Prints a table and
writes ``benchmarks/out/bench_publish.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from congestion.types import LEVELS, AreaIndex, SegmentStates, TickResult
from publishers.jsonl_sink import JsonlSink
from publishers.message import Message
from publishers.tick_messages import TickMessages
from roadgraph.network import RoadNetwork, SegmentTable

TS = 1776729660.0


def synthetic_network(n: int) -> RoadNetwork:
    no_geometry = np.full(n, None, dtype=object)
    table = SegmentTable(
        segment_id=np.array([f"{i // 3}#{i % 3}" for i in range(n)], dtype=object),
        from_node=np.array([f"n{i}" for i in range(n)], dtype=object),
        to_node=np.array([f"n{i + 1}" for i in range(n)], dtype=object),
        length_m=np.full(n, 120.0),
        lanes=np.full(n, 2, dtype=np.int16),
        road_class=np.ones(n, dtype=np.int8),
        speed_limit_kmh=np.full(n, 60.0, dtype=np.float32),
        name=np.full(n, "", dtype=object),
        geometry=no_geometry,
        geometry_m=no_geometry.copy(),
        junction_signalised=np.zeros(n, dtype=bool),
    )
    return RoadNetwork(graph=nx.MultiDiGraph(), segments=table, source="<bench>", has_lonlat=False)


def synthetic_states(n: int, ts: float, seed: int) -> SegmentStates:
    rng = np.random.default_rng(seed)
    free_flow = rng.choice(np.array([40.0, 50.0, 60.0, 80.0], dtype=np.float32), n)
    speed = (free_flow * rng.uniform(0.1, 1.1, n)).astype(np.float32)
    speed[rng.random(n) < 0.1] = np.nan
    ratio = speed / free_flow
    level = np.select([ratio > 0.7, ratio > 0.5, ratio > 0.4, ratio > 0.3, ratio >= 0], [1, 2, 3, 4, 5], 0)
    return SegmentStates(
        ts=ts,
        speed_kmh=speed,
        free_flow_kmh=free_flow,
        tti=(free_flow / speed).astype(np.float32),
        level=level.astype(np.int8),
        confidence=rng.random(n).astype(np.float32),
        imputed=rng.random(n) < 0.2,
        n_detectors=rng.integers(0, 4, n).astype(np.int16),
        n_cameras=rng.integers(0, 2, n).astype(np.int16),
        closed=rng.random(n) < 0.01,
    )


def result_of(states: SegmentStates) -> TickResult:
    area = AreaIndex(ts=states.ts, tpi=3.2, level=2, tti=1.3, severe_share=0.05, known_share=0.9)
    districts = {f"district-{k}": area for k in range(10)}
    return TickResult(states=states, city=area, districts=districts, readings_used=0)


def baseline_dicts(network: RoadNetwork, states: SegmentStates) -> list[dict[str, Any]]:
    """A dict per segment, as an obvious implementation would build it."""

    def num(value: float, decimals: int) -> float | None:
        return round(value, decimals) if np.isfinite(value) else None

    ts = int(states.ts)
    return [
        {
            "segment_id": sid,
            "ts": ts,
            "speed_kmh": num(speed, 1),
            "free_flow_kmh": num(ff, 1),
            "tti": num(tti, 2),
            "level": level,
            "level_name": LEVELS[level][0],
            "confidence": num(conf, 2),
            "imputed": imputed,
            "sources": {"detectors": det, "cameras": cam},
            "closed": closed,
        }
        for sid, speed, ff, tti, level, conf, imputed, det, cam, closed in zip(
            network.segments.segment_id.tolist(),
            states.speed_kmh.tolist(),
            states.free_flow_kmh.tolist(),
            states.tti.tolist(),
            states.level.tolist(),
            states.confidence.tolist(),
            states.imputed.tolist(),
            states.n_detectors.tolist(),
            states.n_cameras.tolist(),
            states.closed.tolist(),
            strict=True,
        )
    ]


def baseline_messages(network: RoadNetwork, states: SegmentStates, prefix: str) -> list[Message]:
    return [
        Message(f"{prefix}segments/{d['segment_id']}", json.dumps(d, allow_nan=False).encode(), True)
        for d in baseline_dicts(network, states)
    ]


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[float, float]:
    """Best wall and best CPU seconds of ``repeat`` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        del out
    return min(walls), min(cpus)


def bench_size(n: int, repeat: int) -> list[dict[str, Any]]:
    network = synthetic_network(n)
    states = synthetic_states(n, TS, seed=1)
    result = result_of(states)
    # The next tick: 10 % of segments move by 5 km/h (and may change level).
    moved = synthetic_states(n, TS + 60, seed=1)
    pick = np.random.default_rng(2).random(n) < 0.1
    moved.speed_kmh[pick] += 5.0
    moved_result = result_of(moved)

    rows: list[dict[str, Any]] = []

    def record(case: str, seconds: tuple[float, float], messages: int) -> None:
        wall, cpu = seconds
        rows.append({"segments": n, "case": case, "wall_s": wall, "cpu_s": cpu, "messages": messages})

    record("TickMessages() init (ids, topics)", best_of(repeat, lambda: TickMessages(network)), 0)

    for case, options in [
        ("for_tick(full=True): segments+snapshot+indices", {}),
        ("for_tick(full=True): segment states only", {"snapshot": False}),
        ("for_tick: snapshot only", {"segment_states": False}),
    ]:
        tick = TickMessages(network, **options)
        count = len(tick.for_tick(result, full=True))
        record(case, best_of(repeat, lambda tick=tick: tick.for_tick(result, full=True)), count)

    # Change detection: the tick after a first one, timed alone.
    walls, cpus = [], []
    for _ in range(repeat):
        tick = TickMessages(network)
        tick.for_tick(result)
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        count = len(tick.for_tick(moved_result))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    record("for_tick: next tick, ~10% changed (+snapshot)", (min(walls), min(cpus)), count)

    record(
        "baseline: dict per segment + json.dumps + Message",
        best_of(repeat, lambda: baseline_messages(network, states, "traffic/")),
        n,
    )
    dicts = baseline_dicts(network, states)
    dumps_only = best_of(repeat, lambda: [json.dumps(d) for d in dicts])
    record("baseline: json.dumps of prebuilt dicts only", dumps_only, n)

    messages = TickMessages(network).for_tick(result, full=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tick.jsonl"

        def write() -> None:
            with JsonlSink(path) as sink:
                sink.write(messages)

        record("JsonlSink.write of the full tick", best_of(repeat, write), len(messages))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "bench_publish.json")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        size_rows = bench_size(n, args.repeat)
        baseline = next(r["cpu_s"] for r in size_rows if r["case"].startswith("baseline: dict"))
        for row in size_rows:
            row["cpu_vs_baseline"] = row["cpu_s"] / baseline
        rows.extend(size_rows)

    print(f"{'segments':>9}  {'case':<52} {'wall s':>7} {'CPU s':>7} {'CPU x base':>10} {'messages':>9}")
    for r in rows:
        print(
            f"{r['segments']:>9}  {r['case']:<52} {r['wall_s']:>7.3f} {r['cpu_s']:>7.3f}"
            f" {r['cpu_vs_baseline']:>10.3f} {r['messages']:>9}"
        )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "bench_publish",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "repeat": args.repeat,
        "results": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
