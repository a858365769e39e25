"""Blob tracking on the foreground mask: speeds, counting-line crossings, stopped and wrong-way
vehicles.

Blobs are connected components of the foreground; each is followed by its bottom-centre point (the
part of a vehicle that touches the road, so the homography applies to it), matched greedily to the
nearest predicted track position. Cheap and good enough for lane-level measurements; where two
vehicles merge into one blob, the zones' loop counts (``zones.py``) still count both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .config import CountingLine
from .geometry import GroundPlane, segment_crossing


@dataclass
class Track:
    id: int
    ts: float
    point: np.ndarray  # image, analysis scale
    velocity: np.ndarray  # px/s
    first_ts: float
    hits: int = 1
    missed_since: float | None = None
    crossed: set[str] = field(default_factory=set)
    #: zone index -> [(ts, ground x, ground y, image x, image y)] in the current interval
    in_zone: dict[int, list[tuple[float, float, float, float, float]]] = field(default_factory=dict)
    #: for stopped-vehicle detection: where the track last settled and since when
    anchor: np.ndarray | None = None
    anchor_ts: float = 0.0
    #: image displacement along each zone's travel direction, for wrong-way detection
    along: dict[int, float] = field(default_factory=dict)
    flagged: set[str] = field(default_factory=set)
    zone_now: int = -1
    bbox: tuple[int, int, int, int] = (0, 0, 0, 0)


@dataclass
class LineCounter:
    line: CountingLine
    a: np.ndarray
    b: np.ndarray
    direction: np.ndarray
    count: int = 0


class Tracker:
    def __init__(
        self,
        shape: tuple[int, int],
        factor: int,
        ground: GroundPlane | None,
        zone_label: np.ndarray,
        lines: tuple[CountingLine, ...],
        *,
        min_area_px: int | None = None,
        lost_after_s: float = 0.3,
    ) -> None:
        h, w = shape
        self.shape = shape
        self.ground = ground
        self.zone_label = zone_label  # int16 image: zone index or -1
        self.min_area_px = min_area_px or max(6, int(0.0006 * h * w))
        self.lost_after_s = lost_after_s
        self.tracks: list[Track] = []
        #: Tracks dropped by the last update (their zone observations are final).
        self.ended: list[Track] = []
        self._next_id = 1
        self.lines = [
            LineCounter(
                ln,
                np.asarray(ln.points[0], dtype=np.float64) / factor,
                np.asarray(ln.points[1], dtype=np.float64) / factor,
                np.asarray(ln.direction, dtype=np.float64),
            )
            for ln in lines
        ]

    def update(self, ts: float, fg: np.ndarray) -> list[Track]:
        """Match this frame's blobs to tracks; returns the live tracks."""
        n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        blobs: list[tuple[np.ndarray, tuple[int, int, int, int]]] = []
        min_area = self.min_area_px
        for k in range(1, n):
            x, y, bw, bh, area = (int(v) for v in stats[k])
            if area >= min_area:
                blobs.append((np.array([x + bw / 2.0, y + bh - 1.0]), (x, y, bw, bh)))
        used = [False] * len(blobs)
        for tr in sorted(self.tracks, key=lambda t: -t.hits):
            dt = ts - tr.ts
            pred = tr.point + tr.velocity * dt
            best, best_d = -1, math.inf
            for j, (p, bb) in enumerate(blobs):
                if used[j]:
                    continue
                d = float(np.hypot(*(p - pred)))
                gate = max(6.0, 0.7 * math.hypot(bb[2], bb[3]))
                if d < gate and d < best_d:
                    best, best_d = j, d
            if best >= 0:
                used[best] = True
                p, bb = blobs[best]
                self._move(tr, ts, p, bb)
            elif tr.missed_since is None:
                tr.missed_since = ts
        for j, (p, bb) in enumerate(blobs):
            if not used[j]:
                self.tracks.append(
                    Track(self._next_id, ts, p, np.zeros(2), ts, bbox=bb, anchor=p, anchor_ts=ts)
                )
                self._next_id += 1
        keep = [t for t in self.tracks if t.missed_since is None or ts - t.missed_since < self.lost_after_s]
        self.ended = [
            t for t in self.tracks if not (t.missed_since is None or ts - t.missed_since < self.lost_after_s)
        ]
        self.tracks = keep
        self._observe(ts)
        return self.tracks

    def _move(self, tr: Track, ts: float, p: np.ndarray, bb: tuple[int, int, int, int]) -> None:
        dt = ts - tr.ts
        if dt > 0:
            tr.velocity = 0.6 * tr.velocity + 0.4 * (p - tr.point) / dt
        if tr.hits >= 2:
            for lc in self.lines:
                if lc.line.id not in tr.crossed and segment_crossing(tr.point, p, lc.a, lc.b):
                    if float(np.dot(p - tr.point, lc.direction)) > 0:
                        lc.count += 1
                    tr.crossed.add(lc.line.id)
        if tr.anchor is None or float(np.hypot(*(p - tr.anchor))) > 1.5:
            tr.anchor, tr.anchor_ts = p, ts
        tr.point, tr.ts, tr.bbox = p, ts, bb
        tr.hits += 1
        tr.missed_since = None

    def _observe(self, ts: float) -> None:
        """Record each seen track's ground position in the zone it stands in."""
        h, w = self.shape
        seen = [t for t in self.tracks if t.missed_since is None and t.ts == ts]
        if not seen:
            return
        pts = np.array([t.point for t in seen])
        ground = self.ground.to_ground(pts) if self.ground is not None else pts
        for t, p, gp in zip(seen, pts, ground, strict=True):
            x, y = min(max(int(p[0]), 0), w - 1), min(max(int(p[1]), 0), h - 1)
            z = int(self.zone_label[y, x])
            t.zone_now = z
            if z >= 0:
                t.in_zone.setdefault(z, []).append((ts, float(gp[0]), float(gp[1]), float(p[0]), float(p[1])))

    def take_line_counts(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = [{"line_id": lc.line.id, "count": lc.count} for lc in self.lines]
        for lc in self.lines:
            lc.count = 0
        return out


def track_speed_kmh(obs: list[tuple[float, float, float, float, float]]) -> float | None:
    """Speed of one vehicle from its ground positions: least-squares slope of position on time."""
    if len(obs) < 4:
        return None
    a = np.asarray(obs)
    t = a[:, 0] - a[0, 0]
    if t[-1] < 0.2:
        return None
    vx = np.polyfit(t, a[:, 1], 1)[0]
    vy = np.polyfit(t, a[:, 2], 1)[0]
    speed = float(math.hypot(vx, vy)) * 3.6
    return speed if speed <= 250 else None
