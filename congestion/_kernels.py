"""Jitted kernels of the congestion engine: small loops over flat numpy arrays, nothing else.

Rules for this module (see STYLE.md, numbagg/stumpy):

* no Python objects: arguments are numpy arrays (plain, or of the records defined in ``state``),
  numbers and homogeneous tuples of floats. A record layout is part of the compiled signature,
  so editing one in ``state`` recompiles rather than reuses stale cached code;
* no validation: the typed wrappers in ``engine.py``, ``levels.py`` and ``index.py`` check shapes,
  dtypes and index ranges first, because a kernel indexes without bounds checks;
* every kernel has a slow, obvious numpy/pandas twin in ``tests/congestion`` that it is compared with;
* tables (level bounds, TPI knots) come in as arguments rather than as globals of another module:
  numba freezes globals into the compiled code, and its on-disk cache (``cache=True``) is
  invalidated only when *this* file changes, so a table edited elsewhere would silently keep
  its old values in cached machine code.

"No data" is NaN throughout (the scratch ``newest_ts`` uses -inf, so a plain max() works); times are
epoch seconds in float64.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# Order of the fields in the ``spot_params`` tuple that the spot-speed kernels take; the
# engine builds it from ``EngineSettings`` in ``engine._spot_params``.
SPOT_VEHICLE_LENGTH_M = 0
SPOT_EMPTY_OCCUPANCY_MAX_PCT = 1
SPOT_STOPPED_OCCUPANCY_MIN_PCT = 2
SPOT_STOPPED_SPEED_KMH = 3
SPOT_MAX_SPEED_FACTOR = 4
SPOT_LOW_EVIDENCE_WEIGHT_VEH = 5
SPOT_STOPPED_WEIGHT_VEH = 6
SPOT_QUEUE_SPEED_FRACTION = 7
SPOT_QUEUE_HOLD_S = 8
SPOT_N_PARAMS = 9
#: Unit (s) of a detector's ``queue_age`` (``state.DETECTOR_RECORD``; uint8, so up to 42 min).
QUEUE_AGE_UNIT_S = 10.0

# Lanes are tracked as bits of a uint16 mask per segment (state.SEGMENT_SCRATCH_RECORD); lane
# numbers above this fold onto it (no carriageway has 16 lanes one way: this only guards input).
MAX_LANE_BIT = 15
#: A detector's ``lane_camera`` byte (``state.DETECTOR_RECORD``): lane + 1 under ``LANE_BITS``
#: (0 = unknown), and ``CAMERA_BIT`` for a camera zone.
LANE_BITS = 0x1F
CAMERA_BIT = 0x80
#: Tick stamps run 1..MAX_TICK_STAMP (7 bits of a detector's ``tick_mark``; bit 0 is its
#: unknown-lane flag). The engine clears every ``tick_mark`` when its stamp wraps.
MAX_TICK_STAMP = 127


# How many readings ahead ``accumulate_readings`` prefetches the detector records (and half as
# far ahead the segment records, whose index needs the detector record first).
PREFETCH_AHEAD = 32


@intrinsic
def _prefetch(typingctx, arr, idx):  # type: ignore[no-untyped-def]
    """``llvm.prefetch`` (read/write, high locality) of ``arr[idx]``: a hint that costs no wait.

    Readings land on detectors and segments in random order, so a tick over millions of them is
    bound by cache misses; a loop body as long as ``accumulate_readings``'s keeps only a few of
    them in flight. Asking for the records a few dozen readings ahead overlaps those misses.
    """
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8"
        )
        # rw = 1 (it will be written), locality = 3 (keep in all caches), cache type = 1 (data).
        flags = [ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)]
        builder.call(fn, [builder.bitcast(ptr, i8p), *flags])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _select_unpredictable(typingctx, cond, if_true, if_false):  # type: ignore[no-untyped-def]
    """``if_true if cond else if_false`` as a select marked ``!unpredictable``: compiled without a
    branch (a conditional move or masked move), for a condition that is random from one call to
    the next, where a branch would be mispredicted half the time.

    A plain conditional expression does not do: when its condition depends on a load that may
    miss the cache, LLVM turns the select back into a branch (x86 cmov conversion), which pays
    off only when the branch is predictable; the metadata tells it that this one is not.
    """
    if if_true != if_false:
        return None
    sig = if_true(types.boolean, if_true, if_false)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        c = context.cast(builder, args[0], cond, types.boolean)
        value = builder.select(c, args[1], args[2])
        value.set_metadata("unpredictable", builder.module.add_metadata([]))
        return value

    return sig, codegen


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def first_invalid_reading(detector_index: np.ndarray, ts: np.ndarray, n_detectors: int) -> tuple[int, float]:
    """(row of the first reading whose detector index is outside ``0..n_detectors-1`` or whose
    ``ts`` is not finite, -1 when all are valid; the greatest ``ts`` of the rows before it, -inf
    for none). One pass, so ``add_readings`` stays cheap; the newest ``ts`` spares the tick a
    pass over every reading to find that all are due."""
    newest = -np.inf
    for i in range(detector_index.shape[0]):
        d = detector_index[i]
        t = ts[i]
        if d < 0 or d >= n_detectors or not math.isfinite(t):
            return i, newest
        newest = _select_unpredictable(t > newest, t, newest)  # type: ignore[call-arg]
    return -1, newest


# --------------------------------------------------------------------------------------------
# Spot speed of one reading
# --------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _clamp_speed(v: float, speed_limit_kmh: float, max_speed_factor: float) -> float:
    """Clamp to [1, max(1, factor × limit)] km/h: below 1 km/h one reading would dominate the
    harmonic mean; far above the limit a reading is likelier an artefact than a real speed."""
    v_max: float = max(max_speed_factor * np.float64(speed_limit_kmh), 1.0)
    # Without a branch: whether a spot speed is above the limit's multiple is random from one
    # reading to the next. (v_max >= 1, so at most one of the two applies; NaN stays NaN.)
    clamped: float = _select_unpredictable(v < 1.0, 1.0, v)  # type: ignore[call-arg]
    return _select_unpredictable(v > v_max, v_max, clamped)  # type: ignore[call-arg]


@njit(cache=True, nogil=True)
def _spot_speed(
    count: float,
    occupancy_pct: float,
    speed_kmh: float,
    interval_s: float,
    speed_limit_kmh: float,
    spot_params: tuple[float, ...],
) -> tuple[float, float, bool]:
    """(spot speed km/h, weight in vehicle-equivalents, empty_road) of one reading.

    (NaN, 0, False) = no evidence. For an empty road (no vehicle, ~no occupancy) the speed is the
    segment's free-flow speed, which the caller supplies: this returns (NaN, weight, True), so
    that the hot per-reading loop need not fetch free-flow speeds (see ``update_segments``).
    """
    vehicle_length_m = spot_params[SPOT_VEHICLE_LENGTH_M]
    empty_occupancy_max_pct = spot_params[SPOT_EMPTY_OCCUPANCY_MAX_PCT]
    stopped_occupancy_min_pct = spot_params[SPOT_STOPPED_OCCUPANCY_MIN_PCT]
    stopped_speed_kmh = spot_params[SPOT_STOPPED_SPEED_KMH]
    max_speed_factor = spot_params[SPOT_MAX_SPEED_FACTOR]
    low_weight = spot_params[SPOT_LOW_EVIDENCE_WEIGHT_VEH]
    stopped_weight = spot_params[SPOT_STOPPED_WEIGHT_VEH]

    # Widen once: the arrays are float32, and every branch must yield the same (float64) types.
    n_veh = np.float64(count)
    occ_pct = np.float64(occupancy_pct)
    measured_kmh = np.float64(speed_kmh)

    # Comparisons are written so that NaN fails them: a NaN count or occupancy is no evidence.
    if not (n_veh >= 0.0 and occ_pct >= 0.0 and occ_pct <= 100.0):
        return np.nan, 0.0, False

    v: float
    w: float
    if measured_kmh >= 0.0:
        # Measured speed (radar, dual loop, camera). A speed with no vehicles counted is odd
        # (some radars repeat the last vehicle's speed) and only gets the small weight.
        v = measured_kmh
        w = n_veh if n_veh > 0.0 else low_weight
    elif n_veh > 0.0:
        if not (occ_pct > 0.0 and interval_s > 0.0):
            # Vehicles but no occupancy: the loop did not report it; speed cannot be derived.
            return np.nan, 0.0, False
        # Single loop: v = q * L / occ (fundamental relation q = k * v with density
        # k = occ / L). q in veh/h, L in m, occ as a fraction -> m/h; / 1000 -> km/h.
        flow_veh_h = n_veh * 3600.0 / np.float64(interval_s)
        v = flow_veh_h * vehicle_length_m / (occ_pct / 100.0) / 1000.0
        w = n_veh
    elif occ_pct <= empty_occupancy_max_pct:
        # Nobody passed and nobody stood on the loop: the road is empty, which is evidence of
        # free flow, but weak (an empty interval also happens just behind a red light).
        return np.nan, low_weight, True
    elif occ_pct >= stopped_occupancy_min_pct:
        # Nobody passed yet the loop was mostly covered: a queue standing over it.
        v = stopped_speed_kmh
        w = stopped_weight
    else:
        # Nobody passed, loop partly covered: a vehicle creeping on or off; no usable speed.
        return np.nan, 0.0, False
    return _clamp_speed(v, speed_limit_kmh, max_speed_factor), w, False


@njit(cache=True, nogil=True)
def spot_speeds(
    detector_index: np.ndarray,
    count: np.ndarray,
    occupancy_pct: np.ndarray,
    speed_kmh: np.ndarray,
    interval_s: np.ndarray,
    detector_segment: np.ndarray,
    segment_speed_limit_kmh: np.ndarray,
    segment_free_flow_kmh: np.ndarray,
    spot_params: tuple[float, ...],
    out_speed_kmh: np.ndarray,
    out_weight: np.ndarray,
) -> None:
    """Spot speed (NaN = none) and weight (0 = none) of every reading into the out arrays, the
    free-flow speed (clamped like any spot speed) standing in for an empty road. Not on the
    engine's hot path (``accumulate_readings`` inlines the same rule); kept for per-reading uses
    such as detector diagnostics, and as the rule's testable form."""
    factor = spot_params[SPOT_MAX_SPEED_FACTOR]
    for i in range(detector_index.shape[0]):
        s = detector_segment[detector_index[i]]
        limit = segment_speed_limit_kmh[s]
        v, w, empty_road = _spot_speed(
            count[i], occupancy_pct[i], speed_kmh[i], interval_s[i], limit, spot_params
        )
        if empty_road:
            v = _clamp_speed(np.float64(segment_free_flow_kmh[s]), limit, factor)
        out_speed_kmh[i] = v
        out_weight[i] = w


