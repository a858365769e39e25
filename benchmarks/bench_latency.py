"""Latency from a reading's publish to the segment state that reflects it on MQTT, at city load.

    .venv/bin/python benchmarks/bench_latency.py                        # 4 ticks of 30 s: ~2.5 min
    .venv/bin/python benchmarks/bench_latency.py --ticks 2 --tick-s 30 --tick-delay-s 0.05

Load: ``--detectors`` (10,000) loop detectors, each publishing one reading every ``--interval-s``
(30 s) at its own phase (detectors are not synchronised), ``ts`` = the end of its interval = the
publish time; plus ``--cameras`` (500) cameras publishing a stats message every 10 s on
``traffic/cameras/{id}/stats``. The engine runs as ``roadpulse.live.serve`` in its own process
(its own core), on a 52 × 52 synthetic grid (10,608 segments), with one detector per segment.

Latency of a reading = arrival (at a subscriber) of the first ``traffic/snapshot`` whose ``ts``
is ≥ the reading's ``ts`` − the reading's publish time: the segment state that reflects it.
A reading waits for its tick by design (tick ``T`` covers ``ts ≤ T`` and runs at
``T + tick_delay_s``), so latency is at most ``tick_s + tick_delay_s + processing``; the target
is p99 ≤ ``tick_s`` + 250 ms. Also reported: the *processing* latency, snapshot arrival − ``T``
(tick delay + tick + publishing), which is what the engine adds.

Prints a table and writes JSON to benchmarks/out/bench_latency.json. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from mqtt_bench_common import OUT_DIR, percentile, start_broker

GRID_SIDE = 52


def build_city(detectors: int) -> tuple[Any, Any]:
    from roadgraph.detectors import DetectorRegistry
    from roadgraph.synthetic import synthetic_grid

    network = synthetic_grid(GRID_SIDE, GRID_SIDE)
    n = detectors
    registry = DetectorRegistry(
        detector_id=np.array([f"L{i:05d}" for i in range(n)], dtype=object),
        segment_index=(np.arange(n) % len(network)).astype(np.int32),
        lane=np.full(n, -1, dtype=np.int16),
        pos_m=np.full(n, np.nan, dtype=np.float32),
        kind=np.array(["loop"] * n, dtype=object),
    )
    return network, registry


def engine_process(
    port: int,
    prefix: str,
    detectors: int,
    tick_s: float,
    tick_delay_s: float,
    seconds: float,
    segment_states: bool,
) -> None:
    """Child process: the live engine for ``seconds``."""
    from roadpulse.config import load_config
    from roadpulse.live import serve

    network, registry = build_city(detectors)
    settings = load_config(
        overrides={
            "mqtt.port": port,
            "mqtt.prefix": prefix,
            "mqtt.client_id": "bench-latency",
            "engine.tick_s": tick_s,
            "publish.segment_states": segment_states,
        }
    )

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        pipeline = await serve(network, registry, settings, stop=stop, tick_delay_s=tick_delay_s)
        c = pipeline.counters
        print(
            json.dumps(
                {
                    "accepted": c.accepted,
                    "rejected": c.rejected,
                    "ticks": c.ticks,
                    "mean_tick_ms": 1000 * c.tick_seconds_total / max(c.ticks, 1),
                    "rejected_by_code": c.rejected_by_code,
                }
            ),
            flush=True,
        )

    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--detectors", type=int, default=10_000)
    ap.add_argument("--cameras", type=int, default=500)
    ap.add_argument("--interval-s", type=float, default=30.0)
    ap.add_argument("--tick-s", type=float, default=30.0)
    ap.add_argument("--tick-delay-s", type=float, default=0.05, help="wait after a tick boundary (serve's)")
    ap.add_argument("--ticks", type=int, default=4, help="ticks to measure (after a warm-up tick)")
    ap.add_argument(
        "--no-segment-states",
        action="store_true",
        help="publish.segment_states = false: only traffic/snapshot (and indices) per tick",
    )
    args = ap.parse_args(argv)

    import paho.mqtt.client as paho

    prefix = "lat/"
    broker = start_broker(("max_queued_messages 0",))
    run_s = args.tick_s * (args.ticks + 2.5)
    engine = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--engine-worker",
            str(broker.port),
            prefix,
            str(args.detectors),
            str(args.tick_s),
            str(args.tick_delay_s),
            str(run_s + 5),
            "0" if args.no_segment_states else "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    snapshots: list[tuple[float, float]] = []  # (ts, arrival)
    segment_msgs = [0]

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        arrival = time.time()
        if msg.topic == f"{prefix}snapshot":
            head = msg.payload[:64].decode(errors="replace")
            ts = float(head.split('"ts":', 1)[1].split(",", 1)[0])
            snapshots.append((ts, arrival))
        else:
            segment_msgs[0] += 1

    listener = paho.Client(paho.CallbackAPIVersion.VERSION2)
    listener.on_message = on_message
    listener.connect(broker.host, broker.port)
    listener.subscribe([(f"{prefix}snapshot", 0), (f"{prefix}segments/+", 0)])
    listener.loop_start()

    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2)
    publisher.max_inflight_messages_set(5000)
    publisher.max_queued_messages_set(0)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    rng = np.random.default_rng(5)
    phase = rng.uniform(0, args.interval_s, args.detectors)
    cam_phase = rng.uniform(0, 10, args.cameras)
    ids = [f"L{i:05d}" for i in range(args.detectors)]
    time.sleep(3)  # the engine connects
    sent: list[tuple[float, float]] = []  # (ts, publish time)
    start = math.ceil(time.time() / args.tick_s) * args.tick_s  # begin on a tick boundary
    while time.time() < start:
        time.sleep(0.01)
    end = start + run_s - 3
    step = 0.05
    next_slot = start
    cam_sent = 0
    stop_flag = threading.Event()
    while not stop_flag.is_set() and time.time() < end:
        now = time.time()
        if now < next_slot:
            time.sleep(next_slot - now)
            continue
        lo, hi = (next_slot - start) % args.interval_s, (next_slot - start + step) % args.interval_s
        due = (
            np.flatnonzero((phase >= lo) & (phase < hi))
            if lo < hi
            else np.flatnonzero((phase >= lo) | (phase < hi))
        )
        for k in due.tolist():
            t = time.time()
            payload = json.dumps(
                {
                    "detector_id": ids[k],
                    "ts": round(t, 3),
                    "interval_s": args.interval_s,
                    "count": int(rng.integers(0, min(20, args.interval_s))),
                    "occupancy_pct": round(float(rng.uniform(1, 40)), 1),
                    "speed_kmh": round(float(rng.uniform(10, 80)), 1),
                }
            )
            publisher.publish(f"{prefix}detectors/{ids[k]}", payload, qos=1)
            sent.append((round(t, 3), t))
        clo, chi = (next_slot - start) % 10, (next_slot - start + step) % 10
        cams = np.flatnonzero((cam_phase >= clo) & (cam_phase < chi)) if clo < chi else []
        for c in list(cams):
            stats = {"camera_id": f"C{c}", "ts": time.time(), "counts": {"car": 3}, "speed_kmh": 40.0}
            publisher.publish(f"{prefix}cameras/C{c}/stats", json.dumps(stats), qos=0)
            cam_sent += 1
        next_slot += step
    out, _ = engine.communicate(timeout=args.tick_s * 3 + 60)
    listener.loop_stop()
    publisher.loop_stop()
    broker.stop()
    engine_stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}

    snaps = sorted(snapshots)
    snap_ts = np.array([s[0] for s in snaps])
    snap_arrival = np.array([s[1] for s in snaps])
    # The engine's first tick compiles its numba kernels (seconds): measure from the reading
    # published after the first snapshot arrived (the warm-up tick is excluded).
    warm = snap_arrival[0] if len(snaps) else math.inf
    latencies = []
    for ts, published in sent:
        if published < warm:
            continue
        j = int(np.searchsorted(snap_ts, ts, side="left"))
        if j < len(snaps):
            latencies.append(snap_arrival[j] - published)
    processing = [a - t for t, a in snaps[1:]]
    result = {
        "benchmark": "bench_latency",
        "python": platform.python_version(),
        "detectors": args.detectors,
        "cameras": args.cameras,
        "interval_s": args.interval_s,
        "tick_s": args.tick_s,
        "tick_delay_s": args.tick_delay_s,
        "segment_states": not args.no_segment_states,
        "readings_sent": len(sent),
        "camera_stats_sent": cam_sent,
        "readings_measured": len(latencies),
        "segment_state_messages": segment_msgs[0],
        "snapshots": len(snaps),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "latency_max_s": max(latencies) if latencies else float("nan"),
        "processing_p50_s": percentile(processing, 50),
        "processing_p99_s": percentile(processing, 99),
        "target_p99_s": args.tick_s + 0.25,
        "engine": engine_stats,
    }
    result["target_met"] = bool(result["latency_p99_s"] <= result["target_p99_s"])
    print(f"readings: {len(sent):,} sent, {len(latencies):,} measured; camera stats: {cam_sent:,}")
    print(f"engine: {engine_stats}")
    print(
        f"publish → state on MQTT: p50 {result['latency_p50_s']:.3f} s, p99 {result['latency_p99_s']:.3f} s, "
        f"max {result['latency_max_s']:.3f} s (target p99 ≤ {result['target_p99_s']:.2f} s: "
        f"{'met' if result['target_met'] else 'NOT met'})"
    )
    print(
        "tick boundary → snapshot on MQTT (delay + tick + publish): "
        f"p50 {result['processing_p50_s'] * 1000:.0f} ms, "
        f"p99 {result['processing_p99_s'] * 1000:.0f} ms over {len(snaps)} ticks"
    )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / ("bench_latency-snapshot-only.json" if args.no_segment_states else "bench_latency.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 9 and sys.argv[1] == "--engine-worker":
        a = sys.argv[2:]
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        engine_process(int(a[0]), a[1], int(a[2]), float(a[3]), float(a[4]), float(a[5]), a[6] == "1")
        raise SystemExit(0)
    raise SystemExit(main())
