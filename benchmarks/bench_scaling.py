"""Ingest scaling with worker processes on an MQTT shared subscription (``roadpulse ingest-worker``).

    .venv/bin/python benchmarks/bench_scaling.py                       # 1, 2 and 3 workers, ~2 min
    .venv/bin/python benchmarks/bench_scaling.py --workers 1 2 --messages 40000

For each worker count W: W persistent sessions subscribe to ``$share/<group>/traffic/detectors/+``
and leave; ``--messages`` one-reading JSON messages are published (the broker queues them, spread
over the group's sessions); then the W workers start together and the time until the engine side
(a subscriber to ``traffic/detectors/validated/bin``, counting records) has every reading is
measured. Each worker is ``roadpulse.ingest_worker.serve_worker`` in its own process: parse and
validate, publish binary batches. The rate with W workers is compared with W = 1.

The machine's core count bounds what this can show: every worker is a process needing a core,
and the broker and the collector need theirs. Prints a table; writes
benchmarks/out/bench_scaling.json. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mqtt_bench_common import (
    OUT_DIR,
    PREFIX,
    make_registry,
    publish_all,
    register_session,
    single_messages,
    start_broker,
)

DETECTORS = 10_000


def worker_process(port: int, group: str, worker_id: str, seconds: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from roadpulse.config import load_config
    from roadpulse.ingest_worker import serve_worker

    settings = load_config(
        overrides={"mqtt.port": port, "mqtt.client_id": "bench", "ingest.max_future_s": 86400}
    )

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await serve_worker(make_registry(DETECTORS), settings, group=group, stop=stop, worker_id=worker_id)

    asyncio.run(main())


def run_case(port: int, workers: int, n: int, round_: int) -> dict[str, Any]:
    import paho.mqtt.client as paho

    group = f"g{workers}r{round_}"
    for w in range(workers):
        register_session(port, f"bench-worker-{group}-{w}", f"$share/{group}/{PREFIX}detectors/+", 1)
    # Readings a day apart per round, so no worker refuses any as a duplicate or late.
    messages = single_messages(make_registry(DETECTORS), n, ts0=time.time() - 86400 * (round_ + 1))
    received = [0]
    first = [0.0]
    last = [0.0]
    done = threading.Event()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        n_records = struct.unpack_from("<I", msg.payload, 4)[0]
        if received[0] == 0:
            first[0] = time.perf_counter()
        received[0] += n_records
        if received[0] >= n:
            last[0] = time.perf_counter()
            done.set()

    collector = paho.Client(paho.CallbackAPIVersion.VERSION2)
    collector.on_message = on_message
    collector.connect("127.0.0.1", port)
    collector.subscribe(f"{PREFIX}detectors/validated/bin", qos=1)
    collector.loop_start()
    publish_all(port, messages)
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(port), group, f"{group}-{w}", "600"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        for w in range(workers)
    ]
    ok = done.wait(600)
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(30)
    collector.loop_stop()
    collector.disconnect()
    if not ok:
        raise SystemExit(f"{workers} workers: only {received[0]} of {n} readings arrived")
    # From the workers' start (process start-up included) and from the first batch out.
    return {
        "workers": workers,
        "readings": n,
        "seconds_from_start": last[0] - started,
        "seconds_from_first_batch": last[0] - first[0],
        "readings_per_s": n / (last[0] - first[0]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--messages", type=int, default=60_000)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    broker = start_broker()
    rows = []
    try:
        for r in range(args.repeat):
            for w in args.workers:
                row = run_case(broker.port, w, args.messages, r * 10 + w)
                rows.append(row)
                print(f"{w} worker(s): {row['readings_per_s']:>10,.0f} readings/s", flush=True)
    finally:
        broker.stop()
    best = {w: max(r["readings_per_s"] for r in rows if r["workers"] == w) for w in args.workers}
    base = best[min(args.workers)]
    print(f"\n{'workers':>7} {'readings/s':>12} {'× 1 worker':>11}   (cpus: {os.cpu_count()})")
    for w in args.workers:
        print(f"{w:>7} {best[w]:>12,.0f} {best[w] / base:>10.2f}x")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / "bench_scaling.json"
    report = {
        "benchmark": "bench_scaling",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "rows": rows,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--worker":
        worker_process(int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]))
        raise SystemExit(0)
    raise SystemExit(main())