# --------------------------------------------------------------------------------------------
# Readings -> per-segment accumulators (+ per-detector last reading)
# --------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def accumulate_readings(
    detector_index: np.ndarray,
    ts: np.ndarray,
    interval_s: np.ndarray,
    count: np.ndarray,
    occupancy_pct: np.ndarray,
    speed_kmh: np.ndarray,
    lane: np.ndarray,
    detectors: np.ndarray,
    segments: np.ndarray,
    spot_params: tuple[float, ...],
    stamp: int,
) -> int:
    """One pass over a tick's readings; returns how many carried no speed evidence.

    Record layouts are in ``state``: ``detectors`` (registry fields, last reading, queue memory,
    marks), ``segments`` (accumulators at zero and ``newest_ts`` -inf for untouched segments;
    ``update_segments`` resets them as it reads them). Per segment, for the readings with
    evidence:

    * ``weight`` += w and ``weight_per_speed`` += w / v over spot speeds v, except empty-road
      evidence, whose weight goes to ``weight_free_flow`` (its v is the free-flow speed, added
      in ``update_segments``); so the weighted harmonic mean of all spot speeds is
      (weight + weight_free_flow) / (weight_per_speed + weight_free_flow / v_free_flow);
    * ``newest_ts`` = max ts;
    * ``n_detectors`` / ``n_cameras``: distinct non-camera / camera detectors (a detector counts
      once however many readings it sent this tick);
    * ``lane_mask``: bit ``l`` set when lane ``l`` gave evidence, the lane being the registry's
      when it fixes one, else the reading's (lanes above ``MAX_LANE_BIT`` fold onto it);
      ``n_unknown_lane``: distinct detectors that gave evidence with no lane known.

    ``stamp`` (1..``MAX_TICK_STAMP``) must differ from every stamp already in the detectors'
    ``tick_mark`` (the engine increments it each tick, and clears the marks when it wraps):
    comparing a detector's mark with it tells "first reading of this detector this tick" without
    clearing anything per tick.

    Every reading, with evidence or not, updates its detector's last reading unless its ``ts`` is
    older than the one held (a late reading must not roll the detector back; on a tie the later
    row wins), and counts into ``readings_total``.

    Queue memory (``travel_speed`` docs): a usable detector's in-order reading with evidence sets
    its ``queue_age`` to 1 when its spot speed is at most ``SPOT_QUEUE_SPEED_FRACTION`` × the
    limit, to 0 otherwise; an empty-road reading while ``queue_age`` > 0 is read as a standing
    queue (spot speed ``SPOT_STOPPED_SPEED_KMH``, weight ``SPOT_STOPPED_WEIGHT_VEH``, occupancy
    ``SPOT_STOPPED_OCCUPANCY_MIN_PCT``) and ages it by its interval (units of
    ``QUEUE_AGE_UNIT_S``), until that age passes ``SPOT_QUEUE_HOLD_S`` (or 255 units): then it is
    an empty road again and the memory is cleared.
    """
    n_without_evidence = 0
    n = detector_index.shape[0]
    half = PREFETCH_AHEAD // 2
    # Record indices are taken as unsigned (np.uint64): numba then skips the wraparound of a
    # negative index, four instructions per lookup. Detector indices are checked in range by
    # ``add_readings`` (``first_invalid_reading``) and segments by the engine's constructor.
    for i in range(n):
        if i + PREFETCH_AHEAD < n:
            _prefetch(detectors, np.uint64(detector_index[i + PREFETCH_AHEAD]))  # type: ignore[call-arg]
        if i + half < n:
            ahead = detectors[np.uint64(detector_index[i + half])]
            _prefetch(segments, np.uint64(ahead.segment))  # type: ignore[call-arg]
        det = detectors[np.uint64(detector_index[i])]
        t = ts[i]

        # Last reading; NaN last_ts = never seen, so `not t < NaN` is true.
        in_order = not t < det.last_ts
        # Stored either way, without a branch: readings arrive in no order, so whether one is
        # in order is random (``_select_unpredictable``).
        det.last_ts = _select_unpredictable(in_order, t, det.last_ts)  # type: ignore[call-arg]
        det.last_count = _select_unpredictable(in_order, count[i], det.last_count)  # type: ignore[call-arg]
        det.last_occupancy_pct = _select_unpredictable(  # type: ignore[call-arg]
            in_order, occupancy_pct[i], det.last_occupancy_pct
        )
        det.last_speed_kmh = _select_unpredictable(in_order, speed_kmh[i], det.last_speed_kmh)  # type: ignore[call-arg]
        det.readings_total += 1

        if not det.usable:
            # Set unusable (detector health): remembered as its last reading, feeds nothing.
            n_without_evidence += 1
            continue
        seg = segments[np.uint64(det.segment)]
        occ = occupancy_pct[i]
        limit = seg.speed_limit_kmh
        v, w, empty_road = _spot_speed(count[i], occ, speed_kmh[i], interval_s[i], limit, spot_params)
        fresh_evidence = in_order & (w > 0.0)
        if empty_road and fresh_evidence and det.queue_age > 0:  # (rare: tested first)
            # Nobody passed and nothing stood on the loop, right after the loop saw a queue:
            # that queue standing with the loop in the gap between two cars (at rest, it
            # stays there), not an empty lane — read as a queue standing over the loop,
            # until the gap readings have lasted ``queue_hold_s``.
            step = max(np.float64(interval_s[i]) / QUEUE_AGE_UNIT_S, 1.0)
            age = np.float64(det.queue_age) + step
            # (At most 255 units, ~42 min, whatever the hold: the age is a uint8.)
            if (age - 1.0) * QUEUE_AGE_UNIT_S <= spot_params[SPOT_QUEUE_HOLD_S] and age <= 255.0:
                det.queue_age = np.uint8(age)
                v = _clamp_speed(
                    spot_params[SPOT_STOPPED_SPEED_KMH], limit, spot_params[SPOT_MAX_SPEED_FACTOR]
                )
                w = spot_params[SPOT_STOPPED_WEIGHT_VEH]
                empty_road = False
                occ = np.float32(spot_params[SPOT_STOPPED_OCCUPANCY_MIN_PCT])
            else:
                det.queue_age = 0
        else:
            # Any other fresh evidence: a queue over the loop if a crawl (spot speed in GB/T's
            # severe band of the limit) or nobody passing with the loop covered
            # (``_spot_speed``: the stopped speed). Without a branch: whether a reading is fresh
            # and a crawl is random.
            crawl = v <= spot_params[SPOT_QUEUE_SPEED_FRACTION] * np.float64(limit)
            det.queue_age = _select_unpredictable(  # type: ignore[call-arg]
                fresh_evidence & (not empty_road), np.uint8(crawl), det.queue_age
            )
        if not w > 0.0:
            n_without_evidence += 1
            continue

        if empty_road:
            seg.weight_free_flow += w
        else:
            seg.weight += w
            seg.weight_per_speed += w / v
        # max(newest_ts, t) (no NaN here), without a branch: readings come in no order of ts.
        seg.newest_ts = _select_unpredictable(t > seg.newest_ts, t, seg.newest_ts)  # type: ignore[call-arg]
        # Flow and occupancy for the travel-speed model (readings that report an occupancy;
        # _spot_speed has checked it is within 0..100 when it gave evidence).
        dt = interval_s[i]
        if occ >= 0.0 and dt > 0.0:
            seg.count += count[i]
            seg.occupancy_s += occ * np.float32(0.01) * dt
            seg.interval_s += dt

        # Distinct detectors and lanes, without branches: whether a reading is its detector's
        # first this tick, a camera's or of unknown lane is random in arrival order, and a
        # mispredicted branch waits for the detector's line (measured: ~6 % of this kernel).
        # (Spelled with np.int64: the same lines with int() compiled to a loop ~30 % slower.)
        lane_camera = np.int64(det.lane_camera)
        mark = np.int64(det.tick_mark)
        first = (mark >> 1) != stamp
        mark = (np.int64(stamp) << 1) if first else mark
        camera = (lane_camera & CAMERA_BIT) != 0
        seg.n_cameras += np.uint16(first & camera)
        seg.n_detectors += np.uint16(first & (not camera))
        ln = (lane_camera & LANE_BITS) - 1
        reading_lane = np.int64(lane[i])
        ln = reading_lane if ln < 0 else ln
        unknown = ln < 0
        seg.n_unknown_lane += np.uint16(unknown & ((mark & 1) == 0))
        det.tick_mark = np.uint8(mark | np.int64(unknown))
        bit = min(max(ln, 0), MAX_LANE_BIT)
        seg.lane_mask |= np.uint16(0 if unknown else 1 << bit)  # type: ignore[operator]
    return n_without_evidence


