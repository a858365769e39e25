"""The live engine (``roadpulse.live.serve``) in a background thread, for integration tests.

Unlike ``tests/roadpulse/test_live.py`` (a subprocess, as a user starts it) this keeps the
`Pipeline` at hand, so tests can read its counters while the engine runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paho.mqtt.client as paho

from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork
from roadgraph.synthetic import synthetic_grid
from roadpulse.config import Settings, load_config
from roadpulse.pipeline import Pipeline


def grid_with_detectors(n_detectors: int = 40) -> tuple[RoadNetwork, DetectorRegistry]:
    network = synthetic_grid(5, 5)
    n = min(n_detectors, len(network))
    registry = DetectorRegistry(
        detector_id=np.array([f"D{i}" for i in range(n)], dtype=object),
        segment_index=np.arange(n, dtype=np.int32),
        lane=np.full(n, -1, dtype=np.int16),
        pos_m=np.full(n, np.nan, dtype=np.float32),
        kind=np.array(["loop"] * n, dtype=object),
    )
    return network, registry


def settings_for(port: int, *, tick_s: float = 1, **overrides: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "mqtt.port": port,
        "mqtt.prefix": f"t{os.getpid()}{tag}/",
        "mqtt.client_id": f"rp-{tag}",
        "engine.tick_s": tick_s,
        "publish.snapshot": False,
    }
    values.update(overrides)
    return load_config(overrides=values)


class LiveEngine:
    """``serve`` on its own event loop in a thread; ``stop()`` sets the stop event and joins."""

    def __init__(
        self,
        network: RoadNetwork,
        detectors: DetectorRegistry,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        tick_delay_s: float = 0.2,
    ) -> None:
        self.settings = settings
        self.prefix: str = settings["mqtt"]["prefix"]
        self.statuses: list[str] = []
        self.pipeline: Pipeline | None = None
        self.error: BaseException | None = None
        self._ticks = 0
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()

        def on_tick(p: Pipeline) -> None:
            self.pipeline = p
            self._ticks += 1

        async def main() -> None:
            from roadpulse.live import serve

            self._stop = asyncio.Event()
            self._started.set()
            self.pipeline = await serve(
                network,
                detectors,
                settings,
                stop=self._stop,
                clock=clock,
                tick_delay_s=tick_delay_s,
                on_tick=on_tick,
                on_status=self.statuses.append,
            )

        def run() -> None:
            try:
                self._loop.run_until_complete(main())
            except BaseException as exc:  # reported by stop()
                self.error = exc
            finally:
                self._started.set()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self._started.wait(10)

    @property
    def ticks(self) -> int:
        return self._ticks

    def wait_connected(self, timeout_s: float = 15) -> None:
        """Until the reading source ("connected") and the sink ("mqtt sink: connected") are up."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "connected" in self.statuses and "mqtt sink: connected" in self.statuses:
                return
            if self.error is not None:
                raise self.error
            time.sleep(0.05)
        raise AssertionError(f"engine did not connect: statuses {self.statuses}")

    def wait_ticks(self, n: int, timeout_s: float = 60) -> None:
        target = self._ticks + n
        deadline = time.monotonic() + timeout_s
        while self._ticks < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"engine ran {self._ticks} ticks, expected {target}")
            if self.error is not None:
                raise self.error
            time.sleep(0.05)

    def block_loop(self, seconds: float) -> None:
        """Block the engine's event loop for ``seconds``, as a long tick would: nothing is read
        meanwhile, so the broker keeps what it has for the engine queued."""
        self._loop.call_soon_threadsafe(time.sleep, seconds)

    def stop(self, timeout_s: float = 120) -> Pipeline:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError("engine did not stop")
        if self.error is not None:
            raise self.error
        assert self.pipeline is not None
        return self.pipeline


def reading(detector_id: str, ts: float, count: int = 10) -> bytes:
    return json.dumps(
        {
            "detector_id": detector_id,
            "ts": ts,
            "interval_s": 30,
            "count": count,
            "occupancy_pct": 12.5,
            "speed_kmh": 48.0,
        }
    ).encode()


#: The stream of the broker crash tests: readings of one detector are 1 s apart (75 s of event
#: time in about as much wall time); the lateness bound is 20 s, shorter than the duplicate
#: memory (32 readings = 32 s), so a re-delivery is refused as ``duplicate`` while remembered and
#: as ``late`` after, never accepted twice -- the same relation as 300 s against 32 readings of
#: 30 s in the field.
OUTAGE_READINGS = 3000
OUTAGE_INTERVAL_S = 1
OUTAGE_LATENESS_S = 20
OUTAGE_DETECTORS = 40


