"""The congestion engine: readings accumulate between ticks; each tick turns them into states.

Public API (stable for the wiring and sinks):

    engine = CongestionEngine(network, detectors, EngineSettings())
    engine.add_readings(batch)          # any number of times between ticks
    result = engine.tick(tick_ts)       # -> TickResult (states, city and district indices)
    engine.set_detector_usable(mask)    # detector health: which detectors may feed estimates
    engine.set_closed(mask)             # closures: segments closed to all traffic
    state = engine.export_state()       # learned free flow, profiles, smoothing (numpy + JSON)
    engine.import_state(state)          # ... back after a restart

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
   [1, ``max_speed_factor_of_limit`` × speed limit] km/h. An empty interval right after the same
   loop saw a queue (spot speed ≤ ``queue_speed_fraction_of_limit`` × limit) is that queue
   standing with the loop in a gap, and reads as a standing queue (``travel_speed`` docs).
3. Per segment with new evidence, the loops' **harmonic mean spot speed** (weight-weighted, which
   estimates the space-mean speed at the loop: Wardrop 1952; see ``_kernels.update_segments``),
   the flow per lane and the mean occupancy go through the **travel-speed model** of
   ``travel_speed`` (running time + junction delay + the queue over the loop) to a travel time
   over the whole segment, which is **smoothed** over time (distance-weighted, time constant
   ``smoothing_tau_s``) into the segment's ``speed_kmh``; the **free-flow speed** is learned from
   these speeds (``_kernels.update_segments``, GB/T 33171 §7.2.1.2) and so is the segment's
   typical **hour-of-day profile**. A segment without new evidence keeps its estimate until
   ``stale_after_s`` after the newest reading behind it, then has no measured state. Evidence
   older than what a segment already holds does not replace it. Segments with no measured state
   are **imputed** from their graph neighbours and their profile (``imputation``), marked
   ``imputed``. ``estimator="spot"`` turns all of this off and reports the harmonic mean spot
   speed itself (the naive estimator of issue #2, kept as the benchmarks' baseline).
   Readings of detectors set unusable (``set_detector_usable``, detector health) feed nothing.
4. **tti** = free_flow / speed; **level** from r = speed / free_flow per ``levels``.
5. **confidence** = quality × freshness, where

       quality   = 0.5 · lanes_covered / lanes + 0.5 · W / (W + confidence_half_vehicles)
       freshness = 1 − age / stale_after_s,   age = tick_ts − ts of the newest reading used,

   ``lanes_covered`` = distinct known lanes that gave evidence plus distinct detectors of
   unknown lane (each taken to cover one lane), at most the segment's lanes; W = the weight of
   the evidence: vehicles counted, plus the fixed weights of empty-road and standing-queue
   readings. So a loop on every lane with 10
   vehicles, just read, gives 0.75; with 90 vehicles 0.95; one lane of three with 10 vehicles
   0.42; and each of these fades linearly to 0 as the estimate approaches staleness. Imputed
   states: see ``imputation`` (always below the confidence of their sources).
6. **Area indices** for the city and the districts, per ``index``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import numpy as np

from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork

from . import _kernels
from .actuated import ActuatedSignals, ActuatedTiming, light_traffic_timing
from .imputation import ImputationParams
from .index import area_indices, area_weight_totals, check_districts, lane_length_weight
from .levels import RATIO_UPPER_BOUNDS
from .state import DetectorState, SegmentHeld, SegmentScratch
from .travel_speed import DEFAULT_LOOP_POSITION, MAX_GREEN_RATIO, TravelSpeedParams
from .types import ReadingBatch, SegmentStates, TickResult

#: ``EngineSettings`` fields for which 0 is allowed (it switches the feature off).
_MAY_BE_ZERO = ("smoothing_weight_by_occupancy", "queue_speed_fraction_of_limit", "free_flow_delay_sd")


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
    stopped_speed_kmh: float = 2.0
    #: Spot speeds are clamped to this multiple of the segment's speed limit.
    max_speed_factor_of_limit: float = 1.5
    #: Weight (vehicle-equivalents) of evidence without vehicles: an empty interval, or a speed
    #: reported with a zero count. Small, so one real vehicle outweighs it tenfold.
    low_evidence_weight_veh: float = 0.1
    #: Weight (vehicle-equivalents) of a standing queue over the loop (no vehicle passed).
    stopped_queue_weight_veh: float = 1.0
    #: Vehicles at which the volume half of the confidence reaches one half.
    confidence_half_vehicles: float = 10.0
    #: Time constant of the exponential smoothing of travel time (s); ``travel_speed`` docs.
    smoothing_tau_s: float = 150.0
    #: Weight (vehicle-equivalents) every tick's evidence gets on top of its vehicles.
    smoothing_min_weight_veh: float = 0.2
    #: Weigh each tick's evidence by the vehicle-time the loop's occupancy implies (1) rather
    #: than by the vehicles counted (0); see ``travel_speed`` (smoothing).
    smoothing_weight_by_occupancy: float = 1.0
    #: Interval speeds (``free_flow_interval_s`` each) a segment must have seen before its free
    #: flow is learned, not defaulted.
    free_flow_min_samples: float = 3.0
    #: Share of the mean junction delay kept in the speeds that free flow is learned from (the
    #: top ninth of intervals at a signal are those that met mostly green; 1 = all of it).
    free_flow_delay_share: float = 0.8
    #: Standard deviations of an interval's mean junction delay (per-vehicle spread of arrival
    #: over the signal cycle ÷ √vehicles) taken off the time of each free-flow interval speed:
    #: the top ninth of real intervals are their luckiest draws, which a mean never shows.
    free_flow_delay_sd: float = 0.5
    #: Samples at which the free-flow histogram is halved (so it follows slow changes).
    free_flow_history_cap: float = 4000.0
    #: Length (s) of the intervals whose travel speeds free flow is learned from (GB/T 33171
    #: §7.2.1.2; aligned to multiples of it, like the 5-minute intervals the levels are judged on).
    free_flow_interval_s: float = 300.0
    #: Step of the typical hour-of-day profile towards each new ratio (0..1).
    profile_alpha: float = 0.2
    #: A reading whose spot speed is at most this fraction of the limit saw a queue over the
    #: loop; empty intervals right after it are that queue standing with the loop in a gap
    #: (for up to ``stale_after_s``), not an empty lane. 0 = never (``travel_speed`` docs).
    queue_speed_fraction_of_limit: float = 0.3
    #: Actuated signals (``congestion.actuated``): the effective maximum gap h (s) of a phase's
    #: gap-out extension (fitted; SUMO's own ``max-gap`` is 3 s, platoons extend a phase longer).
    actuated_max_gap_s: float = 6.0
    #: Actuated signals: time constant (s) of the smoothing of their approaches' flows.
    actuated_flow_tau_s: float = 300.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            floor_ok = value >= 0 if f.name in _MAY_BE_ZERO else value > 0
            if not (isinstance(value, int | float) and math.isfinite(value) and floor_ok):
                floor = "≥ 0" if f.name in _MAY_BE_ZERO else "> 0"
                raise ValueError(f"[engine] {f.name} = {value!r}: expected a finite number {floor}")
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


#: The ``[engine]`` config keys that tune the estimator (README "Configuration"; declared with
#: their ranges in ``roadpulse.config.SCHEMA``) → (part, field): ``settings`` = ``EngineSettings``,
#: ``model`` = ``travel_speed.TravelSpeedParams``, ``imputation`` = ``imputation.ImputationParams``.
ENGINE_CONFIG_FIELDS: dict[str, tuple[str, str]] = {
    "stale_after_s": ("settings", "stale_after_s"),
    "effective_vehicle_length_m": ("settings", "effective_vehicle_length_m"),
    "free_flow_fraction_of_limit": ("settings", "free_flow_fraction_of_limit"),
    "smoothing_tau_s": ("settings", "smoothing_tau_s"),
    "free_flow_min_samples": ("settings", "free_flow_min_samples"),
    "free_flow_delay_share": ("settings", "free_flow_delay_share"),
    "free_flow_delay_sd": ("settings", "free_flow_delay_sd"),
    "free_flow_interval_s": ("settings", "free_flow_interval_s"),
    "queue_speed_fraction_of_limit": ("settings", "queue_speed_fraction_of_limit"),
    "actuated_max_gap_s": ("settings", "actuated_max_gap_s"),
    "actuated_flow_tau_s": ("settings", "actuated_flow_tau_s"),
    "signal_cycle_s": ("model", "cycle_s"),
    "signal_green_ratio": ("model", "green_ratio"),
    "saturation_flow_veh_h": ("model", "saturation_flow_veh_h"),
    "signal_delay_factor": ("model", "signal_delay_factor"),
    "priority_delay_s": ("model", "priority_delay_s"),
    "queue_occupancy": ("model", "queue_occupancy"),
    "upstream_queue_share": ("model", "upstream_queue_share"),
    "queue_vehicle_length_m": ("model", "queue_vehicle_length_m"),
    "stop_loss_factor": ("model", "stop_loss_factor"),
    "stop_accel_ms2": ("model", "stop_accel_ms2"),
    "stop_decel_ms2": ("model", "stop_decel_ms2"),
    "impute_downstream_weight": ("imputation", "downstream_weight"),
    "impute_upstream_weight": ("imputation", "upstream_weight"),
    "impute_second_hop_weight": ("imputation", "second_hop_weight"),
    "impute_profile_weight": ("imputation", "profile_weight"),
    "impute_confidence_factor": ("imputation", "confidence_factor"),
    "impute_tti_power": ("imputation", "tti_power"),
    "impute_junction_model": ("imputation", "junction_model"),
    "impute_dead_end_free": ("imputation", "dead_end_free"),
}


def engine_parts(
    config: Mapping[str, object],
) -> tuple[EngineSettings, TravelSpeedParams, ImputationParams]:
    """The engine's three parameter objects from an ``[engine]`` config section (a mapping of
    the keys of ``ENGINE_CONFIG_FIELDS``; other keys are ignored, missing ones keep their
    defaults). A value out of a part's own bounds raises ``ValueError`` naming the field."""
    parts: dict[str, dict[str, float]] = {"settings": {}, "model": {}, "imputation": {}}
    for key, (part, name) in ENGINE_CONFIG_FIELDS.items():
        if key in config:
            parts[part][name] = float(config[key])  # type: ignore[arg-type]
    settings = EngineSettings(**parts["settings"])
    model = replace(TravelSpeedParams(stopped_speed_kmh=settings.stopped_speed_kmh), **parts["model"])
    return settings, model, ImputationParams(**parts["imputation"])