# --------------------------------------------------------------------------------------------
# Levels and TPI of one ratio
# --------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _level_of_ratio(ratio: float, upper_bounds: tuple[float, ...]) -> int:
    """1 + the number of bounds that ``ratio`` is at or below; 0 for NaN.

    With bounds (0.7, 0.5, 0.4, 0.3): r > 0.7 -> 1, 0.5 < r <= 0.7 -> 2, ... r <= 0.3 -> 5.
    Counting rather than if/elif keeps it free of data-dependent branches.
    """
    if ratio != ratio:
        return 0
    level = 1
    for b in upper_bounds:
        level += ratio <= b
    return level


@njit(cache=True, nogil=True)
def _tpi_of_ratio(ratio: float, ratio_knots: tuple[float, ...], tpi_knots: tuple[float, ...]) -> float:
    """Piecewise-linear TPI of a speed ratio through (ratio_knots[i], tpi_knots[i]); ratio_knots
    ascending; constant beyond the first and last knot; NaN for NaN.

    Written as a sum over the pieces, each contributing its TPI drop times how far ``ratio`` is
    below the piece's upper knot, clipped to [0, 1]: the same line as interpolating between the
    two knots around ``ratio``, without a search. At a knot every fraction is exactly 0 or 1, so
    the result is that knot's value exactly (band edges stay exact).
    """
    if ratio != ratio:
        return np.nan
    n = len(ratio_knots)
    tpi = tpi_knots[n - 1]
    for i in range(n - 1):
        below = (ratio_knots[i + 1] - ratio) / (ratio_knots[i + 1] - ratio_knots[i])
        tpi += (tpi_knots[i] - tpi_knots[i + 1]) * min(max(below, 0.0), 1.0)
    return tpi


@njit(cache=True, nogil=True)
def _level_of_tpi(tpi: float, lower_edges: tuple[float, ...]) -> int:
    """1 + the number of band edges at or below ``tpi``; 0 for NaN. Edges (2, 4, 6, 8): a TPI
    on an edge belongs to the more congested band, matching ``_level_of_ratio`` at the knots."""
    if tpi != tpi:
        return 0
    level = 1
    for e in lower_edges:
        level += tpi >= e
    return level


@njit(cache=True, nogil=True)
def levels_of_ratios(ratio: np.ndarray, upper_bounds: tuple[float, ...], out_level: np.ndarray) -> None:
    for i in range(ratio.shape[0]):
        out_level[i] = _level_of_ratio(ratio[i], upper_bounds)


@njit(cache=True, nogil=True)
def tpis_of_ratios(
    ratio: np.ndarray, ratio_knots: tuple[float, ...], tpi_knots: tuple[float, ...], out_tpi: np.ndarray
) -> None:
    for i in range(ratio.shape[0]):
        out_tpi[i] = _tpi_of_ratio(ratio[i], ratio_knots, tpi_knots)


@njit(cache=True, nogil=True)
def levels_of_tpis(tpi: np.ndarray, lower_edges: tuple[float, ...], out_level: np.ndarray) -> None:
    for i in range(tpi.shape[0]):
        out_level[i] = _level_of_tpi(tpi[i], lower_edges)


# --------------------------------------------------------------------------------------------
# Accumulators + held state -> this tick's segment states
# --------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _popcount(mask: np.int64) -> int:
    n = 0
    while mask != 0:
        mask &= mask - np.int64(1)
        n += 1
    return n


# Order of the fields in the ``model_params`` tuple (``travel_speed.TravelSpeedParams.as_tuple``;
# defined here, where numba's cache of this file sees every constant it depends on).
TS_CYCLE_S = 0
TS_GREEN_RATIO = 1
TS_SATURATION_FLOW_VEH_H = 2
TS_SIGNAL_DELAY_FACTOR = 3
TS_PRIORITY_DELAY_S = 4
TS_QUEUE_OCCUPANCY = 5
TS_UPSTREAM_QUEUE_SHARE = 6
TS_QUEUE_VEHICLE_LENGTH_M = 7
TS_STOPPED_SPEED_KMH = 8
TS_RUN_SPEED_CAP = 9
TS_STOP_LOSS_FACTOR = 10
TS_STOP_ACCEL_MS2 = 11
TS_STOP_DECEL_MS2 = 12
#: Derived, not a setting: 1 / (1 − queue_occupancy), 0 where the threshold is 1 (the slope of
#: the upstream queue share's rise, precomputed so the tick does no division or test for it).
TS_QUEUE_RISE_SCALE = 13

# Order of the fields in the ``held_params`` tuple of ``update_segments``.
HP_STALE_AFTER_S = 0
HP_CONFIDENCE_HALF_VEHICLES = 1
HP_MAX_SPEED_FACTOR = 2
HP_SMOOTHING_TAU_S = 3
HP_SMOOTHING_MIN_WEIGHT_VEH = 4
HP_FF_MIN_SAMPLES = 5
HP_FF_HIST_CAP = 6
HP_PROFILE_ALPHA = 7
HP_WEIGHT_BY_OCCUPANCY = 8
HP_FF_DELAY_SHARE = 9
HP_FF_INTERVAL_S = 10
HP_FF_DELAY_SD = 11
HP_N = 12

PROFILE_SCALE = 200.0
PROFILE_NONE = 255


@njit(cache=True, nogil=True)
def _junction_delay(
    flow_veh_h: float,
    signalised: bool,
    model_params: tuple[float, ...],
    cycle_s: float,
    green_ratio: float,
    v_run_ms: float,
) -> float:
    """Mean delay (s) at the downstream junction: Webster's uniform delay (scaled) plus the
    stop-start loss of the vehicles that stop, at a signal; the priority delay otherwise
    (``congestion.travel_speed``, step 2). ``cycle_s`` and ``green_ratio`` are the segment's own
    signal timing where the network states it (NaN: the model's defaults); ``v_run_ms`` the
    speed the vehicles run at before they brake."""
    if signalised:
        cycle = cycle_s if cycle_s == cycle_s else model_params[TS_CYCLE_S]
        lam = green_ratio if green_ratio == green_ratio else model_params[TS_GREEN_RATIO]
        sat = model_params[TS_SATURATION_FLOW_VEH_H]
        x = min(flow_veh_h / (sat * lam), 1.0)
        uniform = model_params[TS_SIGNAL_DELAY_FACTOR] * (0.5 * cycle * (1.0 - lam) ** 2 / (1.0 - x * lam))
        # Akçelik's stop rate h = (1 − λ)/(1 − y), y = q/s (at most 1), times the time a stop
        # from v costs beyond the wait: v/(2a) braking + v/(2d) pulling away.
        y = min(flow_veh_h / sat, 0.95 * lam)
        stops = min(1.0, (1.0 - lam) / (1.0 - y))
        per_stop = 0.5 / model_params[TS_STOP_ACCEL_MS2] + 0.5 / model_params[TS_STOP_DECEL_MS2]
        loss = v_run_ms * per_stop
        return uniform + model_params[TS_STOP_LOSS_FACTOR] * stops * loss
    return model_params[TS_PRIORITY_DELAY_S]


@njit(cache=True, nogil=True)
def _junction_delay_sd(
    flow_veh_h: float,
    signalised: bool,
    model_params: tuple[float, ...],
    cycle_s: float,
    green_ratio: float,
    v_run_ms: float,
) -> float:
    """Standard deviation (s) of one vehicle's delay at the downstream junction about the mean
    of ``_junction_delay``, for arrivals at random over the signal's cycle: a vehicle stops with
    probability p (Akçelik's stop rate, as there), waits U(0, r) scaled by the delay factor
    (r = (1 − λ)·C, the red) and pays the stop-start loss S; one that does not stop has no delay.
    Var = p·E[(f·U + S)²] − (p·(f·r/2 + S))². 0 without a signal (a fixed priority delay)."""
    if not signalised:
        return 0.0
    cycle = cycle_s if cycle_s == cycle_s else model_params[TS_CYCLE_S]
    lam = green_ratio if green_ratio == green_ratio else model_params[TS_GREEN_RATIO]
    sat = model_params[TS_SATURATION_FLOW_VEH_H]
    y = min(flow_veh_h / sat, 0.95 * lam)
    p = min(1.0, (1.0 - lam) / (1.0 - y))
    wait = model_params[TS_SIGNAL_DELAY_FACTOR] * (1.0 - lam) * cycle
    per_stop = 0.5 / model_params[TS_STOP_ACCEL_MS2] + 0.5 / model_params[TS_STOP_DECEL_MS2]
    loss = model_params[TS_STOP_LOSS_FACTOR] * v_run_ms * per_stop
    second = p * (wait * wait / 3.0 + wait * loss + loss * loss)
    first = p * (0.5 * wait + loss)
    return math.sqrt(max(second - first * first, 0.0))


