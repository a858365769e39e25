"""The congestion engine: readings accumulate between ticks; each tick turns them into states.

Public API (stable for the wiring and sinks):

    engine = CongestionEngine(network, detectors, EngineSettings())
    engine.add_readings(batch)          # any number of times between ticks
    result = engine.tick(tick_ts)       # -> TickResult (states, city and district indices)

The engine never does I/O. It imports roadgraph for the network arrays only.

What one tick does
------------------
1. Takes every buffered reading with ``ts <= tick_ts``, whenever it arrived (a reading older than
   the previous tick is late, not wrong: it is used). Later readings stay buffered.
2. Gives each reading a **spot speed** and a weight in vehicle-equivalents:
   the measured ``speed_kmh`` when present (weight = count); else, with vehicles and occupancy,
   v = q·L/occ (q = count·3600/interval_s veh/h, L = ``effective_vehicle_length_m``, occ a
   fraction; weight = count); else, with no vehicles and occupancy ≤ ``empty_occupancy_max_pct``,
   the free-flow speed (an empty road; weight ``low_evidence_weight_veh``); else, with no vehicles
   and occupancy ≥ ``stopped_occupancy_min_pct``, ``stopped_speed_kmh`` (a queue standing on the
   loop; weight ``stopped_queue_weight_veh``); anything else is no evidence. Speeds are clamped to
   [1, ``max_speed_factor_of_limit`` × speed limit] km/h.
3. Per segment, the **speed** is the weight-weighted harmonic mean of its readings' spot speeds,
   which estimates the space-mean speed (Wardrop 1952; see ``_kernels.update_segments``). A
   segment without new evidence keeps its estimate until ``stale_after_s`` after the newest
   reading behind it, then becomes unknown (NaN speed, level 0). Evidence older than what a
   segment already holds does not replace it. No imputation yet: ``imputed`` is all False.
4. **tti** = free_flow / speed; **level** from r = speed / free_flow per ``levels``.
5. **confidence** = quality × freshness, where

       quality   = 0.5 · lanes_covered / lanes + 0.5 · W / (W + confidence_half_vehicles)
       freshness = 1 − age / stale_after_s,   age = tick_ts − ts of the newest reading used,

   ``lanes_covered`` = distinct known lanes that gave evidence plus distinct detectors of
   unknown lane (each taken to cover one lane), at most the segment's lanes; W = the weight of
   the evidence: vehicles counted, plus the fixed weights of empty-road and standing-queue
   readings. So a loop on every lane with 10
   vehicles, just read, gives 0.75; with 90 vehicles 0.95; one lane of three with 10 vehicles
   0.42; and each of these fades linearly to 0 as the estimate approaches staleness.
6. **Area indices** for the city and the districts, per ``index``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork

from . import _kernels
from .index import area_indices, check_districts, lane_length_weight
from .levels import RATIO_UPPER_BOUNDS
from .state import DetectorState, SegmentHeld, SegmentScratch
from .types import ReadingBatch, SegmentStates, TickResult


@dataclass(frozen=True)
class EngineSettings:
    """Tuning of the engine; every field is a key of ``[engine]`` in config.toml."""

    #: A segment keeps its last estimate this long without new readings, then becomes unknown.
    stale_after_s: float = 300.0
    #: Effective vehicle length (vehicle + loop, metres) used to derive speed from flow and
    #: occupancy when a detector reports no speed: v = q * g / occ.
    effective_vehicle_length_m: float = 6.0
    #: Free-flow speed as a fraction of the speed limit before any has been learned.
    free_flow_fraction_of_limit: float = 0.9
    #: With no vehicle counted, occupancy at or below this (%) means an empty road: free flow.
    empty_occupancy_max_pct: float = 1.0
    #: With no vehicle counted, occupancy at or above this (%) means a queue standing on the loop.
    stopped_occupancy_min_pct: float = 50.0
    #: Spot speed given to a queue standing on the loop (km/h).
    stopped_speed_kmh: float = 3.0
    #: Spot speeds are clamped to this multiple of the segment's speed limit.
    max_speed_factor_of_limit: float = 1.5
    #: Weight (vehicle-equivalents) of evidence without vehicles: an empty interval, or a speed
    #: reported with a zero count. Small, so one real vehicle outweighs it tenfold.
    low_evidence_weight_veh: float = 0.1
    #: Weight (vehicle-equivalents) of a standing queue over the loop (no vehicle passed).
    stopped_queue_weight_veh: float = 1.0
    #: Vehicles at which the volume half of the confidence reaches one half.
    confidence_half_vehicles: float = 10.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"[engine] {f.name} = {value!r}: expected a finite number > 0")
        if self.free_flow_fraction_of_limit > 2:
            raise ValueError(
                f"[engine] free_flow_fraction_of_limit = {self.free_flow_fraction_of_limit}: "
                "expected at most 2"
            )
        if not self.empty_occupancy_max_pct < self.stopped_occupancy_min_pct <= 100:
            raise ValueError(
                f"[engine] empty_occupancy_max_pct ({self.empty_occupancy_max_pct}) must be below "
                f"stopped_occupancy_min_pct ({self.stopped_occupancy_min_pct}), which must be at most 100"
            )


def _spot_params(settings: EngineSettings) -> tuple[float, ...]:
    """``EngineSettings`` as the tuple the spot-speed kernels take (order: ``_kernels.SPOT_*``)."""
    params = [0.0] * _kernels.SPOT_N_PARAMS
    params[_kernels.SPOT_VEHICLE_LENGTH_M] = settings.effective_vehicle_length_m
    params[_kernels.SPOT_EMPTY_OCCUPANCY_MAX_PCT] = settings.empty_occupancy_max_pct
    params[_kernels.SPOT_STOPPED_OCCUPANCY_MIN_PCT] = settings.stopped_occupancy_min_pct
    params[_kernels.SPOT_STOPPED_SPEED_KMH] = settings.stopped_speed_kmh
    params[_kernels.SPOT_MAX_SPEED_FACTOR] = settings.max_speed_factor_of_limit
    params[_kernels.SPOT_LOW_EVIDENCE_WEIGHT_VEH] = settings.low_evidence_weight_veh
    params[_kernels.SPOT_STOPPED_WEIGHT_VEH] = settings.stopped_queue_weight_veh
    return tuple(float(p) for p in params)


class CongestionEngine:
    """Holds columnar state for all segments; see module docstring.

    ``district_names`` and ``segment_district`` (an integer district number per segment, -1 for
    none) define the districts whose indices each tick reports besides the city's.
    """

    def __init__(
        self,
        network: RoadNetwork,
        detectors: DetectorRegistry,
        settings: EngineSettings,
        *,
        district_names: tuple[str, ...] = (),
        segment_district: np.ndarray | None = None,
    ) -> None:
        segs = network.segments
        n_segments = len(segs)
        self._settings = settings
        self._spot_params = _spot_params(settings)

        # Canonical dtypes once, so every kernel compiles (and caches) one signature only.
        self._lanes = np.ascontiguousarray(segs.lanes, dtype=np.int16)
        self._speed_limit_kmh = np.ascontiguousarray(segs.speed_limit_kmh, dtype=np.float32)
        bad = ~(np.isfinite(self._speed_limit_kmh) & (self._speed_limit_kmh > 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"segment {segs.segment_id[i]!r}: speed_limit_kmh = {self._speed_limit_kmh[i]}, expected > 0"
            )
        self._weight = lane_length_weight(segs.length_m, segs.lanes)
        self._district_names = tuple(district_names)
        self._segment_district = check_districts(self._district_names, segment_district, n_segments)

        det_segment = np.asarray(detectors.segment_index)
        bad = (det_segment < 0) | (det_segment >= n_segments)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"detector {detectors.detector_id[k]!r}: segment_index {int(det_segment[k])} "
                f"outside 0..{n_segments - 1}"
            )
        self._n_detectors = len(detectors)
        self._detector_state = DetectorState.initial(
            det_segment, detectors.lane, np.asarray(detectors.kind, dtype=object) == "camera"
        )

        free_flow = (self._speed_limit_kmh.astype(np.float64) * settings.free_flow_fraction_of_limit).astype(
            np.float32
        )
        self._held = SegmentHeld.initial(free_flow)
        self._scratch = SegmentScratch.initial(self._speed_limit_kmh)
        # `imputed` and `closed` are all False until imputation and closures arrive: one
        # read-only array shared by every snapshot instead of a fresh one per tick.
        self._all_false = np.zeros(n_segments, dtype=bool)
        self._all_false.flags.writeable = False
        self._states = SegmentStates(
            ts=math.nan,
            speed_kmh=np.full(n_segments, np.nan, dtype=np.float32),
            free_flow_kmh=free_flow,
            tti=np.full(n_segments, np.nan, dtype=np.float32),
            level=np.zeros(n_segments, dtype=np.int8),
            confidence=np.zeros(n_segments, dtype=np.float32),
            imputed=self._all_false,
            n_detectors=np.zeros(n_segments, dtype=np.int16),
            n_cameras=np.zeros(n_segments, dtype=np.int16),
            closed=self._all_false,
        )
        self._closed = self._all_false
        self._pending: list[ReadingBatch] = []
        self._n_pending = 0
        self._last_tick_ts: float | None = None
        self._stamp = 0

    # ---------------------------------------------------------------------------------------
    # Read-only views
    # ---------------------------------------------------------------------------------------

    @property
    def settings(self) -> EngineSettings:
        return self._settings

    @property
    def states(self) -> SegmentStates:
        """The last tick's segment states (all unknown, ``ts`` NaN, before the first tick)."""
        return self._states

    @property
    def detector_state(self) -> DetectorState:
        """Per-detector last reading; the engine updates it in place at each tick."""
        return self._detector_state

    @property
    def pending_readings(self) -> int:
        """Readings buffered for a later tick."""
        return self._n_pending

    @property
    def last_tick_ts(self) -> float | None:
        return self._last_tick_ts

    @property
    def closed(self) -> np.ndarray:
        """Per segment: closed to traffic by an active closure (read-only view)."""
        return self._closed

    # ---------------------------------------------------------------------------------------
    # Input
    # ---------------------------------------------------------------------------------------

    def set_closed(self, closed: np.ndarray) -> None:
        """Mark segments closed to all traffic (bool per segment); applies from the next tick.

        The closure book (``publishers.closures``) calls this whenever the set of active all-lane
        closures changes. A closed segment is published with ``closed: true`` and level 5 (severe)
        and counts as such in the TPI: it carries no traffic, and a router must avoid it.
        """
        mask = np.asarray(closed, dtype=bool)
        if mask.shape != (len(self._lanes),):
            raise ValueError(f"closed mask has shape {mask.shape}, expected ({len(self._lanes)},)")
        frozen = mask.copy()
        frozen.flags.writeable = False
        self._closed = frozen

    def add_readings(self, batch: ReadingBatch) -> None:
        """Validate and buffer a batch for the next tick that covers its readings' ``ts``.

        Raises ValueError, touching nothing, when a row names a detector outside the registry
        or has a non-finite ``ts``. The engine keeps a reference to the batch's arrays until the
        tick that consumes them: the caller must not write into them meanwhile. Cheap by design
        (one pass over two columns); concatenation waits for the tick.
        """
        if not isinstance(batch, ReadingBatch):
            raise TypeError(f"add_readings expects a ReadingBatch, got {type(batch).__name__}")
        if len(batch) == 0:
            return
        row = _kernels.first_invalid_reading(batch.detector_index, batch.ts, self._n_detectors)
        if row >= 0:
            d = int(batch.detector_index[row])
            if 0 <= d < self._n_detectors:
                raise ValueError(f"reading {row}: ts = {float(batch.ts[row])} is not a finite epoch time")
            raise ValueError(
                f"reading {row}: detector_index {d} outside the registry (0..{self._n_detectors - 1})"
            )
        self._pending.append(batch)
        self._n_pending += len(batch)

    # ---------------------------------------------------------------------------------------
    # Tick
    # ---------------------------------------------------------------------------------------

    def _take_due(self, tick_ts: float) -> ReadingBatch:
        """Remove and return the buffered readings with ts <= tick_ts; keep the rest buffered."""
        batch = ReadingBatch.concat(self._pending)
        due = batch.ts <= tick_ts
        if due.all():
            self._pending = []
            self._n_pending = 0
            return batch
        later = batch.take(~due)
        self._pending = [later]
        self._n_pending = len(later)
        return batch.take(due)

    def tick(self, tick_ts: float) -> TickResult:
        """Fold all buffered readings with ``ts <= tick_ts`` into the state; return every
        segment's state and the area indices at ``tick_ts`` (see the module docstring).

        ``tick_ts`` must be finite and not before the previous tick's.
        """
        tick_ts = float(tick_ts)
        if not math.isfinite(tick_ts):
            raise ValueError(f"tick_ts = {tick_ts!r}: expected a finite epoch time")
        if self._last_tick_ts is not None and tick_ts < self._last_tick_ts:
            raise ValueError(f"tick_ts = {tick_ts} is before the previous tick ({self._last_tick_ts})")

        ready = self._take_due(tick_ts)
        # Marks detectors' first reading of this tick; int32 in the records, so it cycles through
        # 1..2**31-1 (once every 68 years at one tick a second).
        self._stamp = self._stamp % (2**31 - 1) + 1
        held, prev, settings = self._held, self._states, self._settings
        n_without_evidence = _kernels.accumulate_readings(
            ready.detector_index, ready.ts, ready.interval_s, ready.count, ready.occupancy_pct,
            ready.speed_kmh, ready.lane, self._detector_state.info, self._detector_state.records,
            self._scratch.records, self._spot_params, self._stamp,
        )

        n = len(self._lanes)
        speed = np.empty(n, dtype=np.float32)
        tti = np.empty(n, dtype=np.float32)
        level = np.empty(n, dtype=np.int8)
        confidence = np.empty(n, dtype=np.float32)
        n_det = np.empty(n, dtype=np.int16)
        n_cam = np.empty(n, dtype=np.int16)
        _kernels.update_segments(
            tick_ts, settings.stale_after_s, settings.confidence_half_vehicles,
            settings.max_speed_factor_of_limit, RATIO_UPPER_BOUNDS, self._scratch.records,
            self._lanes, held.free_flow_kmh, held.evidence_ts, held.evidence_quality,
            prev.speed_kmh, prev.n_detectors, prev.n_cameras,
            speed, tti, level, confidence, n_det, n_cam,
        )
        states = SegmentStates(
            ts=tick_ts, speed_kmh=speed, free_flow_kmh=held.free_flow_kmh, tti=tti, level=level,
            confidence=confidence, imputed=self._all_false, n_detectors=n_det, n_cameras=n_cam,
            closed=self._closed,
        )
        if self._closed is not self._all_false:
            level[self._closed] = 5
        city, districts = area_indices(states, self._weight, self._segment_district, self._district_names)
        self._states = states
        self._last_tick_ts = tick_ts
        return TickResult(
            states=states,
            city=city,
            districts=districts,
            readings_used=len(ready),
            readings_without_evidence=int(n_without_evidence),
            readings_pending=self._n_pending,
        )
