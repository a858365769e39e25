"""Many cameras over a few processes: one worker process per core, each analysing several cameras
in turn, watched by a supervisor in the parent.

Why processes, and why a supervisor: decoding is where cameras fail badly. Some files make
OpenCV's FFmpeg backend abort the whole process, and a stream can block a read forever. Each
worker writes, before every frame, which camera it is serving (``slot``) and when (``heartbeat``).
When a worker dies (any exit but a clean one) or its heartbeat goes stale (``hang_after_s``), the
supervisor kills it, blames the camera in its slot, and:

- restarts the *other* cameras of that worker at once in a new worker, from the frame they had
  reached (they lose only the frames in flight);
- reports the blamed camera ``failed`` / ``decoder_error`` and restarts it on its own, in its own
  process, after a backoff (1 s, 2 s, 4 s … up to ``max_backoff_s``), past the frame that broke it.

Nothing here imports the engine; outputs reach the caller through ``on_output(camera_id, item)``
where ``item`` is an ``Output`` or a ``Snapshot``.
"""

from __future__ import annotations

import importlib
import math
import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .analyzer import AnalysisSettings, CameraAnalyzer, Output
from .config import CameraConfig
from .sources import Frame, SourceError, capture_fps, open_capture, open_source

SourceFactory = Callable[[CameraConfig, int], tuple[Iterator[Frame], float | None]]


@dataclass(frozen=True)
class Snapshot:
    camera_id: str
    jpeg: bytes


@dataclass(frozen=True)
class CameraJob:
    config: CameraConfig
    #: "module:function" returning (frames, fps) for (config, start_index): a custom frame source
    #: (a vendor SDK, or a test's failing source). None: the config's ``source``.
    source_factory: str | None = None
    fps: float | None = None
    #: Pace file sources at their frame rate (as a live camera would deliver them).
    realtime: bool = False
    #: Start of the footage's time axis (epoch s): ts = epoch_base + index / fps for files.
    epoch_base: float = 0.0
    #: Seconds of footage between annotated snapshots; 0: none.
    snapshots: bool = True


@dataclass
class _CameraState:
    job: CameraJob
    index: int
    progress: int = 0  # next frame index to read
    done: bool = False
    failures: int = 0
    retry_at: float | None = None


@dataclass
class _Worker:
    process: Any
    cameras: list[int]
    slot: Any
    heartbeat: Any
    solo: bool = False


@dataclass
class SupervisorStats:
    crashes: int = 0
    hangs: int = 0
    restarts: int = 0
    events: list[str] = field(default_factory=list)


def _default_processes() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


