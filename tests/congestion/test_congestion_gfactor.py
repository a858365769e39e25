"""g-factor calibration recovers each loop's effective vehicle length from its own readings."""

from __future__ import annotations

import numpy as np
import pytest

from congestion import ReadingBatch
from congestion import _health_kernels as hk
from congestion.gfactor import GFactorCalibrator, GFactorSettings
from tests.congestion.wsdot_loops import wsdot_batch, wsdot_rows, wsdot_setup

FREE_FLOW_KMH = 54.0


def _readings(
    rng: np.random.Generator,
    detectors: np.ndarray,
    length_m: np.ndarray,
    speed_kmh: np.ndarray,
    ts: float,
    *,
    interval_s: float = 60.0,
    report_speed: np.ndarray | None = None,
) -> ReadingBatch:
    """One interval per detector: Poisson counts and the occupancy those vehicles of
    ``length_m`` at ``speed_kmh`` produce (±3 % noise)."""
    n = len(detectors)
    flow_veh_h = rng.uniform(300, 900, n)
    count = rng.poisson(flow_veh_h * interval_s / 3600).astype(np.float32)
    occ = count / interval_s * length_m / (speed_kmh / 3.6) * 100 * rng.uniform(0.97, 1.03, n)
    speed = np.where(report_speed if report_speed is not None else False, speed_kmh, np.nan)
    return ReadingBatch(
        detector_index=detectors.astype(np.int32),
        ts=np.full(n, ts),
        interval_s=np.full(n, interval_s),
        count=count,
        occupancy_pct=np.minimum(occ, 100).astype(np.float32),
        speed_kmh=speed.astype(np.float32),
        lane=np.full(n, -1, np.int16),
    )


