"""roadgraph timings: network loading, the synthetic grid, and snapping detectors.

Measures, in one run (best of ``--repeat`` for each, wall-clock):
* loading ``tests/data/osm/aguascalientes.osm.bz2`` (the demo city), beside the bare cost of
  streaming the same file through ``ElementTree.iterparse`` (the baseline: a loader cannot beat
  reading its input);
* ``synthetic_grid`` with ~100,000 segments, beside building just its networkx graph;
* snapping 10,000 points (random positions along random segments, offset up to 20 m sideways)
  with and without headings, on the city and on the grid, beside a naive loop (one vectorised
  ``shapely.distance`` to every segment per point) on 500 of the points;
* ``load_detectors`` on a 10,000-row lon/lat CSV for the city, end to end;
* optionally (``--sumo-grid-n N``) loading a ``netgenerate`` grid of N × N junctions, beside a
  bare expat pass over the file.

    .venv/bin/python benchmarks/bench_roadgraph.py [--repeat 3] [--points 10000] [--sumo-grid-n 160]

Prints a table and writes JSON to ``benchmarks/out/bench_roadgraph.json``.
"""

from __future__ import annotations

import argparse
import bz2
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import xml.parsers.expat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import networkx as nx
import numpy as np
import shapely

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from roadgraph import (  # noqa: E402
    RoadNetwork,
    SegmentIndex,
    graph_from_osm,
    graph_from_sumo,
    load_detectors,
    synthetic_grid,
)

CITY = ROOT / "tests" / "data" / "osm" / "aguascalientes.osm.bz2"
T = TypeVar("T")


def best_of(repeat: int, fn: Callable[[], T]) -> tuple[T, float]:
    """The result of the last call and the fastest of ``repeat`` wall-clock timings."""
    times = []
    result: Any = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return result, min(times)


def add(rows: list[dict[str, Any]], what: str, seconds: float, ratio: str = "") -> None:
    rows.append({"what": what, "seconds": seconds, "ratio": ratio})


def bare_osm_parse(path: Path) -> int:
    """Stream the file through iterparse, clearing elements: what any loader must at least pay."""
    count = 0
    with bz2.open(path, "rb") as stream:
        for _, elem in ET.iterparse(stream, events=("end",)):
            count += 1
            if elem.tag in ("node", "way", "relation"):
                elem.clear()
    return count


def bare_graph(network: RoadNetwork) -> nx.MultiDiGraph:
    """Only the networkx part of building a network: nodes with x/y, edges keyed by segment id."""
    seg = network.segments
    graph = nx.MultiDiGraph()
    graph.add_nodes_from((n, {"x": 0.0, "y": 0.0}) for n in network.graph.nodes)
    graph.add_edges_from(
        (u, v, k, {"index": i, "length_m": 1.0})
        for i, (u, v, k) in enumerate(zip(seg.from_node, seg.to_node, seg.segment_id, strict=True))
    )
    return graph


