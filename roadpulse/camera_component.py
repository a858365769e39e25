"""The live camera component of ``roadpulse run``.

* MQTT cameras (``source = "mqtt"``): subscribes ``{prefix}cameras/+/frame`` (its own MQTT v5
  client, QoS 0: a late frame is worth less than the next one). The capture time is the message's
  user property ``ts`` (epoch milliseconds), else the arrival time. Frames are decoded and analysed
  on one analysis thread, so the event loop (and the reading hot path) never waits on OpenCV; when
  a camera's frames come faster than they can be analysed, the oldest waiting ones are dropped
  (counted in ``records()``).
* File, folder and stream cameras run in worker processes under a ``CameraSupervisor``
  (``camera/worker.py``): a decoder that crashes or hangs takes down only its own camera.
* Out: ``{prefix}cameras/{id}/stats``, ``/health``, ``/snapshot`` (annotated JPEG every
  ``snapshot_interval_s``, retained) and camera incidents on ``{prefix}incidents/{id}``.
* Into the core: each healthy interval's zone stats become readings of the zone detectors
  (``{camera_id}:{zone_id}``, kind ``camera``), parsed and accepted through the pipeline like any
  reading; an unhealthy camera feeds nothing.
* ``ctx.shared["cameras"]`` is this component: ``records()`` and ``snapshot_jpeg(camera_id)``.
  A camera with no frame for ``camera.no_frames_after_s`` reports ``no_frames``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
import urllib.parse
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import aiomqtt

from camera.analyzer import CameraAnalyzer, Output
from camera.annotate import annotated_jpeg
from camera.config import CameraConfig
from camera.messages import output_message, snapshot_message, zone_readings
from camera.worker import CameraJob, CameraSupervisor, Snapshot
from publishers.message import Message

if TYPE_CHECKING:
    from .components import LiveContext
    from .config import Settings

log = logging.getLogger("roadpulse.cameras")

#: Frames waiting for analysis per camera before the oldest are dropped.
MAX_WAITING_FRAMES = 50


class _Camera:
    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self.analyzer = CameraAnalyzer(config)
        self.waiting: deque[tuple[float, bytes]] = deque()
        self.dropped = 0
        self.frames = 0
        self.last_frame_at: float | None = None
        self.next_snapshot = 0.0
        self.stats: dict[str, Any] | None = None
        self.health: dict[str, Any] = {"status": "ok", "reasons": [], "since": None}
        self.updated: float | None = None
        self.snapshot: bytes | None = None
        self.lock = threading.Lock()
        self.missing = False


class CameraComponent:
    name = "cameras"

    def __init__(self, settings: Settings, cameras: list[CameraConfig]) -> None:
        self.settings = settings
        self.prefix: str = settings["mqtt"]["prefix"]
        cfg = settings["camera"]
        self.feed_engine = bool(cfg["feed_engine"])
        self.no_frames_after_s = float(cfg["no_frames_after_s"])
        self.cameras = {c.id: _Camera(c) for c in cameras}
        self._mqtt_ids = {c.id for c in cameras if c.source == "mqtt"}
        self._jobs = [CameraJob(c, realtime=True) for c in cameras if c.source != "mqtt"]
        self._processes = int(cfg["processes"])
        self._hang_after_s = float(cfg["hang_after_s"])
        self.subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ctx: LiveContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="camera-analysis")
        self._supervisor: CameraSupervisor | None = None
        self._supervisor_thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------------------ shared API

    def records(self) -> list[dict[str, Any]]:
        """Every camera: ``camera_id``, ``stats`` (the latest stats message or None), ``health``
        (``status``, ``reasons``, ``since``), ``updated`` (ts of the latest output), plus frame
        counters."""
        out = []
        for cam in self.cameras.values():
            with cam.lock:
                out.append(
                    {
                        "camera_id": cam.config.id,
                        "source": "mqtt" if cam.config.id in self._mqtt_ids else "worker",
                        "stats": cam.stats,
                        "health": dict(cam.health),
                        "updated": cam.updated,
                        "frames": cam.frames,
                        "dropped_frames": cam.dropped,
                        "lon": cam.config.lon,
                        "lat": cam.config.lat,
                    }
                )
        return out

    def snapshot_jpeg(self, camera_id: str) -> bytes | None:
        cam = self.cameras.get(camera_id)
        return None if cam is None else cam.snapshot

    # ------------------------------------------------------------------------------ hooks

    async def start(self, ctx: LiveContext) -> None:
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        ctx.shared["cameras"] = self
        if self._mqtt_ids:
            self._tasks.append(asyncio.create_task(self._subscribe(), name="cameras-mqtt"))
            self._tasks.append(asyncio.create_task(self._watchdog(), name="cameras-watchdog"))
        if self._jobs:
            self._supervisor = CameraSupervisor(
                self._jobs, self._from_worker, processes=self._processes, hang_after_s=self._hang_after_s
            )
            self._supervisor_thread = threading.Thread(
                target=self._run_supervisor, name="camera-supervisor", daemon=True
            )
            self._supervisor_thread.start()
        log.info(
            "cameras: %d over MQTT (%sframe), %d in worker processes",
            len(self._mqtt_ids),
            f"{self.prefix}cameras/+/",
            len(self._jobs),
        )

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._supervisor_thread is not None:
            await asyncio.to_thread(self._supervisor_thread.join, 15)
        self._executor.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------------------ MQTT frames

    async def _subscribe(self) -> None:
        from .mqtt import aiomqtt_client, endpoint

        topic = f"{self.prefix}cameras/+/frame"
        backoff = 0.5
        suffix = f"-{os.getpid()}-{random.randrange(1 << 30):x}"
        ep = endpoint(self.settings, role="cameras", unique_suffix=suffix)
        while True:
            try:
                # MQTT 5: for the frame's `ts` user property
                client = aiomqtt_client(ep, protocol=aiomqtt.ProtocolVersion.V5)
                async with client:
                    await client.subscribe(topic, qos=0)
                    self.subscribed.set()
                    backoff = 0.5
                    async for msg in client.messages:
                        self._on_frame(str(msg.topic), msg.payload, msg.properties)
            except aiomqtt.MqttError as exc:
                self.subscribed.clear()
                log.warning("cameras: MQTT connection lost (%s); reconnecting in %.1f s", exc, backoff)
                await asyncio.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, 30.0)

    def _on_frame(self, topic: str, payload: Any, properties: Any) -> None:
        assert self._ctx is not None
        if self._stopping.is_set():
            return
        head = f"{self.prefix}cameras/"
        camera_id = urllib.parse.unquote(topic[len(head) : -len("/frame")])
        cam = self.cameras.get(camera_id)
        if cam is None or camera_id not in self._mqtt_ids:
            self._ctx.publish(
                [_rejection(self.prefix, topic, f"unknown camera {camera_id!r}", self._ctx.clock())]
            )
            return
        data = payload if isinstance(payload, bytes | bytearray) else str(payload or "").encode()
        ts = _user_ts(properties)
        now = self._ctx.clock()
        cam.last_frame_at = now
        with cam.lock:
            cam.waiting.append((ts if ts is not None else now, bytes(data)))
            while len(cam.waiting) > MAX_WAITING_FRAMES:
                cam.waiting.popleft()
                cam.dropped += 1
        self._executor.submit(self._analyse_next, cam)

    def _analyse_next(self, cam: _Camera) -> None:
        """On the analysis thread: the oldest waiting frame of ``cam``."""
        with cam.lock:
            if not cam.waiting:
                return
            ts, data = cam.waiting.popleft()
        try:
            outputs = cam.analyzer.process_bytes(ts, data)
            cam.frames += 1
            jpeg = None
            if ts >= cam.next_snapshot:
                cam.next_snapshot = ts + cam.config.snapshot_interval_s
                jpeg = annotated_jpeg(cam.analyzer)
        except Exception:  # a bad frame must never stop the service
            log.exception("cameras: analysing a frame of %s failed", cam.config.id)
            return
        if self._loop is not None and (outputs or jpeg is not None):
            self._loop.call_soon_threadsafe(self._deliver, cam, outputs, jpeg)

    async def _watchdog(self) -> None:
        """Report ``no_frames`` for MQTT cameras that went quiet (and clear it when they return)."""
        assert self._ctx is not None
        started = self._ctx.clock()
        while True:
            await asyncio.sleep(1.0)
            now = self._ctx.clock()
            for camera_id in self._mqtt_ids:
                cam = self.cameras[camera_id]
                last = cam.last_frame_at if cam.last_frame_at is not None else started
                missing = now - last >= self.no_frames_after_s
                if missing != cam.missing:
                    cam.missing = missing
                    fut = self._executor.submit(cam.analyzer.no_frames, now, missing)
                    self._deliver(cam, await asyncio.wrap_future(fut), None)

    # ------------------------------------------------------------------------------ worker cameras

    def _run_supervisor(self) -> None:
        assert self._supervisor is not None
        self._supervisor.run(stop=self._stopping.is_set)

    def _from_worker(self, camera_id: str, item: Output | Snapshot) -> None:
        """Supervisor thread → event loop."""
        cam = self.cameras.get(camera_id)
        if cam is None or self._loop is None:
            return
        if isinstance(item, Snapshot):
            self._loop.call_soon_threadsafe(self._deliver, cam, [], item.jpeg)
        else:
            self._loop.call_soon_threadsafe(self._deliver, cam, [item], None)

    # ------------------------------------------------------------------------------ out

    def _deliver(self, cam: _Camera, outputs: list[Output], jpeg: bytes | None) -> None:
        """On the event loop: publish, remember, and feed the engine."""
        assert self._ctx is not None
        if self._stopping.is_set():  # queued from a thread while the service was stopping
            return
        messages: list[Message] = []
        for o in outputs:
            messages.append(output_message(o, prefix=self.prefix))
            with cam.lock:
                cam.updated = o.payload.get("ts")
                if o.kind == "stats":
                    cam.stats = o.payload
                elif o.kind == "health":
                    cam.health = {
                        k: o.payload.get(k)
                        for k in ("status", "reasons", "since", "detail")
                        if k in o.payload
                    }
            if o.kind == "stats" and self.feed_engine:
                readings = zone_readings(o.payload, cam.config)
                if readings:
                    topic = f"{self.prefix}cameras/{cam.config.id}/stats"
                    result = self._ctx.pipeline.parser.parse_object(readings, topic=topic)
                    messages.extend(self._ctx.pipeline.accept(result))
        if jpeg is not None:
            cam.snapshot = jpeg
            messages.append(snapshot_message(cam.config.id, jpeg, prefix=self.prefix))
        if messages:
            self._ctx.publish(messages)


def _user_ts(properties: Any) -> float | None:
    """The frame's capture time from the MQTT v5 user property ``ts`` (epoch ms), if valid."""
    pairs = getattr(properties, "UserProperty", None) or []
    for key, value in pairs:
        if key == "ts":
            try:
                ms = float(value)
            except ValueError:
                return None
            return ms / 1000.0 if ms > 0 else None
    return None


def _rejection(prefix: str, topic: str, reason: str, ts: float) -> Message:
    import json

    body = {"topic": topic, "reason": reason, "code": "unknown_camera", "payload_excerpt": "", "ts": ts}
    return Message(f"{prefix}rejected", json.dumps(body).encode())


def camera_component(settings: Settings) -> CameraComponent | None:
    """The component for the configured cameras, or None when there are none."""
    if not settings["camera"]["enabled"]:
        return None
    from .inputs import configured_cameras

    cameras = configured_cameras(settings)
    return CameraComponent(settings, cameras) if cameras else None
