"""Run every benchmark in turn with its default (or quick) settings; ``make bench`` calls this.

Each benchmark prints its own table and writes JSON (and plots) to ``benchmarks/out/``; this
script only runs them one after another, says which one is running, and lists the ones that
failed. Some need SUMO (``eclipse-sumo`` from the dev extras), Mosquitto or Chromium.

    .venv/bin/python benchmarks/run_all.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (script, arguments): quick settings where a benchmark has them, so the whole run stays short.
BENCHMARKS: list[tuple[str, list[str]]] = [
    ("bench_roadgraph.py", []),
    ("bench_tick.py", []),
    ("bench_accuracy.py", ["--quick"]),
    ("bench_incidents.py", ["--quick"]),
    ("bench_ingest.py", []),
    ("bench_mqtt_receive.py", []),
    ("bench_latency.py", []),
    ("bench_scaling.py", []),
    ("bench_publish.py", []),
    ("bench_replay.py", []),
    ("bench_camera.py", []),
    ("bench_outbox.py", []),
    ("bench_route.py", []),
    ("bench_dashboard.py", []),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names, e.g. bench_tick")
    args = parser.parse_args()
    chosen = [(s, a) for s, a in BENCHMARKS if not args.only or Path(s).stem in args.only]
    failed: list[str] = []
    for k, (script, extra) in enumerate(chosen, 1):
        print(f"\n=== [{k}/{len(chosen)}] {script} {' '.join(extra)}", flush=True)
        started = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / script), *extra], cwd=HERE.parent)
        print(f"=== {script}: exit {rc} after {time.perf_counter() - started:.0f} s", flush=True)
        if rc != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"\nall {len(chosen)} benchmarks ran; results in benchmarks/out/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
