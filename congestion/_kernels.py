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
from numba import njit

# Order of the fields in the ``spot_params`` tuple that the spot-speed kernels take; the
# engine builds it from ``EngineSettings`` in ``engine._spot_params``.
SPOT_VEHICLE_LENGTH_M = 0
SPOT_EMPTY_OCCUPANCY_MAX_PCT = 1
SPOT_STOPPED_OCCUPANCY_MIN_PCT = 2
SPOT_STOPPED_SPEED_KMH = 3
SPOT_MAX_SPEED_FACTOR = 4
SPOT_LOW_EVIDENCE_WEIGHT_VEH = 5
SPOT_STOPPED_WEIGHT_VEH = 6
SPOT_N_PARAMS = 7

# Lanes are tracked as bits of a uint16 mask per segment (state.SEGMENT_SCRATCH_RECORD); lane
# numbers above this fold onto it (no carriageway has 16 lanes one way: this only guards input).
MAX_LANE_BIT = 15


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def first_invalid_reading(detector_index: np.ndarray, ts: np.ndarray, n_detectors: int) -> int:
    """Row of the first reading whose detector index is outside ``0..n_detectors-1`` or whose
    ``ts`` is not finite; -1 when all are valid. One pass, so ``add_readings`` stays cheap."""
    for i in range(detector_index.shape[0]):
        d = detector_index[i]
        if d < 0 or d >= n_detectors or not math.isfinite(ts[i]):
            return i
    return -1


# --------------------------------------------------------------------------------------------
# Spot speed of one reading
# --------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _clamp_speed(v: float, speed_limit_kmh: float, max_speed_factor: float) -> float:
    """Clamp to [1, max(1, factor × limit)] km/h: below 1 km/h one reading would dominate the
    harmonic mean; far above the limit a reading is likelier an artefact than a real speed."""
    v_max: float = max(max_speed_factor * np.float64(speed_limit_kmh), 1.0)
    if v > v_max:
        return v_max
    if v < 1.0:
        return 1.0
    return v


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
    detector_info: np.ndarray,
    detector_state: np.ndarray,
    segments: np.ndarray,
    spot_params: tuple[float, ...],
    stamp: int,
) -> int:
    """One pass over a tick's readings; returns how many carried no speed evidence.

    Record layouts are in ``state``: ``detector_info`` (registry fields), ``detector_state``
    (last reading, marks), ``segments`` (accumulators at zero and ``newest_ts`` -inf for
    untouched segments; ``update_segments`` resets them as it reads them). Per segment, for the
    readings with evidence:

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

    ``stamp`` (1..2**31-1) must differ from every stamp already in ``detector_state`` (the
    engine increments it each tick): comparing a detector's stamp with it tells "first reading
    of this detector this tick" without clearing anything.

    Every reading, with evidence or not, updates its detector's last reading unless its ``ts`` is
    older than the one held (a late reading must not roll the detector back; on a tie the later
    row wins), and counts into ``readings_total``.
    """
    n_without_evidence = 0
    for i in range(detector_index.shape[0]):
        d = detector_index[i]
        info = detector_info[d]
        state = detector_state[d]
        t = ts[i]

        # Last reading; NaN last_ts = never seen, so `not t < NaN` is true.
        if not t < state.last_ts:
            state.last_ts = t
            state.last_count = count[i]
            state.last_occupancy_pct = occupancy_pct[i]
            state.last_speed_kmh = speed_kmh[i]
        state.readings_total += 1

        seg = segments[info.segment]
        v, w, empty_road = _spot_speed(
            count[i], occupancy_pct[i], speed_kmh[i], interval_s[i], seg.speed_limit_kmh, spot_params
        )
        if not w > 0.0:
            n_without_evidence += 1
            continue

        if empty_road:
            seg.weight_free_flow += w
        else:
            seg.weight += w
            seg.weight_per_speed += w / v
        seg.newest_ts = max(seg.newest_ts, t)

        if state.seen_stamp != stamp:
            state.seen_stamp = stamp
            if info.is_camera:
                seg.n_cameras += 1
            else:
                seg.n_detectors += 1

        ln = int(info.lane)
        if ln < 0:
            ln = int(lane[i])
        if ln < 0:
            if state.unknown_lane_stamp != stamp:
                state.unknown_lane_stamp = stamp
                seg.n_unknown_lane += 1
        else:
            if ln > MAX_LANE_BIT:
                ln = MAX_LANE_BIT
            seg.lane_mask |= np.uint16(1 << ln)
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


