"""Jitted kernels of detector health, g-factor calibration and incident detection.

Same rules as ``_kernels.py``: plain arrays and numbers in, no validation (the typed wrappers in
``health.py``, ``gfactor.py`` and ``incidents.py`` check shapes first), tables as arguments, and
every kernel has a slow numpy twin in the tests that it is compared with.

"No data" is NaN; times are epoch seconds in float64.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Indices of the statistics ``window_stats`` writes per detector (columns of ``out``).
ST_SAMPLES = 0  # samples with ts in (tick - window_s, tick]
ST_ZERO_OCC = 1  # ... with occupancy == 0 and count == 0 (an empty or switched-off loop)
ST_OCC_NO_FLOW = 2  # ... with 0 < occupancy < stopped_occ_pct and count == 0 (PeMS "intermittent")
ST_FLOW_NO_OCC = 3  # ... with count >= min_count and occupancy == 0 (vehicles but no occupancy)
ST_FLOW_SAMPLES = 4  # ... with count >= min_count (the base of ST_FLOW_NO_OCC)
ST_HIGH_OCC = 5  # ... with occupancy >= high_occ_pct and too much flow for it (see window_stats)
ST_RUN = 6  # identical non-empty readings ending at the newest sample (a stuck detector)
ST_EMPTY_RUN = 7  # readings with count 0 and occupancy 0 ending at the newest sample
ST_N = 8


# --------------------------------------------------------------------------------------------
# Detector health: a ring of recent samples per detector, and window statistics over it
# --------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def ring_append(
    detector_index: np.ndarray,
    ts: np.ndarray,
    count: np.ndarray,
    occupancy_pct: np.ndarray,
    speed_kmh: np.ndarray,
    ring_ts: np.ndarray,
    ring_count: np.ndarray,
    ring_occ: np.ndarray,
    ring_speed: np.ndarray,
    head: np.ndarray,
    filled: np.ndarray,
) -> None:
    """Append readings (in the order given) to each detector's ring of the last ``W`` samples.

    ``head[d]`` is where the next sample of detector ``d`` goes; ``filled[d]`` how many slots
    hold samples (at most ``W``). A reading whose ``ts`` equals or precedes the newest sample held
    is dropped: the ring is a time series, and a late or repeated interval would count twice.
    """
    w = ring_ts.shape[1]
    for i in range(detector_index.shape[0]):
        d = detector_index[i]
        if filled[d] > 0:
            newest = ring_ts[d, (head[d] - 1) % w]
            if not ts[i] > newest:
                continue
        h = head[d]
        ring_ts[d, h] = ts[i]
        ring_count[d, h] = count[i]
        ring_occ[d, h] = occupancy_pct[i]
        ring_speed[d, h] = speed_kmh[i]
        head[d] = (h + 1) % w
        if filled[d] < w:
            filled[d] += 1


@njit(cache=True, nogil=True)
def _same(a: float, b: float) -> bool:
    """Equal, counting two NaNs as equal (a stuck single loop repeats its NaN speed too)."""
    return a == b or (math.isnan(a) and math.isnan(b))


@njit(cache=True, nogil=True)
def window_stats(
    tick_ts: float,
    window_s: float,
    high_occ_pct: float,
    stopped_occ_pct: float,
    min_count: float,
    fd_params: tuple[float, float, float],
    interval_s: np.ndarray,
    lanes: np.ndarray,
    ring_ts: np.ndarray,
    ring_count: np.ndarray,
    ring_occ: np.ndarray,
    ring_speed: np.ndarray,
    head: np.ndarray,
    filled: np.ndarray,
    out: np.ndarray,
) -> None:
    """Per detector, the counts ``ST_*`` over its samples with ts in (tick - window_s, tick].

    ``ST_HIGH_OCC`` counts samples whose occupancy is at least ``high_occ_pct`` *and* whose flow
    per lane (count over ``interval_s[d]``, divided by ``lanes[d]``) exceeds what that occupancy
    allows on the congested side of a triangular fundamental diagram, times a margin:
    ``fd_params = (capacity_veh_h, critical_occ_pct, margin)`` and the bound is
    ``margin × capacity × (100 − occ) / (100 − critical_occ)``. A real jam has high occupancy
    with low flow; a loop that over-reports occupancy keeps the flow of free traffic.

    ``ST_RUN`` is the length of the run of identical readings (count, occupancy and speed all
    equal) that ends at the newest sample, counted only when that reading is not empty (count or
    occupancy > 0): an empty road legitimately repeats (0, 0, none). ``ST_EMPTY_RUN`` is the run
    of empty readings (count and occupancy 0) that ends at the newest sample.
    """
    w = ring_ts.shape[1]
    capacity, critical, margin = fd_params
    for d in range(ring_ts.shape[0]):
        for k in range(ST_N):
            out[d, k] = 0.0
        n = filled[d]
        if n == 0:
            continue
        newest = (head[d] - 1) % w
        c0 = ring_count[d, newest]
        o0 = ring_occ[d, newest]
        s0 = ring_speed[d, newest]
        in_run = c0 > 0.0 or o0 > 0.0
        in_empty = True
        for j in range(n):
            slot = (head[d] - 1 - j) % w
            t = ring_ts[d, slot]
            c = ring_count[d, slot]
            o = ring_occ[d, slot]
            if in_empty:
                if c == 0.0 and o == 0.0:
                    out[d, ST_EMPTY_RUN] += 1.0
                else:
                    in_empty = False
            if in_run:
                if _same(c, c0) and _same(o, o0) and _same(ring_speed[d, slot], s0):
                    out[d, ST_RUN] += 1.0
                else:
                    in_run = False
            if not (t > tick_ts - window_s and t <= tick_ts):
                continue
            out[d, ST_SAMPLES] += 1.0
            if o == 0.0 and c == 0.0:
                out[d, ST_ZERO_OCC] += 1.0
            if c == 0.0 and o > 0.0 and o < stopped_occ_pct:
                out[d, ST_OCC_NO_FLOW] += 1.0
            if c >= min_count:
                out[d, ST_FLOW_SAMPLES] += 1.0
                if o == 0.0:
                    out[d, ST_FLOW_NO_OCC] += 1.0
            if o >= high_occ_pct and interval_s[d] > 0.0:
                q_lane = c * 3600.0 / interval_s[d] / max(lanes[d], 1.0)
                bound = margin * capacity * (100.0 - o) / (100.0 - critical)
                if q_lane > bound:
                    out[d, ST_HIGH_OCC] += 1.0


# --------------------------------------------------------------------------------------------
# g-factor: effective vehicle length of each reading
# --------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def gfactor_samples(
    count: np.ndarray,
    occupancy_pct: np.ndarray,
    interval_s: np.ndarray,
    reference_speed_kmh: np.ndarray,
    min_count: float,
    min_occ_pct: float,
    max_occ_pct: float,
    out_g_m: np.ndarray,
) -> None:
    """Per reading, the effective vehicle length g = v·occ/q (metres) that makes the reading
    consistent with ``reference_speed_kmh`` (NaN where there is no reference or the reading is
    not usable: too few vehicles, occupancy outside [min_occ_pct, max_occ_pct])."""
    for i in range(count.shape[0]):
        c = count[i]
        o = occupancy_pct[i]
        v = reference_speed_kmh[i]
        if c >= min_count and o >= min_occ_pct and o <= max_occ_pct and v > 0.0 and interval_s[i] > 0.0:
            flow_veh_s = c / interval_s[i]
            out_g_m[i] = (v / 3.6) * (o / 100.0) / flow_veh_s
        else:
            out_g_m[i] = np.nan


# --------------------------------------------------------------------------------------------
# Incidents: per-segment occupancy and flow of one tick
# --------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def gfactor_push(
    ring: np.ndarray, head: np.ndarray, n: np.ndarray, dets: np.ndarray, vals: np.ndarray
) -> None:
    """Append estimate ``vals[i]`` to detector ``dets[i]``'s ring of the last ``W`` estimates, in
    the order given (``head[d]``: next slot; ``n[d]``: estimates ever added)."""
    w = ring.shape[1]
    for i in range(dets.shape[0]):
        d = dets[i]
        ring[d, head[d]] = vals[i]
        head[d] = (head[d] + 1) % w
        n[d] += 1


@njit(cache=True, nogil=True)
def segment_occupancy(
    detector_segment: np.ndarray,
    usable: np.ndarray,
    last_ts: np.ndarray,
    last_count: np.ndarray,
    last_occ: np.ndarray,
    last_interval_s: np.ndarray,
    tick_ts: float,
    fresh_s: float,
    out_occ: np.ndarray,
    out_flow_veh_h: np.ndarray,
    out_max_occ: np.ndarray,
    out_min_lane_flow: np.ndarray,
) -> None:
    """Per segment, over its usable detectors whose last reading is at most ``fresh_s`` old:
    mean occupancy (%), total flow (veh/h), the highest lane occupancy and the lowest lane flow
    (veh/h). NaN where no detector qualifies."""
    n_seg = out_occ.shape[0]
    n_det = np.zeros(n_seg, dtype=np.int32)
    for s in range(n_seg):
        out_occ[s] = 0.0
        out_flow_veh_h[s] = 0.0
        out_max_occ[s] = -1.0
        out_min_lane_flow[s] = np.inf
    for d in range(detector_segment.shape[0]):
        if not usable[d]:
            continue
        t = last_ts[d]
        if not (t > tick_ts - fresh_s and t <= tick_ts):
            continue
        o = last_occ[d]
        if math.isnan(o) or not last_interval_s[d] > 0.0:
            continue
        s = detector_segment[d]
        q = last_count[d] * 3600.0 / last_interval_s[d]
        n_det[s] += 1
        out_occ[s] += o
        out_flow_veh_h[s] += q
        out_max_occ[s] = max(out_max_occ[s], o)
        out_min_lane_flow[s] = min(out_min_lane_flow[s], q)
    for s in range(n_seg):
        if n_det[s] == 0:
            out_occ[s] = np.nan
            out_flow_veh_h[s] = np.nan
            out_max_occ[s] = np.nan
            out_min_lane_flow[s] = np.nan
        else:
            out_occ[s] /= n_det[s]


@njit(cache=True, nogil=True)
def binomial_lower_tail(k: np.ndarray, n: np.ndarray, p: np.ndarray, out: np.ndarray) -> None:
    """P(X <= k[i]) for X ~ Binomial(n[i], p[i]), summed term by term in log space (n is a
    count of vehicles in a few minutes: hundreds at most). NaN for invalid inputs."""
    for i in range(k.shape[0]):
        ki = k[i]
        ni = n[i]
        pi = p[i]
        if not (ni >= 0.0 and ki >= 0.0 and pi >= 0.0 and pi <= 1.0):
            out[i] = np.nan
            continue
        kk = int(ki)
        nn = int(ni)
        if kk >= nn:
            out[i] = 1.0
            continue
        if pi == 0.0:
            out[i] = 1.0
            continue
        if pi == 1.0:
            out[i] = 0.0
            continue
        total = 0.0
        lp = math.log(pi)
        lq = math.log1p(-pi)
        base = math.lgamma(nn + 1.0)
        for j in range(kk + 1):
            total += math.exp(
                base - math.lgamma(j + 1.0) - math.lgamma(nn - j + 1.0) + j * lp + (nn - j) * lq
            )
        out[i] = min(total, 1.0)


@njit(cache=True, nogil=True)
def row_nanmedian(values: np.ndarray, columns: np.ndarray, out: np.ndarray) -> None:
    """Per row of ``values``, the median of its finite entries in ``columns`` (NaN if none):
    ``np.nanmedian(values[:, columns], axis=1)`` without the copy and the all-NaN warnings."""
    buf = np.empty(columns.shape[0], dtype=np.float64)
    for r in range(values.shape[0]):
        m = 0
        for j in range(columns.shape[0]):
            v = values[r, columns[j]]
            if not math.isnan(v):
                buf[m] = v
                m += 1
        if m == 0:
            out[r] = np.nan
            continue
        part = np.sort(buf[:m])
        half = m // 2
        out[r] = part[half] if m % 2 == 1 else 0.5 * (part[half - 1] + part[half])
