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
from typing import Any

import numpy as np

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
