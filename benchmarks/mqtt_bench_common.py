"""Shared pieces of the MQTT benchmarks: a private Mosquitto, test detectors and readings, a fast
QoS 1 publisher and queue-then-drain timing.

Queue-then-drain: a receiver's persistent session (fixed client id, ``clean_session=False``) is
registered first, the messages are published while it is away (the broker queues them), then the
receiver reconnects and the time from its first to its last message is measured. What is timed is
the consumer alone, not the publisher.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np

from roadgraph.detectors import DetectorRegistry

OUT_DIR = Path(__file__).resolve().parent / "out"
PREFIX = "traffic/"
TS0 = 1_776_729_630  # 2026-04-21T00:00:30Z

#: Broker settings for throughput runs: no queue limit (mosquitto's default of 1000 silently
#: drops QoS 1 messages for a receiver that is away) and QoS 0 messages queued for offline
#: persistent sessions, so the QoS 0 drain can be measured the same way.
BENCH_BROKER_CONFIG = ("max_queued_messages 0", "max_queued_bytes 0", "queue_qos0_messages true")


def start_broker(extra: Iterable[str] = BENCH_BROKER_CONFIG) -> Any:
    from roadpulse.brokers import MosquittoProcess

    return MosquittoProcess(extra_config=list(extra)).start()


def make_registry(n: int) -> DetectorRegistry:
    return DetectorRegistry(
        detector_id=np.array([f"D{i:06d}" for i in range(n)], dtype=object),
        segment_index=(np.arange(n) // 2).astype(np.int32),
        lane=np.full(n, -1, dtype=np.int16),
        pos_m=np.full(n, np.nan, dtype=np.float32),
        kind=np.array(["loop"] * n, dtype=object),
    )


def reading(detector_id: str, ts: float, i: int) -> dict[str, Any]:
    count = i % 23
    return {
        "detector_id": detector_id,
        "ts": ts,
        "interval_s": 30,
        "count": count,
        "occupancy_pct": round((i * 7919 % 600) / 10, 1),
        "speed_kmh": round(5 + (i * 104729 % 850) / 10, 1) if count else None,
    }


def single_messages(registry: DetectorRegistry, n: int, ts0: float = TS0) -> list[tuple[str, bytes]]:
    """``n`` one-reading messages: every detector every 30 s, in time order."""
    ids = [str(d) for d in registry.detector_id]
    out = []
    for i in range(n):
        k = i % len(ids)
        r = reading(ids[k], ts0 + 30 * (i // len(ids)), i)
        out.append((f"{PREFIX}detectors/{ids[k]}", json.dumps(r, separators=(",", ":")).encode()))
    return out


def publish_all(
    port: int, messages: list[tuple[str, bytes]], *, qos: int = 1, host: str = "127.0.0.1"
) -> None:
    """Publish at ``qos`` and wait until the broker has acknowledged every message."""
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=600)
    finally:
        client.disconnect()
        client.loop_stop()


def register_session(
    port: int, identifier: str, topic_filter: str, qos: int, *, host: str = "127.0.0.1"
) -> None:
    """Create a persistent session with a subscription, then leave, so the broker queues for it."""
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=identifier, clean_session=False)
    client.connect(host, port)
    client.subscribe(topic_filter, qos=qos)
    done = False

    def on_subscribe(*_args: Any) -> None:
        nonlocal done
        done = True

    client.on_subscribe = on_subscribe
    deadline = time.monotonic() + 120  # a loaded machine, a queue being flushed at us
    while not done and time.monotonic() < deadline:
        client.loop(0.05)
    client.disconnect()
    if not done:
        raise SystemExit(f"could not subscribe {identifier} to {topic_filter}")


def clear_session(port: int, identifier: str, *, host: str = "127.0.0.1") -> None:
    """End a persistent session: otherwise the broker keeps queueing for it every message later
    cases publish, and a later drain under the same identity receives them too."""
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=identifier, clean_session=True)
    client.connect(host, port)
    client.loop_start()
    client.disconnect()
    client.loop_stop()


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p)) if values else float("nan")