def _held_params(settings: EngineSettings) -> tuple[float, ...]:
    """``EngineSettings`` as the tuple ``_kernels.update_segments`` takes (``_kernels.HP_*``)."""
    params = [0.0] * _kernels.HP_N
    params[_kernels.HP_STALE_AFTER_S] = settings.stale_after_s
    params[_kernels.HP_CONFIDENCE_HALF_VEHICLES] = settings.confidence_half_vehicles
    params[_kernels.HP_MAX_SPEED_FACTOR] = settings.max_speed_factor_of_limit
    params[_kernels.HP_SMOOTHING_TAU_S] = settings.smoothing_tau_s
    params[_kernels.HP_SMOOTHING_MIN_WEIGHT_VEH] = settings.smoothing_min_weight_veh
    params[_kernels.HP_FF_MIN_SAMPLES] = settings.free_flow_min_samples
    params[_kernels.HP_FF_HIST_CAP] = settings.free_flow_history_cap
    params[_kernels.HP_PROFILE_ALPHA] = min(settings.profile_alpha, 1.0)
    params[_kernels.HP_WEIGHT_BY_OCCUPANCY] = float(settings.smoothing_weight_by_occupancy)
    params[_kernels.HP_FF_DELAY_SHARE] = min(settings.free_flow_delay_share, 1.0)
    params[_kernels.HP_FF_INTERVAL_S] = settings.free_flow_interval_s
    params[_kernels.HP_FF_DELAY_SD] = settings.free_flow_delay_sd
    return tuple(float(p) for p in params)


