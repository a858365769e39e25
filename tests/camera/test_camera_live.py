"""The live camera component in `roadpulse run`, against a real broker: JPEG frames in on
traffic/cameras/{id}/frame (capture time in the MQTT v5 user property `ts`), stats, health and an
annotated snapshot out, and the zones' measurements reaching the congestion engine as camera
evidence (`sources.cameras` in the segment state)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from camera_scenes import Car, encode, render
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

NETWORK = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "A0A1",
            "properties": {
                "name": "Zhongshan Rd",
                "lanes": 2,
                "road_class": "arterial",
                "speed_limit_kmh": 60,
            },
            "geometry": {"type": "LineString", "coordinates": [[121.550, 29.870], [121.555, 29.870]]},
        }
    ],
}
CAMERA = """
[[cameras]]
id = "live-cam"
source = "mqtt"
fps = 25
interval_s = 2
snapshot_interval_s = 1

[cameras.homography]
image = [[100, 200], [172, 200], [172, 20], [100, 20]]
ground = [[10.0, 4.0], [17.2, 4.0], [17.2, 22.0], [10.0, 22.0]]

[[cameras.zones]]
id = "lane-0"
segment_id = "A0A1"
lane = 0
polygon = [[100, 90], [136, 90], [136, 170], [100, 170]]