def sample_points(network: RoadNetwork, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x/y (network metres) and headings of ``n`` points near random segments, like detectors."""
    rng = np.random.default_rng(seed)
    seg = network.segments
    chosen = rng.integers(0, len(seg), n)
    geoms = seg.geometry_m[chosen]
    along = rng.uniform(0.0, 1.0, n) * shapely.length(geoms)
    a = shapely.line_interpolate_point(geoms, np.maximum(along - 1.0, 0.0))
    b = shapely.line_interpolate_point(geoms, along + 1.0)
    dx = shapely.get_x(b) - shapely.get_x(a)
    dy = shapely.get_y(b) - shapely.get_y(a)
    norm = np.maximum(np.hypot(dx, dy), 1e-9)
    offset = rng.uniform(-20.0, 20.0, n)  # sideways, metres
    on = shapely.line_interpolate_point(geoms, along)
    x = shapely.get_x(on) + offset * dy / norm
    y = shapely.get_y(on) - offset * dx / norm
    heading = np.degrees(np.arctan2(dx, dy)) % 360.0
    return x, y, heading


def naive_snap(network: RoadNetwork, x: np.ndarray, y: np.ndarray, max_distance_m: float) -> np.ndarray:
    """One point at a time: distance to every segment, nearest within range (no heading)."""
    geoms = network.segments.geometry_m
    out = np.full(len(x), -1)
    for k in range(len(x)):
        distances = shapely.distance(shapely.Point(x[k], y[k]), geoms)
        best = int(np.argmin(distances))
        if distances[best] <= max_distance_m:
            out[k] = best
    return out


def bench_snapping(
    label: str, network: RoadNetwork, n_points: int, n_naive: int, repeat: int, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    x, y, heading = sample_points(network, n_points, seed=1)
    index, build_s = best_of(repeat, lambda: SegmentIndex(network))
    plain, plain_s = best_of(repeat, lambda: index.snap_xy(x, y))
    with_heading, heading_s = best_of(repeat, lambda: index.snap_xy(x, y, heading_deg=heading))
    naive, naive_s = best_of(1, lambda: naive_snap(network, x[:n_naive], y[:n_naive], 50.0))
    found_distance = plain.distance_m[:n_naive][naive >= 0]
    naive_distance = shapely.distance(
        shapely.points(x[:n_naive][naive >= 0], y[:n_naive][naive >= 0]),
        network.segments.geometry_m[naive[naive >= 0]],
    )
    agree = bool(np.allclose(found_distance, naive_distance, atol=1e-6))
    per_point_vec = plain_s / n_points
    per_point_naive = naive_s / n_naive
    result = {
        "segments": len(network),
        "points": n_points,
        "index_build_s": build_s,
        "snap_s": plain_s,
        "snap_with_heading_s": heading_s,
        "snapped_share": float(plain.found.mean()),
        "snapped_share_with_heading": float(with_heading.found.mean()),
        "naive_points": n_naive,
        "naive_s": naive_s,
        "speedup_vs_naive_per_point": per_point_naive / per_point_vec,
        "agrees_with_naive": agree,
    }
    speedup = result["speedup_vs_naive_per_point"]
    add(rows, f"{label}: STRtree + heading table ({len(network):,} segments)", build_s)
    add(rows, f"{label}: snap {n_points:,} points", plain_s, f"{speedup:.0f}x faster per point than naive")
    matched = f"{with_heading.found.mean():.1%} matched"
    add(rows, f"{label}: snap {n_points:,} points with heading", heading_s, matched)
    add(
        rows,
        f"{label}: naive loop, {n_naive} points",
        naive_s,
        "baseline" + ("" if agree else " (DISAGREES)"),
    )
    return result


def write_detector_csv(network: RoadNetwork, path: Path, n: int) -> None:
    x, y, heading = sample_points(network, n, seed=2)
    assert network.projection is not None
    lon, lat = network.projection.to_lonlat(x, y)
    lines = ["detector_id,lon,lat,heading_deg,kind"]
    lines += [f"D{k},{lon[k]:.7f},{lat[k]:.7f},{heading[k]:.1f},loop" for k in range(n)]
    path.write_text("\n".join(lines) + "\n")


def bare_expat(path: Path) -> None:
    parser = xml.parsers.expat.ParserCreate()
    with path.open("rb") as stream:
        parser.ParseFile(stream)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="timings per measurement; the best is kept")
    parser.add_argument("--points", type=int, default=10_000, help="points to snap")
    parser.add_argument("--naive-points", type=int, default=500, help="points for the naive baseline")
    parser.add_argument("--grid-n", type=int, default=158, help="junctions per side of the synthetic grid")
    parser.add_argument("--sumo-grid-n", type=int, default=0, help="also load a netgenerate grid (0 = skip)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "bench_roadgraph.json"))
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine()}

    city, load_s = best_of(args.repeat, lambda: graph_from_osm(CITY))
    _, parse_s = best_of(args.repeat, lambda: bare_osm_parse(CITY))
    results["city_load"] = {"segments": len(city), "load_s": load_s, "bare_parse_s": parse_s}
    add(rows, f"load {CITY.name} ({len(city):,} segments)", load_s, f"{load_s / parse_s:.1f}x bare iterparse")
    add(rows, "  bare iterparse of the same file", parse_s, "baseline")

    grid, grid_s = best_of(args.repeat, lambda: synthetic_grid(args.grid_n, args.grid_n))
    _, graph_s = best_of(args.repeat, lambda: bare_graph(grid))
    results["synthetic_grid"] = {
        "n": args.grid_n,
        "segments": len(grid),
        "build_s": grid_s,
        "networkx_only_s": graph_s,
    }
    grid_label = f"synthetic_grid({args.grid_n}, {args.grid_n}) ({len(grid):,} segments)"
    add(rows, grid_label, grid_s, f"networkx graph alone takes {graph_s / grid_s:.0%} of it")
    add(rows, "  networkx MultiDiGraph alone", graph_s, "baseline")

    results["snap_city"] = bench_snapping("city", city, args.points, args.naive_points, args.repeat, rows)
    results["snap_grid"] = bench_snapping("grid", grid, args.points, args.naive_points, args.repeat, rows)

    with tempfile.TemporaryDirectory(prefix="rg-bench-") as tmp:
        csv_path = Path(tmp) / "detectors.csv"
        write_detector_csv(city, csv_path, args.points)

        def load_city_and_detectors() -> int:
            network = graph_from_osm(CITY)
            return len(load_detectors(csv_path, network))

        count, e2e_s = best_of(args.repeat, load_city_and_detectors)
        results["city_plus_detectors_csv"] = {"detectors": count, "seconds": e2e_s}
        add(rows, f"load city + {count:,}-row lon/lat CSV (snapped)", e2e_s)

        netgenerate = Path(sys.executable).parent / "netgenerate"
        if args.sumo_grid_n and (netgenerate.exists() or shutil.which("netgenerate")):
            net = Path(tmp) / "grid.net.xml"
            subprocess.run(
                [
                    str(netgenerate if netgenerate.exists() else "netgenerate"),
                    "--grid",
                    f"--grid.number={args.sumo_grid_n}",
                    "--grid.length=150",
                    "--default.lanenumber=2",
                    "--no-turnarounds",
                    "-o",
                    str(net),
                ],
                check=True,
                capture_output=True,
            )
            sumo_net, sumo_s = best_of(1, lambda: graph_from_sumo(net))
            _, expat_s = best_of(1, lambda: bare_expat(net))
            size_mb = net.stat().st_size / 1e6
            results["sumo_grid"] = {
                "n": args.sumo_grid_n,
                "segments": len(sumo_net),
                "file_mb": size_mb,
                "load_s": sumo_s,
                "bare_expat_s": expat_s,
            }
            sumo_label = (
                f"load netgenerate grid {args.sumo_grid_n}^2 ({len(sumo_net):,} edges, {size_mb:.0f} MB)"
            )
            add(rows, sumo_label, sumo_s, f"{sumo_s / expat_s:.2f}x bare expat")
            add(rows, "  bare expat pass over the same file", expat_s, "baseline")

    width = max(len(r["what"]) for r in rows)
    print(f"{'measurement':<{width}}  {'seconds':>9}  ratio")
    for r in rows:
        print(f"{r['what']:<{width}}  {r['seconds']:>9.3f}  {r.get('ratio', '')}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
