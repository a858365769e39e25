"""A real live engine for the service tests: ``live.serve`` with the real components, on its own
event-loop thread, fed by a thread that publishes detector readings over a real MQTT broker.

The readings give every detector's segment a target congestion level (a fixed pattern by segment
row) with a slow drift, so the map shows every level and the city TPI moves from tick to tick;
free-flow traffic at first and at times (``LEARN_S``, ``FREE_S``) lets the engine learn free flow.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from roadgraph import load_network, place_detectors
from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork
from roadpulse.brokers.mosquitto import free_port
from roadpulse.components import build_components
from roadpulse.config import Settings, load_config
from roadpulse.live import serve

DEMO_CITY = Path(__file__).resolve().parents[1] / "data" / "osm" / "aguascalientes.osm.bz2"

#: speed / free-flow ratio that lands in each level 1..5 (GB/T 33171 bands)
RATIO_FOR_LEVEL = {1: 0.9, 2: 0.6, 3: 0.45, 4: 0.35, 5: 0.2}


#: free-flow traffic everywhere for the first LEARN_S, then on each segment FREE_S of every CYCLE_S
LEARN_S = 25.0
CYCLE_S = 70
FREE_S = 10
INTERVAL_S = 10
#: "free" traffic runs at this share of the limit-based free speed: light traffic, enough
#: vehicles per interval that loops are not flagged intermittent; the engine learns it as free flow
FREE_TRAFFIC_RATIO = 0.85
#: jam density per lane (veh/km); occupancy % = density × 6 m effective length / 10
JAM_DENSITY_VPKM = 140.0


CAMERA_ID = "cam-test-1"
CAMERA_TOML = """
[[cameras]]
id = "cam-test-1"
source = "mqtt"
fps = 4
interval_s = 2
snapshot_interval_s = 1

[[cameras.zones]]
id = "z1"
segment_id = "{segment_id}"
lane = 0
polygon = [[20, 60], [140, 60], [140, 110], [20, 110]]
"""


def camera_frame(t: float) -> bytes:
    """A 160 x 120 JPEG: grey road, a bright car moving along it."""
    import cv2
    import numpy as np

    img = np.full((120, 160, 3), 70, np.uint8)
    img[55:115, :] = 40
    x = int(t * 40) % 180 - 20
    cv2.rectangle(img, (x, 70), (x + 20, 95), (230, 230, 230), -1)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def target_level(segment_row: int) -> int:
    return 1 + (segment_row * 7) % 5



class LiveEngine:
    def __init__(self, broker_host: str, broker_port: int, tmp: Path, *, token: str = "test-token") -> None:
        self.network: RoadNetwork = load_network(DEMO_CITY)
        self.detectors: DetectorRegistry = place_detectors(
            self.network, share=0.7, seed=3, min_class="branch"
        )
        self.token = token
        self.port = free_port()
        token_env = f"RP_TEST_TOKEN_{os.getpid()}"
        os.environ[token_env] = token
        self.prefix = f"svc{os.getpid()}/"
        # one MQTT camera, so the camera wall and /api/cameras have something real to show
        config = tmp / "config.toml"
        config.write_text(CAMERA_TOML.format(segment_id=str(self.network.segments.segment_id[5])))
        self.settings: Settings = load_config(
            config,
            overrides={
                "camera.feed_engine": False,  # its zone is not in this test's detector registry
                "mqtt.host": broker_host,
                "mqtt.port": broker_port,
                "mqtt.prefix": self.prefix,
                "mqtt.client_id": f"rp-svc-{os.getpid()}",
                "engine.tick_s": 1,
                "api.listen": f"127.0.0.1:{self.port}",
                "api.token_env": token_env,
                "api.history_path": str(tmp / "history.sqlite"),
                "closures.store": str(tmp / "closures.sqlite"),
                "api.max_body_bytes": 20000,
            },
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.shared: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="live-engine", daemon=True)
        self._feeding = threading.Event()
        self._feeder = threading.Thread(target=self._feed, name="readings", daemon=True)
        self.error: BaseException | None = None
        self.learn_until = math.inf

    # -- engine thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()/wait_for
            self.error = exc

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        components = build_components(self.settings)  # exactly what `roadpulse run` starts
        await serve(
            self.network,
            self.detectors,
            self.settings,
            stop=self._stop,
            tick_delay_s=0.3,
            client_suffix=f"-svc-{os.getpid()}",
            components=components,
            shared=self.shared,
        )

    # -- readings thread -------------------------------------------------------------------------
    def _feed(self) -> None:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"rp-svc-feed-{os.getpid()}")
        mqtt = self.settings["mqtt"]
        client.connect(mqtt["host"], int(mqtt["port"]))
        client.loop_start()
        seg = self.network.segments
        rng = random.Random(5)
        try:
            while self._feeding.is_set():
                now = time.time()
                ts = math.floor(now)
                drift = 0.85 + 0.15 * math.sin(now / 7.0)
                batch = []
                for k in range(len(self.detectors)):
                    row = int(self.detectors.segment_index[k])
                    free = 0.9 * float(seg.speed_limit_kmh[row])
                    ratio = RATIO_FOR_LEVEL[target_level(row)] * (drift if target_level(row) < 5 else 1.0)
                    if now < self.learn_until or (ts + row * 13) % CYCLE_S < FREE_S:
                        # the road nearly empty: at first (for LEARN_S) and then FREE_S of every
                        # CYCLE_S. The engine learns a segment's free flow from the fastest ninth
                        # of its (smoothed) speeds, so it must see some, as it would over a day.
                        ratio = 1.0
                    speed = free * FREE_TRAFFIC_RATIO * ratio
                    # flow and occupancy consistent with the speed (Greenshields), a little noisy
                    # as real loops are (constant readings are flagged unhealthy)
                    density = JAM_DENSITY_VPKM * (1.0 - speed / free)
                    count = max(0, round(density * speed * INTERVAL_S / 3600.0 + rng.uniform(-0.5, 0.5)))
                    batch.append(
                        {
                            "detector_id": str(self.detectors.detector_id[k]),
                            "ts": ts,
                            "interval_s": INTERVAL_S,
                            "count": count,
                            "occupancy_pct": round(min(100.0, density * 0.6 * rng.uniform(0.95, 1.05)), 1),
                            "speed_kmh": round(speed * rng.uniform(0.97, 1.03), 1),
                        }
                    )
                client.publish(f"{self.prefix}detectors/batch", json.dumps(batch), qos=1)
                for k in range(4):  # the camera's frames, at its nominal 4 fps
                    client.publish(
                        f"{self.prefix}cameras/{CAMERA_ID}/frame", camera_frame(now + k / 4), qos=0
                    )
                    time.sleep(max(0.0, now + (k + 1) / 4 - time.time()))
        finally:
            client.loop_stop()
            client.disconnect()

    # -- control ---------------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> None:
        self._thread.start()
        self.wait_for(lambda: "http_url" in self.shared, timeout_s, "the HTTP service to listen")
        self.learn_until = time.time() + LEARN_S
        self._feeding.set()
        self._feeder.start()

    def wait_for(self, predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.error is not None:
                raise RuntimeError(f"live engine stopped: {self.error!r}") from self.error
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")

    def close(self) -> None:
        self._feeding.clear()
        if self._feeder.is_alive():
            self._feeder.join(5)
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