#: ``travel_speed``: the model of ``congestion.travel_speed`` with smoothing, learned free flow
#: and imputation. ``spot``: the naive estimator of issue #2 (the harmonic mean of the loops'
#: spot speeds, no junction delay, no smoothing, free flow from the speed limit, no imputation),
#: kept as the baseline the accuracy benchmark compares with.
ESTIMATORS = ("travel_speed", "spot")


def _spot_only(
    model: tuple[float, ...], held: tuple[float, ...]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Model and held parameters that reduce the travel-speed path to the naive estimator."""
    m = list(model)
    m[_kernels.TS_SIGNAL_DELAY_FACTOR] = 0.0
    m[_kernels.TS_PRIORITY_DELAY_S] = 0.0
    m[_kernels.TS_QUEUE_OCCUPANCY] = math.inf  # never a queue term
    m[_kernels.TS_RUN_SPEED_CAP] = math.inf  # spot speeds are clamped already
    h = list(held)
    h[_kernels.HP_SMOOTHING_TAU_S] = 0.0  # no memory: each tick's evidence alone
    h[_kernels.HP_FF_MIN_SAMPLES] = math.inf  # never learned
    return tuple(m), tuple(h)


def _pass_through(network: RoadNetwork, green_ratio: np.ndarray | None = None) -> np.ndarray:
    """Per segment: its downstream junction is a plain pass-through — one way on (its own reverse
    aside), taken by nobody else. Such a junction has no conflicting stream to give way to, so
    a signal there (e.g. an always-green light at the corner of a generated grid) costs no delay.
    Unless the signal's own plan (``green_ratio``, NaN = unknown) shows the segment a red for part
    of the cycle (green share below ``MAX_GREEN_RATIO``): a red stops vehicles whether or not
    anybody crosses, e.g. a grid corner whose two approaches get a green each in turn."""
    if len(network) == 0:
        return np.zeros(0, dtype=bool)
    s_ptr, s_idx = network.successors_csr(reverse=False)
    p_ptr, _ = network.predecessors_csr(reverse=False)
    n_pred = np.diff(p_ptr)
    one_way_on = np.flatnonzero(np.diff(s_ptr) == 1)
    out = np.zeros(len(network), dtype=bool)
    out[one_way_on] = n_pred[s_idx[s_ptr[one_way_on]]] == 1
    if green_ratio is not None:
        out &= ~(np.isfinite(green_ratio) & (green_ratio < MAX_GREEN_RATIO))
    return out


def _csr_int32(indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A CSR adjacency with int32 offsets and indices (both below 2**31 on any network that fits
    in memory; checked)."""
    if len(indices) >= 2**31:
        raise ValueError(f"adjacency of {len(indices)} entries: too large for int32 offsets")
    return np.ascontiguousarray(indptr, dtype=np.int32), np.ascontiguousarray(indices, dtype=np.int32)


def _loop_positions(network: RoadNetwork, detectors: DetectorRegistry) -> np.ndarray:
    """Per segment, the mean position of its loops as a share of its length (0..1); the
    default where the registry gives no position."""
    n = len(network)
    length = np.maximum(np.asarray(network.segments.length_m, dtype=np.float64), 1.0)
    seg = np.asarray(detectors.segment_index, dtype=np.int64)
    pos = np.asarray(detectors.pos_m, dtype=np.float64)
    ok = np.isfinite(pos) & (seg >= 0) & (seg < n)
    total = np.bincount(seg[ok], weights=np.clip(pos[ok] / length[seg[ok]], 0.0, 1.0), minlength=n)
    count = np.bincount(seg[ok], minlength=n)
    out = np.full(n, DEFAULT_LOOP_POSITION, dtype=np.float32)
    has = count > 0
    out[has] = total[has] / count[has]
    return out


def _checked_timing(
    timing: tuple[np.ndarray, np.ndarray] | None, n: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-segment (cycle s, green ratio), NaN = the model's default; checked for shape and range."""
    if timing is None:
        return None
    cycle, green = (np.asarray(a, dtype=np.float64) for a in timing)
    if cycle.shape != (n,) or green.shape != (n,):
        raise ValueError(f"signal_timing: expected two arrays of {n} values (one per segment)")
    if np.any(cycle <= 0) or np.any((green <= 0) | (green >= 1)):
        raise ValueError("signal_timing: expected cycles > 0 s and green ratios in (0, 1), or NaN")
    return cycle, green


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
    params[_kernels.SPOT_QUEUE_SPEED_FRACTION] = settings.queue_speed_fraction_of_limit
    params[_kernels.SPOT_QUEUE_HOLD_S] = settings.stale_after_s
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
        model: TravelSpeedParams | None = None,
        imputation: ImputationParams | None = None,
        estimator: str = "travel_speed",
        signal_timing: tuple[np.ndarray, np.ndarray] | None = None,
        actuated_signals: ActuatedSignals | None = None,
    ) -> None:
        segs = network.segments
        n_segments = len(segs)
        self._settings = settings
        self._spot_params = _spot_params(settings)
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator = {estimator!r}: expected one of {', '.join(ESTIMATORS)}")
        self._estimator = estimator
        self._held_params = _held_params(settings)
        self._model = model or TravelSpeedParams(stopped_speed_kmh=settings.stopped_speed_kmh)
        self._model_params = self._model.as_tuple()
        if estimator == "spot":
            self._model_params, self._held_params = _spot_only(self._model_params, self._held_params)
            # The naive baseline reads every empty interval as an empty road (no queue memory).
            spot = list(self._spot_params)
            spot[_kernels.SPOT_QUEUE_SPEED_FRACTION] = 0.0
            self._spot_params = tuple(spot)
        self._imputation = imputation or ImputationParams()
        self._impute_params = self._imputation.as_tuple()
        self._impute = estimator == "travel_speed"
        # Imputation by the junction model: the segments' smoothed flows (decayed sums of the
        # vehicles counted and the detector-seconds covered) and their uncongested TTIs.
        self._junction_model = self._impute and self._imputation.junction_model > 0
        #: Event time the smoothed flows (``SegmentHeld.flow_count``) were last decayed to.
        self._flow_ts: float | None = None
        self._model_free_flow = np.empty(n_segments if self._junction_model else 0, dtype=np.float32)
        self._no_flows = np.empty(0, dtype=np.float64)
        if self._impute:
            # int32 offsets (the CSR's are int64): ``impute_segments`` reads two per unknown
            # segment and graph in each of its two rounds, at a million segments a sweep over
            # most of each array; measured ~1.5 ms less of its ~7 per tick (bench_tick.py, 1M
            # segments, 42 % of them unknown).
            self._succ = _csr_int32(*network.successors_csr(reverse=False))
            self._pred = _csr_int32(*network.predecessors_csr(reverse=False))
            # Read by imputation's dead-end rule only (``ImputationParams.dead_end_free``).
            self._dead_end = (
                network.dead_ends() if self._imputation.dead_end_free > 0 else np.zeros(0, dtype=bool)
            )
            self._impute_scratch = (
                np.empty(n_segments, dtype=np.int32),
                np.empty(n_segments, dtype=np.float32),
                np.empty(n_segments, dtype=np.float32),
                np.empty(n_segments if self._junction_model else 0, dtype=np.float64),
            )
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
        self._area_weight_totals = area_weight_totals(
            self._weight, self._segment_district, len(self._district_names)
        )

        det_segment = np.asarray(detectors.segment_index)
        bad = (det_segment < 0) | (det_segment >= n_segments)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"detector {detectors.detector_id[k]!r}: segment_index {int(det_segment[k])} "
                f"outside 0..{n_segments - 1}"
            )
        self._segment_ids = np.asarray(segs.segment_id, dtype=object)
        self._n_detectors = len(detectors)
        self._detector_state = DetectorState.initial(
            det_segment, detectors.lane, np.asarray(detectors.kind, dtype=object) == "camera"
        )

        free_flow = (self._speed_limit_kmh.astype(np.float64) * settings.free_flow_fraction_of_limit).astype(
            np.float32
        )
        timing = _checked_timing(signal_timing, n_segments)
        self._scratch = SegmentScratch.initial(
            self._speed_limit_kmh,
            np.asarray(segs.length_m, dtype=np.float32),
            _loop_positions(network, detectors),
            np.asarray(segs.junction_signalised, dtype=bool)
            & ~_pass_through(network, None if timing is None else timing[1]),
            timing,
        )
        # Actuated signals are timed by demand each tick (``congestion.actuated``); only the
        # spot estimator has no junction delay to time.
        self._actuated: ActuatedTiming | None = None
        if actuated_signals is not None and estimator == "travel_speed" and len(actuated_signals.segment):
            if np.any((actuated_signals.segment < 0) | (actuated_signals.segment >= n_segments)):
                raise ValueError("actuated_signals: segment index outside the network")
            self._actuated = ActuatedTiming(
                actuated_signals,
                self._lanes,
                self._model.saturation_flow_veh_h,
                max_gap_s=self.settings.actuated_max_gap_s,
                flow_tau_s=self.settings.actuated_flow_tau_s,
            )
        if self._junction_model:
            # A segment without a detector never learns its free flow: its default is the
            # model's travel speed with no traffic (its own junction's delay at zero flow, with an
            # actuated signal's light-traffic timing), not a share of the limit (``imputation``).
            no_detector = np.bincount(det_segment, minlength=n_segments) == 0
            records = self._scratch.records
            cycle = records["signal_cycle_s"].astype(np.float64)
            green = records["green_ratio"].astype(np.float64)
            if self._actuated is not None and actuated_signals is not None:
                light_cycle, light_green = light_traffic_timing(
                    actuated_signals, self._lanes, self._model.saturation_flow_veh_h / 3600.0,
                    max_gap_s=self.settings.actuated_max_gap_s,
                )
                cycle[actuated_signals.segment] = light_cycle
                green[actuated_signals.segment] = light_green
            model_ff = self._model_free_flow
            _kernels.model_free_flow(
                records, cycle, green, self._model_params, settings.free_flow_fraction_of_limit,
                min(settings.free_flow_delay_share, 1.0), settings.stopped_speed_kmh, model_ff,
            )
            free_flow[no_detector] = model_ff[no_detector]
        self._held = SegmentHeld.initial(free_flow)
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
        #: The greatest ts of the buffered readings (-inf: none).
        self._pending_newest_ts = -math.inf
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

    def set_detector_usable(self, usable: np.ndarray) -> None:
        """Say which detectors may feed estimates (bool per registry detector); applies from the
        next tick. Detector health (PeMS-style diagnostics) calls this: readings of an unusable
        detector still update its last reading in ``detector_state`` (so health can see it
        recover) and count in ``readings_used``, but give no speed evidence.
        """
        mask = np.asarray(usable, dtype=bool)
        if mask.shape != (self._n_detectors,):
            raise ValueError(f"usable mask has shape {mask.shape}, expected ({self._n_detectors},)")
        self._detector_state.records["usable"] = mask

    def export_state(self) -> dict[str, object]:
        """What the engine has learned and holds between ticks, as numpy arrays and JSON-able
        values (see ``state.SegmentHeld.export``), keyed by segment id so that it survives a
        restart on the same network; ``import_state`` takes it back."""
        return self._held.export(self._segment_ids, self._last_tick_ts)

    def import_state(self, state: dict[str, object]) -> None:
        """Restore what ``export_state`` returned (segments matched by id; segments unknown to
        the snapshot keep their defaults, ids unknown to this network are ignored). Raises
        ValueError naming the key when the snapshot is malformed, touching nothing."""
        self._held.import_(state, self._segment_ids)
        last = state.get("last_tick_ts")
        if isinstance(last, int | float) and math.isfinite(last):
            self._flow_ts = float(last)

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
        row, newest_ts = _kernels.first_invalid_reading(batch.detector_index, batch.ts, self._n_detectors)
        if row >= 0:
            d = int(batch.detector_index[row])
            if 0 <= d < self._n_detectors:
                raise ValueError(f"reading {row}: ts = {float(batch.ts[row])} is not a finite epoch time")
            raise ValueError(
                f"reading {row}: detector_index {d} outside the registry (0..{self._n_detectors - 1})"
            )
        self._pending.append(batch)
        self._n_pending += len(batch)
        self._pending_newest_ts = max(self._pending_newest_ts, newest_ts)

    # ---------------------------------------------------------------------------------------
    # Tick
    # ---------------------------------------------------------------------------------------

    def _take_due(self, tick_ts: float) -> ReadingBatch:
        """Remove and return the buffered readings with ts <= tick_ts; keep the rest buffered."""
        batch = ReadingBatch.concat(self._pending)
        # All due (the usual case) is known from the newest ts seen by ``add_readings``.
        if self._pending_newest_ts <= tick_ts:
            self._pending = []
            self._n_pending = 0
            self._pending_newest_ts = -math.inf
            return batch
        due = batch.ts <= tick_ts
        later = batch.take(~due)
        self._pending = [later]
        self._n_pending = len(later)
        self._pending_newest_ts = float(later.ts.max())
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
        # Marks detectors' first reading of this tick (``state.DETECTOR_RECORD.tick_mark``). It
        # has 7 bits, so it cycles through 1..MAX_TICK_STAMP; before a stamp comes round again,
        # every detector's mark is cleared (one pass over the table every 127 ticks).
        if self._stamp == _kernels.MAX_TICK_STAMP:
            self._detector_state.records["tick_mark"] = 0
            self._stamp = 0
        self._stamp += 1
        held, prev = self._held, self._states
        n_without_evidence = _kernels.accumulate_readings(
            ready.detector_index, ready.ts, ready.interval_s, ready.count, ready.occupancy_pct,
            ready.speed_kmh, ready.lane, self._detector_state.records, self._scratch.records,
            self._spot_params, self._stamp,
        )

        if self._actuated is not None:
            self._actuated.update(tick_ts, self._scratch.records)
        # The smoothed flows of imputation's junction model: decayed and added to by
        # ``update_segments`` as it reads the tick's counts (empty arrays: not kept).
        flow_decay, flow_count, flow_seconds = 1.0, self._no_flows, self._no_flows
        if self._junction_model:
            if self._flow_ts is not None and tick_ts > self._flow_ts:
                flow_decay = math.exp(-(tick_ts - self._flow_ts) / self._settings.smoothing_tau_s)
            self._flow_ts = tick_ts
            flow_count, flow_seconds = held.flow_count, held.flow_seconds
        n = len(self._lanes)
        speed = np.empty(n, dtype=np.float32)
        free_flow = np.empty(n, dtype=np.float32)
        tti = np.empty(n, dtype=np.float32)
        level = np.empty(n, dtype=np.int8)
        confidence = np.empty(n, dtype=np.float32)
        n_det = np.empty(n, dtype=np.int16)
        n_cam = np.empty(n, dtype=np.int16)
        n_measured = _kernels.update_segments(
            tick_ts, self._held_params, self._model_params, RATIO_UPPER_BOUNDS,
            self._scratch.records, self._lanes, held.free_flow_kmh, held.free_flow_default_kmh,
            held.evidence_ts, held.evidence_quality, held.smooth_w, held.smooth_wpace,
            held.smooth_ts, held.ff_hist, held.ff_samples, held.ff_interval, held.profile, prev.speed_kmh,
            prev.n_detectors, prev.n_cameras, speed, free_flow, tti, level, confidence, n_det, n_cam,
            flow_decay, flow_count, flow_seconds,
        )
        # Published snapshots share the free-flow array: the held one is replaced, not written.
        held.free_flow_kmh = free_flow
        imputed = self._all_false
        if self._impute and n_measured < n:
            imputed = np.zeros(n, dtype=bool)
            # (The junction model's baselines are computed inside, where they are read.)
            _kernels.impute_segments(
                tick_ts, self._impute_params, RATIO_UPPER_BOUNDS, self._succ[0], self._succ[1],
                self._pred[0], self._pred[1], held.profile, free_flow, self._scratch.records,
                held.flow_count, held.flow_seconds, self._model_free_flow, self._model_params,
                self._settings.free_flow_fraction_of_limit, self._settings.stopped_speed_kmh,
                self._dead_end, *self._impute_scratch,
                speed, tti, level, confidence, imputed,
            )
        states = SegmentStates(
            ts=tick_ts, speed_kmh=speed, free_flow_kmh=free_flow, tti=tti, level=level,
            confidence=confidence, imputed=imputed, n_detectors=n_det, n_cameras=n_cam,
            closed=self._closed,
        )
        if self._closed is not self._all_false:
            level[self._closed] = 5
        city, districts = area_indices(
            states, self._weight, self._segment_district, self._district_names, self._area_weight_totals
        )
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
