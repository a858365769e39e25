"""PUBLISH throughput of the Python MQTT clients, side by side: what one tick's segment states cost.

    .venv/bin/python benchmarks/bench_mqtt_publish.py                  # ~1 min
    .venv/bin/python benchmarks/bench_mqtt_publish.py --messages 10000 --repeat 5

A private Mosquitto is started on a free port. Each case publishes ``--messages`` retained QoS 0
messages of ~230 bytes (segment-state sized, one topic each, as a tick with every segment
changed) and is timed from its first publish (connecting included, a few ms) until
``mosquitto_sub -C N`` (a C subscriber in its own process) has received all of them: the
publisher, the broker and the fan-out, end to end.

- ``aiomqtt``: ``await client.publish(...)`` 32 at a time (``asyncio.gather``), as the sink did;
- ``paho``: paho-mqtt 2, ``publish()`` from the caller's thread, network loop in its own thread;
- ``gmqtt``: gmqtt's ``client.publish()`` (synchronous: builds the packet, writes the transport);
- ``sink-aiomqtt`` / ``sink-gmqtt``: ``publishers.mqtt_sink.MqttSink`` with each backend, from
  ``submit`` to the last message out (the sink's queue, chunking and delivery accounting
  included; ``sink-gmqtt`` is what the live engine uses).

Cases are interleaved and repeated (``--repeat``); the median per case is reported with its ratio
to ``sink-aiomqtt`` (the previous design) measured in the same rounds. Writes
benchmarks/out/bench_mqtt_publish.json. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

from mqtt_bench_common import OUT_DIR, start_broker

CASES = ("aiomqtt", "paho", "gmqtt", "sink-aiomqtt", "sink-gmqtt")


def messages(prefix: str, n: int) -> list[tuple[str, bytes]]:
    body = (
        b'{"segment_id":"%d#0","ts":1776729660,"speed_kmh":31.5,"free_flow_kmh":48.0,"tti":1.52,'
        b'"level":3,"level_name":"light","confidence":0.8,"imputed":false,'
        b'"sources":{"detectors":2,"cameras":0},"closed":false,"pad":"%s"}'
    )
    return [(f"{prefix}segments/{i}%230", body % (i, b"x" * 8)) for i in range(n)]


def timed(port: int, prefix: str, n: int, publish: Callable[[list[tuple[str, bytes]]], None]) -> float:
    """Seconds from the first publish until the subscriber has all ``n`` messages."""
    sub = subprocess.Popen(
        ["mosquitto_sub", "-p", str(port), "-t", f"{prefix}#", "-C", str(n), "-q", "0"],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # subscribed (a local broker answers in milliseconds)
    batch = messages(prefix, n)
    start = time.perf_counter()
    publish(batch)
    sub.wait(300)
    return time.perf_counter() - start


def run_aiomqtt(port: int) -> Callable[[list[tuple[str, bytes]]], None]:
    import aiomqtt

    def publish(batch: list[tuple[str, bytes]]) -> None:
        async def main() -> None:
            async with aiomqtt.Client("127.0.0.1", port, max_queued_outgoing_messages=None) as client:
                client.pending_calls_threshold = 64
                for k in range(0, len(batch), 32):
                    await asyncio.gather(
                        *(client.publish(t, p, qos=0, retain=True) for t, p in batch[k : k + 32])
                    )
                await asyncio.sleep(0)

        asyncio.run(main())

    return publish


def run_paho(port: int) -> Callable[[list[tuple[str, bytes]]], None]:
    import paho.mqtt.client as paho

    def publish(batch: list[tuple[str, bytes]]) -> None:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        client.max_queued_messages_set(0)
        client.connect("127.0.0.1", port)
        client.loop_start()
        infos = [client.publish(t, p, qos=0, retain=True) for t, p in batch]
        infos[-1].wait_for_publish(120)
        client.disconnect()
        client.loop_stop()

    return publish


def run_gmqtt(port: int) -> Callable[[list[tuple[str, bytes]]], None]:
    import gmqtt
    from gmqtt.mqtt.constants import MQTTv311

    def publish(batch: list[tuple[str, bytes]]) -> None:
        async def main() -> None:
            client = gmqtt.Client(f"bench-pub-{uuid.uuid4().hex[:6]}")
            await client.connect("127.0.0.1", port, version=MQTTv311)
            for t, p in batch:
                client.publish(t, p, qos=0, retain=True)
            transport = client._connection._transport
            while transport.get_write_buffer_size():
                await asyncio.sleep(0.001)
            await client.disconnect()

        asyncio.run(main())

    return publish


def run_sink(port: int, backend: str) -> Callable[[list[tuple[str, bytes]]], None]:
    import aiomqtt

    from ingest.mqtt_endpoint import MqttEndpoint
    from publishers.message import Message
    from publishers.mqtt_sink import MqttSink

    def publish(batch: list[tuple[str, bytes]]) -> None:
        identifier = f"bench-sink-{uuid.uuid4().hex[:6]}"
        target: Any = (
            MqttEndpoint("127.0.0.1", port, identifier, clean_session=True)
            if backend == "gmqtt"
            else lambda: aiomqtt.Client(
                "127.0.0.1", port, identifier=identifier, max_queued_outgoing_messages=None
            )
        )

        async def main() -> None:
            async with MqttSink(target) as sink:
                await sink.wait_connected()
                sink.submit([Message(t, p, True) for t, p in batch])
                await sink.flush()

        asyncio.run(main())

    return publish


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    args = ap.parse_args(argv)

    broker = start_broker(("max_queued_messages 0",))
    times: dict[str, list[float]] = {c: [] for c in args.cases}
    try:
        for round_ in range(args.repeat):
            for case in args.cases:
                port = broker.port
                publish = (
                    run_aiomqtt(port)
                    if case == "aiomqtt"
                    else run_paho(port)
                    if case == "paho"
                    else run_gmqtt(port)
                    if case == "gmqtt"
                    else run_sink(port, case.removeprefix("sink-"))
                )
                prefix = f"pub{round_}{case}/"
                s = timed(port, prefix, args.messages, publish)
                times[case].append(s)
                print(f"round {round_ + 1} {case:<13} {args.messages / s:>10,.0f} msg/s ({s * 1000:.0f} ms)")
    finally:
        broker.stop()

    base = "sink-aiomqtt" if "sink-aiomqtt" in times else args.cases[0]
    rows = []
    for case in args.cases:
        med = statistics.median(times[case])
        ratios = [b / t for t, b in zip(times[case], times[base], strict=True)]
        rows.append(
            {
                "case": case,
                "median_s": med,
                "messages_per_s": args.messages / med,
                "runs_s": times[case],
                f"speedup_vs_{base}_median": statistics.median(ratios),
            }
        )
    print(f"\n{'case':<13} {'median ms':>10} {'msg/s':>10} {'× ' + base:>16}")
    for r in rows:
        print(
            f"{r['case']:<13} {r['median_s'] * 1000:>10.0f} {r['messages_per_s']:>10,.0f} "
            f"{r[f'speedup_vs_{base}_median']:>16.1f}"
        )
    report = {
        "benchmark": "bench_mqtt_publish",
        "python": platform.python_version(),
        "messages": args.messages,
        "repeat": args.repeat,
        "load_average_at_end": os.getloadavg(),
        "rows": rows,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / "bench_mqtt_publish.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