[[cameras.zones]]
id = "lane-1"
segment_id = "A0A1"
lane = 1
polygon = [[136, 90], [172, 90], [172, 170], [136, 170]]
"""


class _Collector:
    def __init__(self, host: str, port: int, topics: list[str]) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"cam-listen-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        self.client.connect(host, port)
        for t in topics:
            self.client.subscribe(t)
        self.client.loop_start()

    def drain(self) -> list[tuple[str, bytes]]:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.slow
def test_frames_in_stats_snapshot_and_camera_evidence_out(mqtt_broker, tmp_path: Path) -> None:
    net = tmp_path / "net.geojson"
    net.write_text(json.dumps(NETWORK))
    prefix = f"cam{os.getpid()}/"
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[mqtt]\nprefix = "{prefix}"\nclient_id = "rp-cam-{os.getpid()}"\n'
        "[api]\nenabled = false\n[closures]\nenabled = false\n" + CAMERA
    )
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    engine = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "roadpulse.cli",
            "run",
            "--config",
            str(cfg),
            "--network",
            str(net),
            "--broker",
            f"{mqtt_broker.host}:{mqtt_broker.port}",
            "--tick-s",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    listen = _Collector(mqtt_broker.host, mqtt_broker.port, [f"{prefix}cameras/#", f"{prefix}segments/#"])
    pub = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=f"cam-pub-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5
    )
    pub.connect(mqtt_broker.host, mqtt_broker.port)
    pub.loop_start()
    frames, _ = render([Car(0, 10 + 40 * k, 5.0) for k in range(6)] + [Car(1, 30, 4.0, shade=215)], 250)
    jpegs = [encode(f) for f in frames]
    seen: list[tuple[str, bytes]] = []
    try:
        deadline = time.monotonic() + 60
        k = 0
        segment_with_camera = None
        counted = False
        while time.monotonic() < deadline and (segment_with_camera is None or not counted):
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("ts", str(int(time.time() * 1000)))
            pub.publish(f"{prefix}cameras/live-cam/frame", jpegs[k % len(jpegs)], qos=0, properties=props)
            k += 1
            time.sleep(0.04)
            for topic, payload in listen.drain():
                seen.append((topic, payload))
                if topic == f"{prefix}cameras/live-cam/stats":
                    counted = counted or any(z["count"] > 0 for z in json.loads(payload)["zones"])
                if topic == f"{prefix}segments/A0A1":
                    state = json.loads(payload)
                    if state["sources"]["cameras"] >= 1:
                        segment_with_camera = state
        assert segment_with_camera is not None, f"no camera evidence; saw {[t for t, _ in seen][:20]}"
        assert segment_with_camera["speed_kmh"] is not None
    finally:
        pub.loop_stop()
        pub.disconnect()
        listen.close()
        engine.send_signal(signal.SIGTERM)
        out, _ = engine.communicate(timeout=30)
    assert engine.returncode == 0, out
    stats = [json.loads(p) for t, p in seen if t == f"{prefix}cameras/live-cam/stats"]
    assert stats and stats[0]["camera_id"] == "live-cam" and stats[0]["interval_s"] == 2
    assert any(z["count"] > 0 for s in stats for z in s["zones"])
    # ts from the user property: intervals end on multiples of 2 s of wall time
    assert all(s["ts"] % 2 == 0 and abs(s["ts"] - time.time()) < 120 for s in stats)
    snapshots = [p for t, p in seen if t == f"{prefix}cameras/live-cam/snapshot"]
    assert snapshots and snapshots[0][:2] == b"\xff\xd8"  # a JPEG


@pytest.mark.slow
def test_shared_camera_records_snapshots_and_no_frames(mqtt_broker, tmp_path: Path) -> None:
    """In process: what ``ctx.shared["cameras"]`` offers the HTTP service, and a camera that goes
    quiet reported ``no_frames``."""
    import asyncio
    import threading

    from roadpulse.camera_component import camera_component
    from roadpulse.config import load_config
    from roadpulse.inputs import load_inputs
    from roadpulse.live import serve

    net = tmp_path / "net.geojson"
    net.write_text(json.dumps(NETWORK))
    prefix = f"camin{os.getpid()}/"
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[mqtt]\nprefix = "{prefix}"\nhost = "{mqtt_broker.host}"\nport = {mqtt_broker.port}\n'
        f'client_id = "rp-camin-{os.getpid()}"\n[network]\npath = "{net}"\n'
        "[camera]\nno_frames_after_s = 2\n" + CAMERA
    )
    settings = load_config(cfg, overrides={"engine.tick_s": 1})
    network, detectors = load_inputs(settings)
    assert detectors.kind[detectors.index_of["live-cam:lane-0"]] == "camera"
    component = camera_component(settings)
    assert component is not None
    shared: dict = {}
    frames, _ = render([Car(0, 10 + 40 * k, 5.0) for k in range(4)], 150)
    jpegs = [encode(f) for f in frames]
    result: dict = {}

    def publish_frames() -> None:
        pub = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        pub.connect(mqtt_broker.host, mqtt_broker.port)
        pub.loop_start()
        time.sleep(2.0)  # let the component subscribe
        for data in jpegs:  # 6 s at 25 fps, capture time as the user property
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("ts", str(int(time.time() * 1000)))
            pub.publish(f"{prefix}cameras/live-cam/frame", data, properties=props)
            time.sleep(0.04)
        result["during"] = [dict(r) for r in shared["cameras"].records()]
        result["snapshot"] = shared["cameras"].snapshot_jpeg("live-cam")
        time.sleep(4.0)  # and then nothing
        result["after"] = [dict(r) for r in shared["cameras"].records()]
        pub.loop_stop()
        pub.disconnect()

    async def main() -> None:
        stop = asyncio.Event()
        thread = threading.Thread(target=publish_frames)
        loop = asyncio.get_running_loop()

        def run_then_stop() -> None:
            thread.join()
            loop.call_soon_threadsafe(stop.set)

        thread.start()
        threading.Thread(target=run_then_stop).start()
        pipeline = await serve(
            network, detectors, settings, stop=stop, components=[component], shared=shared, client_suffix="-t"
        )
        result["accepted"] = pipeline.counters.accepted

    asyncio.run(main())
    (during,) = result["during"]
    assert during["camera_id"] == "live-cam" and during["health"]["status"] == "ok"
    assert during["stats"] is not None and during["stats"]["camera_id"] == "live-cam"
    assert during["frames"] >= 100 and during["dropped_frames"] == 0
    assert result["snapshot"][:2] == b"\xff\xd8"
    (after,) = result["after"]
    assert after["health"]["reasons"] == ["no_frames"] and after["health"]["status"] == "failed"
    assert result["accepted"] >= 2  # zone readings reached the engine
