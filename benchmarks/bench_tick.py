"""Time one full engine tick against a minimal numba baseline on the same synthetic data.

    .venv/bin/python benchmarks/bench_tick.py --segments 1000000 --readings 2000000

The baseline is the least a tick could do: a count-weighted mean of measured speeds per segment
and a level from it, in one jitted function; it skips readings without a measured speed (half of
this data) and touches no per-detector state. The engine's tick does the whole job (spot speeds
for every reading kind, harmonic means, distinct detectors and lanes, the travel-speed model,
smoothing, free-flow learning and profiles, imputation of the segments without a state,
staleness, confidence, per-detector last readings, city and district indices, a fresh
snapshot). Both are measured in the same run, interleaved, and the ratio of medians is reported
(target: within 3x). Also measured: the rate of ``add_readings`` in readings/s, for one big
batch and for many small ones.

Readings hit detectors and segments in random order, so a tick is bound by cache misses on the
per-detector and per-segment tables; timings swing with whatever else the machine runs. Compare
ratios, not absolute times, and look at the load average printed with them.

Prints a table and writes JSON to benchmarks/out/. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import networkx as nx
import numba
import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from congestion import CongestionEngine, EngineSettings, ReadingBatch
from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork, SegmentTable

OUT_DIR = Path(__file__).resolve().parent / "out"
TICK_S = 60.0


@njit(cache=True, nogil=True)
def baseline_tick(
    detector_index: np.ndarray,
    count: np.ndarray,
    speed_kmh: np.ndarray,
    detector_segment: np.ndarray,
    free_flow_kmh: np.ndarray,
    out_speed_kmh: np.ndarray,
    out_level: np.ndarray,
) -> None:
    """Count-weighted mean of measured speeds per segment, and its GB/T 33171 level."""
    n = out_speed_kmh.shape[0]
    sum_count = np.zeros(n)
    sum_count_speed = np.zeros(n)
    for i in range(detector_index.shape[0]):
        c = count[i]
        v = speed_kmh[i]
        if c > 0 and v == v:
            s = detector_segment[detector_index[i]]
            sum_count[s] += c
            sum_count_speed[s] += c * v
    for s in range(n):
        if sum_count[s] > 0:
            v = sum_count_speed[s] / sum_count[s]
            r = v / free_flow_kmh[s]
            out_speed_kmh[s] = v
            out_level[s] = 1 if r > 0.7 else 2 if r > 0.5 else 3 if r > 0.4 else 4 if r > 0.3 else 5
        else:
            out_speed_kmh[s] = np.nan
            out_level[s] = 0


def synthetic_network(n_segments: int, rng: np.random.Generator) -> RoadNetwork:
    """A network of n independent segments with city-like lanes, limits and lengths (no geometry)."""
    road_class = rng.choice(4, n_segments, p=[0.05, 0.2, 0.3, 0.45]).astype(np.int8)
    limit = np.array([80.0, 60.0, 50.0, 40.0], dtype=np.float32)[road_class]
    lanes = np.array([3, 2, 2, 1], dtype=np.int16)[road_class]
    none = np.full(n_segments, None, dtype=object)
    ids = np.array([f"s{i}" for i in range(n_segments)], dtype=object)
    segments = SegmentTable(
        segment_id=ids, from_node=ids, to_node=ids.copy(),
        length_m=rng.gamma(2.0, 120.0, n_segments) + 10.0, lanes=lanes, road_class=road_class,
        speed_limit_kmh=limit, name=np.full(n_segments, "", dtype=object), geometry=none,
        geometry_m=none.copy(), junction_signalised=rng.random(n_segments) < 0.3,
    )
    return RoadNetwork(graph=nx.MultiDiGraph(), segments=segments, source="synthetic", has_lonlat=False)


def synthetic_registry(n_detectors: int, n_segments: int, rng: np.random.Generator) -> DetectorRegistry:
    return DetectorRegistry(
        detector_id=np.array([f"d{k}" for k in range(n_detectors)], dtype=object),
        segment_index=rng.integers(0, n_segments, n_detectors).astype(np.int32),
        lane=rng.choice([-1, 0, 1, 2], n_detectors, p=[0.2, 0.4, 0.3, 0.1]).astype(np.int16),
        pos_m=np.full(n_detectors, np.nan, dtype=np.float32),
        kind=rng.choice(["loop", "radar", "camera"], n_detectors, p=[0.6, 0.25, 0.15]).astype(object),
    )


def synthetic_readings(n: int, n_detectors: int, tick_ts: float, rng: np.random.Generator) -> ReadingBatch:
    """30-s readings ending within the minute before ``tick_ts``, in arrival (random) order; half
    from single loops (no speed), some empty intervals and some standing queues."""
    count = rng.poisson(8.0, n).astype(np.float32)
    speed = rng.uniform(5.0, 90.0, n).astype(np.float32)
    occupancy = np.clip(count * rng.uniform(0.5, 2.5, n), 0.0, 100.0).astype(np.float32)
    queued = rng.random(n) < 0.02
    count[queued] = 0.0
    occupancy[queued] = rng.uniform(50.0, 100.0, queued.sum())
    speed[(rng.random(n) < 0.5) | (count == 0)] = np.nan
    return ReadingBatch(
        detector_index=rng.integers(0, n_detectors, n).astype(np.int32),
        ts=tick_ts - rng.integers(0, 2, n) * 30.0,
        interval_s=np.full(n, 30.0, dtype=np.float32),
        count=count,
        occupancy_pct=occupancy,
        speed_kmh=speed,
        lane=np.full(n, -1, dtype=np.int16),
    )


def readings_at(batch: ReadingBatch, tick_ts: float) -> ReadingBatch:
    """``batch`` (made for a tick at 0) moved in time to end within the minute before ``tick_ts``."""
    return replace(batch, ts=batch.ts + tick_ts)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--readings", type=int, default=2_000_000, help="readings per tick")
    parser.add_argument("--detectors", type=int, default=None, help="default: readings / 2")
    parser.add_argument("--districts", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=7, help="timed ticks of each kind")
    parser.add_argument("--small-batch", type=int, default=1000, help="rows per batch in the small-batch run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/out/...)")
    args = parser.parse_args(argv)
    n_det = args.detectors or max(1, args.readings // 2)
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    network = synthetic_network(args.segments, rng)
    registry = synthetic_registry(n_det, args.segments, rng)
    district = rng.integers(-1, args.districts, args.segments).astype(np.int16)
    engine = CongestionEngine(
        network, registry, EngineSettings(),
        district_names=tuple(f"district-{i}" for i in range(args.districts)), segment_district=district,
    )
    batch = synthetic_readings(args.readings, n_det, 0.0, rng)
    setup_s = time.perf_counter() - t0

    # Warm up (compile, or load numba's cache) on a small slice, outside every timing.
    warm = batch.take(np.arange(min(1000, len(batch))))
    engine.add_readings(warm)
    engine.tick(0.0)
    det_segment = np.ascontiguousarray(registry.segment_index, dtype=np.int32)
    free_flow = engine.states.free_flow_kmh

    def run_baseline() -> None:
        out_speed = np.empty(args.segments, dtype=np.float32)
        out_level = np.empty(args.segments, dtype=np.int8)
        baseline_tick(batch.detector_index, batch.count, batch.speed_kmh, det_segment, free_flow,
                      out_speed, out_level)

    run_baseline()

    # Ticks advance by TICK_S; every tick gets the same readings moved to end within its minute
    # (``readings_at``, outside the timing), as a live feed's would: fresh data, so each tick
    # does the same work. (Fed unmoved, they went stale after ``stale_after_s``, and from the
    # sixth tick on every segment was imputed: not the steady state of a city.)
    tick_ts = 0.0
    engine_s: list[float] = []
    baseline_s: list[float] = []
    add_big_s: list[float] = []
    for _ in range(args.repeat):
        tick_ts += TICK_S
        fresh = readings_at(batch, tick_ts)
        add_big_s.append(timed(partial(engine.add_readings, fresh)))
        engine_s.append(timed(partial(engine.tick, tick_ts)))
        baseline_s.append(timed(run_baseline))
    known_share = engine.tick(tick_ts).city.known_share  # nothing pending: an empty tick

    # Many small batches, as they would come off MQTT: the add rate, and a tick that must
    # concatenate them first.
    add_small_s: list[float] = []
    tick_small_s: list[float] = []
    for _ in range(max(1, args.repeat // 2)):
        tick_ts += TICK_S
        fresh = readings_at(batch, tick_ts)
        small = [fresh.take(slice(i, i + args.small_batch)) for i in range(0, len(fresh), args.small_batch)]

        def add_all(parts: list[ReadingBatch] = small) -> None:
            for b in parts:
                engine.add_readings(b)

        add_small_s.append(timed(add_all))
        tick_small_s.append(timed(partial(engine.tick, tick_ts)))

    engine_med = statistics.median(engine_s)
    base_med = statistics.median(baseline_s)
    result = {
        "benchmark": "bench_tick",
        "args": {**vars(args), "detectors": n_det, "out": str(args.out) if args.out else None},
        "machine": {
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
        },
        "setup_s": setup_s,
        "engine_tick_s": {"median": engine_med, "min": min(engine_s), "all": engine_s},
        "baseline_tick_s": {"median": base_med, "min": min(baseline_s), "all": baseline_s},
        "ratio_engine_to_baseline": engine_med / base_med,
        "engine_tick_small_batches_s": {"median": statistics.median(tick_small_s), "all": tick_small_s},
        "add_readings_per_s_one_batch": args.readings / statistics.median(add_big_s),
        "add_readings_per_s_small_batches": args.readings / statistics.median(add_small_s),
        "known_share_after_run": known_share,
    }

    rows = [
        ("segments / detectors / readings", f"{args.segments:,} / {n_det:,} / {args.readings:,}"),
        ("engine tick (median, min)", f"{engine_med * 1e3:9.1f} ms  {min(engine_s) * 1e3:9.1f} ms"),
        ("baseline tick (median, min)", f"{base_med * 1e3:9.1f} ms  {min(baseline_s) * 1e3:9.1f} ms"),
        ("ratio engine / baseline", f"{engine_med / base_med:9.2f} x   (target <= 3x)"),
        (f"engine tick after {len(small)} batches", f"{statistics.median(tick_small_s) * 1e3:9.1f} ms"),
        ("add_readings, one batch", f"{result['add_readings_per_s_one_batch']:13,.0f} readings/s"),
        (f"add_readings, batches of {args.small_batch}",
         f"{result['add_readings_per_s_small_batches']:13,.0f} readings/s"),
    ]
    width = max(len(k) for k, _ in rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    result["load_average_1min"] = load
    print(f"bench_tick  (numba {numba.__version__}, {os.cpu_count()} CPUs, load {load:.1f}, "
          f"median of {args.repeat})")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")

    out = args.out or OUT_DIR / f"bench_tick-{args.segments}x{args.readings}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
