"""One camera's analysis: frames in (encoded bytes or decoded pictures), messages out.

The pipeline for a frame reads like a sentence: decode at reduced scale → health checks →
foreground (background model) → zones (occupancy, loop count, queue) → tracks (speeds, lines,
stopped and wrong-way vehicles). At the end of each stats interval it emits the spec's stats
message (docs/interfaces.md §4); whenever the health status or reasons change, a health message;
stopped and wrong-way vehicles become incidents.

Intervals fall on multiples of ``interval_s`` of the frame time; the stats ``ts`` is the interval's
end. Frames while the camera is unhealthy are not measured, and an interval with any unhealthy
frame is marked so (``health`` lists every reason seen), and feeds nothing into congestion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .background import Background
from .config import CameraConfig
from .geometry import GroundPlane, zone_geometry
from .health import ALL_REASONS, HealthMonitor, HealthSettings, health_status
from .tracking import Tracker, track_speed_kmh
from .zones import ZoneBank, ZoneMeter

#: Analyse at about this width (pixels): the largest JPEG DCT reduction that keeps it.
TARGET_WIDTH = 160
_REDUCED_FLAG = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


@dataclass(frozen=True)
class Output:
    """Something to publish: ``kind`` is stats, health or incident; ``payload`` the spec dict."""

    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class AnalysisSettings:
    target_width: int = TARGET_WIDTH
    stopped_after_s: float = 60.0
    wrong_way_min_px: float = 12.0  # image displacement against the flow, at analysis scale
    wrong_way_min_s: float = 1.0
    health: HealthSettings = field(default_factory=HealthSettings)


def reduction_for(width: int, target_width: int = TARGET_WIDTH) -> int:
    for f in (8, 4, 2):
        if width / f >= target_width:
            return f
    return 1


class CameraAnalyzer:
    def __init__(
        self,
        config: CameraConfig,
        settings: AnalysisSettings | None = None,
        *,
        reference: np.ndarray | None = None,
    ) -> None:
        self.config = config
        self.settings = settings or AnalysisSettings()
        if reference is None and config.reference:
            reference = cv2.imread(config.reference, cv2.IMREAD_GRAYSCALE)
            if reference is None:
                raise ValueError(f"{config.origin}: reference picture {config.reference!r} cannot be read")
        self._reference_full = reference
        self.health = HealthMonitor(self.settings.health)
        self.background = Background(fps=config.fps)
        self.factor = 0
        self.frame_shape: tuple[int, int] | None = None  # full frame (h, w)
        self.shape: tuple[int, int] | None = None  # analysis (h, w)
        self.zones: list[ZoneMeter] = []
        self._bank = ZoneBank([])
        self.tracker: Tracker | None = None
        self.ground: GroundPlane | None = None
        self._prev: np.ndarray | None = None
        self._interval_end: float | None = None
        self._interval_reasons: set[str] = set()
        self._interval_frames = 0
        self._last_health: tuple[str, tuple[str, ...]] | None = None
        self._health_since = 0.0
        self._incidents: dict[str, dict[str, Any]] = {}
        self._direction_votes: list[np.ndarray] = []
        self.last_ts: float | None = None
        self.last_frame: np.ndarray | None = None
        #: the latest frame as delivered (encoded bytes, or a decoded picture), for snapshots
        self.last_data: bytes | None = None
        self.last_picture: np.ndarray | None = None
        self.last_fg: np.ndarray | None = None
        self.frames_seen = 0
        self.last_stats: dict[str, Any] | None = None
        self._pending: list[Output] = []
        #: Publish the first health state even when it is "ok": a retained health topic must say
        #: that the camera is fine (and a camera restarted after a failure, that it is back).
        self.announce_health = True
        # Speeds (zone index, km/h) of tracks that ended within the interval.
        self._finished: list[tuple[int, float]] = []

    # ------------------------------------------------------------------------------ set-up

    def _setup(self, full_shape: tuple[int, int], analysis_shape: tuple[int, int], factor: int) -> None:
        cfg = self.config
        self.frame_shape, self.shape, self.factor = full_shape, analysis_shape, factor
        self.ground = GroundPlane(cfg.homography, factor) if cfg.homography is not None else None
        label = np.full(analysis_shape, -1, dtype=np.int16)
        self.zones = []
        for k, z in enumerate(cfg.zones):
            geom = zone_geometry(z, analysis_shape, factor, self.ground)
            label.ravel()[geom.flat_index] = k
            self.zones.append(ZoneMeter(geom, cfg.occupied_fraction))
        self._bank = ZoneBank(self.zones)
        self.tracker = Tracker(analysis_shape, factor, self.ground, label, cfg.lines)
        self._direction_votes = [np.zeros(2) for _ in self.zones]
        if self._reference_full is not None:
            ref = cv2.resize(
                self._reference_full, (analysis_shape[1], analysis_shape[0]), interpolation=cv2.INTER_AREA
            )
            self.health = HealthMonitor(self.settings.health, reference=ref)
        self.health.ignore_for_view((label >= 0).astype(np.uint8))
        self.background = Background(fps=self.config.fps)
        self._prev = None

    def decode(self, data: bytes) -> np.ndarray | None:
        """Encoded JPEG/PNG → grey picture at analysis scale (None: it does not decode)."""
        buf = np.frombuffer(data, dtype=np.uint8)
        if self.factor == 0:
            full = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if len(buf) else None
            if full is None:
                return None
            f = reduction_for(full.shape[1], self.settings.target_width)
            small = cv2.imdecode(buf, _REDUCED_FLAG[f])
            if small is None:
                return None
            self._setup(full.shape[:2], small.shape[:2], f)
            return small
        img = cv2.imdecode(buf, _REDUCED_FLAG[self.factor]) if len(buf) else None
        if img is not None and img.shape != self.shape:
            # The camera changed resolution: start the analysis again at the new size.
            self.factor = 0
            return self.decode(data)
        return img

    def reduce(self, picture: np.ndarray) -> np.ndarray:
        """A decoded full-size picture (BGR or grey, e.g. from a video) → analysis scale grey."""
        grey = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY) if picture.ndim == 3 else picture
        h, w = grey.shape[:2]
        if self.factor == 0 or self.frame_shape != (h, w):
            f = reduction_for(w, self.settings.target_width)
            shape = (math.ceil(h / f), math.ceil(w / f))
            self._setup((h, w), shape, f)
        assert self.shape is not None
        if self.factor == 1:
            return grey
        return cv2.resize(grey, (self.shape[1], self.shape[0]), interpolation=cv2.INTER_AREA)

    # ------------------------------------------------------------------------------ frames

    def process_bytes(self, ts: float, data: bytes) -> list[Output]:
        frame = self.decode(data)
        if frame is None:
            return self.decoder_error(ts)
        self.last_data, self.last_picture = data, None
        return self.process(ts, frame)

    def process_picture(self, ts: float, picture: np.ndarray) -> list[Output]:
        """A decoded full-size picture (a video frame)."""
        self.last_data, self.last_picture = None, picture
        return self.process(ts, self.reduce(picture))

    def decoder_error(self, ts: float) -> list[Output]:
        """A frame that could not be decoded, or a source that failed, at ``ts``."""
        out = self._roll_interval(ts)
        self.health.note_decoder_error(ts)
        self._interval_reasons.add("decoder_error")
        out.extend(self._health_change(ts))
        return out

    def no_frames(self, ts: float, missing: bool) -> list[Output]:
        """The source delivered nothing for a while (live): report ``no_frames``."""
        out = self._roll_interval(ts) if missing else []
        self.health.note_no_frames(missing)
        if missing:
            self._interval_reasons.add("no_frames")
        out.extend(self._health_change(ts))
        return out

    def process(self, ts: float, frame: np.ndarray) -> list[Output]:
        """One analysis-scale grey frame at time ``ts`` (seconds)."""
        out = self._roll_interval(ts)
        self.frames_seen += 1
        prev = self._prev
        diff_prev = float(cv2.mean(cv2.absdiff(frame, prev))[0]) if prev is not None else 255.0
        self._prev = frame
        relearn = self.health.update(ts, frame, diff_prev, self.background.image, self.background.learning)
        if relearn:
            self.background.relearn(frame)
        fg = self.background.apply(frame)
        self.last_frame, self.last_fg, self.last_ts = frame, fg, ts
        reasons = self.health.active
        if reasons:
            self._interval_reasons.update(reasons)
        elif not self.background.learning:
            self._measure(ts, fg)
        out.extend(self._health_change(ts))
        out.extend(self._pending)
        self._pending = []
        return out

    def _measure(self, ts: float, fg: np.ndarray) -> None:
        self._interval_frames += 1
        fg_flat = fg.ravel()
        self._bank.update(ts, fg_flat)
        assert self.tracker is not None
        tracks = self.tracker.update(ts, fg)
        for t in self.tracker.ended:
            for k, obs in t.in_zone.items():
                v = track_speed_kmh(obs)
                if v is not None and v > 0.5:
                    self._finished.append((k, v))
        self._learn_directions(tracks)
        self._events(ts, tracks)

    def _learn_directions(self, tracks: list[Any]) -> None:
        for t in tracks:
            z = t.zone_now
            if z < 0 or self.zones[z].direction_known or t.hits < 5:
                continue
            speed = float(np.hypot(*t.velocity))
            if speed > 2.0:
                self._direction_votes[z] += t.velocity / speed
                if float(np.hypot(*self._direction_votes[z])) >= 20:
                    v = self._direction_votes[z]
                    self.zones[z].reorient((float(v[0]), float(v[1])))
                    self._bank.rebuild()

    # ------------------------------------------------------------------------------ incidents

    def _events(self, ts: float, tracks: list[Any]) -> None:
        s = self.settings
        live_keys = set()
        for t in tracks:
            z = t.zone_now
            if z < 0 or t.missed_since is not None:
                continue
            zone = self.zones[z]
            if t.anchor is not None and ts - t.anchor_ts >= s.stopped_after_s:
                key = f"stopped:{t.id}"
                live_keys.add(key)
                if key not in self._incidents:
                    self._open_incident(key, "stopped_vehicle", zone, t.anchor_ts, ts)
            if zone.direction_known:
                direction = zone.geom.axis_image
                obs = t.in_zone.get(z)
                if obs and len(obs) >= 3 and obs[-1][0] - obs[0][0] >= s.wrong_way_min_s:
                    along = (obs[-1][3] - obs[0][3]) * direction[0] + (obs[-1][4] - obs[0][4]) * direction[1]
                    key = f"wrong_way:{t.id}"
                    if along <= -s.wrong_way_min_px and key not in self._incidents:
                        self._open_incident(key, "wrong_way", zone, obs[0][0], ts)
                    if key in self._incidents:
                        live_keys.add(key)
        for key in list(self._incidents):
            inc = self._incidents[key]
            if key not in live_keys and inc["status"] == "active":
                inc["status"], inc["end"] = "cleared", ts
                self._pending.append(Output("incident", dict(inc)))
                del self._incidents[key]

    def _open_incident(self, key: str, kind: str, zone: ZoneMeter, start: float, ts: float) -> None:
        cfg = self.config
        z = zone.geom.zone
        what = "a stopped vehicle" if kind == "stopped_vehicle" else "a vehicle driving against the traffic"
        inc = {
            "incident_id": f"{cfg.id}-{z.id}-{kind}-{int(start * 1000)}",
            "type": kind,
            "segment_id": z.segment_id,
            "lon": cfg.lon,
            "lat": cfg.lat,
            "start": round(start, 3),
            "end": None,
            "status": "active",
            "source": "camera",
            "severity": 3 if kind == "wrong_way" else 2,
            "description": f"camera {cfg.id} sees {what} in zone {z.id} (lane {z.lane})",
            "camera_id": cfg.id,
            "zone_id": z.id,
        }
        self._incidents[key] = inc
        self._pending.append(Output("incident", dict(inc)))

    # ------------------------------------------------------------------------------ intervals

    def _roll_interval(self, ts: float) -> list[Output]:
        out: list[Output] = []
        interval = self.config.interval_s
        if self._interval_end is None:
            self._interval_end = (math.floor(ts / interval) + 1) * interval
        elif ts >= self._interval_end:
            out.append(self._stats(self._interval_end, interval))
            self._interval_end = (math.floor(ts / interval) + 1) * interval
        if self._pending:
            out.extend(self._pending)
            self._pending = []
        return out

    def flush(self, end_ts: float) -> list[Output]:
        """End of the footage: the partial interval up to ``end_ts``, if it holds frames."""
        out: list[Output] = list(self._pending)
        self._pending = []
        if self._interval_end is None:
            return out
        start = self._interval_end - self.config.interval_s
        length = min(end_ts, self._interval_end) - start
        if length > 0:
            out.append(self._stats(start + length, length))
        self._interval_end = None
        return out

    def _stats(self, end_ts: float, length_s: float) -> Output:
        reasons = set(self._interval_reasons) | self.health.active
        zones = []
        for k, z in enumerate(self.zones):
            values = z.take_interval()
            speeds = []
            if self.tracker is not None:
                for t in self.tracker.tracks:
                    v = track_speed_kmh(t.in_zone.get(k, []))
                    if v is not None and v > 0.5:
                        speeds.append(v)
                speeds.extend(v for zk, v in self._finished if zk == k)
            speed = len(speeds) / sum(1.0 / v for v in speeds) if speeds else None
            zones.append(
                {
                    "zone_id": z.geom.zone.id,
                    "count": values["count"],
                    "occupancy_pct": values["occupancy_pct"],
                    "speed_kmh": None if speed is None or self.ground is None else round(speed, 1),
                    "queue_m": values["queue_m"],
                }
            )
        if self.tracker is not None:
            for t in self.tracker.tracks:
                t.in_zone.clear()
            self._finished.clear()
        lines = (
            self.tracker.take_line_counts()
            if self.tracker is not None
            else [{"line_id": ln.id, "count": 0} for ln in self.config.lines]
        )
        ordered = [r for r in ALL_REASONS if r in reasons]
        payload = {
            "camera_id": self.config.id,
            "ts": _num(end_ts),
            "interval_s": _num(length_s),
            "zones": zones,
            "lines": lines,
            "health": {"status": health_status(ordered), "reasons": ordered},
            "frames": self._interval_frames,
        }
        self._interval_reasons = set()
        self._interval_frames = 0
        self.last_stats = payload
        return Output("stats", payload)

    def _health_change(self, ts: float) -> list[Output]:
        reasons = tuple(self.health.reasons)
        state = (health_status(reasons), reasons)
        if state == self._last_health:
            return []
        if self._last_health is None and not reasons and not self.announce_health:
            self._last_health = state
            self._health_since = ts
            return []
        self._last_health = state
        self._health_since = ts
        return [Output("health", self.health_payload(ts))]

    def health_payload(self, ts: float) -> dict[str, Any]:
        reasons = self.health.reasons
        return {
            "camera_id": self.config.id,
            "ts": _num(ts),
            "status": health_status(reasons),
            "reasons": reasons,
            "since": _num(self._health_since),
        }


def _num(x: float) -> float | int:
    r = round(x, 3)
    return int(r) if float(r).is_integer() else r
