"""``roadpulse camera-replay`` and ``roadpulse camera-worker``: argument handling and output.

The analysis lives in ``camera/``; this module turns flags into calls and errors into one-line
reasons (``UsageError``, exit status 2) that name the file or key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .inputs import UsageError


def add_camera_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    replay = sub.add_parser(
        "camera-replay",
        help="camera analytics over recorded frames",
        description="Run the camera analytics over a folder of images (name order) or a video file "
        "and write the stats, health and incident messages it would publish, one per line.",
    )
    replay.add_argument("--camera", required=True, metavar="TOML", help="camera file ([camera] table)")
    replay.add_argument("--frames", required=True, metavar="DIR_OR_VIDEO", help="image folder or video file")
    replay.add_argument(
        "--out", required=True, metavar="JSONL", help="messages out, one per line ('-': stdout)"
    )
    replay.add_argument(
        "--fps",
        type=float,
        help="frame rate for ts = frame index ÷ fps (default: the camera file's, else the video's own)",
    )
    replay.add_argument("--prefix", default="traffic/", help="topic prefix (default traffic/)")
    replay.set_defaults(handler=cmd_camera_replay)

    worker = sub.add_parser(
        "camera-worker",
        help="run many cameras, one process per core, publishing stats (and zone readings) on MQTT",
        description="Analyse the cameras of the given camera files (and of config.toml's [[cameras]] "
        "and camera.files) whose source is a file, folder or stream, spread over worker processes. "
        "A camera whose source hangs or crashes its process is restarted with backoff and reported "
        "unhealthy (decoder_error); the others keep running.",
    )
    worker.add_argument(
        "--config", metavar="TOML", help="configuration file (default: ./config.toml if present)"
    )
    worker.add_argument(
        "--camera", action="append", default=[], metavar="TOML", help="camera file (repeatable)"
    )
    worker.add_argument("--processes", type=int, default=0, help="worker processes (default: one per core)")
    worker.add_argument("--broker", metavar="HOST:PORT", help="MQTT broker (overrides mqtt.host/port)")
    worker.add_argument(
        "--out", metavar="JSONL", help="write messages to this file ('-': stdout) instead of MQTT"
    )
    worker.add_argument("--duration", type=float, default=0.0, metavar="S", help="stop after S seconds")
    worker.add_argument(
        "--realtime",
        action="store_true",
        help="pace file sources at their frame rate (default: as fast as possible)",
    )
    worker.set_defaults(handler=cmd_camera_worker)


def cmd_camera_replay(args: argparse.Namespace) -> int:
    from camera.config import CameraConfigError, load_camera_file
    from camera.messages import output_message
    from camera.replay import replay_outputs
    from camera.sources import SourceError
    from publishers.jsonl_sink import JsonlSink

    if args.fps is not None and not 0 < args.fps <= 1000:
        raise UsageError(f"--fps: expected a frame rate in 0..1000, got {args.fps:g}")
    try:
        config = load_camera_file(args.camera)
    except CameraConfigError as exc:
        raise UsageError(str(exc)) from None
    if not Path(args.frames).exists():
        raise UsageError(f"{args.frames}: no such file or folder (--frames)")
    try:
        with JsonlSink(args.out) as sink:
            n = 0
            for output in replay_outputs(config, args.frames, fps=args.fps):
                sink.write([output_message(output, prefix=args.prefix)])
                n += 1
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # geometry problems (a zone outside the frame, a degenerate homography)
        raise UsageError(f"{args.camera}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{exc.filename or args.out}: {exc.strerror or exc}") from None
    print(f"wrote {n} messages", file=sys.stderr)
    return 0


def cmd_camera_worker(args: argparse.Namespace) -> int:
    import signal
    import time

    from camera.config import CameraConfigError, check_unique_ids, load_camera_file
    from camera.worker import CameraJob, CameraSupervisor

    from .config import load_config, parse_host_port
    from .inputs import configured_cameras

    path = args.config or ("config.toml" if Path("config.toml").is_file() else None)
    overrides: dict[str, object] = {}
    if args.broker:
        host, port = parse_host_port(args.broker, key="--broker")
        overrides.update({"mqtt.host": host, "mqtt.port": port})
    settings = load_config(path, overrides=overrides)
    try:
        cameras = [load_camera_file(p) for p in args.camera] + configured_cameras(settings)
        check_unique_ids(cameras)
    except CameraConfigError as exc:
        raise UsageError(str(exc)) from None
    cameras = [c for c in cameras if c.source != "mqtt"]
    if not cameras:
        raise UsageError(
            "no camera with a file, folder or stream source (--camera FILE, [[cameras]] or camera.files); "
            "MQTT cameras are served by `roadpulse run`"
        )
    if args.processes < 0:
        raise UsageError(f"--processes: expected 0 (one per core) or more, got {args.processes}")
    epoch_base = time.time()
    jobs = [CameraJob(c, realtime=args.realtime, epoch_base=epoch_base) for c in cameras]
    sink = _WorkerSink(
        settings, args.out, feed_engine=bool(settings["camera"]["feed_engine"]), cameras=cameras
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    supervisor = CameraSupervisor(
        jobs,
        sink.deliver,
        processes=args.processes or int(settings["camera"]["processes"]),
        hang_after_s=float(settings["camera"]["hang_after_s"]),
    )
    print(
        f"roadpulse camera-worker: {len(jobs)} camera(s) over {min(supervisor.processes, len(jobs))} "
        f"process(es), output to {sink.describe()}",
        file=sys.stderr,
        flush=True,
    )
    try:
        supervisor.run(stop=lambda: stopping, duration_s=args.duration)
    finally:
        sink.close()
    for event in supervisor.stats.events:
        print(f"note: {event}", file=sys.stderr)
    return 0


class _WorkerSink:
    """Where the worker's outputs go: a JSONL file, or MQTT (stats, health, incidents, snapshots,
    and the zone readings on ``detectors/batch`` for a running engine)."""

    def __init__(self, settings: Any, out: str | None, *, feed_engine: bool, cameras: list[Any]) -> None:
        from publishers.jsonl_sink import JsonlSink

        self.prefix: str = settings["mqtt"]["prefix"]
        self.feed_engine = feed_engine
        self.configs = {c.id: c for c in cameras}
        self._file: JsonlSink | None = None
        self._client: Any = None
        self._where = out or f"mqtt://{settings['mqtt']['host']}:{settings['mqtt']['port']}"
        if out:
            try:
                self._file = JsonlSink(out).__enter__()
            except OSError as exc:
                raise UsageError(f"{out}: {exc.strerror or exc}") from None
        else:
            self._client = _paho_client(settings)

    def describe(self) -> str:
        return self._where

    def deliver(self, camera_id: str, item: Any) -> None:
        import json

        from camera.messages import output_message, snapshot_message, zone_readings
        from camera.worker import Snapshot
        from publishers.message import Message

        if isinstance(item, Snapshot):
            messages = [snapshot_message(camera_id, item.jpeg, prefix=self.prefix)]
        else:
            messages = [output_message(item, prefix=self.prefix)]
            if item.kind == "stats" and self.feed_engine:
                readings = zone_readings(item.payload, self.configs[camera_id])
                if readings:
                    body = json.dumps(readings, separators=(",", ":")).encode()
                    messages.append(Message(f"{self.prefix}detectors/batch", body, qos=1))
        if self._file is not None:
            self._file.write(m for m in messages if not m.topic.endswith("/snapshot"))
        elif self._client is not None:
            for m in messages:
                self._client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)

    def close(self) -> None:
        if self._file is not None:
            self._file.__exit__(None, None, None)
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()


def _paho_client(settings: Any) -> Any:
    import os

    import paho.mqtt.client as paho

    cfg = settings["mqtt"]
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=f"{cfg['client_id']}-camera-worker-{os.getpid()}"
    )
    if cfg["username"]:
        password = os.environ.get(cfg["password_env"]) if cfg["password_env"] else None
        client.username_pw_set(cfg["username"], password)
    try:
        client.connect(cfg["host"], int(cfg["port"]), keepalive=int(cfg["keepalive_s"]))
    except OSError as exc:
        raise UsageError(f"MQTT broker {cfg['host']}:{cfg['port']}: {exc.strerror or exc}") from None
    client.loop_start()
    return client
