"""How segment speed is estimated: the travel-speed model, written down (README has the summary).

``speed_kmh`` of a segment is its *space-mean travel speed*: length ÷ mean travel time over the
whole segment, the delay at its downstream junction included (GB/T 33171 grades this speed). A
loop measures something else: spot speeds of the vehicles passing one point, how many passed and
for what share of the interval the point was covered (occupancy). This module turns the one into
the other. The jitted form is ``_kernels._segment_travel_time``; ``travel_time_reference`` below is
the plain numpy form the kernel is tested against (and the one the constants were fitted with).

Evidence per segment and tick (readings of its usable detectors since the last tick)
-----------------------------------------------------------------------------------
* ``v_h``  — the weighted harmonic mean of the readings' spot speeds (``engine`` docs; measured
  speed, or q·g/occ for single loops, the free-flow speed for an empty interval and
  ``stopped_speed_kmh`` for a queue standing on the loop). Harmonic, because the harmonic mean of
  spot speeds estimates the space-mean speed at that point (Wardrop 1952).
* ``q``    — flow per lane, vehicles counted ÷ detector-seconds covered (each loop is one lane).
* ``o``    — mean occupancy (fraction), weighted by interval length.
* static: length ``L``, loop position ``p`` = pos_m / L (mean over the segment's loops; 0.7 when
  unknown), whether the downstream junction is signalised (``junction_signalised``).

**A loop remembers a queue** (``_kernels.accumulate_readings``, ``DETECTOR_RECORD.queue_age``).
An interval in which nobody passed and nothing stood on the loop is normally an empty lane,
weak evidence of free flow. Right after the same loop saw a queue — a reading whose spot speed
is at most ``queue_speed_fraction_of_limit`` (0.3: GB/T 33171's severe band, r ≤ 0.3, taken
against the limit) × the limit, or nobody passing with the loop covered — it is instead that
queue *standing with the loop in the gap between two cars*: a stopped car does not move, so the
loop stays uncovered for the whole interval (SUMO's loops are points; a real loop shorter than
the standstill gap does the same). Such an interval is read as the standing queue it is (spot
speed ``stopped_speed_kmh``, occupancy ``stopped_occupancy_min_pct``), until the loop counts a
vehicle again or the empty intervals have lasted ``stale_after_s``. It matters where one lane
stands and another flows — in the SUMO gridlocks, the left-turn lane of an edge waits minutes
for room in a jammed exit while the through lane moves at 45 km/h — because a segment's travel
speed is distance ÷ time over *all* its vehicles (GB/T 33171; SUMO's ``<edgeData>``), and the
standing ones hold most of the time.

Model
-----
1. **Running time** ``T_run = L / min(v_h, v_limit)``: vehicles cross the segment at the speed the
   loop sees them run (faster than the limit is read as the limit, ``run_speed_cap``).

2. **Junction delay** ``d``. At a signal, Webster's uniform delay (Webster 1958, *Traffic signal
   settings*, RRL Tech. Paper 39; HCM 2010 eq. 18-19)::

       d_u = 0.5 · C · (1 − λ)² / (1 − min(1, X) · λ),   X = q / (s · λ)

   with cycle ``C``, effective green ratio ``λ = g/C``, saturation flow ``s`` per lane and the
   degree of saturation ``X`` from the measured flow. ``C`` and ``λ`` are the segment's own where
   the network file states them (a SUMO ``.net.xml`` does: ``roadpulse.signal_plans``, passed as
   ``CongestionEngine(signal_timing=...)``), else typical values (``TravelSpeedParams``, config
   ``signal_cycle_s`` / ``signal_green_ratio``); ``s`` is typical. An actuated signal's ``C`` and
   ``λ`` follow demand each tick, between its minimum program and its nominal one
   (``congestion.actuated``, ``CongestionEngine(actuated_signals=...)``). The delay is scaled by
   ``signal_delay_factor`` (fitted: the loop sits upstream of where vehicles brake, so part of the
   stop is not in ``T_run``). At a priority junction (no signal) the delay is the constant
   ``priority_delay_s`` — 0 by default: on the SUMO city networks any constant made short
   segments worse, the loop's running speed already holds the slowing for the junction. A
   signal at a junction that only joins two roads end to end (one way on, taken by nobody else:
   ``engine._pass_through``, e.g. the always-green corner lights of a generated grid) has no
   conflicting stream and costs no delay either — unless its own plan shows the segment a red
   (green share below ``MAX_GREEN_RATIO``, e.g. a grid corner whose approaches take turns).

   Plus, at a signal, the **stop-start loss**: Webster's queue has vehicles stop and start at
   once; a real stop from the running speed v costs v/(2a) braking and v/(2d) pulling away
   beyond the wait (``stop_accel_ms2``, ``stop_decel_ms2``: a passenger car's), paid by the
   share of vehicles that stop, Akçelik's stop rate h = (1 − λ)/(1 − y), y = q/s (Akçelik 1981,
   *Traffic signals: capacity and timing analysis*, ARR 123), scaled by ``stop_loss_factor``::

       d = signal_delay_factor · d_u  +  stop_loss_factor · h · v · (1/(2a) + 1/(2d))

3. **Queue over the loop.** Measured flow can never show X > 1, so oversaturation is read from
   occupancy instead. The queue at a junction grows back from the stop line; a loop at ``p·L`` is
   covered by it once it is longer than ``(1 − p)·L``. Inside a queue the space-mean speed is the
   loop's q/k, with density k = o / g (g = effective vehicle length; the fundamental relation
   q = k·v, e.g. May 1990, ch. 5), which — unlike ``v_h`` — counts the lanes where vehicles stand
   and nobody passes. So when ``o ≥ queue_occupancy``::

       v_q    = q · g / o                      (clamped to ≥ stopped_speed_kmh)
       T_queue = L·(1 − p) / v_q  +  L·p · (α / v_q + (1 − α) / v_h)

   the stretch from the loop to the stop line is in the queue, the stretch upstream of the loop is
   in it with weight ``α``, the rest runs at ``v_h``. How far the queue reaches back past the loop
   grows with how much of the time it covers the loop: α is ``upstream_queue_share`` (fitted:
   0.25) when the queue just reaches the loop (o = ``queue_occupancy``) and rises linearly to 1
   at a loop covered all the time (o = 1)::

       α = a + (1 − a) · (o − o_q) / (1 − o_q)

   (A constant α = 0.75, the model before, read light queues too slow and standing ones too
   fast: on SUMO grids the speed at true level 4 was 0.83× the truth, at level 5 1.42×.)

4. ``T = max(T_run + d, T_queue)``, ``speed = L / T``.

The constants are ``[engine]`` config keys (``engine.ENGINE_CONFIG_FIELDS``), checked by
leave-scenarios-out validation on SUMO grids of several sizes, seeds, demands and signal programs
and on real-city networks (benchmarks/bench_accuracy.py ``--validate``); see docs/accuracy.md.

Smoothing (``_kernels.update_segments``)
--------------------------------------
Per segment, exponentially decayed sums (time constant ``smoothing_tau_s``) of the *distance*
driven and the *time* spent that each tick's evidence stands for; the speed is their ratio —
total distance ÷ total time, which is exactly what a mean travel speed over an interval is (and
what SUMO's ``<edgeData>`` speed is). With an occupancy, the time is the vehicle-time on the
segment that the loop's density implies, occ·Δt·L/g (so a standing queue, which moves no
vehicle over the loop, still weighs in), and the distance that time ÷ pace; without one, the
distance is (vehicles counted)·L. Each tick also adds ``smoothing_min_weight_veh``·L, so that
an empty interval moves the estimate a little — except that an interval in which nobody passed
and nothing stood on the loop does not move an estimate already held: it is what an empty road
and a queue at rest with the loop in a gap both give (in SUMO gridlock most intervals on jammed
edges look like that).

Free flow is learned as GB/T 33171 §7.2.1.2 (and the accuracy judge) defines it: the mean of
the top ninth of the segment's *interval* travel speeds, at most the limit. An interval is
``free_flow_interval_s`` (300 s, aligned to its multiples, like the 5-minute intervals levels are
judged on); its speed is the distance ÷ time of its ticks' own evidence (not the smoothed
speeds, which carry the previous interval in), and an interval in which no vehicle was counted
gives none. The time keeps ``free_flow_delay_share`` (0.8) of the modelled mean junction delay,
less ``free_flow_delay_sd`` (0.5) standard deviations of the interval's mean delay (at most what
it kept): with arrivals at random over the cycle one vehicle's delay has the spread of
``junction_delay_sd_reference``, the mean of an interval's n vehicles that spread ÷ √n. The top
ninth of real intervals are their luckiest draws — the more so the fewer vehicles they held and
the nearer the green share is to one half — which a model of the mean never shows; a fixed
share of the mean delay fitted only intervals of about five vehicles. ``free_flow_min_samples``
(3) intervals are needed before the learned value replaces the road-class default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

# Order of the fields in the ``model_params`` tuple the kernels take (``TravelSpeedParams.as_tuple``):
# defined beside the kernels, whose numba cache must see every constant they depend on.
from ._kernels import (
    TS_CYCLE_S,
    TS_GREEN_RATIO,
    TS_PRIORITY_DELAY_S,
    TS_QUEUE_OCCUPANCY,
    TS_QUEUE_RISE_SCALE,
    TS_QUEUE_VEHICLE_LENGTH_M,
    TS_RUN_SPEED_CAP,
    TS_SATURATION_FLOW_VEH_H,
    TS_SIGNAL_DELAY_FACTOR,
    TS_STOP_ACCEL_MS2,
    TS_STOP_DECEL_MS2,
    TS_STOP_LOSS_FACTOR,
    TS_STOPPED_SPEED_KMH,
    TS_UPSTREAM_QUEUE_SHARE,
)

TS_N_PARAMS = TS_QUEUE_RISE_SCALE + 1

#: Loop position (share of the segment length) assumed when the registry gives none.
DEFAULT_LOOP_POSITION = 0.7


@dataclass(frozen=True)
class TravelSpeedParams:
    """The few constants of the model (see the module docstring)."""

    cycle_s: float = 90.0
    green_ratio: float = 0.45
    saturation_flow_veh_h: float = 1800.0
    signal_delay_factor: float = 0.8
    priority_delay_s: float = 0.0
    queue_occupancy: float = 0.15
    upstream_queue_share: float = 0.25
    queue_vehicle_length_m: float = 5.5
    stopped_speed_kmh: float = 2.0
    #: Running speeds are read as at most this multiple of the speed limit.
    run_speed_cap: float = 1.0
    #: Scale of the stop-start loss at a signal (0: none, the model before it).
    stop_loss_factor: float = 1.0
    #: Acceleration pulling away and deceleration braking (m/s²) of the stop-start loss.
    stop_accel_ms2: float = 2.6
    stop_decel_ms2: float = 4.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"travel-speed {f.name} = {value!r}: expected a finite number ≥ 0")
        if not 0 < self.green_ratio < 1:
            raise ValueError(f"travel-speed green_ratio = {self.green_ratio}: expected 0 < g/C < 1")
        if not 0 < self.queue_occupancy <= 1:
            raise ValueError(f"travel-speed queue_occupancy = {self.queue_occupancy}: expected 0..1")
        if not (self.stop_accel_ms2 > 0 and self.stop_decel_ms2 > 0):
            raise ValueError("travel-speed stop_accel_ms2 / stop_decel_ms2: expected > 0")
        if not (self.queue_vehicle_length_m > 0 and self.saturation_flow_veh_h > 0):
            # Divisors of the tick (the queue's density; Webster's degree of saturation), which
            # the kernel divides by without a zero check (``error_model="numpy"``).
            raise ValueError("travel-speed queue_vehicle_length_m / saturation_flow_veh_h: expected > 0")
        if self.upstream_queue_share > 1:
            raise ValueError(
                f"travel-speed upstream_queue_share = {self.upstream_queue_share}: expected 0..1"
            )

    def as_tuple(self) -> tuple[float, ...]:
        out = [0.0] * TS_N_PARAMS
        out[TS_CYCLE_S] = self.cycle_s
        out[TS_GREEN_RATIO] = self.green_ratio
        out[TS_SATURATION_FLOW_VEH_H] = self.saturation_flow_veh_h
        out[TS_SIGNAL_DELAY_FACTOR] = self.signal_delay_factor
        out[TS_PRIORITY_DELAY_S] = self.priority_delay_s
        out[TS_QUEUE_OCCUPANCY] = self.queue_occupancy
        out[TS_UPSTREAM_QUEUE_SHARE] = self.upstream_queue_share
        out[TS_QUEUE_VEHICLE_LENGTH_M] = self.queue_vehicle_length_m
        out[TS_STOPPED_SPEED_KMH] = self.stopped_speed_kmh
        out[TS_RUN_SPEED_CAP] = self.run_speed_cap
        out[TS_STOP_LOSS_FACTOR] = self.stop_loss_factor
        out[TS_STOP_ACCEL_MS2] = self.stop_accel_ms2
        out[TS_STOP_DECEL_MS2] = self.stop_decel_ms2
        out[TS_QUEUE_RISE_SCALE] = 1.0 / (1.0 - self.queue_occupancy) if self.queue_occupancy < 1.0 else 0.0
        return tuple(float(x) for x in out)


#: The largest green ratio a signal plan is read as (``roadpulse.signal_plans`` clips to it): a
#: segment whose plan gives it at least this share never sees a red worth a delay.
MAX_GREEN_RATIO = 0.95


def webster_delay_reference(
    flow_veh_h: np.ndarray,
    p: TravelSpeedParams,
    cycle_s: np.ndarray | None = None,
    green_ratio: np.ndarray | None = None,
) -> np.ndarray:
    """Webster's uniform delay (s) per vehicle at a signal, for a flow per lane (veh/h); the
    segment's own cycle and green ratio where given (NaN: the defaults in ``p``)."""
    cycle = p.cycle_s if cycle_s is None else np.where(np.isnan(cycle_s), p.cycle_s, cycle_s)
    lam: float | np.ndarray = p.green_ratio
    if green_ratio is not None:
        lam = np.where(np.isnan(green_ratio), p.green_ratio, green_ratio)
    x = np.minimum(np.asarray(flow_veh_h, dtype=np.float64) / (p.saturation_flow_veh_h * lam), 1.0)
    return 0.5 * cycle * (1.0 - lam) ** 2 / (1.0 - x * lam)