@njit(cache=True, nogil=True)
def update_segments(
    tick_ts: float,
    stale_after_s: float,
    confidence_half_vehicles: float,
    max_speed_factor: float,
    ratio_upper_bounds: tuple[float, ...],
    segments: np.ndarray,
    segment_lanes: np.ndarray,
    free_flow_kmh: np.ndarray,
    evidence_ts: np.ndarray,
    evidence_quality: np.ndarray,
    prev_speed_kmh: np.ndarray,
    prev_n_detectors: np.ndarray,
    prev_n_cameras: np.ndarray,
    out_speed_kmh: np.ndarray,
    out_tti: np.ndarray,
    out_level: np.ndarray,
    out_confidence: np.ndarray,
    out_n_detectors: np.ndarray,
    out_n_cameras: np.ndarray,
) -> int:
    """Turn one tick's accumulators (``segments``, from ``accumulate_readings``) and the held
    state into every segment's state; returns the number of segments with a known state.

    A segment takes the tick's evidence when it has some (weight > 0) and it is not older than
    the evidence it already holds (a late reading does not roll a newer estimate back); its
    speed is then the weighted harmonic mean of the spot speeds,

        v = sum(w_i) / sum(w_i / v_i),

    since the harmonic mean of time-mean spot speeds measured at a point estimates the
    space-mean speed over the segment, which is what travel time depends on (Wardrop 1952,
    "Some theoretical aspects of road traffic research"; May, "Traffic Flow Fundamentals",
    1990, ch. 4; Garber & Hoel, "Traffic and Highway Engineering", ch. 6). Otherwise it keeps
    the estimate it holds. A held estimate older than ``stale_after_s`` (by its newest reading's
    ts) is dropped: speed NaN, level 0.

    ``evidence_ts`` and ``evidence_quality`` are updated in place (the held state); ``prev_*`` are
    last tick's outputs, read only; the accumulators (``state.SEGMENT_SCRATCH_RECORD``) are
    reset as they are read, ready for the next ``accumulate_readings``. Confidence, tti and
    level: see the ``engine`` module docs.
    """
    n_known = 0
    for s in range(segments.shape[0]):
        seg = segments[s]
        w_free_flow = np.float64(seg.weight_free_flow)
        w = np.float64(seg.weight) + w_free_flow
        held_ts = evidence_ts[s]
        if w > 0.0:
            new_ts = seg.newest_ts
            if not new_ts < held_ts:
                ff_spot = _clamp_speed(
                    np.float64(free_flow_kmh[s]), seg.speed_limit_kmh, max_speed_factor
                )
                speed = w / (np.float64(seg.weight_per_speed) + w_free_flow / ff_spot)
                held_ts = new_ts
                evidence_ts[s] = new_ts
                lanes = max(segment_lanes[s], 1)
                lanes_seen = _popcount(np.int64(seg.lane_mask)) + np.int64(seg.n_unknown_lane)
                covered = min(lanes_seen, lanes)
                quality = 0.5 * covered / lanes + 0.5 * w / (w + confidence_half_vehicles)
                evidence_quality[s] = quality
                n_det = seg.n_detectors
                n_cam = seg.n_cameras
            else:
                speed = prev_speed_kmh[s]
                quality = evidence_quality[s]
                n_det = prev_n_detectors[s]
                n_cam = prev_n_cameras[s]
            seg.weight = 0.0
            seg.weight_free_flow = 0.0
            seg.weight_per_speed = 0.0
            seg.newest_ts = -np.inf
            seg.n_detectors = 0
            seg.n_cameras = 0
            seg.lane_mask = 0
            seg.n_unknown_lane = 0
        else:
            # Only readings with evidence touch a segment's accumulators, so w == 0 means they
            # are still clear: nothing to reset.
            speed = prev_speed_kmh[s]
            quality = evidence_quality[s]
            n_det = prev_n_detectors[s]
            n_cam = prev_n_cameras[s]

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
        ff = free_flow_kmh[s]
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
# Segment states -> area sums (city + districts)
# --------------------------------------------------------------------------------------------

AREA_TOTAL_WEIGHT = 0
AREA_KNOWN_WEIGHT = 1
AREA_TPI_WEIGHTED = 2
AREA_TTI_WEIGHTED = 3
AREA_SEVERE_WEIGHT = 4
AREA_N_SUMS = 5


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
    """Weighted sums per area into ``out_sums`` (shape ``(n_areas + 1, AREA_N_SUMS)``, zeroed by
    the caller); row ``n_areas`` is the whole network, row ``a`` the segments with
    ``segment_area == a`` (-1 = in no area). Columns: total weight, known weight, sum of
    weight * segment TPI, sum of weight * tti, weight at ``severe_level`` (known segments only).
    A segment is known when its speed is not NaN."""
    city = n_areas
    for s in range(speed_kmh.shape[0]):
        w = weight[s]
        a = segment_area[s]
        out_sums[city, AREA_TOTAL_WEIGHT] += w
        if a >= 0:
            out_sums[a, AREA_TOTAL_WEIGHT] += w
        v = speed_kmh[s]
        if v != v:
            continue
        tpi = _tpi_of_ratio(np.float64(v) / np.float64(free_flow_kmh[s]), ratio_knots, tpi_knots)
        wt_tti = w * tti[s]
        severe = w if level[s] == severe_level else 0.0
        out_sums[city, AREA_KNOWN_WEIGHT] += w
        out_sums[city, AREA_TPI_WEIGHTED] += w * tpi
        out_sums[city, AREA_TTI_WEIGHTED] += wt_tti
        out_sums[city, AREA_SEVERE_WEIGHT] += severe
        if a >= 0:
            out_sums[a, AREA_KNOWN_WEIGHT] += w
            out_sums[a, AREA_TPI_WEIGHTED] += w * tpi
            out_sums[a, AREA_TTI_WEIGHTED] += wt_tti
            out_sums[a, AREA_SEVERE_WEIGHT] += severe
