"""Replay rate and network load times, end to end through the CLI's code path.

Measures, in one run:
* loading the bundled demo city (OSM XML, bz2) and a ~100,000-segment SUMO grid made by
  ``netgenerate`` (file parsing and table building, what `roadpulse run` does at start-up);
* ``run_replay`` on a SUMO grid scenario: readings per second, with and without ``--full``,
  beside the bare cost of reading the same JSONL file with ``json.loads`` line by line (the
  baseline: a replay can't be faster than reading its input).

    .venv/bin/python benchmarks/bench_replay.py [--grid-n 160] [--scenario-n 8 --duration 3600]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.sumo_scenarios import build_grid_scenario, sumo_binary
from roadgraph import load_detectors, load_network
from roadpulse.bundled import demo_city_path
from roadpulse.config import load_config
from roadpulse.replay import run_replay


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid-n", type=int, default=160, help="junctions per side of the big grid")
    parser.add_argument(
        "--scenario-n", type=int, default=16, help="junctions per side of the replay scenario"
    )
    parser.add_argument("--duration", type=int, default=3600, help="simulated seconds of the replay scenario")
    parser.add_argument("--out", default=str(Path(__file__).parent / "out" / "bench_replay.json"))
    args = parser.parse_args()
    results: dict[str, object] = {}
    work = Path(tempfile.mkdtemp(prefix="rp-bench-replay-"))

    net, secs = timed(load_network, demo_city_path())
    results["load_demo_city_s"] = secs
    results["demo_city_segments"] = len(net)
    print(f"demo city: {len(net):,} segments loaded in {secs:.2f} s")

    big = work / "big.net.xml"
    subprocess.run(
        [
            str(sumo_binary("netgenerate")),
            "--grid",
            f"--grid.number={args.grid_n}",
            "--grid.length=150",
            "--default.lanenumber=2",
            "--no-turnarounds",
            "-o",
            str(big),
        ],
        check=True,
        capture_output=True,
    )
    net_big, secs = timed(load_network, big)
    results["load_big_grid_s"] = secs
    results["big_grid_segments"] = len(net_big)
    results["big_grid_file_mb"] = big.stat().st_size / 1e6
    print(f"SUMO grid: {len(net_big):,} segments ({big.stat().st_size / 1e6:.0f} MB) loaded in {secs:.2f} s")

    print(
        f"building a {args.scenario_n}x{args.scenario_n} SUMO scenario of {args.duration} s ...", flush=True
    )
    scenario = build_grid_scenario(
        work / "scenario", grid_n=args.scenario_n, duration_s=args.duration, seed=5
    )
    network = load_network(scenario.net)
    detectors = load_detectors(scenario.detectors, network)
    settings = load_config(None)
    with open(scenario.readings, encoding="utf-8") as fh:
        n_lines = sum(1 for _ in fh)

    def bare_read() -> int:
        with open(scenario.readings, encoding="utf-8") as fh:
            return sum(1 for line in fh if json.loads(line))

    _, bare_s = timed(bare_read)
    # Warm-up: the first replay in a process compiles the numba kernels (cached on disk after).
    run_replay(
        network, detectors, settings, readings_path=scenario.readings, out_path=os.devnull, tick_s=60.0
    )
    results["readings"] = n_lines
    results["bare_json_readings_per_s"] = n_lines / bare_s
    for full in (False, True):
        report, secs = timed(
            run_replay,
            network,
            detectors,
            settings,
            readings_path=scenario.readings,
            out_path=os.devnull,
            tick_s=60.0,
            full=full,
        )
        key = "full" if full else "changes"
        results[f"replay_{key}_readings_per_s"] = n_lines / secs
        results[f"replay_{key}_ratio_to_bare_read"] = (n_lines / secs) / (n_lines / bare_s)
        results[f"replay_{key}_messages"] = report.messages
    print()
    print(f"{'measure':<44}{'value':>16}")
    for key, value in results.items():
        text = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"
        print(f"{key:<44}{text:>16}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