def stop_loss_reference(
    flow_veh_h: np.ndarray,
    v_run_ms: np.ndarray,
    p: TravelSpeedParams,
    green_ratio: np.ndarray | None = None,
) -> np.ndarray:
    """Stop-start loss (s) per vehicle at a signal: Akçelik's stop rate h = (1 − λ)/(1 − y),
    y = q/s (capped at 0.95·λ; h at most 1), times v/(2a) + v/(2d), scaled by
    ``stop_loss_factor``."""
    stops = _stop_rate_reference(flow_veh_h, p, green_ratio)
    loss = 0.5 * np.asarray(v_run_ms, dtype=np.float64) * (1.0 / p.stop_accel_ms2 + 1.0 / p.stop_decel_ms2)
    return p.stop_loss_factor * stops * loss


def _green_ratio_reference(p: TravelSpeedParams, green_ratio: np.ndarray | None) -> float | np.ndarray:
    """λ per segment: the network's where it states one, else the model's default."""
    if green_ratio is None:
        return p.green_ratio
    return np.where(np.isnan(green_ratio), p.green_ratio, green_ratio)


def _stop_rate_reference(
    flow_veh_h: np.ndarray, p: TravelSpeedParams, green_ratio: np.ndarray | None
) -> np.ndarray:
    """Akçelik's stop rate h = (1 − λ)/(1 − y), y = q/s capped at 0.95·λ, h at most 1."""
    lam = _green_ratio_reference(p, green_ratio)
    y = np.minimum(np.asarray(flow_veh_h, dtype=np.float64) / p.saturation_flow_veh_h, 0.95 * lam)
    return np.minimum(1.0, (1.0 - lam) / (1.0 - y))