@njit(cache=True, nogil=True)
def _segment_travel_time(
    v_h_kmh: float,
    flow_veh_h: float,
    occupancy: float,
    length_m: float,
    loop_position: float,
    signalised: bool,
    speed_limit_kmh: float,
    model_params: tuple[float, ...],
    cycle_s: float = np.nan,
    green_ratio: float = np.nan,
) -> float:
    """Mean travel time (s) over a segment; the model of ``congestion.travel_speed`` (whose
    ``travel_time_reference`` is the numpy twin). ``occupancy`` is a fraction, NaN = none."""
    v_run_ms = min(v_h_kmh, model_params[TS_RUN_SPEED_CAP] * speed_limit_kmh) / 3.6
    delay_s = _junction_delay(flow_veh_h, signalised, model_params, cycle_s, green_ratio, v_run_ms)
    return _travel_time_given_delay(
        v_h_kmh, flow_veh_h, occupancy, length_m, loop_position, delay_s, speed_limit_kmh, model_params
    )


@njit(cache=True, nogil=True)
def _upstream_queue_share(occupancy: float, model_params: tuple[float, ...]) -> float:
    """Share of the stretch upstream of the loop taken as queued (``congestion.travel_speed``,
    step 3): ``upstream_queue_share`` when the queue just reaches the loop (occupancy at
    ``queue_occupancy``), rising linearly to all of it at a loop covered all the time."""
    a = model_params[TS_UPSTREAM_QUEUE_SHARE]
    above = occupancy - model_params[TS_QUEUE_OCCUPANCY]
    rise = min(max(above * model_params[TS_QUEUE_RISE_SCALE], 0.0), 1.0)
    return a + (1.0 - a) * rise


@njit(cache=True, nogil=True)
def _travel_time_given_delay(
    v_h_kmh: float,
    flow_veh_h: float,
    occupancy: float,
    length_m: float,
    loop_position: float,
    delay_s: float,
    speed_limit_kmh: float,
    model_params: tuple[float, ...],
) -> float:
    """``_segment_travel_time`` given the junction delay ``delay_s`` (``_junction_delay``), which
    ``update_segments`` needs again for free flow: computed once, its two divisions are saved."""
    v_h = min(v_h_kmh, model_params[TS_RUN_SPEED_CAP] * speed_limit_kmh) / 3.6
    t_run = length_m / v_h
    t = t_run + delay_s
    if occupancy >= model_params[TS_QUEUE_OCCUPANCY]:
        v_q = flow_veh_h / 3600.0 * model_params[TS_QUEUE_VEHICLE_LENGTH_M] / occupancy
        v_q = max(v_q, model_params[TS_STOPPED_SPEED_KMH] / 3.6)
        a = _upstream_queue_share(occupancy, model_params)
        t_queue = length_m * (1.0 - loop_position) / v_q + length_m * loop_position * (
            a / v_q + (1.0 - a) / v_h
        )
        t = max(t, t_queue)
    return t


@njit(cache=True, nogil=True)
def _top_ninth_ratio(hist: np.ndarray, r: int) -> tuple[float, float]:
    """(mean of the top ninth of the samples, as speed / limit; number of samples) of row ``r``
    of the free-flow histograms ``hist`` (bin b covers [b, b+1) / n_bins; values taken at bin
    centres), indexed in place (see ``_free_flow_sample``)."""
    n_bins = hist.shape[1]
    total = 0.0
    for b in range(n_bins):
        total += hist[r, b]
    if total <= 0.0:
        return np.nan, 0.0
    need = total / 9.0
    left = need
    acc = 0.0
    for b in range(n_bins - 1, -1, -1):
        take = min(np.float64(hist[r, b]), left)
        acc += take * (b + 0.5) / n_bins
        left -= take
        if left <= 0.0:
            break
    return acc / need, total


@njit(cache=True, nogil=True)
def _free_flow_sample(
    v_kmh: float,
    limit: float,
    ff: float,
    ff_default: float,
    hist: np.ndarray,
    r: int,
    ff_samples: np.ndarray,
    s: int,
    ff_hist_cap: float,
    ff_min_samples: float,
) -> np.float32:
    """Add one interval speed to row ``r`` of the free-flow histograms ``hist`` (speed / limit,
    capped at the top bin; halved at ``ff_hist_cap`` samples, counted in ``ff_samples[s]``) and
    return its free flow: the mean of the top ninth (GB/T 33171 §7.2.1.2), at most the limit,
    once ``ff_min_samples`` are held, else ``ff_default``. The walk over the histogram is skipped
    for a sample well below the current free flow (it only dilutes the top ninth a little) but
    every 16th. The row is indexed in place rather than passed as a view ``ff_hist[s]``: a view
    is an array object with a reference count whose handling, even on this rare path, slowed
    ``update_segments``' loop (~0.7 ms of 25)."""
    n_bins = hist.shape[1]
    b = int(min(v_kmh, limit) / limit * n_bins)
    b = min(max(b, 0), n_bins - 1)
    if hist[r, b] < 65535:
        hist[r, b] += 1
    samples = ff_samples[s] + np.uint32(1)
    if samples >= ff_hist_cap:
        samples = np.uint32(0)
        for k in range(n_bins):
            hist[r, k] = hist[r, k] // 2
            samples += np.uint32(hist[r, k])
    ff_samples[s] = samples
    if samples < ff_min_samples:
        return np.float32(ff_default)
    ff_bin = int(np.float64(ff) / limit * n_bins)
    if b >= ff_bin - 2 or samples % 16 == 0 or samples < ff_min_samples + 1.0:
        top, _ = _top_ninth_ratio(hist, r)
        return np.float32(min(top, 1.0) * limit)
    return np.float32(ff)


