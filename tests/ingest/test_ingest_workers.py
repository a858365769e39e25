"""Ingest workers on a shared subscription feeding one engine (``ingest.from_workers``)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import paho.mqtt.client as paho

from roadpulse.ingest_worker import serve_worker
from tests.ingest.live_helpers import LiveEngine, grid_with_detectors, reading, settings_for

N = 400


def test_two_workers_share_the_stream_and_the_engine_gets_every_reading_once(mqtt_broker) -> None:
    if mqtt_broker.kind != "mosquitto":
        import pytest

        pytest.skip("shared subscriptions need mosquitto (the embedded broker has none)")
    network, detectors = grid_with_detectors(40)
    settings = settings_for(mqtt_broker.port, tick_s=1, **{"ingest.from_workers": True})
    prefix = settings["mqtt"]["prefix"]
    group = prefix.strip("/")
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    sources: list = []

    async def workers() -> None:
        tasks = [
            asyncio.create_task(serve_worker(detectors, settings, group=group, stop=stop, worker_id=str(w)))
            for w in range(2)
        ]
        sources.extend(await asyncio.gather(*tasks))

    thread = threading.Thread(target=loop.run_until_complete, args=(workers(),), daemon=True)
    thread.start()
    engine = LiveEngine(network, detectors, settings)
    rejected: list[dict] = []
    listener = paho.Client(paho.CallbackAPIVersion.VERSION2)
    listener.on_message = lambda _c, _u, m: rejected.append(json.loads(m.payload))
    listener.connect(mqtt_broker.host, mqtt_broker.port)
    listener.subscribe(f"{prefix}rejected", qos=1)
    listener.loop_start()
    try:
        engine.wait_connected()
        time.sleep(1.5)  # the workers connect and subscribe
        publisher = paho.Client(paho.CallbackAPIVersion.VERSION2)
        publisher.connect(mqtt_broker.host, mqtt_broker.port)
        publisher.loop_start()
        t0 = time.time() - 600
        infos = [
            publisher.publish(
                f"{prefix}detectors/D{i % 40}", reading(f"D{i % 40}", t0 + 30 * (i // 40)), qos=1
            )
            for i in range(N)
        ]
        infos.append(publisher.publish(f"{prefix}detectors/D1", b"{broken", qos=1))
        for info in infos:
            info.wait_for_publish(10)
        publisher.loop_stop()
        publisher.disconnect()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            p = engine.pipeline
            if p is not None and p.counters.accepted >= N and rejected:
                break
            time.sleep(0.1)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        pipeline = engine.stop()
        listener.loop_stop()
        listener.disconnect()
    assert pipeline.counters.accepted == N
    assert pipeline.counters.rejected == 0
    assert [r["code"] for r in rejected] == ["bad_json"]
    received = [s.messages_received for s in sources]
    assert sum(received) == N + 1 and min(received) > 0  # both workers took a share