def junction_delay_sd_reference(
    flow_veh_h: np.ndarray,
    v_run_ms: np.ndarray,
    signalised: np.ndarray,
    p: TravelSpeedParams,
    cycle_s: np.ndarray | None = None,
    green_ratio: np.ndarray | None = None,
) -> np.ndarray:
    """Standard deviation (s) of one vehicle's junction delay for arrivals at random over the
    cycle (numpy twin of ``_kernels._junction_delay_sd``): with probability p (Akçelik's stop
    rate, as in ``stop_loss_reference``) the vehicle stops, waits f·U(0, r) (r = (1 − λ)·C the
    red, f = ``signal_delay_factor``) and pays the stop-start loss S; otherwise it has none.
    Var = p·(f²r²/3 + f·r·S + S²) − p²·(f·r/2 + S)². 0 at a junction without a signal."""
    cycle = p.cycle_s if cycle_s is None else np.where(np.isnan(cycle_s), p.cycle_s, cycle_s)
    lam = _green_ratio_reference(p, green_ratio)
    stops = _stop_rate_reference(flow_veh_h, p, green_ratio)
    wait = p.signal_delay_factor * (1.0 - lam) * cycle
    loss = p.stop_loss_factor * 0.5 * np.asarray(v_run_ms, dtype=np.float64) * (
        1.0 / p.stop_accel_ms2 + 1.0 / p.stop_decel_ms2
    )
    var = stops * (wait**2 / 3.0 + wait * loss + loss**2) - (stops * (0.5 * wait + loss)) ** 2
    return np.where(signalised, np.sqrt(np.maximum(var, 0.0)), 0.0)


