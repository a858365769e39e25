"""Timing of actuated signals by demand, for the travel-speed model's junction delay.

A fixed-time signal runs its program as written; an actuated one (SUMO ``type="actuated"``, a
vehicle-actuated controller) holds each variable phase at least ``minDur``, then extends it while
its detectors see vehicles closer than a maximum gap, up to ``maxDur``. Its cycle and green
shares therefore follow demand: near the minimum program in light traffic, near or beyond the
nominal ``duration`` with cross traffic. Reading such a program by its nominal durations
(``roadpulse.signal_plans.sumo_signal_timing``) charges light traffic the nominal 90-s cycle's
delay; reading it by ``minDur`` undercharges the loaded junctions.

So per actuated signal and tick, from the measured flows of its approaches (smoothed with time
constant ``FLOW_TAU_S``; an approach without loops at the mean per-lane flow of the signal's
looped ones; a signal with none keeps its nominal program), each variable phase p lasts

    g_p = clamp(q_p·r_p / (s − q_p)  +  (exp(Q_p·h) − 1) / Q_p,   minDur_p, nominal_p)

* the first term the queue that gathered over the red r_p = C − g_p, per lane at the largest
  per-lane flow q_p of the phase's approaches, discharging at the saturation flow s less the
  arrivals (the queue-clearance part of the actuated green; HCM 2010 ch. 31, "Actuated phase
  duration"; Akçelik 1994, *Estimation of green times and cycle time for vehicle-actuated
  signals*, TRR 1457);
* the second the gap-out extension: with arrivals at the phase's detectors a Poisson stream of
  total rate Q_p (every lane the phase serves), the expected time from the queue's end until a
  gap longer than the maximum gap h has begun and run out, (e^{Q·h} − 1)/Q (Akçelik 1994, the
  random-arrival case; h when no one comes). h = ``MAX_GAP_S`` is an *effective* gap, fitted
  (6 s; SUMO's ``max-gap`` is 3 s): platoons extend a phase more than random arrivals do.
* a queue standing over the approach's loops (smoothed occupancy from ``OCC_LOW`` rising to
  ``OCC_HIGH``) holds its detectors covered: the phase is moved towards its ceiling linearly.

Fixed phases (yellow, all-red: minDur = maxDur) keep their duration. C = Σ g_p is found by a few
fixed-point rounds from the nominal program. The ceiling is the nominal duration, not maxDur: on
the SUMO grids with cross traffic the programs run near nominal (the nominal timing fitted the
loaded actuated grids best). Each segment's green ratio is then Σ_p share_p·g_p / C (share_p:
the share of its controlled links green in phase p), clipped to 0.05..0.95 as the static one.
The result is written into the segment records' ``signal_cycle_s`` / ``green_ratio`` before the
tick's ``update_segments``: the kernel and its numpy twin are unchanged, and a network without
actuated signals does no extra work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Effective maximum gap h (s) of the gap-out extension (default of ``[engine]
#: actuated_max_gap_s``). SUMO's default ``max-gap`` is 3 s, but
#: arrivals from upstream signals come in platoons, which extend a phase longer than a Poisson
#: stream of the same rate (Akçelik's bunched-arrival model); 6 s fitted the six actuated
#: accuracy grids (3 s read their level-2..4 rows 1.2-1.5x too fast).
MAX_GAP_S = 6.0
#: Time constant (s) of the exponential smoothing of the approaches' flows (default of
#: ``[engine] actuated_flow_tau_s``).
FLOW_TAU_S = 300.0
#: The ceiling of a variable phase: its nominal duration (False) or its maxDur (True).
CEILING_MAX_DUR = False
#: Occupancy of an approach's loops from which a queue holds its phase green (ramp to OCC_HIGH).
OCC_LOW = 0.10
OCC_HIGH = 0.20
#: Fixed-point rounds for the cycle (the clearance term depends on the red, which depends on C).
ROUNDS = 4


@dataclass(frozen=True)
class ActuatedSignals:
    """Actuated programs and the segments they control (``sumo_actuated_signals``).

    ``segment[k]`` is a segment index, ``signal[k]`` its signal (row of the phase tables),
    ``green_share[k, p]`` the share of its controlled links green in phase p; ``nominal_s``,
    ``min_s``, ``max_s`` (signals × phases, 0 past a program's end) the phase durations."""

    segment: np.ndarray
    signal: np.ndarray
    green_share: np.ndarray
    nominal_s: np.ndarray
    min_s: np.ndarray
    max_s: np.ndarray


def actuated_timing(
    signals: ActuatedSignals,
    flow_veh_s: np.ndarray,
    occupancy: np.ndarray,
    lanes: np.ndarray,
    saturation_veh_s: float,
    max_gap_s: float = MAX_GAP_S,
) -> tuple[np.ndarray, np.ndarray]:
    """(cycle s, green ratio) of each of ``signals.segment`` given its approach's flow per lane
    (veh/s; NaN = not measured) and lanes (module docstring)."""
    n_sig, n_ph = signals.nominal_s.shape
    sig = signals.signal
    share = signals.green_share
    known = np.isfinite(flow_veh_s)
    # An unmeasured approach at the mean per-lane flow of its signal's measured ones.
    total = np.bincount(sig[known], weights=flow_veh_s[known], minlength=n_sig)
    count = np.bincount(sig[known], minlength=n_sig)
    measured = count > 0
    mean = np.where(measured, total / np.maximum(count, 1), 0.0)
    q = np.where(known, flow_veh_s, mean[sig])
    q = np.minimum(q, 0.95 * saturation_veh_s)
    served = share > 0.0
    # Q_p: total flow the phase's detectors see; q_p: the largest per-lane flow it serves.
    big_q = np.zeros((n_sig, n_ph))
    np.add.at(big_q, sig, share * (q * lanes)[:, None])
    lane_q = np.zeros((n_sig, n_ph))
    np.maximum.at(lane_q, sig, np.where(served, q[:, None], 0.0))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ext = np.where(big_q > 1e-9, np.expm1(big_q * max_gap_s) / big_q, max_gap_s)
    # Queued approaches: a standing queue holds the detectors covered, the phase runs to its
    # ceiling whatever the flow (ramp of the occupancy between OCC_LOW and OCC_HIGH).
    held = np.clip((np.nan_to_num(occupancy, nan=0.0) - OCC_LOW) / (OCC_HIGH - OCC_LOW), 0.0, 1.0)
    phase_held = np.zeros((n_sig, n_ph))
    np.maximum.at(phase_held, sig, np.where(served, held[:, None], 0.0))
    variable = signals.min_s < signals.nominal_s
    ceiling = signals.max_s if CEILING_MAX_DUR else signals.nominal_s
    d = signals.nominal_s.copy()
    for _ in range(ROUNDS):
        cycle = d.sum(axis=1, keepdims=True)
        red = cycle - d
        clear = lane_q * red / (saturation_veh_s - lane_q)
        free = np.clip(clear + ext, signals.min_s, ceiling)
        d = np.where(variable, free + phase_held * (ceiling - free), signals.nominal_s)
    d = np.where(measured[:, None], d, signals.nominal_s)
    cycle = d.sum(axis=1)
    green = (share * d[sig]).sum(axis=1) / cycle[sig]
    return cycle[sig], np.clip(green, 0.05, 0.95)


def light_traffic_timing(
    signals: ActuatedSignals, lanes: np.ndarray, saturation_veh_s: float, max_gap_s: float = MAX_GAP_S
) -> tuple[np.ndarray, np.ndarray]:
    """(cycle s, green ratio) of each of ``signals.segment`` with no traffic at all: every
    variable phase gaps out after its minimum (``actuated_timing`` at zero measured flow)."""
    k = len(signals.segment)
    lane = np.maximum(np.asarray(lanes, dtype=np.float64)[signals.segment], 1.0)
    return actuated_timing(signals, np.zeros(k), np.zeros(k), lane, saturation_veh_s, max_gap_s=max_gap_s)


class ActuatedTiming:
    """Per-engine state: the smoothed flows of the actuated approaches, and the tick's update of
    their records' signal timing (``update``)."""

    def __init__(
        self,
        signals: ActuatedSignals,
        lanes: np.ndarray,
        saturation_flow_veh_h: float,
        *,
        max_gap_s: float = MAX_GAP_S,
        flow_tau_s: float = FLOW_TAU_S,
    ) -> None:
        self.signals = signals
        self.max_gap_s = max_gap_s
        self.flow_tau_s = flow_tau_s
        self.lanes = np.maximum(np.asarray(lanes, dtype=np.float64)[signals.segment], 1.0)
        self.saturation_veh_s = saturation_flow_veh_h / 3600.0
        k = len(signals.segment)
        self.count = np.zeros(k)
        self.seconds = np.zeros(k)
        self.occupied = np.zeros(k)
        self.last_ts = math.nan

    def update(self, tick_ts: float, records: np.ndarray) -> None:
        """Fold the tick's counts (``records``: the segment scratch, before ``update_segments``
        reads and resets it) into the smoothed flows and write the timing into ``records``."""
        seg = self.signals.segment
        decay = 1.0
        if self.last_ts == self.last_ts and tick_ts > self.last_ts:
            decay = math.exp(-(tick_ts - self.last_ts) / self.flow_tau_s)
        self.last_ts = tick_ts
        self.count = decay * self.count + records["count"][seg]
        self.seconds = decay * self.seconds + records["interval_s"][seg]
        self.occupied = decay * self.occupied + records["occupancy_s"][seg]
        with np.errstate(invalid="ignore", divide="ignore"):
            flow = np.where(self.seconds > 0.0, self.count / self.seconds, np.nan)
            occ = np.where(self.seconds > 0.0, self.occupied / self.seconds, np.nan)
        cycle, green = actuated_timing(
            self.signals, flow, occ, self.lanes, self.saturation_veh_s, max_gap_s=self.max_gap_s
        )
        records["signal_cycle_s"][seg] = cycle
        records["green_ratio"][seg] = green
