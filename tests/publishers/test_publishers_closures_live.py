"""Closures in the live service over a real broker, with an Amap push to a signature-checking receiver.

``roadpulse.live.serve`` runs in-process with the closures component and an Amap push component;
a paho client plays the operator (``{prefix}closures/{id}/set``) and watches what comes out.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from push_receiver import Receiver  # tests/publishers/push_receiver.py (this folder is on sys.path)

from publishers.closures import ClosureBook
from publishers.closures_component import ClosuresComponent
from publishers.push_component import PushComponent
from roadgraph.detectors import DetectorRegistry
from roadgraph.synthetic import synthetic_grid
from roadpulse.config import PushEndpoint, load_config
from roadpulse.live import serve


class Clock:
    """Wall time plus an offset the test can jump (to reach a closure's end without waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Watcher:
    """A paho subscriber keeping every (topic, payload, retain) it sees."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.seen: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"w-{uuid.uuid4().hex[:10]}")
        self.client.on_message = self._on
        self.client.connect(host, port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _on(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.seen.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def publish(self, topic: str, payload: bytes | str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def wait(self, predicate: Callable[[str, dict], bool], timeout_s: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout_s
        k = 0
        while time.monotonic() < deadline:
            with self.lock:
                batch = self.seen[k:]
            k += len(batch)
            for topic, payload, _ in batch:
                try:
                    data = json.loads(payload)
                except ValueError:
                    continue
                if isinstance(data, dict) and predicate(topic, data):
                    return data
            time.sleep(0.02)
        raise AssertionError("expected message did not arrive in time")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Service:
    """``serve`` in a background thread with its own event loop; start/stop like a process."""

    def __init__(self, settings, network, components_of: Callable[[], list[Any]], clock: Clock) -> None:
        self.settings, self.network, self.components_of, self.clock = settings, network, components_of, clock
        self.shared: dict[str, Any] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.components: list[Any] = []
        self.error: BaseException | None = None
        # stable across restarts, as in production: the persistent MQTT session is tied to it
        self.client_suffix = f"-{uuid.uuid4().hex[:6]}"

    def start(self) -> None:
        self.shared = {}
        self.components = self.components_of()
        ready = threading.Event()

        def run() -> None:
            async def main() -> None:
                self._loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                ready.set()
                await serve(
                    self.network,
                    DetectorRegistry.empty(),
                    self.settings,
                    stop=self._stop,
                    clock=self.clock,
                    tick_delay_s=0.0,
                    components=self.components,
                    shared=self.shared,
                    client_suffix=self.client_suffix,
                )

            try:
                asyncio.run(main())
            except BaseException as exc:  # surfaced by the test
                self.error = exc
                ready.set()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        deadline = time.monotonic() + 10
        while "closures" not in self.shared and time.monotonic() < deadline and self.error is None:
            time.sleep(0.02)
        assert self.error is None, self.error
        closures = self.components[0]
        deadline = time.monotonic() + 10
        while not closures.subscribed.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert closures.subscribed.is_set(), "closures component did not subscribe"

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
        assert not self._thread.is_alive()
        assert self.error is None, self.error


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(private_key="amap-private")
    r.start()
    yield r
    r.close()


def test_closures_over_mqtt_with_restore_expiry_and_a_signed_amap_push(
    mqtt_broker, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RP_TEST_AMAP_KEY", "amap-private")
    prefix = f"rp{os.getpid()}{uuid.uuid4().hex[:6]}/"
    settings = load_config(
        None,
        overrides={
            "mqtt.host": mqtt_broker.host,
            "mqtt.port": mqtt_broker.port,
            "mqtt.prefix": prefix,
            "mqtt.client_id": f"rp-{uuid.uuid4().hex[:8]}",
            "engine.tick_s": 1,
            "closures.store": str(tmp_path / "closures.sqlite"),
            "closures.check_every_s": 0.1,
        },
    )
    network = synthetic_grid(2, 3, origin_lonlat=(121.55, 29.87))
    endpoint = PushEndpoint(
        name="amap",
        kind="amap",
        url=receiver.url,
        key="amap-key",
        key_env="RP_TEST_AMAP_KEY",
        timeout_s=2,
        base_backoff_s=0.05,
        max_backoff_s=0.5,
        outbox=str(tmp_path / "outbox-amap.sqlite"),
    )
    clock = Clock()
    service = Service(
        settings, network, lambda: [ClosuresComponent(settings), PushComponent(endpoint, settings)], clock
    )
    watcher = Watcher(mqtt_broker.host, mqtt_broker.port, f"{prefix}#")
    try:
        service.start()
        book = service.shared["closures"]
        assert isinstance(book, ClosureBook)
        now = clock()
        record = {
            "segment_ids": ["r0c0-r0c1"],
            "type": "road_closed",
            "reason": "construction",
            "start": now - 60,
            "end": now + 3600,
            "description": "封闭施工",
        }
        watcher.publish(f"{prefix}closures/C1/set", json.dumps(record))
        got = watcher.wait(lambda t, d: t == f"{prefix}closures/C1" and d.get("version") == 1)
        assert got["status"] == "active" and got["closure_id"] == "C1" and got["description"] == "封闭施工"
        # the engine marks the segment closed: closed true, level 5 on its next state
        state = watcher.wait(lambda t, d: t == f"{prefix}segments/r0c0-r0c1" and d.get("closed") is True)
        assert state["level"] == 5

        # a bad record is refused on traffic/rejected with the field named
        watcher.publish(f"{prefix}closures/C9/set", json.dumps({**record, "segment_ids": ["nowhere"]}))
        bad = watcher.wait(lambda t, d: t == f"{prefix}rejected" and "C9" in d.get("topic", ""))
        assert "segment_ids: unknown segment 'nowhere'" in bad["reason"] and bad["code"] == "bad_closure"
        watcher.publish(f"{prefix}closures/C9/set", b"{not json")
        watcher.wait(lambda t, d: t == f"{prefix}rejected" and "not JSON" in d.get("reason", ""))

        watcher.publish(f"{prefix}closures/C1/set", json.dumps({**record, "description": "phase 2"}))
        watcher.wait(lambda t, d: t == f"{prefix}closures/C1" and d.get("version") == 2)
        watcher.publish(f"{prefix}closures/C1/set", b"")  # empty payload clears
        cleared = watcher.wait(lambda t, d: t == f"{prefix}closures/C1" and d.get("version") == 3)
        assert cleared["status"] == "cleared" and cleared["cleared_by"] == "operator"
        watcher.wait(lambda t, d: t == f"{prefix}segments/r0c0-r0c1" and d.get("closed") is False)

        # expiry on time (the injected clock jumps past the end)
        watcher.publish(f"{prefix}closures/C2/set", json.dumps({**record, "end": clock() + 30}))
        watcher.wait(lambda t, d: t == f"{prefix}closures/C2" and d.get("status") == "active")
        clock.offset += 31
        expired = watcher.wait(lambda t, d: t == f"{prefix}closures/C2" and d.get("status") == "cleared", 3)
        assert expired["cleared_by"] == "expired" and expired["version"] == 2

        watcher.publish(f"{prefix}closures/C3/set", json.dumps({**record, "end": clock() + 3600}))
        watcher.wait(lambda t, d: t == f"{prefix}closures/C3" and d.get("version") == 1)
        service.stop()

        # sent while the engine is down: the persistent session keeps it for the restart
        watcher.publish(f"{prefix}closures/C4/set", json.dumps({**record, "end": clock() + 3600}))
        service.start()
        book = service.shared["closures"]
        assert book.get("C3")["status"] == "active" and book.get("C1")["version"] == 3
        deadline = time.monotonic() + 10
        while book.get("C4") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert book.get("C4") is not None and book.get("C4")["version"] == 1
        assert service.shared["outboxes"]["amap"] is service.components[1].outbox
        # a fresh subscriber gets every closure from the broker's retained messages
        late = Watcher(mqtt_broker.host, mqtt_broker.port, f"{prefix}closures/+")
        try:
            c3 = late.wait(lambda t, d: t == f"{prefix}closures/C3")
            assert c3["status"] == "active"
        finally:
            late.close()

        # the Amap receiver got every closure version once, in order, signed
        want = [
            "closure:C1:v1",
            "closure:C1:v2",
            "closure:C1:v3",
            "closure:C2:v1",
            "closure:C2:v2",
            "closure:C3:v1",
            "closure:C4:v1",
        ]
        receiver.wait_until(lambda r: [k for k in r.accepted_keys() if k.startswith("closure:")] == want, 15)
        receiver.wait_until(lambda r: any(k.startswith("segments:") for k in r.accepted_keys()), 10)
        assert all(item.signature_ok for item in receiver.accepted)
        first = next(i for i in receiver.accepted if i.idempotency_key == "closure:C1:v1")
        assert first.form["type"] == "closure" and first.form["key"] == "amap-key"
        data = json.loads(first.form["data"])
        assert data["roads"][0]["polyline"].count(",") >= 2 and data["roads"][0]["direction"] == "从西到东"
        status = next(i for i in receiver.accepted if i.idempotency_key.startswith("segments:"))
        roads = json.loads(status.form["data"])["roads"]
        assert len(roads) == len(network) and {"name", "status", "speed", "angle", "polyline"} <= set(
            roads[0]
        )
        service.stop()
    finally:
        watcher.close()
