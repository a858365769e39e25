"""Imputation by the junction model: neighbours' excess over their own junction's modelled TTI."""

from __future__ import annotations

import numpy as np
import pytest

from congestion import CongestionEngine, EngineSettings
from congestion import _kernels as k
from congestion.imputation import ImputationParams
from congestion.levels import RATIO_UPPER_BOUNDS
from congestion.state import PROFILE_BINS, PROFILE_NONE, SEGMENT_SCRATCH_RECORD, aligned_records
from congestion.travel_speed import TravelSpeedParams, travel_time_reference

SEEDS = [0, 1, 2]


def _records(rng: np.random.Generator, n: int) -> np.ndarray:
    rec = aligned_records(n, SEGMENT_SCRATCH_RECORD)
    rec["length_m"] = rng.uniform(30, 600, n)
    rec["speed_limit_kmh"] = rng.choice([30.0, 50.0, 60.0, 80.0], n)
    rec["signalised"] = rng.random(n) < 0.6
    rec["signal_cycle_s"] = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(40, 140, n))
    rec["green_ratio"] = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(0.15, 0.8, n))
    return rec


def _ref_delay(
    rec: np.ndarray, flow_veh_h: np.ndarray, v0_kmh: np.ndarray, p: TravelSpeedParams
) -> np.ndarray:
    """The junction delay (s) of the reference model: its travel time less the running time."""
    length = rec["length_m"].astype(np.float64)
    nan = np.full(len(rec), np.nan)
    t = travel_time_reference(
        v_h_kmh=v0_kmh, flow_veh_h=flow_veh_h, occupancy=nan, length_m=length, loop_position=nan + 1,
        signalised=rec["signalised"], speed_limit_kmh=rec["speed_limit_kmh"].astype(np.float64), p=p,
        cycle_s=rec["signal_cycle_s"].astype(np.float64), green_ratio=rec["green_ratio"].astype(np.float64),
    )
    return t - length / (v0_kmh / 3.6)


@pytest.mark.parametrize("seed", SEEDS)
def test_model_free_flow_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    rec = _records(rng, n)
    p = TravelSpeedParams()
    out = np.empty(n, dtype=np.float32)
    k.model_free_flow(
        rec, rec["signal_cycle_s"].astype(np.float64), rec["green_ratio"].astype(np.float64), p.as_tuple(),
        0.9, 0.6, out,
    )
    limit = rec["speed_limit_kmh"].astype(np.float64)
    v0 = 0.9 * limit
    length = rec["length_m"].astype(np.float64)
    want = np.minimum(3.6 * length / (length / (v0 / 3.6) + 0.6 * _ref_delay(rec, np.zeros(n), v0, p)), limit)
    np.testing.assert_allclose(out, want, rtol=1e-5)
    # A signal costs free flow; a priority junction (no delay by default) does not.
    sig = rec["signalised"]
    assert np.all(out[sig] < v0[sig]) and np.allclose(out[~sig], v0[~sig], rtol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_impute_baselines_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    rec = _records(rng, n)
    p, ip = TravelSpeedParams(), ImputationParams(upstream_weight=0.4)
    speed = np.where(rng.random(n) < 0.5, np.nan, rng.uniform(5, 60, n)).astype(np.float32)
    count = np.where(rng.random(n) < 0.6, rng.uniform(0, 50, n), 0.0)
    seconds = np.where(count > 0, rng.uniform(60, 600, n), 0.0)
    model_ff = rng.uniform(20, 60, n).astype(np.float32)

    def csr() -> tuple[np.ndarray, np.ndarray]:
        deg = rng.integers(0, 4, n)
        ptr = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(deg, out=ptr[1:])
        return ptr, rng.integers(0, n, int(ptr[-1])).astype(np.int32)

    succ, pred = csr(), csr()
    out = np.empty(n, dtype=np.float32)
    k.impute_baselines(
        ip.as_tuple(), p.as_tuple(), 0.9, *succ, *pred, rec, count, seconds, speed, model_ff, out
    )
    # Reference: the flow per lane (own when measured, else the neighbours' weighted mean, else 0).
    flow = np.zeros(n)
    for s in range(n):
        if np.isfinite(speed[s]):
            flow[s] = count[s] / seconds[s] if seconds[s] > 0 else 0.0
            continue
        num = den = 0.0
        for (ptr, idx), w in ((succ, ip.downstream_weight), (pred, ip.upstream_weight)):
            for j in idx[ptr[s] : ptr[s + 1]]:
                if j != s and seconds[j] > 0:
                    num, den = num + w * count[j] / seconds[j], den + w
        flow[s] = num / den if den > 0 else 0.0
    v0 = 0.9 * rec["speed_limit_kmh"].astype(np.float64)
    length = rec["length_m"].astype(np.float64)
    t_base = length / (v0 / 3.6) + _ref_delay(rec, 3600.0 * flow, v0, p)
    want = model_ff.astype(np.float64) / 3.6 * t_base / length
    np.testing.assert_allclose(out, want, rtol=1e-5)


def test_excess_transfers_across_junctions_not_the_neighbours_signal_delay() -> None:
    # s1 (unknown, at a priority junction: base TTI 1) lies upstream of s0, measured at TTI 2.0,
    # all of which its own signal explains (base TTI 2.0): s1 is uncongested. Pooling the whole
    # TTI (base 1 everywhere, the previous imputation) would put s1 at level 3.
    succ = (np.array([0, 0, 1], dtype=np.int32), np.array([0], dtype=np.int32))
    pred = (np.array([0, 1, 1], dtype=np.int32), np.array([1], dtype=np.int32))
    profile = np.full((2, PROFILE_BINS), PROFILE_NONE, dtype=np.uint8)
    ff = np.array([40.0, 40.0], dtype=np.float32)

    def impute(base: np.ndarray) -> tuple[float, int]:
        speed = np.array([20.0, np.nan], dtype=np.float32)
        tti = np.array([2.0, np.nan], dtype=np.float32)
        level, conf = np.array([2, 0], dtype=np.int8), np.array([0.8, 0.0], dtype=np.float32)
        imputed = np.zeros(2, dtype=bool)
        scratch = (np.empty(2, np.int32), np.empty(2, np.float32), np.empty(2, np.float32))
        k.impute_segments(60.0, ImputationParams().as_tuple(), RATIO_UPPER_BOUNDS, *succ, *pred, profile, ff,
                          base, *scratch, speed, tti, level, conf, imputed)
        assert imputed.tolist() == [False, True]
        return float(tti[1]), int(level[1])

    assert impute(np.array([2.0, 1.0], dtype=np.float32)) == (pytest.approx(1.0), 1)
    assert impute(np.ones(2, dtype=np.float32)) == (pytest.approx(2.0), 3)  # r = 0.5: level 3
    # The neighbour's excess (TTI 2.0 over its base 1.25 = 1.6) carries over onto s1's own base.
    tti1, _ = impute(np.array([1.25, 1.5], dtype=np.float32))
    assert tti1 == pytest.approx(1.6 * 1.5, rel=1e-5)


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
