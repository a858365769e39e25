"""g-factor calibration: each detector's effective vehicle length from its own history.

A single loop measures flow q and occupancy occ but no speed; speed follows from
v = q·g/occ, where g (the "g-factor") is the mean effective vehicle length — vehicle plus loop
length — of the vehicles passing. One global g is wrong for most loops: it varies with the truck
share, the loop's size and the controller's sensitivity by ±30 % (Jia, Chen, Coifman & Varaiya,
"The PeMS algorithms for accurate, real-time estimates of g-factors and speeds from single-loop
detectors", IEEE ITSC 2001). Their method, followed here: in intervals where the speed is known —
free flow, where every vehicle drives at about the free-flow speed — each interval yields one
estimate g_t = v·occ/q; a robust average of recent estimates is the detector's g.

The reference speed of an interval, in order of preference:

1. the detector's own measured speed (a dual loop: its g is measured directly, which tests and
   neighbours use);
2. the count-weighted mean measured speed of the *other* detectors on the same segment in the
   same tick (dual-loop neighbours: the lanes of one road share a speed, roughly);
3. in free flow — occupancy at most ``free_flow_max_occupancy_pct`` — the segment's free-flow
   speed (as the engine holds it: learned, or speed limit × fraction).

Estimates need ``min_count`` vehicles and occupancy at least ``min_occupancy_pct`` (occupancy is
coarse at low values: 0.1 % resolution is a large relative error), and each detector keeps the
last ``samples`` of them. g is their median once there are ``min_samples`` of them (otherwise the
configured global length), clipped to ``[min_length_m, max_length_m]``.

``fill_speeds`` then gives every reading with no speed, vehicles and occupancy the speed
q·g/occ with its detector's own g — the engine sees a speed as if the loop had measured one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from roadgraph.detectors import DetectorRegistry

from . import _health_kernels as hk
from .types import ReadingBatch


@dataclass(frozen=True)
class GFactorSettings:
    """Tuning of the calibration; every field is a key of ``[gfactor]``-like keys in ``[health]``."""

    #: Estimates kept per detector (a ring); g is their median.
    samples: int = 64
    #: Estimates needed before a detector's own g replaces the default.
    min_samples: int = 10
    #: Occupancy (%) at or below which an interval counts as free flow (Jia et al.: low occupancy).
    free_flow_max_occupancy_pct: float = 10.0
    #: Occupancy (%) below which an interval gives no estimate (resolution).
    min_occupancy_pct: float = 0.5
    #: Vehicles an interval needs to give an estimate.
    min_count: float = 2.0
    #: Range of plausible effective vehicle lengths (metres).
    min_length_m: float = 3.0
    max_length_m: float = 20.0
    #: Length used before a detector has enough estimates (the engine's global default).
    default_length_m: float = 6.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"[health] gfactor {f.name} = {value!r}: expected a finite number > 0")
        if not self.min_length_m < self.max_length_m:
            raise ValueError("[health] gfactor min_length_m must be below max_length_m")


class GFactorCalibrator:
    """Per-detector effective vehicle length; see the module docstring."""

    def __init__(self, detectors: DetectorRegistry, settings: GFactorSettings, *, n_segments: int) -> None:
        self.settings = settings
        self.detector_id = np.asarray(detectors.detector_id, dtype=object)
        self._segment = np.asarray(detectors.segment_index, dtype=np.int64)
        self._n_segments = int(n_segments)
        n = len(detectors)
        self._ring = np.full((n, int(settings.samples)), np.nan, dtype=np.float32)
        self._head = np.zeros(n, dtype=np.int64)
        self._n = np.zeros(n, dtype=np.int64)
        self._length_m = np.full(n, settings.default_length_m, dtype=np.float32)
        self._pending: list[ReadingBatch] = []

    @property
    def vehicle_length_m(self) -> np.ndarray:
        """Per detector: the effective vehicle length g (metres) in use (read-only copy)."""
        return self._length_m.copy()

    @property
    def calibrated(self) -> np.ndarray:
        """Per detector: True when g comes from its own history (enough estimates)."""
        return self._n >= self.settings.min_samples

    def reference_speeds(self, batch: ReadingBatch, segment_free_flow_kmh: np.ndarray) -> np.ndarray:
        """The reference speed (km/h) of every reading, per the module docstring (NaN: none)."""
        s = self.settings
        own = batch.speed_kmh.astype(np.float64)
        measured = np.isfinite(own) & (batch.count > 0)
        seg = self._segment[batch.detector_index]
        w = np.where(measured, batch.count, 0.0)
        sum_w = np.bincount(seg, weights=w, minlength=self._n_segments)
        sum_wv = np.bincount(seg, weights=np.where(measured, w * own, 0.0), minlength=self._n_segments)
        # Others on the segment: remove the reading's own contribution.
        other_w = sum_w[seg] - w
        other_wv = sum_wv[seg] - np.where(measured, w * own, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            sibling = np.where(other_w > 0, other_wv / other_w, np.nan)
        free = np.where(
            batch.occupancy_pct <= s.free_flow_max_occupancy_pct, segment_free_flow_kmh[seg], np.nan
        )
        return np.where(np.isfinite(own), own, np.where(np.isfinite(sibling), sibling, free))

    def add_readings(self, batch: ReadingBatch) -> None:
        """Buffer raw readings (before ``fill_speeds``) for the next ``calibrate``."""
        if len(batch):
            self._pending.append(batch)

    def calibrate(
        self, tick_ts: float, segment_free_flow_kmh: np.ndarray, usable: np.ndarray | None = None
    ) -> None:
        """Observe the buffered readings with ``ts <= tick_ts`` (those of detectors marked usable:
        a faulty loop must not teach its g), keeping later ones for a later tick."""
        batch = ReadingBatch.concat(self._pending)
        due = batch.ts <= tick_ts
        self._pending = [] if due.all() else [batch.take(~due)]
        if usable is not None:
            due &= np.asarray(usable, dtype=bool)[batch.detector_index]
        self.observe(batch.take(due), segment_free_flow_kmh)

    def observe(self, batch: ReadingBatch, segment_free_flow_kmh: np.ndarray) -> None:
        """Add the estimates of a batch of readings, then update the lengths of their detectors."""
        if len(batch) == 0:
            return
        s = self.settings
        ref = self.reference_speeds(batch, np.asarray(segment_free_flow_kmh, dtype=np.float64))
        g = np.empty(len(batch), dtype=np.float64)
        hk.gfactor_samples(
            batch.count.astype(np.float64),
            batch.occupancy_pct.astype(np.float64),
            batch.interval_s.astype(np.float64),
            ref,
            s.min_count,
            s.min_occupancy_pct,
            100.0,
            g,
        )
        ok = np.isfinite(g) & (g >= s.min_length_m * 0.5) & (g <= s.max_length_m * 2)
        dets = batch.detector_index[ok]
        vals = g[ok]
        hk.gfactor_push(self._ring, self._head, self._n, dets.astype(np.int64), vals.astype(np.float32))
        touched = np.unique(dets)
        if len(touched):
            ready = touched[self._n[touched] >= s.min_samples]
            if len(ready):
                med = np.nanmedian(self._ring[ready], axis=1)
                self._length_m[ready] = np.clip(med, s.min_length_m, s.max_length_m)

    def fill_speeds(self, batch: ReadingBatch) -> ReadingBatch:
        """The batch with a speed q·g/occ for every reading that has vehicles and occupancy but no
        speed, g being its detector's length; other readings unchanged (a new batch if any
        changed, the same object otherwise)."""
        need = ~np.isfinite(batch.speed_kmh) & (batch.count > 0) & (batch.occupancy_pct > 0)
        if not need.any():
            return batch
        speed = batch.speed_kmh.copy()
        rows = np.flatnonzero(need)
        g = self._length_m[batch.detector_index[rows]].astype(np.float64)
        flow_veh_s = batch.count[rows] / batch.interval_s[rows]
        speed[rows] = (flow_veh_s * g / (batch.occupancy_pct[rows] / 100.0) * 3.6).astype(np.float32)
        return ReadingBatch(
            batch.detector_index,
            batch.ts,
            batch.interval_s,
            batch.count,
            batch.occupancy_pct,
            speed,
            batch.lane,
        )

    def export_state(self) -> dict[str, Any]:
        return {
            "version": 1,
            "detector_id": [str(d) for d in self.detector_id],
            "ring": self._ring.copy(),
            "head": self._head.copy(),
            "n": self._n.copy(),
            "length_m": self._length_m.copy(),
        }

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore ``export_state``'s output, matching detectors by id."""
        if state.get("version") != 1:
            raise ValueError(f"g-factor state: version {state.get('version')!r}, expected 1")
        ring = np.asarray(state["ring"])
        if ring.shape[1] != self._ring.shape[1]:
            raise ValueError(
                f"g-factor state: {ring.shape[1]} samples per detector, expected {self._ring.shape[1]}"
            )
        pos = {str(d): k for k, d in enumerate(self.detector_id)}
        pairs = [(i, pos[str(d)]) for i, d in enumerate(state["detector_id"]) if str(d) in pos]
        src = np.array([i for i, _ in pairs], dtype=np.int64)
        dst = np.array([k for _, k in pairs], dtype=np.int64)
        self._ring[dst] = ring[src]
        self._head[dst] = np.asarray(state["head"])[src]
        self._n[dst] = np.asarray(state["n"])[src]
        self._length_m[dst] = np.asarray(state["length_m"])[src]