def test_recovers_known_vehicle_lengths_from_free_flow_intervals(make_registry) -> None:
    rng = np.random.default_rng(5)
    lengths = np.array([4.5, 6.0, 7.5, 12.0])
    reg = make_registry([0, 1, 2, 3])
    cal = GFactorCalibrator(reg, GFactorSettings(), n_segments=4)
    free_flow = np.full(4, FREE_FLOW_KMH)
    dets = np.arange(4)
    for t in range(60, 60 * 121, 60):
        congested = (t // 600) % 3 == 2  # a third of the time: slow traffic, high occupancy
        speed = np.full(4, 12.0 if congested else FREE_FLOW_KMH)
        batch = _readings(rng, dets, lengths, speed, float(t))
        cal.add_readings(batch)
        cal.calibrate(float(t), free_flow)
    assert cal.calibrated.all()
    # Congested intervals (occupancy above the free-flow limit) must not bias g upward.
    np.testing.assert_allclose(cal.vehicle_length_m, lengths, rtol=0.05)


def test_single_loop_learns_from_dual_loop_neighbour_in_congestion(make_registry) -> None:
    rng = np.random.default_rng(8)
    reg = make_registry([0, 0])  # both on segment 0: d0 dual (speed), d1 single
    cal = GFactorCalibrator(reg, GFactorSettings(), n_segments=1)
    lengths = np.array([5.0, 8.0])
    for t in range(60, 60 * 40, 60):
        batch = _readings(
            rng,
            np.array([0, 1]),
            lengths,
            np.array([20.0, 20.0]),
            float(t),
            report_speed=np.array([True, False]),
        )
        cal.add_readings(batch)
        cal.calibrate(float(t), np.array([FREE_FLOW_KMH]))
    np.testing.assert_allclose(cal.vehicle_length_m, lengths, rtol=0.05)


def test_fill_speeds_uses_each_detectors_own_length(make_registry) -> None:
    reg = make_registry([0, 0, 1])
    cal = GFactorCalibrator(reg, GFactorSettings(default_length_m=6.0), n_segments=2)
    state = cal.export_state()
    state["length_m"] = np.array([5.0, 10.0, 6.0], dtype=np.float32)
    cal.import_state(state)
    batch = ReadingBatch(
        detector_index=np.array([0, 1, 2, 2, 0], np.int32),
        ts=np.full(5, 60.0),
        interval_s=np.full(5, 60.0, np.float32),
        count=np.array([10, 10, 10, 0, 10], np.float32),
        occupancy_pct=np.array([5, 5, 5, 0, 5], np.float32),
        speed_kmh=np.array([np.nan, np.nan, 33.0, np.nan, np.nan], np.float32),
        lane=np.full(5, -1, np.int16),
    )
    out = cal.fill_speeds(batch)
    # q = 600 veh/h; v = q·g/occ = 600 · g / 0.05 m/h
    expected = [600 * 5 / 0.05 / 1000, 600 * 10 / 0.05 / 1000, 33.0, np.nan, 600 * 5 / 0.05 / 1000]
    np.testing.assert_allclose(out.speed_kmh, expected, rtol=1e-5)
    assert np.isnan(batch.speed_kmh[0])  # the input batch is not written


def test_faulty_detectors_do_not_teach_their_g(make_registry) -> None:
    rng = np.random.default_rng(2)
    reg = make_registry([0, 1])
    cal = GFactorCalibrator(reg, GFactorSettings(), n_segments=2)
    for t in range(60, 60 * 30, 60):
        batch = _readings(rng, np.array([0, 1]), np.array([6.0, 6.0]), np.full(2, FREE_FLOW_KMH), float(t))
        cal.add_readings(batch)
        cal.calibrate(float(t), np.full(2, FREE_FLOW_KMH), usable=np.array([True, False]))
    assert cal.calibrated.tolist() == [True, False]


def test_export_import_round_trip(make_registry) -> None:
    rng = np.random.default_rng(4)
    reg = make_registry([0, 1])
    a = GFactorCalibrator(reg, GFactorSettings(), n_segments=2)
    for t in range(60, 60 * 15, 60):
        batch = _readings(rng, np.array([0, 1]), np.array([4.0, 9.0]), np.full(2, FREE_FLOW_KMH), float(t))
        a.add_readings(batch)
        a.calibrate(float(t), np.full(2, FREE_FLOW_KMH))
    b = GFactorCalibrator(reg, GFactorSettings(), n_segments=2)
    b.import_state(a.export_state())
    np.testing.assert_array_equal(a.vehicle_length_m, b.vehicle_length_m)
    batch = _readings(rng, np.array([0, 1]), np.array([4.0, 9.0]), np.full(2, FREE_FLOW_KMH), 1e4)
    for cal in (a, b):
        cal.add_readings(batch)
        cal.calibrate(1e4, np.full(2, FREE_FLOW_KMH))
    np.testing.assert_array_equal(a.vehicle_length_m, b.vehicle_length_m)
    with pytest.raises(ValueError, match="samples per detector"):
        GFactorCalibrator(reg, GFactorSettings(samples=8), n_segments=2).import_state(a.export_state())


def test_gfactor_kernel_matches_numpy_reference() -> None:
    rng = np.random.default_rng(9)
    n = 500
    count = rng.choice([0.0, 1.0, 2.0, 5.0, 20.0], n)
    occ = rng.choice([0.0, 0.2, 0.5, 3.0, 9.0, 40.0, 100.0], n)
    interval = rng.choice([0.0, 30.0, 60.0], n)
    ref_speed = rng.choice([np.nan, 0.0, 25.0, 60.0], n)
    out = np.empty(n)
    hk.gfactor_samples(count, occ, interval, ref_speed, 2.0, 0.5, 100.0, out)
    ok = (count >= 2) & (occ >= 0.5) & (occ <= 100) & (ref_speed > 0) & (interval > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(ok, ref_speed / 3.6 * occ / 100 / (count / interval), np.nan)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_gfactor_push_matches_python_reference() -> None:
    """Ring appends in order, wrapping, with repeated detectors in one batch."""
    rng = np.random.default_rng(4)
    width, detectors = 5, 7
    ring = np.full((detectors, width), np.nan, dtype=np.float32)
    head = np.zeros(detectors, dtype=np.int64)
    n = np.zeros(detectors, dtype=np.int64)
    ref_ring, ref_head, ref_n = ring.copy(), head.copy(), n.copy()
    for _ in range(4):
        dets = rng.integers(detectors, size=23).astype(np.int64)
        vals = rng.uniform(3, 20, 23).astype(np.float32)
        hk.gfactor_push(ring, head, n, dets, vals)
        for d, v in zip(dets.tolist(), vals.tolist(), strict=True):
            ref_ring[d, ref_head[d]] = v
            ref_head[d] = (ref_head[d] + 1) % width
            ref_n[d] += 1
    np.testing.assert_array_equal(ring, ref_ring)
    np.testing.assert_array_equal(head, ref_head)
    np.testing.assert_array_equal(n, ref_n)


def test_real_wsdot_loops_give_back_the_length_their_speeds_were_computed_with(make_network) -> None:
    """WSDOT's loops on I-90 are single loops whose published speeds were computed from flow and
    occupancy with a fixed effective length: calibrating from those speeds must find it again
    (22 ft = 6.71 m) on most lanes, from real, rounded data."""
    ids, frame = wsdot_rows()
    network, reg = wsdot_setup(make_network, ids)
    cal = GFactorCalibrator(reg, GFactorSettings(), n_segments=len(network))
    for ts, part in frame.groupby("ts"):
        cal.add_readings(wsdot_batch(part, ids))
        cal.calibrate(float(ts), np.full(len(network), 96.0))
    lengths = cal.vehicle_length_m
    assert cal.calibrated.all()
    assert (np.abs(lengths - 22 * 0.3048) < 0.2).sum() >= 8, dict(zip(ids, lengths.round(2), strict=True))
    assert ((lengths > 5.0) & (lengths < 9.0)).all()