# error_model="numpy": a division by zero gives inf/NaN instead of raising, so that the ~20
# divisions per segment carry no test-and-branch each (measured: ~2 ms of 27 on the bench's 1M
# segments). On validated input no divisor here is zero: lengths, limits, ``stale_after_s`` and
# ``free_flow_interval_s`` are > 0, ``TravelSpeedParams`` refuses a zero queue vehicle length or
# saturation flow, and sums are tested > 0 before they divide. (The helpers it calls keep
# numba's default model.)
@njit(cache=True, nogil=True, error_model="numpy")
def update_segments(
    tick_ts: float,
    held_params: tuple[float, ...],
    model_params: tuple[float, ...],
    ratio_upper_bounds: tuple[float, ...],
    segments: np.ndarray,
    segment_lanes: np.ndarray,
    free_flow_kmh: np.ndarray,
    free_flow_default_kmh: np.ndarray,
    evidence_ts: np.ndarray,
    evidence_quality: np.ndarray,
    smooth_w: np.ndarray,
    smooth_wpace: np.ndarray,
    smooth_ts: np.ndarray,
    ff_hist: np.ndarray,
    ff_samples: np.ndarray,
    ff_interval: np.ndarray,
    profile: np.ndarray,
    prev_speed_kmh: np.ndarray,
    prev_n_detectors: np.ndarray,
    prev_n_cameras: np.ndarray,
    out_speed_kmh: np.ndarray,
    out_free_flow_kmh: np.ndarray,
    out_tti: np.ndarray,
    out_level: np.ndarray,
    out_confidence: np.ndarray,
    out_n_detectors: np.ndarray,
    out_n_cameras: np.ndarray,
    flow_decay: float,
    flow_count: np.ndarray,
    flow_seconds: np.ndarray,
) -> int:
    """Turn one tick's accumulators (``segments``, from ``accumulate_readings``) and the held
    state into every segment's measured state; returns the number of segments with one.

    A segment takes the tick's evidence when it has some (weight > 0) and it is not older than
    the evidence it already holds (a late reading does not roll a newer estimate back):

    1. ``v_h`` = the weighted harmonic mean of the spot speeds, v = sum(w_i) / sum(w_i / v_i)
       (it estimates the space-mean speed at the loop: Wardrop 1952; May 1990, ch. 4);
    2. the segment's travel time T from ``v_h``, flow per lane and occupancy by the model of
       ``congestion.travel_speed`` (``_segment_travel_time``);
    3. the pace T / L enters the exponential smoothing: with a = exp(-(tick_ts - smooth_ts) / tau),
       ``smooth_w`` = a·smooth_w + w_new (distance, m) and ``smooth_wpace`` = a·smooth_wpace +
       w_new·pace (time, s), w_new = (vehicles + min_weight)·L, or with occupancy (and
       ``weight_by_occupancy``) occupancy_s·L/g ÷ pace + min_weight·L; the speed is
       smooth_w / smooth_wpace (``travel_speed`` docs, Smoothing);
    4. the tick's distance and time (pace with ``ff_delay_share`` of the junction delay) add to
       the segment's free-flow interval sums ``ff_interval`` (columns: interval index k of
       ((k-1)·I, k·I], distance, time, vehicles counted; I = ``ff_interval_s``); the first tick
       in a later interval puts the finished interval's speed, if it counted a vehicle, into the
       free-flow histogram (``_free_flow_sample``), its time less ``ff_delay_sd`` standard
       deviations of its vehicles' mean junction delay (``_junction_delay_sd`` ÷ √vehicles, at
       most the delay it kept), and once it holds ``ff_min_samples`` the free-flow speed is the
       mean of its top ninth (GB/T 33171 §7.2.1.2), at most the speed limit;
    5. the typical profile of the hour of day (UTC) moves towards the ratio speed / free flow.

    Every segment's smoothed flow sums (imputation's junction model) take the tick's vehicles
    counted and detector-seconds covered, late evidence included: ``flow_count`` =
    ``flow_decay`` · flow_count + count, ``flow_seconds`` the same with the seconds (their ratio is
    the smoothed flow per lane, veh/s; each loop is one lane). Empty arrays: not kept. (Folded in
    here rather than a pass of its own over the records, which cost ~7 ms a tick at a million
    segments.)

    Otherwise the segment keeps the estimate it holds. A held estimate older than
    ``stale_after_s`` (by its newest reading's ts) is dropped: speed NaN, level 0 (imputation
    may fill it afterwards). ``out_free_flow_kmh`` receives every segment's free-flow speed
    (new array: published snapshots share the old one).

    The held arrays are updated in place; ``prev_*`` are last tick's outputs, read only; the
    accumulators (``state.SEGMENT_SCRATCH_RECORD``) are reset as they are read, ready for the
    next ``accumulate_readings``. Confidence, tti and level: see the ``engine`` module docs.
    """
    stale_after_s = held_params[HP_STALE_AFTER_S]
    confidence_half_vehicles = held_params[HP_CONFIDENCE_HALF_VEHICLES]
    max_speed_factor = held_params[HP_MAX_SPEED_FACTOR]
    tau_s = held_params[HP_SMOOTHING_TAU_S]
    min_weight = held_params[HP_SMOOTHING_MIN_WEIGHT_VEH]
    ff_min_samples = held_params[HP_FF_MIN_SAMPLES]
    ff_hist_cap = held_params[HP_FF_HIST_CAP]
    profile_alpha = held_params[HP_PROFILE_ALPHA]
    weight_by_occupancy = held_params[HP_WEIGHT_BY_OCCUPANCY] > 0.0
    ff_delay_share = held_params[HP_FF_DELAY_SHARE]
    ff_interval_s = held_params[HP_FF_INTERVAL_S]
    ff_delay_sd = held_params[HP_FF_DELAY_SD]
    # Free-flow interval this tick closes: ((k - 1)·I, k·I] (a tick at k·I reports readings up to it).
    tick_interval = np.float64(math.ceil(tick_ts / ff_interval_s))
    hour = int((tick_ts % 86400.0) // 3600.0) % profile.shape[1]
    n_known = 0
    decay_last = np.nan  # smoothing time whose decay factor is in decay_memo (NaN: none yet)
    decay_memo = 0.0
    keep_flows = flow_count.shape[0] > 0
    decay_flows = keep_flows and flow_decay != 1.0
    for s in range(segments.shape[0]):
        seg = segments[s]
        w_free_flow = np.float64(seg.weight_free_flow)
        w = np.float64(seg.weight) + w_free_flow
        held_ts = evidence_ts[s]
        ff = free_flow_kmh[s]
        if w > 0.0:
            if keep_flows:
                flow_count[s] = flow_decay * flow_count[s] + np.float64(seg.count)
                flow_seconds[s] = flow_decay * flow_seconds[s] + np.float64(seg.interval_s)
            new_ts = seg.newest_ts
            if not new_ts < held_ts:
                limit = np.float64(seg.speed_limit_kmh)
                ff_spot = _clamp_speed(np.float64(ff), limit, max_speed_factor)
                v_h = w / (np.float64(seg.weight_per_speed) + w_free_flow / ff_spot)
                interval = np.float64(seg.interval_s)
                flow = 0.0
                occ = np.nan
                if interval > 0.0:
                    flow = np.float64(seg.count) * 3600.0 / interval
                    occ = np.float64(seg.occupancy_s) / interval
                length = np.float64(seg.length_m)
                cycle = np.float64(seg.signal_cycle_s)
                green = np.float64(seg.green_ratio)
                v_run = min(v_h, model_params[TS_RUN_SPEED_CAP] * limit) / 3.6
                delay = _junction_delay(flow, seg.signalised, model_params, cycle, green, v_run)
                t = _travel_time_given_delay(
                    v_h, flow, occ, length, np.float64(seg.loop_position), delay, limit, model_params
                )
                pace = t / length
                # Weight = vehicle-kilometres this evidence stands for (so that the smoothed
                # speed is total distance / total time, as an interval's mean travel speed is):
                # vehicles counted × L, or — with occupancy, which also sees vehicles standing —
                # the vehicle-time on the segment from the loop's density, occ·Δt·L/g, ÷ pace.
                w_new = (np.float64(seg.count) + min_weight) * length
                if weight_by_occupancy and interval > 0.0:
                    w_new = (
                        np.float64(seg.occupancy_s) * length / model_params[TS_QUEUE_VEHICLE_LENGTH_M] / pace
                        + min_weight * length
                    )
                # An interval in which nobody passed and nothing stood on the loop says "no
                # vehicle moved here", which an empty road and a standstill both give (in a
                # queue at rest the loop may sit in a gap). With an estimate held, it keeps it.
                hold = tau_s > 0.0 and np.float64(seg.weight) == 0.0 and smooth_w[s] > 0.0
                if hold:
                    speed = 3.6 * np.float64(smooth_w[s]) / np.float64(smooth_wpace[s])
                else:
                    last = smooth_ts[s]
                    decay = 0.0
                    if tau_s > 0.0 and last == last:
                        if tick_ts > last:
                            # Most segments were last smoothed at the same tick: reuse the
                            # previous segment's exp() when its smoothing time was the same.
                            if last != decay_last:
                                decay_last = last
                                decay_memo = math.exp(-(tick_ts - last) / tau_s)
                            decay = decay_memo
                        else:
                            decay = 1.0
                    sw = decay * np.float64(smooth_w[s]) + w_new
                    swp = decay * np.float64(smooth_wpace[s]) + w_new * pace
                    smooth_w[s] = sw
                    smooth_wpace[s] = swp
                    smooth_ts[s] = max(tick_ts, last) if last == last else tick_ts
                    speed = 3.6 * sw / swp
                held_ts = new_ts
                evidence_ts[s] = new_ts
                lanes = max(segment_lanes[s], 1)
                lanes_seen = _popcount(np.int64(seg.lane_mask)) + np.int64(seg.n_unknown_lane)
                covered = min(lanes_seen, lanes)
                quality = 0.5 * covered / lanes + 0.5 * w / (w + confidence_half_vehicles)
                evidence_quality[s] = quality
                n_det = seg.n_detectors
                n_cam = seg.n_cameras

                if not hold:
                    # Free flow (GB/T 33171 §7.2.1.2): the mean of the top ninth of the segment's
                    # *interval* travel speeds, ≤ limit. This tick's distance and time (its own
                    # evidence, not the smoothed speed) are summed over the free-flow interval
                    # (``ff_interval_s``, aligned to its multiples); the first tick of a later
                    # interval puts the finished one's space-mean speed into the histogram —
                    # if a vehicle was counted in it (as SUMO's edgeData, which the judge's
                    # free flow is computed from, has no speed for an empty interval).
                    # The time keeps only ``ff_delay_share`` of the modelled junction delay: the
                    # top ninth of real intervals at a signal are those whose vehicles met mostly
                    # green, which a model of the *mean* delay never shows.
                    delay_pace = delay / length
                    pace_ff = pace - (1.0 - ff_delay_share) * min(delay_pace, 0.75 * pace)
                    # (Indexed in place rather than through a row view ``ff_interval[s]``: a view
                    # is an array object per segment, with its reference count.)
                    if ff_interval[s, 0] != tick_interval:
                        done_k = ff_interval[s, 0]
                        done_m = ff_interval[s, 1]
                        done_s = ff_interval[s, 2]
                        done_n = ff_interval[s, 3]
                        if done_k == done_k and done_s > 0.0 and done_n > 0.0:
                            if ff_delay_sd > 0.0:
                                # The interval's speed as its luckier draws of arrival over the
                                # cycle give it: ``ff_delay_sd`` standard deviations of the
                                # mean delay of its n vehicles (sd/√n) off its time, at most the
                                # delay it kept (this tick's model of it stands for the
                                # interval's).
                                sd = _junction_delay_sd(
                                    flow, seg.signalised, model_params, cycle, green, v_run
                                )
                                cut = min(ff_delay_sd * sd / math.sqrt(done_n), ff_delay_share * delay)
                                done_s = max(done_s - cut / length * done_m, 0.25 * done_s)
                            ff = _free_flow_sample(
                                3.6 * done_m / done_s,
                                limit,
                                ff,
                                free_flow_default_kmh[s],
                                ff_hist,
                                s,
                                ff_samples,
                                s,
                                ff_hist_cap,
                                ff_min_samples,
                            )
                        ff_interval[s, 0] = tick_interval
                        ff_interval[s, 1] = 0.0
                        ff_interval[s, 2] = 0.0
                        ff_interval[s, 3] = 0.0
                    ff_interval[s, 1] += w_new
                    ff_interval[s, 2] += w_new * pace_ff
                    ff_interval[s, 3] += np.float64(seg.count)

                    # Typical profile of this hour (ratio to free flow, quantised).
                    r_q = min(max(speed / np.float64(ff) * PROFILE_SCALE, 0.0), 254.0)
                    old = profile[s, hour]
                    if old == PROFILE_NONE:
                        profile[s, hour] = np.uint8(round(r_q))
                    else:
                        profile[s, hour] = np.uint8(round(old + profile_alpha * (r_q - old)))
            else:
                speed = prev_speed_kmh[s]
                quality = evidence_quality[s]
                n_det = prev_n_detectors[s]
                n_cam = prev_n_cameras[s]
            seg.weight = 0.0
            seg.weight_free_flow = 0.0
            seg.weight_per_speed = 0.0
            seg.count = 0.0
            seg.occupancy_s = 0.0
            seg.interval_s = 0.0
            seg.newest_ts = -np.inf
            seg.n_detectors = 0
            seg.n_cameras = 0
            seg.lane_mask = 0
            seg.n_unknown_lane = 0
        else:
            # Only readings with evidence touch a segment's accumulators, so w == 0 means they
            # are still clear: nothing to reset, and no count to add to the flow sums (× decay
            # + 0.0 is × decay; a segment that never counted anything keeps its zeros unwritten).
            if decay_flows:
                fs = flow_seconds[s]
                if fs != 0.0:
                    flow_count[s] = flow_decay * flow_count[s]
                    flow_seconds[s] = flow_decay * fs
                elif flow_count[s] != 0.0:
                    flow_count[s] = flow_decay * flow_count[s]
            speed = prev_speed_kmh[s]
            quality = evidence_quality[s]
            n_det = prev_n_detectors[s]
            n_cam = prev_n_cameras[s]
        out_free_flow_kmh[s] = ff

        age_s = tick_ts - held_ts
        if speed != speed or not age_s <= stale_after_s:
            out_speed_kmh[s] = np.nan
            out_tti[s] = np.nan
            out_level[s] = 0
            out_confidence[s] = 0.0
            out_n_detectors[s] = 0
            out_n_cameras[s] = 0
            continue

        n_known += 1
        # The stored float32 values, widened: level, TPI and sinks all derive r from the same pair.
        speed32 = np.float32(speed)
        ratio = np.float64(speed32) / np.float64(ff)
        freshness = 1.0 - max(age_s, 0.0) / stale_after_s
        out_speed_kmh[s] = speed32
        out_tti[s] = np.float64(ff) / np.float64(speed32)
        out_level[s] = _level_of_ratio(ratio, ratio_upper_bounds)
        out_confidence[s] = quality * freshness
        out_n_detectors[s] = min(n_det, 32767)  # int16 out; a cap that real data never reaches
        out_n_cameras[s] = min(n_cam, 32767)
    return n_known


# --------------------------------------------------------------------------------------------
# Imputation of segments without a measured state
# --------------------------------------------------------------------------------------------

# Order of the fields in the ``impute_params`` tuple (``imputation.ImputationParams``).
IP_DOWNSTREAM_WEIGHT = 0
IP_UPSTREAM_WEIGHT = 1
IP_SECOND_HOP_WEIGHT = 2
IP_PROFILE_WEIGHT = 3
IP_CONFIDENCE_FACTOR = 4
IP_TTI_POWER = 5
IP_JUNCTION_MODEL = 6
IP_DEAD_END_FREE = 7
IP_N = 8


@njit(cache=True, nogil=True)
def _pool_neighbour(
    r: float, c: float, weight: float, tti_power: float, sum_tti: float, sum_w: float, sum_wc: float
) -> tuple[float, float, float]:
    """(sum_tti, sum_w, sum_wc) plus one neighbour's weight·c·TTI^p, weight·c and weight·c·c,
    where TTI = 1 / r (r its speed ratio, c its confidence, p = ``tti_power``).

    Scalars only: ``impute_segments`` loops over the neighbours itself. A helper that took the
    seven arrays cost ~10 ns a call even with no neighbour to visit (measured; most likely the
    handling of the array arguments, reference counts included), more than the loop itself.
    """
    # Travel-time index, pooled as a power mean (p = 1, the plain mean, without a pow call).
    tti = 1.0 / max(r, 0.01)
    sum_tti += weight * c * (tti if tti_power == 1.0 else tti**tti_power)
    sum_w += weight * c
    sum_wc += weight * c * c
    return sum_tti, sum_w, sum_wc


@njit(cache=True, nogil=True)
def _power_mean_ratio(mean_tti_pow: float, tti_power: float) -> float:
    """The ratio r = 1 / M_p of the power mean M_p = (mean of TTI^p)^(1/p), from that mean."""
    if tti_power == 1.0:
        return 1.0 / mean_tti_pow
    return mean_tti_pow ** (-1.0 / tti_power)


@njit(cache=True, nogil=True)
def _base_tti(
    flow_veh_s: float,
    length_m: float,
    speed_limit_kmh: float,
    signalised: bool,
    cycle_s: float,
    green_ratio: float,
    model_free_flow_kmh: float,
    model_params: tuple[float, ...],
    run_fraction: float,
    floor_kmh: float,
) -> float:
    """The travel-time index the travel-speed model gives a segment *uncongested* at the flow per
    lane ``flow_veh_s`` (``imputation`` docs, junction model): its model travel time
    (L / v₀ + d(q)) over its model free-flow travel time (``model_free_flow_kmh``, from
    ``model_free_flow``), v₀ = ``run_fraction`` × the speed limit, d the delay of its own
    downstream junction (``_junction_delay``: its signal's cycle and green ratio as the records
    hold them this tick, or priority). Rounded through float32, as it was stored when a pass of
    its own computed it for every segment. At a priority junction it is 1; with the model's speed
    at its floor (``floor_kmh``, at most the free flow) model free flow ÷ floor.

    Scalars only (``_pool_neighbour``): ``impute_segments`` computes it where it reads it — for
    the unknown segments and their measured neighbours — instead of a pass over every segment
    (~11 ms a tick at a million segments)."""
    v0 = run_fraction * speed_limit_kmh / 3.6
    delay = _junction_delay(3600.0 * flow_veh_s, signalised, model_params, cycle_s, green_ratio, v0)
    t = length_m / v0 + delay
    # The model's speed is never below ``floor_kmh`` (as its free flow, ``model_free_flow``): on
    # a stub a few metres long ending at a signal, L / (L/v₀ + d) is a fraction of a km/h and the
    # baseline would make any neighbour's excess a TTI of 50.
    floor = min(floor_kmh, model_free_flow_kmh)
    if 3.6 * length_m < floor * t:
        t = 3.6 * length_m / floor
    return np.float64(np.float32(model_free_flow_kmh / 3.6 * t / length_m))


@njit(cache=True, nogil=True)
def impute_segments(
    tick_ts: float,
    impute_params: tuple[float, ...],
    ratio_upper_bounds: tuple[float, ...],
    succ_indptr: np.ndarray,
    succ_indices: np.ndarray,
    pred_indptr: np.ndarray,
    pred_indices: np.ndarray,
    profile: np.ndarray,
    free_flow_kmh: np.ndarray,
    segments: np.ndarray,
    flow_count: np.ndarray,
    flow_seconds: np.ndarray,
    model_free_flow_kmh: np.ndarray,
    model_params: tuple[float, ...],
    run_fraction: float,
    floor_kmh: float,
    dead_end: np.ndarray,
    scratch_unknown: np.ndarray,
    scratch_ratio: np.ndarray,
    scratch_conf: np.ndarray,
    scratch_flow: np.ndarray,
    speed_kmh: np.ndarray,
    tti: np.ndarray,
    level: np.ndarray,
    confidence: np.ndarray,
    imputed: np.ndarray,
) -> int:
    """Fill segments with no measured state (NaN speed) in place; returns how many were filled.

    Ratio r = speed / free flow of a segment without a measured state: 1 / the confidence-weighted
    power mean (exponent ``tti_power``; 1 = the mean) of its measured neighbours' travel-time
    indices 1/r (downstream ones weigh ``downstream_weight``, upstream ones ``upstream_weight``);
    where it has none, the same over
    its unknown neighbours' first-round ratios (weight × ``second_hop_weight``, their confidence
    × the same); blended with its own typical ratio for this hour of day (``profile``,
    confidence 0.5) at weight ``profile_weight``. Nothing known → stays unknown. Confidence =
    ``confidence_factor`` × the weighted mean confidence of the sources. ``scratch_*`` are work
    arrays of one element per segment (int32, float32, float32, float64; contents irrelevant;
    the float64 one is read only with the junction model). Measured
    states are never changed; ``imputed`` (all False on entry) is set where a state was filled.

    Junction model (``junction_model`` > 0; ``imputation`` docs): a measured neighbour's ratio is
    taken × its ``_base_tti`` at its own smoothed flow per lane (``flow_count`` / ``flow_seconds``,
    0 without one), and the pooled ratio ÷ the segment's own ``_base_tti`` at the weighted mean
    flow of its neighbours that have one (downstream ``downstream_weight``, upstream
    ``upstream_weight``; else 0). ``segments`` (the scratch records: length, limit, signal and its
    timing), the flow sums and ``model_free_flow_kmh`` are read only then (may be empty
    otherwise); ``model_params`` is the travel-speed model's, ``run_fraction`` the share of the
    limit vehicles run at (``free_flow_fraction_of_limit``).

    Dead ends (``dead_end_free`` > 0; ``dead_end``, ``RoadNetwork.dead_ends``, read only then):
    a segment with anything to pool takes an excess of 1, its own uncongested model.
    """
    w_down = impute_params[IP_DOWNSTREAM_WEIGHT]
    w_up = impute_params[IP_UPSTREAM_WEIGHT]
    hop2 = impute_params[IP_SECOND_HOP_WEIGHT]
    w_prof = impute_params[IP_PROFILE_WEIGHT]
    conf_factor = impute_params[IP_CONFIDENCE_FACTOR]
    tti_power = impute_params[IP_TTI_POWER]
    junction_model = impute_params[IP_JUNCTION_MODEL] > 0.0
    dead_end_free = impute_params[IP_DEAD_END_FREE] > 0.0
    hour = int((tick_ts % 86400.0) // 3600.0) % profile.shape[1]
    n_unknown = 0
    # Branch-free: whether a speed is NaN is random across segments, and a mispredicted branch
    # per unknown segment costs more than the store (overwritten unless it counts).
    for s in range(speed_kmh.shape[0]):
        scratch_unknown[n_unknown] = s
        n_unknown += speed_kmh[s] != speed_kmh[s]
    # Round 1: from measured neighbours, for every unknown segment (NaN when it has none).
    for u in range(n_unknown):
        s = scratch_unknown[u]
        # Measured neighbours (speed known): r = speed / free flow, c = their confidence.
        s0 = s1 = s2 = 0.0
        sq = sqw = 0.0
        linked = False  # has a neighbour: its r can be a number, its baseline read
        # Downstream, then upstream: two copies of one loop on purpose. One loop over both sides
        # (picking the arrays and weight per side) gives the same bits but took impute_segments
        # from 24-26 to 26-29 ms on a 200k-segment graph with most segments unknown.
        for k in range(succ_indptr[s], succ_indptr[s + 1]):
            j = succ_indices[k]
            v = speed_kmh[j]
            q = 0.0
            linked |= j != s
            if junction_model and j != s:
                # The neighbours' flows, for this segment's own baseline (round 2), summed here
                # where the neighbour is visited anyway; and its own, for its baseline.
                fs = flow_seconds[j]
                if fs > 0.0:
                    fc = flow_count[j]
                    q = fc / fs
                    sq += w_down * fc / fs
                    sqw += w_down
            if j != s and v == v:
                r = np.float64(v) / np.float64(free_flow_kmh[j])
                if junction_model:
                    seg = segments[j]
                    r *= _base_tti(
                        q, np.float64(seg.length_m), np.float64(seg.speed_limit_kmh), seg.signalised,
                        np.float64(seg.signal_cycle_s), np.float64(seg.green_ratio),
                        np.float64(model_free_flow_kmh[j]), model_params, run_fraction, floor_kmh,
                    )
                c = max(np.float64(confidence[j]), 0.05)
                s0, s1, s2 = _pool_neighbour(r, c, w_down, tti_power, s0, s1, s2)
        for k in range(pred_indptr[s], pred_indptr[s + 1]):
            j = pred_indices[k]
            v = speed_kmh[j]
            q = 0.0
            linked |= j != s
            if junction_model and j != s:
                # The neighbours' flows, for this segment's own baseline (round 2), summed here
                # where the neighbour is visited anyway; and its own, for its baseline.
                fs = flow_seconds[j]
                if fs > 0.0:
                    fc = flow_count[j]
                    q = fc / fs
                    sq += w_up * fc / fs
                    sqw += w_up
            if j != s and v == v:
                r = np.float64(v) / np.float64(free_flow_kmh[j])
                if junction_model:
                    seg = segments[j]
                    r *= _base_tti(
                        q, np.float64(seg.length_m), np.float64(seg.speed_limit_kmh), seg.signalised,
                        np.float64(seg.signal_cycle_s), np.float64(seg.green_ratio),
                        np.float64(model_free_flow_kmh[j]), model_params, run_fraction, floor_kmh,
                    )
                c = max(np.float64(confidence[j]), 0.05)
                s0, s1, s2 = _pool_neighbour(r, c, w_up, tti_power, s0, s1, s2)
        if junction_model and linked:
            # (Unwritten for a segment without neighbours: its r stays NaN, nothing reads it.)
            scratch_flow[s] = sq / sqw if sqw > 0.0 else 0.0
        if s1 > 0.0:
            scratch_ratio[s] = _power_mean_ratio(s0 / s1, tti_power)
            scratch_conf[s] = s2 / s1
        else:
            # (``scratch_conf`` is read only where ``scratch_ratio`` is a number: left unwritten,
            # so that a segment with nothing to pool costs no store, nor a load in round 2.)
            scratch_ratio[s] = np.nan
    # Round 2 (unknown neighbours' round-1 ratios), the profile blend, and the states, in one
    # pass. Round 2 reads only round-1 values (``scratch_*``) of neighbours that were unknown on
    # entry; a neighbour filled earlier in this pass is still one of them: its ``imputed`` is set
    # (all False on entry). (Formerly the states were written in a third pass, after every
    # round-2 read: one more sweep over the unknown segments' tti and confidence.)
    n_filled = 0
    for u in range(n_unknown):
        s = scratch_unknown[u]
        r = np.float64(scratch_ratio[s])
        c = 0.0
        sw = 1.0
        if r == r:
            c = np.float64(scratch_conf[s])
        else:
            # Unknown neighbours with a round-1 ratio: r and c from round 1.
            s0 = s1 = s2 = 0.0
            for k in range(succ_indptr[s], succ_indptr[s + 1]):
                j = succ_indices[k]
                r_j = np.float64(scratch_ratio[j])
                if j != s and (speed_kmh[j] != speed_kmh[j] or imputed[j]) and r_j == r_j:
                    c_j = max(np.float64(scratch_conf[j]), 0.05)
                    s0, s1, s2 = _pool_neighbour(r_j, c_j, w_down, tti_power, s0, s1, s2)
            for k in range(pred_indptr[s], pred_indptr[s + 1]):
                j = pred_indices[k]
                r_j = np.float64(scratch_ratio[j])
                if j != s and (speed_kmh[j] != speed_kmh[j] or imputed[j]) and r_j == r_j:
                    c_j = max(np.float64(scratch_conf[j]), 0.05)
                    s0, s1, s2 = _pool_neighbour(r_j, c_j, w_up, tti_power, s0, s1, s2)
            if s1 > 0.0:
                r = np.float64(_power_mean_ratio(s0 / s1, tti_power))
                c = hop2 * s2 / s1
                sw = hop2
            else:
                sw = 0.0
        if dead_end_free and r == r and dead_end[s]:
            # Nothing leaves this segment but its own reverse (a dead end, or the network's
            # edge): no queue downstream can reach it, and its upstream neighbours' congestion
            # is held at their own junction, before it. It runs at its own uncongested model.
            r = np.float64(1.0)
        # r is the neighbours' pooled 1 / excess (their TTI over their own ``_base_tti``): back
        # to this segment's ratio through its own baseline, at its neighbours' mean flow (without
        # the junction model, 1: the plain TTI pool). Only where there is an r to scale.
        if junction_model and r == r:
            q = scratch_flow[s]  # its neighbours' weighted mean flow, from round 1
            seg = segments[s]
            r = r / _base_tti(
                q, np.float64(seg.length_m), np.float64(seg.speed_limit_kmh), seg.signalised,
                np.float64(seg.signal_cycle_s), np.float64(seg.green_ratio),
                np.float64(model_free_flow_kmh[s]), model_params, run_fraction, floor_kmh,
            )
        rp = profile[s, hour]
        if rp != PROFILE_NONE:
            r_prof = np.float64(rp) / PROFILE_SCALE
            if r == r:
                r = (sw * r + w_prof * r_prof) / (sw + w_prof)
                c = (sw * c + w_prof * 0.5) / (sw + w_prof)
            else:
                r = r_prof
                c = np.float64(0.5)
        if r != r:
            tti[s] = np.nan
            confidence[s] = 0.0
            continue
        # r and c go through float32 first: the results have always been derived from them as
        # stored in the float32 tti and confidence (kept, so the states stay the same bits).
        r = np.float64(np.float32(r))
        n_filled += 1
        ff = np.float64(free_flow_kmh[s])
        v32 = np.float32(max(r, 0.01) * ff)
        speed_kmh[s] = v32
        tti[s] = ff / np.float64(v32)
        level[s] = _level_of_ratio(np.float64(v32) / ff, ratio_upper_bounds)
        confidence[s] = conf_factor * np.float64(np.float32(c))
        imputed[s] = True
    return n_filled


@njit(cache=True, nogil=True)
def model_free_flow(
    segments: np.ndarray,
    cycle_s: np.ndarray,
    green_ratio: np.ndarray,
    model_params: tuple[float, ...],
    run_fraction: float,
    ff_delay_share: float,
    floor_kmh: float,
    out_free_flow_kmh: np.ndarray,
) -> None:
    """Per segment, the free-flow speed (km/h) the travel-speed model gives it with no traffic:
    L / (L / v₀ + ``ff_delay_share`` · d(0)), v₀ = ``run_fraction`` × the speed limit (the engine's
    free flow before any is learned, ``free_flow_fraction_of_limit``: vehicles' free running
    speed), d(0) the
    delay of its downstream junction at zero flow with the signal timing ``cycle_s`` /
    ``green_ratio`` (NaN: the model's defaults) — the share of it kept being the one the learned
    free flow keeps (``update_segments``, ``free_flow_delay_share``); at most the limit, at least
    ``floor_kmh`` (a standing queue's speed: on a segment a few metres long ending at a signal
    the formula gives a fraction of a km/h, which no one reads as a free flow)."""
    for s in range(segments.shape[0]):
        seg = segments[s]
        length = np.float64(seg.length_m)
        limit = np.float64(seg.speed_limit_kmh)
        v0 = run_fraction * limit / 3.6
        delay = _junction_delay(0.0, seg.signalised, model_params, cycle_s[s], green_ratio[s], v0)
        ff = min(3.6 * length / (length / v0 + ff_delay_share * delay), limit)
        out_free_flow_kmh[s] = max(ff, min(floor_kmh, limit))


# --------------------------------------------------------------------------------------------
# Segment states -> area sums (city + districts)
# --------------------------------------------------------------------------------------------

AREA_TOTAL_WEIGHT = 0
AREA_KNOWN_WEIGHT = 1
AREA_TPI_WEIGHTED = 2
AREA_TTI_WEIGHTED = 3
AREA_SEVERE_WEIGHT = 4
AREA_N_SUMS = 5
#: Segments per block of ``area_sums``: each segment's weighted terms are computed first, in a
#: loop the compiler vectorises (the TPI's six divisions then cost a fraction of scalar ones;
#: no branch on whether a segment is known, which is random), into buffers that stay in L1 for
#: the per-area accumulation that follows.
AREA_BLOCK = 256


@njit(cache=True, nogil=True)
def _piece_below(ratio: float, lower: float, upper: float) -> tuple[float, float, bool]:
    """For one piece of ``_tpi_of_ratio``: (how far ``ratio`` is below its upper knot, the piece's
    width, whether ``ratio`` lies strictly inside it). Outside, the clipped fraction is exactly
    0 (at or above ``upper``) or 1 (at or below ``lower``: the division, correctly rounded, is
    monotonic, so it cannot give less than width / width); only inside is a division needed."""
    dist = upper - ratio
    width = upper - lower
    return dist, width, (dist > 0.0) & (dist < width)


@njit(cache=True, nogil=True)
def _piece_term(
    dist: float, width: float, inside_fraction: float, tpi_lower: float, tpi_upper: float
) -> float:
    """The term of one piece in ``_tpi_of_ratio``'s sum, given the fraction of the one piece
    that ``ratio`` lies inside (``_piece_below``): bit for bit the clipped division's."""
    fraction = 0.0 if dist <= 0.0 else 1.0 if dist >= width else inside_fraction
    return (tpi_lower - tpi_upper) * fraction


@njit(cache=True, nogil=True, error_model="numpy")
def _area_terms_of_block(
    speed_kmh: np.ndarray,
    free_flow_kmh: np.ndarray,
    tti: np.ndarray,
    level: np.ndarray,
    weight: np.ndarray,
    start: int,
    ratio_knots: tuple[float, ...],
    tpi_knots: tuple[float, ...],
    severe_level: int,
    out_known: np.ndarray,
    out_tpi: np.ndarray,
    out_tti: np.ndarray,
    out_severe: np.ndarray,
) -> None:
    """Segment ``start + j``'s terms of the area sums (``area_sums``: weight if known, weight ×
    TPI, weight × tti, weight if severe; zero where its speed is NaN, unknown) into the four
    buffers, for j < ``len(out_known)``.

    Written so that the loop vectorises, and with two divisions per segment rather than six:
    the segment TPI is ``_tpi_of_ratio``'s sum with the six knots of ``levels`` unpacked
    (indexing a tuple by a loop variable checks its bounds, an exit that stops vectorisation),
    the same terms in the same order, bit for bit, but with one division, for the one piece
    that the ratio lies inside (``_piece_below``); no branch (selects); and
    ``error_model="numpy"``, so no check for a division by zero (the knots are distinct and
    free-flow speeds positive). Tables of another length do not compile."""
    r0, r1, r2, r3, r4, r5 = ratio_knots
    t0, t1, t2, t3, t4, t5 = tpi_knots
    # Views of the block, indexed from 0: an index the compiler knows is not negative needs no
    # wraparound, so the loads stay contiguous vector loads rather than gathers.
    stop = start + out_known.shape[0]
    speed = speed_kmh[start:stop]
    free_flow = free_flow_kmh[start:stop]
    tti_block = tti[start:stop]
    level_block = level[start:stop]
    weight_block = weight[start:stop]
    for j in range(out_known.shape[0]):
        w = weight_block[j]
        v = speed[j]
        ratio = np.float64(v) / np.float64(free_flow[j])
        d0, w0, in0 = _piece_below(ratio, r0, r1)
        d1, w1, in1 = _piece_below(ratio, r1, r2)
        d2, w2, in2 = _piece_below(ratio, r2, r3)
        d3, w3, in3 = _piece_below(ratio, r3, r4)
        d4, w4, _ = _piece_below(ratio, r4, r5)
        # The piece the ratio lies inside (at most one; the last one when none is).
        dist = d0 if in0 else d1 if in1 else d2 if in2 else d3 if in3 else d4
        width = w0 if in0 else w1 if in1 else w2 if in2 else w3 if in3 else w4
        inside = dist / width
        tpi = t5 + _piece_term(d0, w0, inside, t0, t1)
        tpi += _piece_term(d1, w1, inside, t1, t2)
        tpi += _piece_term(d2, w2, inside, t2, t3)
        tpi += _piece_term(d3, w3, inside, t3, t4)
        tpi += _piece_term(d4, w4, inside, t4, t5)
        known = v == v
        out_known[j] = w if known else 0.0
        out_tpi[j] = w * tpi if known else 0.0
        out_tti[j] = w * tti_block[j] if known else 0.0
        out_severe[j] = w if known & (level_block[j] == severe_level) else 0.0


@njit(cache=True, nogil=True)
def area_weight_totals(
    weight: np.ndarray, segment_area: np.ndarray, n_areas: int, out_total: np.ndarray
) -> None:
    """Total weight of each area (``out_total[a]``) and of the whole network
    (``out_total[n_areas]``), summed in segment order; areas as in ``area_sums``, whose column
    ``AREA_TOTAL_WEIGHT`` they are. They depend on nothing a tick changes, so the engine sums
    them once rather than in every ``area_sums`` (two of its ten running sums per segment)."""
    total = np.zeros(n_areas + 2)
    nowhere = n_areas + 1
    city = 0.0
    for s in range(weight.shape[0]):
        a = int(segment_area[s])
        a = nowhere if a < 0 else a
        w = weight[s]
        city += w
        total[a] += w
    for area in range(n_areas):
        out_total[area] = total[area]
    out_total[n_areas] = city


@njit(cache=True, nogil=True)
def area_sums(
    speed_kmh: np.ndarray,
    free_flow_kmh: np.ndarray,
    tti: np.ndarray,
    level: np.ndarray,
    weight: np.ndarray,
    segment_area: np.ndarray,
    n_areas: int,
    ratio_knots: tuple[float, ...],
    tpi_knots: tuple[float, ...],
    severe_level: int,
    out_sums: np.ndarray,
) -> None:
    """Weighted sums per area added into ``out_sums`` (shape ``(n_areas + 1, AREA_N_SUMS)``, zeroed
    by the caller); row ``n_areas`` is the whole network, row ``a`` the segments with
    ``segment_area == a`` (-1 = in no area). Columns: total weight (not summed here: it does not
    change from tick to tick, see ``area_weight_totals``), known weight, sum of weight * segment
    TPI, sum of weight * tti, weight at ``severe_level`` (known segments only). A segment is
    known when its speed is not NaN.

    Sums run in segment order; an unknown segment adds zeros, which leaves every sum as it was
    (they stay >= +0), so the result is the same as skipping it."""
    n = speed_kmh.shape[0]
    # Per-area sums in a local table with one more row, for the segments of no area: no branch.
    sums = np.zeros((n_areas + 2, AREA_N_SUMS))
    nowhere = n_areas + 1
    # The city's sums in locals: kept in registers instead of a store and reload per segment.
    c_known = c_tpi = c_tti = c_severe = 0.0
    known_buf = np.empty(AREA_BLOCK)
    tpi_buf = np.empty(AREA_BLOCK)
    tti_buf = np.empty(AREA_BLOCK)
    severe_buf = np.empty(AREA_BLOCK)
    for start in range(0, n, AREA_BLOCK):
        m = min(AREA_BLOCK, n - start)
        _area_terms_of_block(
            speed_kmh, free_flow_kmh, tti, level, weight, start, ratio_knots, tpi_knots, severe_level,
            known_buf[:m], tpi_buf[:m], tti_buf[:m], severe_buf[:m],
        )
        for j in range(m):
            s = start + j
            a = int(segment_area[s])
            a = nowhere if a < 0 else a
            c_known += known_buf[j]
            c_tpi += tpi_buf[j]
            c_tti += tti_buf[j]
            c_severe += severe_buf[j]
            sums[a, AREA_KNOWN_WEIGHT] += known_buf[j]
            sums[a, AREA_TPI_WEIGHTED] += tpi_buf[j]
            sums[a, AREA_TTI_WEIGHTED] += tti_buf[j]
            sums[a, AREA_SEVERE_WEIGHT] += severe_buf[j]
    for area in range(n_areas):
        for c in range(AREA_KNOWN_WEIGHT, AREA_N_SUMS):
            out_sums[area, c] += sums[area, c]
    city = n_areas
    out_sums[city, AREA_KNOWN_WEIGHT] += c_known
    out_sums[city, AREA_TPI_WEIGHTED] += c_tpi
    out_sums[city, AREA_TTI_WEIGHTED] += c_tti
    out_sums[city, AREA_SEVERE_WEIGHT] += c_severe
