"""The travel-speed model, free-flow learning, imputation, detector usability and state export:
jitted kernels against their numpy twins, and the model's properties on small engines."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from congestion import CongestionEngine, EngineSettings
from congestion import _kernels as k
from congestion.imputation import ImputationParams
from congestion.levels import RATIO_UPPER_BOUNDS, level_from_ratio
from congestion.state import FF_BINS, PROFILE_BINS, PROFILE_NONE, SEGMENT_SCRATCH_RECORD, aligned_records
from congestion.travel_speed import (
    TravelSpeedParams,
    junction_delay_sd_reference,
    stop_loss_reference,
    travel_time_reference,
    upstream_queue_share_reference,
    webster_delay_reference,
)
from roadgraph.network import RoadNetwork, dead_ends_of

SEEDS = [0, 1, 2]


@pytest.mark.parametrize("seed", SEEDS)
def test_travel_time_kernel_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2000
    cols = {
        "v_h_kmh": rng.uniform(1, 90, n),
        "flow_veh_h": rng.uniform(0, 2000, n),
        "occupancy": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0, 1, n)),
        "length_m": rng.uniform(10, 800, n),
        "loop_position": rng.uniform(0, 1, n),
        "signalised": rng.random(n) < 0.5,
        "speed_limit_kmh": rng.choice([30.0, 50.0, 80.0], n),
    }
    params = TravelSpeedParams(priority_delay_s=1.5)
    # The segment's own signal timing (SUMO networks state it) or NaN: the model's defaults.
    cycle = np.where(rng.random(n) < 0.5, np.nan, rng.uniform(30, 150, n))
    green = np.where(rng.random(n) < 0.5, np.nan, rng.uniform(0.1, 0.9, n))
    want = travel_time_reference(**cols, p=params, cycle_s=cycle, green_ratio=green)
    got = np.array(
        [
            k._segment_travel_time(
                *(float(cols[c][i]) if c != "signalised" else bool(cols[c][i]) for c in cols),
                params.as_tuple(),
                float(cycle[i]),
                float(green[i]),
            )
            for i in range(n)
        ]
    )
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # Without timings the reference is the defaults' model, and the kernel's default arguments too.
    np.testing.assert_allclose(
        travel_time_reference(**cols, p=params),
        travel_time_reference(**cols, p=params, cycle_s=np.full(n, np.nan), green_ratio=np.full(n, np.nan)),
    )
    assert (cols["occupancy"] >= params.queue_occupancy).sum() > 100  # the queue branch ran


@pytest.mark.parametrize("seed", SEEDS)
def test_junction_delay_sd_kernel_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2000
    flow = rng.uniform(0, 2000, n)
    v_run = rng.uniform(0.5, 25, n)
    signalised = rng.random(n) < 0.7
    cycle = np.where(rng.random(n) < 0.5, np.nan, rng.uniform(30, 150, n))
    green = np.where(rng.random(n) < 0.5, np.nan, rng.uniform(0.05, 0.95, n))
    params = TravelSpeedParams(signal_delay_factor=0.8, stop_loss_factor=1.3)
    want = junction_delay_sd_reference(flow, v_run, signalised, params, cycle, green)
    got = np.array(
        [
            k._junction_delay_sd(
                float(flow[i]), bool(signalised[i]), params.as_tuple(), float(cycle[i]), float(green[i]),
                float(v_run[i]),
            )
            for i in range(n)
        ]
    )
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert (want[~signalised] == 0).all() and (want[signalised] > 0).all()


def test_junction_delay_sd_of_random_arrival() -> None:
    """At no flow and without the stop-start loss one vehicle's delay is 0 with probability λ and
    f·U(0, (1 − λ)C) otherwise: sd = f·(1 − λ)C·√((1 − λ)/3 − (1 − λ)²/4), whose mean is Webster's
    uniform delay at X = 0; no spread where the signal is green all the time."""
    p = replace(TravelSpeedParams(), stop_loss_factor=0.0, signal_delay_factor=0.8)
    for lam, cycle in ((0.45, 90.0), (0.25, 120.0), (0.7, 60.0)):
        got = junction_delay_sd_reference(np.array([0.0]), np.array([12.0]), np.array([True]), p,
                                          np.array([cycle]), np.array([lam]))[0]
        red = 1.0 - lam
        assert got == pytest.approx(0.8 * red * cycle * np.sqrt(red / 3 - red**2 / 4))
    always_green = junction_delay_sd_reference(np.array([0.0]), np.array([12.0]), np.array([True]),
                                               TravelSpeedParams(), None, np.array([1.0]))
    assert always_green[0] == 0.0


def test_free_flow_samples_take_off_the_spread_of_few_vehicles_delay(
    chain, make_registry, make_batch
) -> None:
    """At a signal each interval's free-flow speed keeps ``free_flow_delay_share`` of the modelled
    mean delay less ``free_flow_delay_sd`` standard deviations of its n vehicles' mean delay
    (sd/√n, at most what it kept): an interval of one vehicle a minute learns a higher free flow
    than one of eight a minute by more than their difference in mean delay alone gives."""
    params = TravelSpeedParams()
    share, limit, length, v = 0.8, 50.0, 200.0, 45.0
    learned = {}
    for delay_sd, per_minute in ((0.0, 1.0), (0.0, 8.0), (0.5, 1.0), (0.5, 8.0)):
        settings = EngineSettings(free_flow_delay_share=share, free_flow_delay_sd=delay_sd)
        engine = CongestionEngine(chain(1, signalised=True), make_registry([0]), settings, model=params)
        default = float(engine.states.free_flow_kmh[0])
        for i in range(60):
            ts = 60.0 * (i + 1)
            engine.add_readings(make_batch([0], [ts], count=[per_minute], occupancy_pct=[2.0], speed_kmh=[v],
                                           interval_s=[60.0]))
            st = engine.tick(ts).states
        flow = per_minute * 60.0
        v_run = min(v, params.run_speed_cap * limit) / 3.6
        delay = k._junction_delay(flow, True, params.as_tuple(), np.nan, np.nan, v_run)
        pace = (length / (v / 3.6) + delay) / length
        pace_ff = pace - (1.0 - share) * min(delay / length, 0.75 * pace)
        sd = junction_delay_sd_reference(np.array([flow]), np.array([v_run]), np.array([True]), params)[0]
        cut = min(delay_sd * sd / np.sqrt(5 * per_minute), share * delay)
        sample = 3.6 / (pace_ff - cut / length)
        want = _ref_free_flow([sample] * 11, limit, default, settings.free_flow_min_samples)
        learned[delay_sd, per_minute] = float(st.free_flow_kmh[0])
        assert learned[delay_sd, per_minute] == pytest.approx(want, rel=1e-5)
        assert want != pytest.approx(default)
    assert learned[0.5, 1.0] > learned[0.0, 1.0] * 1.05
    assert learned[0.5, 1.0] / learned[0.5, 8.0] > learned[0.0, 1.0] / learned[0.0, 8.0] * 1.03


def test_webster_delay_grows_with_saturation() -> None:
    p = TravelSpeedParams()
    d = webster_delay_reference(np.array([0.0, 300.0, 600.0, 5000.0]), p)
    assert np.all(np.diff(d) >= 0)
    # At X = 0 the uniform delay is C (1 - g/C)^2 / 2.
    assert d[0] == pytest.approx(0.5 * p.cycle_s * (1 - p.green_ratio) ** 2)


def test_stop_start_loss_at_a_signal() -> None:
    """At a light flow the share of vehicles that stop is the red share, 1 − λ, and each loses
    v/(2a) + v/(2d) braking and pulling away; more flow, more stops (Akçelik's h = (1 − λ)/(1 − y));
    factor 0 is the model without it, and the kernel adds exactly this to Webster's delay."""
    p = TravelSpeedParams()
    v = np.array([12.5])
    light = stop_loss_reference(np.array([0.0]), v, p)
    per_stop = 12.5 / 2 * (1 / p.stop_accel_ms2 + 1 / p.stop_decel_ms2)  # 3.8 s from 45 km/h
    assert light[0] == pytest.approx((1 - p.green_ratio) * per_stop)
    assert stop_loss_reference(np.array([600.0]), v, p)[0] > light[0]
    assert stop_loss_reference(np.array([0.0]), 2 * v, p)[0] == pytest.approx(2 * light[0])
    assert stop_loss_reference(np.array([0.0]), v, replace(p, stop_loss_factor=0.0))[0] == 0.0
    args = dict(v_h_kmh=45.0, flow_veh_h=300.0, occupancy=0.05, length_m=200.0, loop_position=0.7)
    args["signalised"] = True
    with_loss = k._segment_travel_time(*args.values(), 50.0, p.as_tuple())
    without = k._segment_travel_time(*args.values(), 50.0, replace(p, stop_loss_factor=0.0).as_tuple())
    want = stop_loss_reference(np.array([300.0]), np.array([45.0 / 3.6]), p)[0]
    assert with_loss - without == pytest.approx(want, rel=1e-12)
    # No signal, no stop-start loss.
    args["signalised"] = False
    assert k._segment_travel_time(*args.values(), 50.0, p.as_tuple()) == pytest.approx(200.0 / (45.0 / 3.6))


def model_speed(**kw: float | bool) -> float:
    base: dict[str, float | bool] = dict(
        v_h_kmh=45.0,
        flow_veh_h=300.0,
        occupancy=0.05,
        length_m=200.0,
        loop_position=0.7,
        signalised=True,
        speed_limit_kmh=50.0,
    )
    base.update(kw)
    t = k._segment_travel_time(*base.values(), TravelSpeedParams(priority_delay_s=1.0).as_tuple())
    return float(base["length_m"]) / t * 3.6  # type: ignore[arg-type]


def test_model_properties() -> None:
    free = model_speed()
    # The travel speed over a signalised segment is below the loop's spot speed (signal delay)...
    assert free < 45.0
    # ... and below that over the same segment ending at a priority junction.
    assert model_speed(signalised=False) > free
    # A standing queue over the loop (high occupancy, few vehicles) means a low travel speed,
    # whatever the few passing vehicles' spot speed.
    assert model_speed(occupancy=0.6, flow_veh_h=60.0, v_h_kmh=40.0) < 5.0
    # More flow at the same spot speed: more signal delay.
    assert model_speed(flow_veh_h=700.0) < free


def test_queue_reaches_further_upstream_the_more_it_covers_the_loop() -> None:
    p = TravelSpeedParams()
    occ = np.array([0.0, p.queue_occupancy, 0.5, 1.0])
    alpha = upstream_queue_share_reference(occ, p)
    # At the queue threshold the configured share, at a loop covered all the time all of it.
    assert alpha[1] == pytest.approx(p.upstream_queue_share)
    assert alpha[3] == pytest.approx(1.0)
    assert alpha[0] == pytest.approx(p.upstream_queue_share)  # below the threshold: not used
    assert p.upstream_queue_share < alpha[2] < 1.0
    mp = p.as_tuple()
    assert [k._upstream_queue_share(float(o), mp) for o in occ] == pytest.approx(alpha.tolist())
    # The whole segment in the queue at a covered loop: T = L / v_q (v_q = q·g/o, here 1 m/s).
    flow, g, length = 3600.0 / p.queue_vehicle_length_m, p.queue_vehicle_length_m, 200.0
    t = k._segment_travel_time(40.0, flow, 1.0, length, 0.7, False, 50.0, mp)
    assert t == pytest.approx(length / (flow / 3600.0 * g / 1.0))
    # A degenerate threshold of 1 keeps the configured share (no division by zero).
    edge = TravelSpeedParams(queue_occupancy=1.0)
    assert k._upstream_queue_share(1.0, edge.as_tuple()) == pytest.approx(edge.upstream_queue_share)
    assert upstream_queue_share_reference(1.0, edge) == pytest.approx(edge.upstream_queue_share)


@pytest.mark.parametrize("seed", SEEDS)
def test_top_ninth_matches_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(50):
        samples = rng.uniform(0, 1, rng.integers(1, 300))
        hist = np.bincount(np.minimum((samples * FF_BINS).astype(int), FF_BINS - 1), minlength=FF_BINS)
        centres = (np.repeat(np.arange(FF_BINS), hist) + 0.5) / FF_BINS
        top = np.sort(centres)[::-1]
        need = len(top) / 9
        whole = int(np.floor(need))
        want = (top[:whole].sum() + (need - whole) * (top[whole] if whole < len(top) else 0)) / need
        got, total = k._top_ninth_ratio(hist.astype(np.uint16)[None, :], 0)
        assert total == len(samples)
        assert got == pytest.approx(want, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# Small engines: a chain s0 -> s1 -> s2 -> s3 with loops on s0 and s2 only
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def chain(make_network):
    """``chain(n=4, signalised=True)``: segments s0 -> s1 -> ... of 200 m and two lanes."""

    def build(n: int = 4, signalised: bool = True) -> RoadNetwork:
        return make_network(n, lanes=2, length_m=200.0, signalised=signalised)

    return build


def test_imputation_marks_and_never_overrides(chain, make_registry, make_batch) -> None:
    net = chain()
    reg = make_registry([0, 2])
    engine = CongestionEngine(net, reg, EngineSettings())
    engine.add_readings(
        make_batch([0, 1], [60.0, 60.0], count=[12.0, 2.0], occupancy_pct=[5.0, 60.0], speed_kmh=[45.0, 5.0])
    )
    r = engine.tick(60.0)
    st = r.states
    assert not st.imputed[0] and not st.imputed[2]
    assert st.imputed[1] and st.imputed[3]  # no detector of their own, measured neighbours
    # Measured states are what the model gives, untouched by imputation.
    solo = CongestionEngine(
        net,
        reg,
        EngineSettings(),
        imputation=ImputationParams(downstream_weight=0, upstream_weight=0, profile_weight=0),
    )
    solo.add_readings(
        make_batch([0, 1], [60.0, 60.0], count=[12.0, 2.0], occupancy_pct=[5.0, 60.0], speed_kmh=[45.0, 5.0])
    )
    alone = solo.tick(60.0).states
    np.testing.assert_array_equal(st.speed_kmh[[0, 2]], alone.speed_kmh[[0, 2]])
    # s1 lies upstream of the queued s2: it takes more of s2's congestion (downstream weighs more).
    r0, r2 = (st.speed_kmh[[0, 2]] / st.free_flow_kmh[[0, 2]]).tolist()
    r1 = float(st.speed_kmh[1] / st.free_flow_kmh[1])
    assert r2 < r1 < r0
    assert abs(r1 - r2) < abs(r1 - r0)
    assert st.confidence[1] < min(st.confidence[0], st.confidence[2])
    assert st.level[1] == level_from_ratio(r1)
    # Reference: the confidence-weighted power mean of the neighbours' travel-time indices (1 / r).
    p = ImputationParams()
    c0, c2 = float(st.confidence[0]), float(st.confidence[2])
    w0, w2 = p.upstream_weight * c0, p.downstream_weight * c2
    want = ((w0 * r0**-p.tti_power + w2 * r2**-p.tti_power) / (w0 + w2)) ** (-1.0 / p.tti_power)
    assert r1 == pytest.approx(want, rel=1e-5)


def _ref_impute(speed, ff, conf, succ, pred, profile, hour, p: ImputationParams, base=None):  # type: ignore[no-untyped-def]
    """``impute_segments`` in plain numpy/Python: round 1 from measured neighbours (their ratio ×
    their ``base`` TTI), round 2 from unknown neighbours' round-1 values, back to the segment's
    ratio ÷ its own ``base``, the profile blend, then the states. A dead end (no successor but
    itself) with ``dead_end_free`` takes no excess: its pooled ratio is 1 before ÷ its base."""
    n = len(speed)
    base = np.ones(n) if base is None else np.asarray(base, dtype=np.float32).astype(np.float64)
    unknown = np.isnan(speed)

    def pooled(s: int, ratio: np.ndarray, cf: np.ndarray, usable: np.ndarray) -> tuple[float, float, float]:
        num = den = den2 = 0.0
        for (ptr, idx), weight in ((succ, p.downstream_weight), (pred, p.upstream_weight)):
            for j in idx[ptr[s]:ptr[s + 1]]:
                if j == s or not usable[j]:
                    continue
                c = max(float(cf[j]), 0.05)
                num += weight * c * (1.0 / max(float(ratio[j]), 0.01)) ** p.tti_power
                den += weight * c
                den2 += weight * c * c
        return num, den, den2

    r_meas = speed.astype(np.float64) / ff.astype(np.float64) * base
    r1 = np.full(n, np.nan)
    c1 = np.zeros(n)
    for s in map(int, np.flatnonzero(unknown)):
        num, den, den2 = pooled(s, r_meas, conf, ~unknown)
        if den > 0:
            r1[s], c1[s] = (num / den) ** (-1.0 / p.tti_power), den2 / den
    out: dict[str, np.ndarray] = {"speed": speed.copy(), "conf": conf.copy(), "imputed": np.zeros(n, bool)}
    for s in map(int, np.flatnonzero(unknown)):
        r, c, sw = r1[s], c1[s], 1.0
        if np.isnan(r):
            num, den, den2 = pooled(s, r1.astype(np.float32).astype(np.float64), c1.astype(np.float32),
                                    unknown & ~np.isnan(r1))
            if den > 0:
                r = (num / den) ** (-1.0 / p.tti_power)
                c, sw = p.second_hop_weight * den2 / den, p.second_hop_weight
            else:
                sw = 0.0
        dead_end = all(int(j) == s for j in succ[1][succ[0][s]:succ[0][s + 1]])
        if p.dead_end_free > 0 and dead_end and not np.isnan(r):
            r = 1.0
        r = r / base[s]
        if profile[s, hour] != PROFILE_NONE:
            r_prof = profile[s, hour] / 200.0
            if np.isnan(r):
                r, c = r_prof, 0.5
            else:
                r = (sw * r + p.profile_weight * r_prof) / (sw + p.profile_weight)
                c = (sw * c + p.profile_weight * 0.5) / (sw + p.profile_weight)
        if np.isnan(r):
            out["conf"][s] = 0.0
            continue
        out["speed"][s] = np.float32(max(r, 0.01) * ff[s])
        out["conf"][s] = p.confidence_factor * c
        out["imputed"][s] = True
    return out


def _random_csr(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    deg = rng.integers(0, 5, n)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(deg, out=ptr[1:])
    return ptr, rng.integers(0, n, int(ptr[-1])).astype(np.int32)  # self-loops included: skipped


def _junction_inputs(
    rng: np.random.Generator, n: int, reference: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random segment records, smoothed flow sums (some segments without) and model free flows:
    the junction model's inputs of ``impute_segments``."""
    rec = reference.segment_records(rng, n)
    count = np.where(rng.random(n) < 0.6, rng.uniform(0, 50, n), 0.0)
    seconds = np.where(count > 0, rng.uniform(60, 600, n), 0.0)
    return rec, count, seconds, rng.uniform(20, 60, n).astype(np.float32)


@pytest.mark.parametrize("dead_end_free", [0.0, 1.0])
@pytest.mark.parametrize("junction_model", [False, True])
@pytest.mark.parametrize("tti_power", [1.0, 8.0])
@pytest.mark.parametrize("seed", SEEDS)
def test_imputation_kernel_matches_reference(
    seed: int, tti_power: float, junction_model: bool, dead_end_free: float, reference
) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    speed = np.where(rng.random(n) < 0.45, np.nan, rng.uniform(1, 60, n)).astype(np.float32)
    ff = rng.uniform(30, 70, n).astype(np.float32)
    conf = np.where(np.isnan(speed), 0.0, rng.uniform(0, 1, n)).astype(np.float32)
    profile = np.where(rng.random((n, PROFILE_BINS)) < 0.7, PROFILE_NONE,
                       rng.integers(0, 254, (n, PROFILE_BINS))).astype(np.uint8)
    succ, pred = _random_csr(rng, n), _random_csr(rng, n)
    p = ImputationParams(upstream_weight=0.6, second_hop_weight=0.4, profile_weight=0.7, tti_power=tti_power,
                         junction_model=float(junction_model), dead_end_free=dead_end_free)
    # Dead ends (no successor but itself) that get filled: the rule is exercised.
    dead = np.array([all(j == s for j in succ[1][succ[0][s]:succ[0][s + 1]]) for s in range(n)])
    assert (dead & np.isnan(speed)).sum() >= 20
    np.testing.assert_array_equal(dead_ends_of(*succ), dead)  # what the kernel is given
    tick_ts = 3600.0 * 7 + 10.0
    model = TravelSpeedParams()
    rec, count, seconds, model_ff = _junction_inputs(rng, n, reference)
    base = np.ones(n, dtype=np.float32)
    if junction_model:
        base = reference.base_tti(rec, count, seconds, speed, model_ff, succ, pred, p, model, 0.9)
        assert np.ptp(base) > 0.5  # signals and flows vary: not the plain TTI pool
    want = _ref_impute(speed, ff, conf, succ, pred, profile, 7, p, base)
    tti = np.where(np.isnan(speed), np.nan, ff / speed).astype(np.float32)
    level = np.zeros(n, dtype=np.int8)
    imputed = np.zeros(n, dtype=bool)
    sp, cf = speed.copy(), conf.copy()
    scratch = (np.empty(n, np.int32), np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n))
    filled = k.impute_segments(tick_ts, p.as_tuple(), RATIO_UPPER_BOUNDS, *succ, *pred, profile, ff, rec,
                               count, seconds, model_ff, model.as_tuple(), 0.9, 2.0, dead_ends_of(*succ),
                               *scratch, sp, tti, level, cf, imputed)
    assert filled == int(want["imputed"].sum()) and 0 < filled < int(np.isnan(speed).sum())
    np.testing.assert_array_equal(imputed, want["imputed"])
    np.testing.assert_allclose(sp, want["speed"], rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(cf, want["conf"], rtol=1e-5, atol=1e-7)
    filled_ratio = sp[imputed].astype(np.float64) / ff[imputed]
    near = np.isin(np.round(filled_ratio, 4), RATIO_UPPER_BOUNDS)
    want_level = np.array([level_from_ratio(r) for r in filled_ratio])
    np.testing.assert_array_equal(level[imputed][~near], want_level[~near])
    np.testing.assert_allclose(tti[imputed], ff[imputed] / sp[imputed], rtol=1e-6)


#: ``impute_segments``' junction-model and dead-end inputs when both are off (``junction_model``
#: = 0, ``dead_end_free`` = 0): unread.
_NO_JUNCTION_MODEL = (
    aligned_records(0, SEGMENT_SCRATCH_RECORD), np.empty(0), np.empty(0), np.empty(0, dtype=np.float32),
    TravelSpeedParams().as_tuple(), 0.9, 2.0, np.empty(0, dtype=bool),
)


def test_imputation_kernel_second_hop_and_profile() -> None:
    # s0 measured; s1 from s0; s2 only from s1's imputed ratio; s3 (isolated) from its profile.
    n = 4
    succ = (np.array([0, 1, 2, 2, 2], dtype=np.int64), np.array([1, 2], dtype=np.int32))
    pred = (np.array([0, 0, 1, 2, 2], dtype=np.int64), np.array([0, 1], dtype=np.int32))
    profile = np.full((n, PROFILE_BINS), PROFILE_NONE, dtype=np.uint8)
    profile[3, 0] = 100  # ratio 0.5 at hour 0
    speed = np.array([20.0, np.nan, np.nan, np.nan], dtype=np.float32)
    ff = np.full(n, 40.0, dtype=np.float32)
    tti, level = np.full(n, 2.0, dtype=np.float32), np.array([3, 0, 0, 0], dtype=np.int8)
    conf, imputed = np.array([0.8, 0, 0, 0], dtype=np.float32), np.zeros(n, dtype=bool)
    scratch = (np.empty(n, np.int32), np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n))
    filled = k.impute_segments(
        60.0,
        # (s2 ends the chain: a dead end, which with ``dead_end_free`` would run free.)
        ImputationParams(junction_model=0, dead_end_free=0).as_tuple(),
        RATIO_UPPER_BOUNDS,
        *succ,
        *pred,
        profile,
        ff,
        *_NO_JUNCTION_MODEL,
        *scratch,
        speed,
        tti,
        level,
        conf,
        imputed,
    )
    assert filled == 3
    np.testing.assert_allclose(speed, [20.0, 20.0, 20.0, 20.0])
    assert imputed.tolist() == [False, True, True, True]
    assert conf[2] < conf[1] < conf[0]


def test_standing_queue_reads_low_and_priority_beats_signal(chain, make_registry, make_batch) -> None:
    speeds = {}
    for sig in (True, False):
        engine = CongestionEngine(chain(1, signalised=sig), make_registry([0]), EngineSettings())
        engine.add_readings(make_batch([0], [60.0], count=[8.0], occupancy_pct=[4.0], speed_kmh=[45.0]))
        speeds[sig] = float(engine.tick(60.0).states.speed_kmh[0])
    assert speeds[True] < speeds[False] <= 45.0
    engine = CongestionEngine(chain(1), make_registry([0]), EngineSettings())
    engine.add_readings(make_batch([0], [60.0], count=[1.0], occupancy_pct=[70.0], speed_kmh=[30.0]))
    st = engine.tick(60.0).states
    assert st.speed_kmh[0] < 5.0 and st.level[0] == 5


@pytest.mark.parametrize("by_occupancy", [0.0, 1.0])
def test_smoothing_follows_reference(chain, make_registry, make_batch, by_occupancy: float) -> None:
    """Total distance / total time over exponentially decayed ticks (``travel_speed`` docs)."""
    settings = EngineSettings(
        smoothing_tau_s=120.0, smoothing_min_weight_veh=0.5, smoothing_weight_by_occupancy=by_occupancy
    )
    params = TravelSpeedParams()
    engine = CongestionEngine(chain(1, signalised=False), make_registry([0]), settings, model=params)
    dist = time_s = 0.0
    length = 200.0
    for i, (count, occ, v) in enumerate([(10.0, 3.0, 40.0), (4.0, 6.0, 20.0), (20.0, 5.0, 45.0)]):
        ts = 60.0 * (i + 1)
        engine.add_readings(make_batch([0], [ts], count=[count], occupancy_pct=[occ], speed_kmh=[v]))
        got = float(engine.tick(ts).states.speed_kmh[0])
        decay = np.exp(-60.0 / 120.0) if i else 0.0
        pace = 3.6 / v  # priority junction, no delay, occupancy below the queue threshold
        if by_occupancy:
            w = (
                occ / 100.0 * 30.0
            ) * length / params.queue_vehicle_length_m / pace + 0.5 * length  # 30-s readings
        else:
            w = (count + 0.5) * length
        dist = decay * dist + w
        time_s = decay * time_s + w * pace
        assert got == pytest.approx(3.6 * dist / time_s, rel=1e-5)


def _ref_top_ninth(hist: np.ndarray) -> float:
    """Mean of the top ninth of a histogram's samples at bin centres (as speed / limit)."""
    centres = np.sort((np.repeat(np.arange(FF_BINS), hist) + 0.5) / FF_BINS)[::-1]
    need = len(centres) / 9
    whole = int(np.floor(need))
    part = (need - whole) * (centres[whole] if whole < len(centres) else 0.0)
    return float((centres[:whole].sum() + part) / need)


def _ref_free_flow(speeds: list[float], limit: float, default: float, min_samples: float) -> float:
    """Free flow after these interval speeds, as ``_kernels._free_flow_sample`` learns it: binned
    at speed / limit (≥ limit: the top bin); the default until ``min_samples``; then the top
    ninth × limit, refreshed unless a sample falls more than two bins below the current free
    flow (except every 16th sample)."""
    hist = np.zeros(FF_BINS, dtype=np.int64)
    want = default
    for n, v in enumerate(speeds, start=1):
        b = min(int(min(v, limit) / limit * FF_BINS), FF_BINS - 1)
        hist[b] += 1
        if n < min_samples:
            want = default
        elif b >= int(want / limit * FF_BINS) - 2 or n % 16 == 0 or n < min_samples + 1:
            want = min(_ref_top_ninth(hist), 1.0) * limit
    return want


@pytest.mark.parametrize("seed", SEEDS)
def test_free_flow_sample_matches_numpy(seed: int) -> None:
    """``_free_flow_sample`` (one interval speed into the histogram) against the reference."""
    rng = np.random.default_rng(seed)
    limit, default, min_samples = 50.0, 45.0, 3.0
    row = np.zeros((1, FF_BINS), dtype=np.uint16)  # the histograms of one segment
    samples = np.zeros(1, dtype=np.uint32)
    ff = default
    speeds = rng.uniform(3.0, 70.0, 300).tolist()
    for n, v in enumerate(speeds, start=1):
        ff = float(k._free_flow_sample(v, limit, ff, default, row, 0, samples, 0, 1e9, min_samples))
        assert int(samples[0]) == n == int(row.sum())
        assert ff == pytest.approx(_ref_free_flow(speeds[:n], limit, default, min_samples), rel=1e-6)
        assert ff <= limit
    # At the history cap the row is halved, the count kept in step with it.
    k._free_flow_sample(30.0, limit, ff, default, row, 0, samples, 0, 300.0, min_samples)
    assert int(samples[0]) == int(row.sum()) < 300


def test_free_flow_learned_from_interval_speeds(chain, make_registry, make_batch) -> None:
    """Free flow = top ninth of 5-minute space-mean speeds (distance / time of the interval's
    ticks, GB/T 33171 §7.2.1.2), not of per-tick or smoothed speeds; empty intervals give none."""
    settings = EngineSettings(free_flow_min_samples=4, free_flow_interval_s=300.0)
    params = TravelSpeedParams()
    engine = CongestionEngine(chain(1, signalised=False), make_registry([0]), settings, model=params)
    default = float(engine.states.free_flow_kmh[0])
    rng = np.random.default_rng(5)
    length, limit = 200.0, 50.0
    interval_speeds: list[float] = []
    dist = time_s = 0.0
    counted = 0.0
    for i in range(60):  # 60 one-minute ticks: 12 intervals, the last one still open
        ts = 60.0 * (i + 1)
        count = 0.0 if 15 <= i < 20 else float(rng.integers(1, 15))  # interval 4 is empty
        # Slow and fast intervals in turn: smoothed speeds would carry a slow one into the next.
        occ, v = float(rng.uniform(1.0, 8.0)), (42.0 if (i // 5) % 2 else 12.0) + float(rng.uniform(-3, 3))
        engine.add_readings(make_batch([0], [ts], count=[count], occupancy_pct=[occ], speed_kmh=[v]))
        st = engine.tick(ts).states
        if count > 0:
            pace = 3.6 / min(v, limit)  # priority junction, no delay, no queue
            w = occ / 100.0 * 30.0 * length / params.queue_vehicle_length_m / pace
            w += settings.smoothing_min_weight_veh * length
            dist, time_s, counted = dist + w, time_s + w * pace, counted + count
        if i % 5 == 4:  # the tick at a multiple of 300 s closes its interval
            if counted > 0:
                interval_speeds.append(min(3.6 * dist / time_s, limit))
            dist = time_s = counted = 0.0
        # A finished interval enters on the next tick with evidence.
        n_done = len(interval_speeds) - (1 if i % 5 == 4 else 0)
        if n_done < 4:
            assert float(st.free_flow_kmh[0]) == pytest.approx(default)
    assert len(interval_speeds) == 11  # 12 intervals, one of them empty
    want = _ref_free_flow(interval_speeds[:-1], limit, default, 4.0)
    assert want != pytest.approx(default)
    assert float(st.free_flow_kmh[0]) == pytest.approx(want, rel=1e-5)
    assert float(st.free_flow_kmh[0]) <= limit


def test_export_import_round_trip(chain, make_registry, make_batch) -> None:
    net = chain()
    # 2-minute free-flow intervals: some learned by the snapshot, one still being summed.
    settings = EngineSettings(free_flow_min_samples=2, free_flow_interval_s=120.0)
    a = CongestionEngine(net, make_registry([0, 2]), settings)
    for i in range(5):
        ts = 60.0 * (i + 1)
        a.add_readings(
            make_batch([0, 1], [ts, ts], count=[10.0, 3.0], occupancy_pct=[3.0, 30.0], speed_kmh=[40.0, 12.0])
        )
        a.tick(ts)
    state = a.export_state()
    b = CongestionEngine(net, make_registry([0, 2]), settings)
    b.import_state(state)
    again = b.export_state()
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(again[key], value, err_msg=key)
    assert not np.array_equal(
        state["free_flow_kmh"],
        CongestionEngine(net, make_registry([0, 2]), settings).export_state()["free_flow_kmh"],
    )
    # Both engines continue identically.
    for eng in (a, b):
        eng.add_readings(
            make_batch(
                [0, 1], [360.0, 360.0], count=[9.0, 2.0], occupancy_pct=[3.0, 40.0], speed_kmh=[38.0, 9.0]
            )
        )
    np.testing.assert_array_equal(a.tick(360.0).states.speed_kmh, b.tick(360.0).states.speed_kmh)
    assert np.isfinite(state["ff_interval"][:, 0]).any()  # an interval was open at the snapshot
    for eng in (a, b):  # the interval open at the snapshot is finished after the restart
        eng.add_readings(
            make_batch(
                [0, 1], [420.0, 420.0], count=[2.0, 2.0], occupancy_pct=[1.0, 40.0], speed_kmh=[50.0, 9.0]
            )
        )
    np.testing.assert_array_equal(a.tick(420.0).states.free_flow_kmh, b.tick(420.0).states.free_flow_kmh)
    np.testing.assert_array_equal(a.export_state()["ff_hist"], b.export_state()["ff_hist"])
    with pytest.raises(ValueError, match="ff_hist"):
        b.import_state({**state, "ff_hist": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="version"):
        b.import_state({**state, "version": 99})


def test_unusable_detectors_stop_feeding(chain, make_registry, make_batch) -> None:
    engine = CongestionEngine(chain(2), make_registry([0, 1]), EngineSettings())
    engine.set_detector_usable(np.array([True, False]))
    engine.add_readings(
        make_batch([0, 1], [60.0, 60.0], count=[10.0, 10.0], occupancy_pct=[3.0, 3.0], speed_kmh=[40.0, 40.0])
    )
    r = engine.tick(60.0)
    assert not r.states.imputed[0] and r.states.n_detectors[1] == 0 and r.states.imputed[1]
    assert engine.detector_state.last_speed_kmh[1] == 40.0  # still remembered for health
    assert r.readings_without_evidence == 1
    with pytest.raises(ValueError, match="shape"):
        engine.set_detector_usable(np.array([True]))


def test_reverse_left_out_and_pass_through_junctions(make_pairs_network) -> None:
    from congestion.engine import _pass_through

    # s0: a->b, s1: b->c, s2: b->a (s0's reverse), s3: c->b (s1's reverse).
    net = make_pairs_network([("a", "b"), ("b", "c"), ("b", "a"), ("c", "b")])
    ptr, idx = net.successors_csr(reverse=False)
    assert [sorted(idx[ptr[i]:ptr[i + 1]].tolist()) for i in range(4)] == [[1], [], [], [2]]
    # b joins two roads end to end (a corner): no conflicting stream, no signal delay.
    assert _pass_through(net).tolist() == [True, False, False, True]  # s1, s2: dead ends
    # A third road into b: s0's way on is shared, so b is a real junction for s0.
    net = make_pairs_network([("a", "b"), ("b", "c"), ("b", "a"), ("c", "b"), ("d", "b")])
    assert not _pass_through(net)[0]
    # The same corner whose signal plan shows s0 a red (green 42 s of 90; s3 always green, the
    # others unknown): a red stops vehicles though nobody crosses, so s0's junction is no
    # pass-through; s3's stays one.
    net = make_pairs_network([("a", "b"), ("b", "c"), ("b", "a"), ("c", "b")])
    green = np.array([42.0 / 90.0, np.nan, np.nan, 0.95])
    assert _pass_through(net, green).tolist() == [False, False, False, True]


def test_longer_cycle_and_shorter_green_mean_more_delay() -> None:
    p = TravelSpeedParams()
    flow = np.array([300.0])
    base = webster_delay_reference(flow, p)
    assert webster_delay_reference(flow, p, np.array([120.0]), np.array([np.nan])) > base
    assert webster_delay_reference(flow, p, np.array([np.nan]), np.array([0.25])) > base
    # Uniform delay is proportional to the cycle: 120 s gives 4/3 of 90 s.
    assert webster_delay_reference(flow, p, np.array([120.0]), None)[0] == pytest.approx(base[0] * 120 / 90)


def test_empty_lane_after_a_queue_is_the_queue_standing(chain, make_registry, make_batch) -> None:
    """Lane 1's loop sees a crawl, then nobody and nothing for minutes while lane 0 flows: the
    queue is standing with the loop in a gap (read as a queue), not an empty lane — until the
    empty intervals have lasted ``stale_after_s``; an empty interval after free flow stays empty."""

    def run(first_speed: float, settings: EngineSettings, minutes: int) -> list[float]:
        net = chain(1, signalised=False)
        engine = CongestionEngine(net, make_registry([0, 0], lane=[0, 1]), settings)
        speeds = []
        for m in range(minutes):
            ts = 60.0 * (m + 1)
            lane1 = (4.0, 20.0, first_speed) if m == 0 else (0.0, 0.0, np.nan)
            engine.add_readings(make_batch([0, 1], [ts, ts], count=[10.0, lane1[0]], interval_s=60.0,
                                           occupancy_pct=[4.0, lane1[1]], speed_kmh=[45.0, lane1[2]]))
            speeds.append(float(engine.tick(ts).states.speed_kmh[0]))
        return speeds

    crawl = run(8.0, EngineSettings(), 4)  # 8 km/h ≤ 0.3 × 50: a queue over the loop
    free = run(40.0, EngineSettings(), 4)
    off = run(8.0, EngineSettings(queue_speed_fraction_of_limit=0.0), 4)
    assert crawl[-1] < 0.6 * off[-1]  # the standing lane keeps the segment slow ...
    assert free[-1] > 40.0 and off[-1] > 30.0  # ... where an empty lane after free flow does not
    # The memory ends once the empty intervals have lasted stale_after_s (here 120 s): the
    # fourth minute's empty interval is an empty lane again, and the estimate recovers.
    short = run(8.0, EngineSettings(stale_after_s=120.0), 4)
    assert short[:3] == crawl[:3] and crawl[3] < crawl[2] and short[3] > short[2] + 1.5
    with pytest.raises(ValueError, match="queue_speed_fraction_of_limit"):
        EngineSettings(queue_speed_fraction_of_limit=-0.1)


@pytest.mark.parametrize("field", ["queue_vehicle_length_m", "saturation_flow_veh_h"])
def test_divisors_of_the_tick_must_be_positive(field: str) -> None:
    """The kernel divides by these without a zero check (``error_model="numpy"``): a zero must be
    refused where the parameters are built, naming the field."""
    with pytest.raises(ValueError, match=field):
        TravelSpeedParams(**{field: 0.0})