@dataclass
class OutageRun:
    """What ``stream_through_outage`` saw: acknowledged readings, accepted ones, refusals by
    code, and the acknowledged / accepted counts at the moment of the outage."""

    acked: int
    accepted: int
    rejected: dict[str, int]
    at_outage: dict[str, int] = field(default_factory=dict)
    #: MQTT messages the engine's source read, its reconnects and the statuses it went
    #: through, and what ``broker_state`` returned at the end: where missing readings stopped.
    source_messages: int = 0
    source_reconnects: int = 0
    statuses: list[str] = field(default_factory=list)
    broker_state: object = None


def stream_through_outage(
    host: str,
    port: int,
    outage: Callable[[], None],
    *,
    connect_timeout_s: float = 15,
    block_engine: tuple[int, float] | None = None,
    broker_state: Callable[[], object] | None = None,
) -> OutageRun:
    """Publish ``OUTAGE_READINGS`` readings at QoS 1 from a persistent session, counting PUBACKs,
    with ``outage()`` halfway; then wait until the publisher has every PUBACK and the engine has
    accepted as many readings. ``block_engine = (lead, seconds)`` blocks the engine's loop for
    ``seconds`` ``lead`` readings before the outage (so that the broker holds readings it
    acknowledged but did not deliver when the outage comes). ``broker_state()``, if given, is
    asked once the waiting is over (e.g. the queues of the engine's session) and reported."""
    network, detectors = grid_with_detectors(OUTAGE_DETECTORS)
    settings = settings_for(port, tick_s=1, **{"ingest.lateness_s": OUTAGE_LATENESS_S})
    prefix = settings["mqtt"]["prefix"]
    acked: set[int] = set()
    lock = threading.Lock()

    def on_publish(_c: object, _u: object, mid: int, _rc: object, _p: object) -> None:
        with lock:
            acked.add(mid)

    publisher = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", clean_session=False
    )
    publisher.on_publish = on_publish
    publisher.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]  # annotated int; floats work
    publisher.max_inflight_messages_set(100)
    engine = LiveEngine(network, detectors, settings)
    at_outage: dict[str, int] = {}
    half = OUTAGE_READINGS // 2
    try:
        engine.wait_connected(connect_timeout_s)  # the engine's session now exists
        engine.wait_ticks(1)  # its pipeline (and counters) are at hand from the first tick
        publisher.connect(host, port)
        publisher.loop_start()
        t0 = time.time() - OUTAGE_INTERVAL_S * (OUTAGE_READINGS // OUTAGE_DETECTORS) - 60
        mids = []
        for i in range(OUTAGE_READINGS):
            det = f"D{i % OUTAGE_DETECTORS}"
            ts = t0 + OUTAGE_INTERVAL_S * (i // OUTAGE_DETECTORS)
            mids.append(publisher.publish(f"{prefix}detectors/{det}", reading(det, ts), qos=1).mid)
            if i % 40 == 39:
                time.sleep(0.02)
            if block_engine is not None and i == half - block_engine[0]:
                engine.block_loop(block_engine[1])
            if i == half:
                with lock:
                    at_outage["acked"] = len(acked)
                p = engine.pipeline
                at_outage["accepted"] = p.counters.accepted if p is not None else 0
                outage()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with lock:
                if acked.issuperset(mids):
                    break
            time.sleep(0.1)
        with lock:
            n_acked = len(acked.intersection(mids))
        # Everything acknowledged must reach the engine, which reconnects with backoff (up to
        # 16 s after a ~10 s outage); give the redeliveries time.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = engine.pipeline
            if p is not None and p.counters.accepted >= n_acked:
                break
            time.sleep(0.1)
        time.sleep(1.0)  # late duplicates, if any, arrive now and must be refused
        state = _ask(broker_state) if broker_state is not None else None
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        pipeline = engine.stop()
    counters = pipeline.counters
    return OutageRun(
        n_acked,
        counters.accepted,
        dict(counters.rejected_by_code),
        at_outage,
        source_messages=counters.source_messages,
        source_reconnects=counters.source_reconnects,
        statuses=list(engine.statuses),
        broker_state=state,
    )


def _ask(probe: Callable[[], object]) -> object:
    """A diagnostic's answer, or why there is none: a failing probe must not hide the result."""
    try:
        return probe()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