def upstream_queue_share_reference(occupancy: float | np.ndarray, p: TravelSpeedParams) -> np.ndarray:
    """α of step 3 (numpy twin of ``_kernels._upstream_queue_share``): ``upstream_queue_share``
    at ``queue_occupancy``, rising linearly to 1 at occupancy 1."""
    occ = np.asarray(occupancy, dtype=np.float64)
    if p.queue_occupancy >= 1.0:
        return np.full(occ.shape, p.upstream_queue_share)
    rise = np.clip((occ - p.queue_occupancy) / (1.0 - p.queue_occupancy), 0.0, 1.0)
    return p.upstream_queue_share + (1.0 - p.upstream_queue_share) * rise


def travel_time_reference(
    *,
    v_h_kmh: np.ndarray,
    flow_veh_h: np.ndarray,
    occupancy: np.ndarray,
    length_m: np.ndarray,
    loop_position: np.ndarray,
    signalised: np.ndarray,
    speed_limit_kmh: np.ndarray,
    p: TravelSpeedParams,
    cycle_s: np.ndarray | None = None,
    green_ratio: np.ndarray | None = None,
) -> np.ndarray:
    """Mean travel time (s) over each segment, column-at-a-time (the model above, in numpy).

    ``occupancy`` is a fraction; NaN where no detector reported one (then no queue term).
    """
    v_h = np.minimum(np.asarray(v_h_kmh, dtype=np.float64), p.run_speed_cap * speed_limit_kmh) / 3.6
    length = np.asarray(length_m, dtype=np.float64)
    t_run = length / v_h
    delay = np.where(
        signalised,
        p.signal_delay_factor * webster_delay_reference(flow_veh_h, p, cycle_s, green_ratio)
        + stop_loss_reference(flow_veh_h, v_h, p, green_ratio),
        p.priority_delay_s,
    )
    occ = np.asarray(occupancy, dtype=np.float64)
    queued = occ >= p.queue_occupancy
    with np.errstate(divide="ignore", invalid="ignore"):
        v_q = np.asarray(flow_veh_h, dtype=np.float64) / 3600.0 * p.queue_vehicle_length_m / occ
    v_q = np.maximum(np.nan_to_num(v_q, nan=0.0), p.stopped_speed_kmh / 3.6)
    pos = np.asarray(loop_position, dtype=np.float64)
    a = upstream_queue_share_reference(occ, p)
    t_queue = length * (1 - pos) / v_q + length * pos * (a / v_q + (1 - a) / v_h)
    return np.where(queued, np.maximum(t_run + delay, t_queue), t_run + delay)
