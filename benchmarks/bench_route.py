"""Route guidance speed: ``Router`` against networkx ``bidirectional_dijkstra``, same run.

For each network and live-weight scenario: the router is built once (turn table, search graph,
landmarks), the live travel times are written into it in place (``update_from_speeds``, timed
over repeated refreshes), then the same random origin–destination segment pairs are answered by
the router and by networkx on the same weights, and every pair's cost is checked to be equal.

Networks
    * ``grid``: ``synthetic_grid(316, 316)`` — 99,856 junctions, 398,160 segments, arterials every
      5th line. No turn restrictions, so the networkx baseline is ``bidirectional_dijkstra`` on the
      junction ``DiGraph`` (the router drives the first and last segment whole, so its cost is
      ``tt[s] + d(end of s, start of t) + tt[t]``).
    * ``city``: the bundled demo city (Aguascalientes, OSM, with its turn restrictions). There the
      networkx baseline runs on the segment graph whose arcs are the allowed turns — the graph
      networkx needs to honour the restrictions.

Scenarios (live weights)
    * ``engine-like``: as the engine publishes them — speeds only where detectors are (70 % of
      arterial and secondary segments), congestion around four hotspots (speed down to 15 % of
      free flow near their centres), free flow elsewhere, 0.2 % of segments closed.
    * ``random-30``: a stress case — 30 % of all segments at a random 15–100 % of free flow,
      scattered without any spatial pattern, 0.5 % closed.

    .venv/bin/python benchmarks/bench_route.py [--pairs 200] [--size 316] [--seed 0]

Landmark tables
    After a weight change the router rebuilds its landmark tables on the live travel times in a
    background thread (``roadgraph.landmarks``; the time is reported as ``landmark_build_s``) and
    uses the always-valid lower-bound tables meanwhile. The headline figures are queries on the
    live tables (the steady state between ticks); the same pairs are then run on the lower-bound
    tables (``floor_tables_*``: a query in the second after a tick), and both must equal networkx.

Wall-clock and CPU (``thread_time``) per query are both recorded: on a shared machine the wall
clock also counts time other processes had the core. Prints a table and writes JSON to
``benchmarks/out/bench_route.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import shapely

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from roadgraph import RoadNetwork, graph_from_osm, synthetic_grid  # noqa: E402
from roadgraph.routing import Router  # noqa: E402


def engine_like(net: RoadNetwork, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    seg = net.segments
    n = len(seg)
    free_flow = seg.speed_limit_kmh.astype(np.float64) * 0.9
    main_road = seg.road_class <= 2  # expressway, arterial, secondary
    measured = main_road & (rng.random(n) < 0.7)
    mid = shapely.get_coordinates(shapely.line_interpolate_point(seg.geometry_m, 0.5, normalized=True))
    lo, hi = mid.min(axis=0), mid.max(axis=0)
    ratio = np.ones(n)
    for centre in rng.uniform(lo, hi, size=(4, 2)):
        radius = 0.12 * float(np.max(hi - lo))
        dist = np.hypot(*(mid - centre).T)
        ratio = np.minimum(ratio, 0.15 + 0.85 * np.clip(dist / radius, 0.0, 1.0))
    noise = rng.uniform(0.9, 1.1, n)
    speed = np.where(measured, free_flow * np.minimum(ratio * noise, 1.1), np.nan)
    closed = rng.random(n) < 0.002
    return speed, free_flow, closed


def random_30(net: RoadNetwork, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(net)
    free_flow = net.segments.speed_limit_kmh.astype(np.float64) * 0.9
    speed = np.where(rng.random(n) < 0.3, free_flow * rng.uniform(0.15, 1.0, n), np.nan)
    closed = rng.random(n) < 0.005
    return speed, free_flow, closed


def junction_graph(router: Router) -> nx.DiGraph:
    seg, tt = router.network.segments, router.travel_time_s
    ok = np.isfinite(tt)
    g = nx.DiGraph()
    # parallel segments between two junctions: keep the faster (what a junction graph can hold)
    order = np.argsort(-tt)
    g.add_weighted_edges_from(
        (seg.from_node[i], seg.to_node[i], float(tt[i])) for i in order.tolist() if ok[i]
    )
    return g


def turn_graph(router: Router) -> nx.DiGraph:
    tt, turns = router.travel_time_s, router.turns
    g = nx.DiGraph()
    g.add_nodes_from(range(len(tt)))
    for a in range(len(tt)):
        for b in turns.succ_idx[turns.succ_indptr[a] : turns.succ_indptr[a + 1]].tolist():
            if np.isfinite(tt[b]):
                g.add_edge(a, b, weight=float(tt[b]))
    return g


def run_case(
    label: str, router: Router, scenario: str, make: Any, pairs_wanted: int, rng: np.random.Generator
) -> dict[str, Any]:
    net = router.network
    speed, free_flow, closed = make(net, rng)
    refresh, refresh_cpu = [], []
    # alternate two weightings (the second 5 % faster) so that every refresh pays for what a real
    # tick does: the validity check, the snapshot and the rebuild request; the last one is ``speed``
    faster = speed * 1.05
    for i in range(21):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        router.update_from_speeds(speed if i % 2 == 0 else faster, free_flow, closed)
        refresh.append(time.perf_counter() - t0)
        refresh_cpu.append(time.thread_time() - c0)
    # the live landmark tables are rebuilt in the background after a weight change (about a
    # second here); queries meanwhile use the lower-bound tables. Both are measured below.
    t0 = time.perf_counter()
    router.wait_for_landmarks()
    landmark_wait_s = time.perf_counter() - t0
    refresher = router._refresher
    landmark_build_s = refresher.last_build_s if refresher is not None else float("nan")
    tt = router.travel_time_s
    use_turns = router.turns.source != "all turns"
    t0 = time.perf_counter()
    graph = turn_graph(router) if use_turns else junction_graph(router)
    nx_build_s = time.perf_counter() - t0
    seg = net.segments
    open_rows = np.flatnonzero(np.isfinite(tt))
    router.route(int(open_rows[0]), int(open_rows[1]))  # JIT warm-up outside the timings
    ours, theirs, settled, diffs, costs = [], [], [], [], []
    ours_cpu, theirs_cpu = [], []
    pair_list: list[tuple[int, int]] = []
    unreachable = 0
    while len(ours) < pairs_wanted:
        s, t = (int(x) for x in rng.choice(open_rows, size=2, replace=False))
        c0 = time.thread_time()
        t0 = time.perf_counter()
        try:
            nx_cost = (
                float(tt[s]) + nx.bidirectional_dijkstra(graph, s, t, weight="weight")[0]
                if use_turns
                else float(tt[s] + tt[t])
                + nx.bidirectional_dijkstra(graph, seg.to_node[s], seg.from_node[t], weight="weight")[0]
            )
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            nx_cost = np.inf
        t1 = time.perf_counter()
        c1 = time.thread_time()
        try:
            route = router.route(s, t)
            cost = route.duration_s
        except ValueError:
            route, cost = None, np.inf
        t2 = time.perf_counter()
        c2 = time.thread_time()
        if not np.isfinite(nx_cost) and not np.isfinite(cost):
            unreachable += 1
            if unreachable > 5 * pairs_wanted:
                break
            continue
        pair_list.append((s, t))
        theirs.append(t1 - t0)
        ours.append(t2 - t1)
        theirs_cpu.append(c1 - c0)
        ours_cpu.append(c2 - c1)
        settled.append(route.settled if route is not None else 0)
        diffs.append(abs(cost - nx_cost) if np.isfinite(cost) and np.isfinite(nx_cost) else np.inf)
        costs.append(nx_cost)
    floor_ms, floor_diffs = floor_tables_pass(router, pair_list, costs)
    ours_a, theirs_a = np.array(ours) * 1e3, np.array(theirs) * 1e3
    # equal to float tolerance: the router's heap keys are bucketed to 1e-7 s (see the kernels)
    tolerance = 1e-6 + 1e-9 * np.array(costs)
    equal = bool(np.all(np.array(diffs) <= tolerance) and np.all(floor_diffs <= tolerance))
    return {
        "network": label,
        "scenario": scenario,
        "junctions": int(router._n_nodes),
        "segments": len(net),
        "search_states": int(router.graph.n_states),
        "turns": router.turns.source,
        "pairs": len(ours),
        "router_p50_ms": float(np.median(ours_a)),
        "router_p99_ms": float(np.percentile(ours_a, 99)),
        "router_mean_ms": float(ours_a.mean()),
        "networkx_p50_ms": float(np.median(theirs_a)),
        "networkx_p99_ms": float(np.percentile(theirs_a, 99)),
        "networkx_mean_ms": float(theirs_a.mean()),
        "router_cpu_p50_ms": float(np.median(ours_cpu) * 1e3),
        "router_cpu_p99_ms": float(np.percentile(ours_cpu, 99) * 1e3),
        "networkx_cpu_p50_ms": float(np.median(theirs_cpu) * 1e3),
        "speedup_p50": float(np.median(theirs_a) / np.median(ours_a)),
        "speedup_cpu_p50": float(np.median(theirs_cpu) / np.median(ours_cpu)),
        "speedup_mean": float(theirs_a.mean() / ours_a.mean()),
        "settled_p50": float(np.median(settled)),
        "landmarks_live": router.landmarks_live,
        "landmark_build_s": landmark_build_s,
        "landmark_wait_s": landmark_wait_s,
        "floor_tables_p50_ms": float(np.median(floor_ms)),
        "floor_tables_p99_ms": float(np.percentile(floor_ms, 99)),
        "floor_tables_speedup_p50": float(np.median(theirs_a) / np.median(floor_ms)),
        "refresh_ms_p50": float(np.median(refresh) * 1e3),
        "refresh_ms_max": float(np.max(refresh) * 1e3),
        "refresh_cpu_ms_p50": float(np.median(refresh_cpu) * 1e3),
        "networkx_graph_build_s": nx_build_s,
        "max_cost_diff_s": float(np.max(diffs)),
        "costs_equal": equal,
        "unreachable_pairs_skipped": unreachable,
    }


def floor_tables_pass(
    router: Router, pairs: list[tuple[int, int]], expected: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The same pairs on the lower-bound landmark tables: what a query costs in the second or so
    after a tick, before the live tables are rebuilt. Returns (ms per query, |cost − networkx|)."""
    live = (router._lm, router._lm_base)
    router._lm, router._lm_base = router._landmark_tables.floor, None
    times, diffs = [], []
    try:
        for (s, t), nx_cost in zip(pairs, expected, strict=True):
            t0 = time.perf_counter()
            try:
                cost = router.route(s, t).duration_s
            except ValueError:
                cost = np.inf
            times.append(time.perf_counter() - t0)
            finite = np.isfinite(cost) and np.isfinite(nx_cost)
            diffs.append(abs(cost - nx_cost) if finite else (0.0 if cost == nx_cost else np.inf))
    finally:
        router._lm, router._lm_base = live
    return np.array(times) * 1e3, np.array(diffs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--size", type=int, default=316, help="grid junctions per side (316: 99,856)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "bench_route.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    builds: dict[str, dict[str, float]] = {}
    routers: dict[str, Router] = {}
    for label, load in (
        ("grid", lambda: synthetic_grid(args.size, args.size)),
        ("city", lambda: graph_from_osm(ROOT / "roadpulse" / "data" / "aguascalientes.osm.bz2")),
    ):
        t0 = time.perf_counter()
        net = load()
        t1 = time.perf_counter()
        routers[label] = Router(net)
        t2 = time.perf_counter()
        builds[label] = {"load_s": t1 - t0, "router_build_s": t2 - t1}
        print(
            f"{label}: {len(net):,} segments, loaded in {t1 - t0:.1f} s, router built in {t2 - t1:.1f} s",
            flush=True,
        )

    results = []
    for label, router in routers.items():
        for scenario, make in (("engine-like", engine_like), ("random-30", random_30)):
            res = run_case(label, router, scenario, make, args.pairs, rng)
            results.append(res)
            print(
                f"  {label:5s} {scenario:12s} router p50 {res['router_p50_ms']:7.2f} ms  "
                f"networkx p50 {res['networkx_p50_ms']:8.1f} ms  ×{res['speedup_p50']:.0f}  "
                f"(floor tables p50 {res['floor_tables_p50_ms']:.2f} ms "
                f"×{res['floor_tables_speedup_p50']:.0f}; "
                f"live tables built in {res['landmark_build_s']:.2f} s)  equal={res['costs_equal']}",
                flush=True,
            )

    header = (
        f"{'network':7s} {'scenario':12s} {'states':>8s} {'pairs':>5s} {'ours p50':>9s} {'ours p99':>9s} "
        f"{'nx p50':>9s} {'nx p99':>9s} {'p50 ×':>6s} {'mean ×':>6s} {'settled':>8s} {'refresh':>8s} "
        f"{'max |Δ| s':>10s} {'equal':>5s}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['network']:7s} {r['scenario']:12s} {r['search_states']:8,d} {r['pairs']:5d} "
            f"{r['router_p50_ms']:7.2f}ms {r['router_p99_ms']:7.2f}ms {r['networkx_p50_ms']:7.1f}ms "
            f"{r['networkx_p99_ms']:7.1f}ms {r['speedup_p50']:6.0f} {r['speedup_mean']:6.0f} "
            f"{r['settled_p50']:8.0f} {r['refresh_ms_p50']:6.2f}ms {r['max_cost_diff_s']:10.2e} "
            f"{'yes' if r['costs_equal'] else 'NO':>5s}"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n(load average {load:.1f} on {os.cpu_count()} CPUs; times are wall-clock per query)")
    print("CPU time per query (thread_time; less disturbed by other processes on a busy machine):")
    for r in results:
        print(
            f"  {r['network']:7s} {r['scenario']:12s} router p50 {r['router_cpu_p50_ms']:.2f} ms "
            f"p99 {r['router_cpu_p99_ms']:.2f} ms, networkx p50 {r['networkx_cpu_p50_ms']:.1f} ms, "
            f"×{r['speedup_cpu_p50']:.0f}; refresh {r['refresh_cpu_ms_p50']:.2f} ms"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "load_average": load,
                "builds": builds,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0 if all(r["costs_equal"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
