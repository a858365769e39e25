"""Imputation by the junction model: neighbours' excess over their own junction's modelled TTI."""

from __future__ import annotations

import numpy as np
import pytest

from congestion import CongestionEngine, EngineSettings
from congestion import _kernels as k
from congestion.imputation import ImputationParams
from congestion.levels import RATIO_UPPER_BOUNDS
from congestion.state import PROFILE_BINS, PROFILE_NONE, SEGMENT_SCRATCH_RECORD, aligned_records
from congestion.travel_speed import TravelSpeedParams
from roadgraph.network import dead_ends_of

SEEDS = [0, 1, 2]


@pytest.mark.parametrize("seed", SEEDS)
def test_model_free_flow_matches_reference(seed: int, reference) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    rec = reference.segment_records(rng, n)
    # A few segments only metres long (OSM junction stubs): the floor must hold there.
    rec["length_m"][:30] = rng.uniform(0.2, 8.0, 30)
    p = TravelSpeedParams()
    out = np.empty(n, dtype=np.float32)
    floor = 2.0
    k.model_free_flow(
        rec, rec["signal_cycle_s"].astype(np.float64), rec["green_ratio"].astype(np.float64), p.as_tuple(),
        0.9, 0.6, floor, out,
    )
    limit = rec["speed_limit_kmh"].astype(np.float64)
    v0 = 0.9 * limit
    length = rec["length_m"].astype(np.float64)
    delay0 = reference.junction_delay(rec, np.zeros(n), v0, p)
    want = np.maximum(np.minimum(3.6 * length / (length / (v0 / 3.6) + 0.6 * delay0), limit), floor)
    np.testing.assert_allclose(out, want, rtol=1e-5)
    # A signal costs free flow; a priority junction (no delay by default) does not.
    sig = rec["signalised"]
    assert np.all(out[sig] < v0[sig]) and np.allclose(out[~sig], v0[~sig], rtol=1e-6)
    # Nothing under the floor; short signalised stubs, a fraction of a km/h by the formula, sit on it.
    raw = 3.6 * length / (length / (v0 / 3.6) + 0.6 * delay0)
    stub = sig & (raw < floor)
    assert np.all(out >= np.float32(floor)) and stub.sum() >= 5 and np.all(out[stub] == np.float32(floor))