class CameraSupervisor:
    """Runs ``jobs`` over ``processes`` workers; call ``poll()`` repeatedly (or ``run()``)."""

    def __init__(
        self,
        jobs: list[CameraJob],
        on_output: Callable[[str, Output | Snapshot], None],
        *,
        processes: int = 0,
        hang_after_s: float = 10.0,
        max_backoff_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        start_method: str = "spawn",
    ) -> None:
        self.ctx: Any = mp.get_context(start_method)
        self.cameras = [_CameraState(job, k) for k, job in enumerate(jobs)]
        self.on_output = on_output
        self.processes = processes or _default_processes()
        self.hang_after_s = hang_after_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self.queue: Any = self.ctx.Queue(maxsize=10_000)
        self.progress: Any = self.ctx.Array("q", len(jobs), lock=False)
        self.workers: list[_Worker] = []
        self.stats = SupervisorStats()

    # ------------------------------------------------------------------------------ life cycle

    def start(self) -> None:
        groups: list[list[int]] = [[] for _ in range(min(self.processes, max(len(self.cameras), 1)))]
        for cam in self.cameras:
            groups[cam.index % len(groups)].append(cam.index)
        for group in groups:
            if group:
                self._spawn(group)

    def _spawn(self, cameras: list[int], *, solo: bool = False) -> None:
        slot = self.ctx.Value("i", -1, lock=False)
        heartbeat = self.ctx.Value("d", time.monotonic(), lock=False)
        starts = [(k, self.cameras[k].progress) for k in cameras]
        jobs = [self.cameras[k].job for k in cameras]
        process = self.ctx.Process(
            target=_worker_main,
            args=(jobs, starts, self.queue, slot, heartbeat, self.progress),
            name=f"camera-worker-{'-'.join(str(k) for k in cameras)}",
            daemon=True,
        )
        process.start()
        self.workers.append(_Worker(process, list(cameras), slot, heartbeat, solo))

    @property
    def finished(self) -> bool:
        return all(c.done for c in self.cameras)

    def run(self, *, stop: Callable[[], bool] = lambda: False, duration_s: float = 0.0) -> None:
        self.start()
        t_end = time.monotonic() + duration_s if duration_s > 0 else math.inf
        try:
            while not self.finished and not stop() and time.monotonic() < t_end:
                self.poll(0.2)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        for w in self.workers:
            if w.process.is_alive():
                w.process.terminate()
        for w in self.workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
        self._drain(0.0)
        self.workers = []

    # ------------------------------------------------------------------------------ polling

    def poll(self, timeout_s: float = 0.2) -> None:
        """Deliver queued outputs, then look after dead or hung workers and due restarts."""
        self._drain(timeout_s)
        now_mono = time.monotonic()
        for w in list(self.workers):
            code = w.process.exitcode
            hung = code is None and now_mono - w.heartbeat.value > self.hang_after_s and w.slot.value >= 0
            if code is None and not hung:
                continue
            if code == 0:
                self._drain(0.0)
                w.process.join()
                self.workers.remove(w)
                continue
            if hung:
                self.stats.hangs += 1
                w.process.kill()
            else:
                self.stats.crashes += 1
            w.process.join(timeout=5)
            self._drain(0.0)
            self.workers.remove(w)
            self._recover(w, hung=hung, code=w.process.exitcode)
        now = self.clock()
        due = [c for c in self.cameras if c.retry_at is not None and now >= c.retry_at]
        for cam in due:
            cam.retry_at = None
            self.stats.restarts += 1
            self._spawn([cam.index], solo=True)

    def _recover(self, w: _Worker, *, hung: bool, code: int | None) -> None:
        culprit = w.slot.value
        for k in w.cameras:
            self.cameras[k].progress = max(self.cameras[k].progress, int(self.progress[k]))
        if culprit < 0 or culprit not in w.cameras:
            culprit = w.cameras[0] if len(w.cameras) == 1 else -1
        innocent = [k for k in w.cameras if k != culprit and not self.cameras[k].done]
        if innocent:
            self.stats.restarts += 1
            self._spawn(innocent)
        if culprit < 0:
            return
        cam = self.cameras[culprit]
        if cam.done:
            return
        cam.failures += 1
        backoff = min(self.max_backoff_s, 2.0 ** (cam.failures - 1))
        cam.retry_at = self.clock() + backoff
        # Skip the frame that broke the decoder (files); a stream simply reconnects.
        broke_at = cam.progress
        cam.progress += 1
        why = f"hung (no progress for {self.hang_after_s:g} s)" if hung else f"crashed ({_exit_reason(code)})"
        event = f"camera {cam.job.config.id}: decoder {why} at frame {broke_at}; restarting in {backoff:g} s"
        self.stats.events.append(event)
        now = self.clock()
        payload = {
            "camera_id": cam.job.config.id,
            "ts": round(now, 3),
            "status": "failed",
            "reasons": ["decoder_error"],
            "since": round(now, 3),
            "detail": event,
        }
        self.on_output(cam.job.config.id, Output("health", payload))

    def _drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                item = self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
            except queue.Empty:
                return
            except (EOFError, OSError):
                return
            kind, k, body = item
            cam = self.cameras[k]
            if kind == "done":
                if _is_stream(cam.job):  # a stream that ended has dropped: connect again
                    self._retry(cam, "stream ended")
                else:
                    cam.done = True
            elif kind == "output":
                if body.kind == "stats":
                    cam.failures = 0  # working again: the next failure starts the backoff afresh
                self.on_output(cam.job.config.id, body)
            elif kind == "snapshot":
                self.on_output(cam.job.config.id, Snapshot(cam.job.config.id, body))
            elif kind == "error":
                if _is_stream(cam.job):  # a camera that is down now may be back later
                    self._retry(cam, str(body))
                else:
                    cam.done = True
                    self._report(cam, "no_frames", str(body))

    def _retry(self, cam: _CameraState, why: str) -> None:
        """A stream that could not be opened or dropped: report ``no_frames``, retry with backoff."""
        cam.failures += 1
        backoff = min(self.max_backoff_s, 2.0 ** (cam.failures - 1))
        cam.retry_at = self.clock() + backoff
        self._report(cam, "no_frames", f"camera {cam.job.config.id}: {why}; retrying in {backoff:g} s")

    def _report(self, cam: _CameraState, reason: str, detail: str) -> None:
        now = round(self.clock(), 3)
        payload = {
            "camera_id": cam.job.config.id, "ts": now, "status": "failed", "reasons": [reason],
            "since": now, "detail": detail,
        }  # fmt: skip
        self.on_output(cam.job.config.id, Output("health", payload))