@pytest.mark.parametrize("seed", SEEDS)
def test_base_tti_matches_reference(seed: int, reference) -> None:
    # ``_base_tti`` (what ``impute_segments`` computes for the segments and neighbours it reads),
    # at each segment's own flow: every segment measured.
    rng = np.random.default_rng(seed)
    n = 300
    rec = reference.segment_records(rng, n)
    p = TravelSpeedParams()
    count = np.where(rng.random(n) < 0.6, rng.uniform(0, 50, n), 0.0)
    seconds = np.where(count > 0, rng.uniform(60, 600, n), 0.0)
    model_ff = rng.uniform(20, 60, n).astype(np.float32)
    empty = (np.zeros(n + 1, dtype=np.int32), np.zeros(0, dtype=np.int32))
    ip = ImputationParams()
    want = reference.base_tti(rec, count, seconds, np.ones(n), model_ff, empty, empty, ip, p, 0.9, 2.0)
    got = [
        k._base_tti(
            count[s] / seconds[s] if seconds[s] > 0 else 0.0, float(rec["length_m"][s]),
            float(rec["speed_limit_kmh"][s]), bool(rec["signalised"][s]), float(rec["signal_cycle_s"][s]),
            float(rec["green_ratio"][s]), float(model_ff[s]), p.as_tuple(), 0.9, 2.0,
        )
        for s in range(n)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.all(np.asarray(got) == np.asarray(got, dtype=np.float32))  # stored as float32 was


def test_excess_transfers_across_junctions_not_the_neighbours_signal_delay() -> None:
    # s1 (unknown, at a priority junction: base TTI 1) lies upstream of s0, measured at the TTI
    # its own signal explains at its flow (its base TTI, ~2): s1 is uncongested. Pooling the
    # whole TTI (junction_model = 0, the previous imputation) puts s1 at s0's TTI.
    succ = (np.array([0, 0, 1], dtype=np.int32), np.array([0], dtype=np.int32))
    pred = (np.array([0, 1, 1], dtype=np.int32), np.array([1], dtype=np.int32))
    profile = np.full((2, PROFILE_BINS), PROFILE_NONE, dtype=np.uint8)
    ff = np.array([40.0, 40.0], dtype=np.float32)
    rec = aligned_records(2, SEGMENT_SCRATCH_RECORD)
    rec["length_m"], rec["speed_limit_kmh"] = 150.0, 50.0
    rec["signalised"] = [True, False]
    rec["signal_cycle_s"], rec["green_ratio"] = [120.0, np.nan], [0.3, np.nan]
    count, seconds = np.array([30.0, 0.0]), np.array([300.0, 0.0])
    model_ff = np.array([30.0, 45.0], dtype=np.float32)
    p = TravelSpeedParams().as_tuple()
    base0 = k._base_tti(0.1, 150.0, 50.0, True, 120.0, 0.3, 30.0, p, 0.9, 2.0)
    assert base0 > 1.5 and k._base_tti(0.1, 150.0, 50.0, False, np.nan, np.nan, 45.0, p, 0.9, 2.0) == 1.0

    def impute(junction_model: float, tti0: float) -> tuple[float, int]:
        speed = np.array([40.0 / tti0, np.nan], dtype=np.float32)
        tti = np.array([tti0, np.nan], dtype=np.float32)
        level, conf = np.array([2, 0], dtype=np.int8), np.array([0.8, 0.0], dtype=np.float32)
        imputed = np.zeros(2, dtype=bool)
        scratch = (np.empty(2, np.int32), np.empty(2, np.float32), np.empty(2, np.float32), np.empty(2))
        ip = ImputationParams(junction_model=junction_model).as_tuple()
        k.impute_segments(60.0, ip, RATIO_UPPER_BOUNDS, *succ, *pred, profile, ff, rec, count, seconds,
                          model_ff, p, 0.9, 2.0, dead_ends_of(*succ), *scratch, speed, tti, level, conf,
                          imputed)
        assert imputed.tolist() == [False, True]
        return float(tti[1]), int(level[1])

    assert impute(1.0, base0) == (pytest.approx(1.0, rel=1e-5), 1)
    assert impute(0.0, base0)[0] == pytest.approx(base0, rel=1e-5)
    # Twice the delay s0's signal explains: the excess (× s1's base, 1) carries over.
    assert impute(1.0, 1.6 * base0)[0] == pytest.approx(1.6, rel=1e-5)


def test_segment_without_detector_gets_the_model_free_flow(
    make_pairs_network, make_registry, make_batch
) -> None:
    # s1 (b -> c, no detector) ends at a signal that s3 (e -> c) also enters: a real junction.
    net = make_pairs_network([("a", "b"), ("b", "c"), ("c", "d"), ("e", "c"), ("c", "f")], length_m=200.0)
    reg = make_registry([0, 2])
    limit = float(net.segments.speed_limit_kmh[1])
    on = CongestionEngine(net, reg, EngineSettings())
    off = CongestionEngine(net, reg, EngineSettings(), imputation=ImputationParams(junction_model=0))
    for eng in (on, off):
        eng.add_readings(make_batch([0, 1], [60.0, 60.0], count=[12.0, 8.0], occupancy_pct=[5.0, 4.0],
                                    speed_kmh=[45.0, 40.0]))
    a, b = on.tick(60.0).states, off.tick(60.0).states
    # Off: the road-class default; on: below it, by its own signal's delay at zero flow.
    assert b.free_flow_kmh[1] == pytest.approx(0.9 * limit)
    assert a.free_flow_kmh[1] < 0.9 * limit
    # Segments with a detector keep the default until they learn theirs; measured states agree.
    np.testing.assert_array_equal(a.free_flow_kmh[[0, 2]], b.free_flow_kmh[[0, 2]])
    np.testing.assert_array_equal(a.speed_kmh[[0, 2]], b.speed_kmh[[0, 2]])
    assert a.imputed[1] and 0 < a.confidence[1] < min(a.confidence[0], a.confidence[2])


def test_base_tti_of_a_stub_at_a_signal_is_bounded_by_the_speed_floor() -> None:
    # A 1-m stub ending at a signal: L / (L/v₀ + d) is ~0.1 km/h, which would turn any
    # neighbour's excess into a TTI of 50 (a published speed of 0.0). The model's speed stops at
    # the floor, as its free flow does: at the floor the baseline is 1.
    p = TravelSpeedParams().as_tuple()
    at_floor = k._base_tti(0.3, 1.0, 50.0, True, 120.0, 0.3, 2.0, p, 0.9, 2.0)
    assert at_floor == pytest.approx(1.0, rel=1e-6)
    unbounded = k._base_tti(0.3, 1.0, 50.0, True, 120.0, 0.3, 2.0, p, 0.9, 0.0001)
    assert unbounded > 10.0
    # A free flow above the floor: the baseline is at most free flow ÷ floor.
    assert k._base_tti(0.3, 1.0, 50.0, True, 120.0, 0.3, 6.0, p, 0.9, 2.0) == pytest.approx(3.0, rel=1e-6)


def test_dead_end_takes_no_congestion_from_upstream(make_pairs_network, make_registry, make_batch) -> None:
    # s0 (a -> b, looped) stands in a queue. s1 (b -> c, no detector) ends where nothing leaves
    # but its own reverse s2 (c -> b): a dead end, or the network's edge. s3 (b -> e, no
    # detector) leads on to s4 (e -> f, looped, free). s0's queue is held at b, before s1:
    # s1 runs at its own uncongested model (level 1). Off (``dead_end_free`` = 0) it takes s0's
    # congestion, as s3 still does (half of it: its measured exit s4 is free).
    net = make_pairs_network([("a", "b"), ("b", "c"), ("c", "b"), ("b", "e"), ("e", "f")], length_m=200.0,
                             signalised=False)
    reg = make_registry([0, 4])
    states = {}
    for rule in (1.0, 0.0):
        eng = CongestionEngine(net, reg, EngineSettings(), imputation=ImputationParams(dead_end_free=rule))
        eng.add_readings(make_batch([0, 1], [60.0, 60.0], count=[1.0, 10.0], occupancy_pct=[70.0, 5.0],
                                    speed_kmh=[3.0, 45.0]))
        states[rule] = eng.tick(60.0).states
    on, off = states[1.0], states[0.0]
    assert on.level[0] == 5 and on.level[4] == 1  # the evidence, the same either way
    assert on.imputed[1] and off.imputed[1]
    assert on.level[1] == 1 and on.tti[1] == pytest.approx(1.0, abs=0.02)  # no signal: base TTI 1
    assert off.level[1] >= 4
    # The rule reads only dead ends: s3 (an exit, s4, beyond it) is pooled the same either way,
    # and the confidence of s1 still comes from its neighbours (less than theirs).
    assert on.speed_kmh[3] == off.speed_kmh[3] and on.level[3] > 1
    assert 0 < on.confidence[1] < on.confidence[0]