def _is_stream(job: CameraJob) -> bool:
    return "://" in job.config.source and job.source_factory is None


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return f"signal {-code} {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


# ---------------------------------------------------------------------------------- the worker


def _open(job: CameraJob, start: int) -> tuple[Iterator[Frame], float | None]:
    if job.source_factory:
        module, _, name = job.source_factory.partition(":")
        factory: SourceFactory = getattr(importlib.import_module(module), name)
        return factory(job.config, start)
    source = job.config.source
    if source == "mqtt":
        raise SourceError(
            f"camera {job.config.id}: source 'mqtt' is served by the live service, not a worker"
        )
    if "://" in source:
        cap = open_capture(source)
        frames = _stream_frames(cap, start)
        return frames, capture_fps(cap)
    frames, fps = open_source(source)
    return _skip(frames, start), fps


def _skip(frames: Iterator[Frame], start: int) -> Iterator[Frame]:
    for f in frames:
        if f.index >= start:
            yield f


def _stream_frames(cap: Any, start: int) -> Iterator[Frame]:
    k = start
    try:
        while True:
            ok, picture = cap.read()
            if not ok or picture is None:
                return
            yield Frame(k, picture=picture, ts=time.time())
            k += 1
    finally:
        cap.release()


def _worker_main(
    jobs: list[CameraJob],
    starts: list[tuple[int, int]],
    out: Any,
    slot: Any,
    heartbeat: Any,
    progress: Any,
) -> None:
    """One worker process: serve its cameras in turn, a frame each, until all sources end."""
    import cv2

    from .annotate import annotated_jpeg

    cv2.setNumThreads(1)  # one process per core: OpenCV's own threads would only compete
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when workers stop
    active: list[dict[str, Any]] = []
    for job, (k, start) in zip(jobs, starts, strict=True):
        slot.value = k
        heartbeat.value = time.monotonic()
        try:
            frames, source_fps = _open(job, start)
        except (SourceError, OSError, ValueError) as exc:
            out.put(("error", k, str(exc)))
            continue
        cfg = job.config
        fps = job.fps or (cfg.fps if cfg.fps_given else None) or source_fps or cfg.fps
        analyzer = CameraAnalyzer(cfg, AnalysisSettings())
        active.append(
            {"k": k, "job": job, "frames": frames, "fps": fps, "an": analyzer, "next_snap": -math.inf,
             "n": start, "t0": time.time(), "i0": start}
        )  # fmt: skip
    while active:
        for cam in list(active):
            k, job, an = cam["k"], cam["job"], cam["an"]
            slot.value = k
            heartbeat.value = time.monotonic()
            try:
                frame = next(cam["frames"])
            except StopIteration:
                for o in an.flush(job.epoch_base + cam["n"] / cam["fps"]):
                    out.put(("output", k, o))
                out.put(("done", k, None))
                active.remove(cam)
                continue
            ts = frame.ts if frame.ts is not None else job.epoch_base + frame.index / cam["fps"]
            if job.realtime and frame.ts is None:
                delay = cam["t0"] + (frame.index - cam["i0"]) / cam["fps"] - time.time()
                if delay > 0:
                    time.sleep(min(delay, 1.0))
            outputs = (
                an.process_bytes(ts, frame.data)
                if frame.data is not None
                else (
                    an.process_picture(ts, frame.picture)
                    if frame.picture is not None
                    else an.decoder_error(ts)
                )
            )
            cam["n"] = frame.index + 1
            progress[k] = frame.index + 1
            for o in outputs:
                out.put(("output", k, o))
            if job.snapshots and ts >= cam["next_snap"]:
                cam["next_snap"] = ts + job.config.snapshot_interval_s
                jpeg = annotated_jpeg(an)
                if jpeg is not None:
                    out.put(("snapshot", k, jpeg))
    slot.value = -1
