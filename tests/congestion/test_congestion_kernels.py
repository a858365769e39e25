"""Each kernel of congestion._kernels against its slow reference (conftest) on random inputs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from congestion import EngineSettings
from congestion import _kernels as k
from congestion.engine import _held_params, _spot_only, _spot_params
from congestion.levels import RATIO_UPPER_BOUNDS, SEVERE_LEVEL, TPI_RATIO_KNOTS, TPI_VALUE_KNOTS
from congestion.state import FF_BINS, DetectorState, SegmentHeld, SegmentScratch
from congestion.travel_speed import TravelSpeedParams
from congestion.types import ReadingBatch

SIZES = [0, 1, 7, 500, 5000]
SEEDS = [1, 2, 3]
SETTINGS = [EngineSettings(), EngineSettings(effective_vehicle_length_m=5.0, low_evidence_weight_veh=0.3,
                                               stopped_speed_kmh=5.0, max_speed_factor_of_limit=1.2)]


def random_world(rng: np.random.Generator, n_readings: int) -> SimpleNamespace:
    """A random registry and segment table sized to the readings."""
    n_segments = max(1, n_readings // 5)
    n_detectors = max(1, n_readings // 3)
    limit = rng.choice([30.0, 50.0, 60.0, 80.0, 120.0], n_segments).astype(np.float32)
    return SimpleNamespace(
        n_segments=n_segments,
        n_detectors=n_detectors,
        det_segment=rng.integers(0, n_segments, n_detectors).astype(np.int32),
        det_lane=rng.choice([-1, -1, 0, 1, 2, 65], n_detectors).astype(np.int16),
        det_is_camera=rng.random(n_detectors) < 0.3,
        speed_limit=limit,
        free_flow=(limit * rng.uniform(0.6, 1.0, n_segments)).astype(np.float32),
        lanes=rng.integers(1, 5, n_segments).astype(np.int16),
    )


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
def test_spot_speeds_match_reference(seed: int, n: int, settings: EngineSettings, reference) -> None:
    rng = np.random.default_rng(seed)
    w = random_world(rng, n)
    b = reference.random_batch(rng, n, w.n_detectors, (0.0, 100.0))
    got_v = np.empty(n, dtype=np.float64)
    got_w = np.empty(n, dtype=np.float64)
    k.spot_speeds(b.detector_index, b.count, b.occupancy_pct, b.speed_kmh, b.interval_s,
                  w.det_segment, w.speed_limit, w.free_flow, _spot_params(settings), got_v, got_w)
    seg = w.det_segment[b.detector_index]
    want_v, want_w, _ = reference.spot_speeds(b.count, b.occupancy_pct, b.speed_kmh, b.interval_s,
                                           w.speed_limit[seg], w.free_flow[seg], settings)
    np.testing.assert_array_equal(got_w, want_w)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-12, equal_nan=True)
    if n >= 500:  # every branch was exercised, so the comparison above meant something
        assert np.isnan(want_v).any() and (want_w == settings.low_evidence_weight_veh).any()
        assert (want_v == settings.stopped_speed_kmh).any() and (want_v == 1.0).any()


@pytest.mark.parametrize(
    ("count", "occ", "speed", "interval", "want_v", "want_w"),
    [
        (10, 10.0, np.nan, 30, 72.0, 10.0),  # q = 1200 veh/h, L = 6 m, occ 0.1 -> 72 km/h
        (10, 5.0, np.nan, 30, 75.0, 10.0),  # 144 km/h clamped to 1.5 x 50
        (12, 8.5, 42.1, 30, 42.1, 12.0),  # measured speed wins
        (0, 0.0, np.nan, 30, 45.0, 0.1),  # empty road: free flow, small weight
        (0, 1.0, np.nan, 30, 45.0, 0.1),  # "~zero" occupancy boundary is inclusive
        (0, 50.0, np.nan, 30, 2.0, 1.0),  # standing queue (>= 50 % inclusive): the stopped speed
        (0, 30.0, np.nan, 30, np.nan, 0.0),  # ambiguous: no evidence
        (5, 0.0, np.nan, 30, np.nan, 0.0),  # vehicles, no occupancy, no speed
        (0, 0.0, 0.0, 30, 1.0, 0.1),  # measured 0 km/h clamped up to 1
        (3, 120.0, 30.0, 30, np.nan, 0.0),  # occupancy outside 0..100: unusable
    ],
)
def test_spot_speed_cases(count: float, occ: float, speed: float, interval: float,
                          want_v: float, want_w: float) -> None:
    v = np.empty(1)
    w = np.empty(1)
    k.spot_speeds(np.zeros(1, np.int32), np.array([count], np.float32), np.array([occ], np.float32),
                  np.array([speed], np.float32), np.array([interval], np.float32), np.zeros(1, np.int32),
                  np.array([50.0], np.float32), np.array([45.0], np.float32), _spot_params(EngineSettings()),
                  v, w)
    np.testing.assert_allclose(v[0], want_v, rtol=1e-6, equal_nan=True)
    assert w[0] == pytest.approx(want_w)


ACC_FIELDS = ("weight", "weight_free_flow", "weight_per_speed", "newest_ts", "n_detectors", "n_cameras",
              "lane_mask", "n_unknown_lane")
DET_FIELDS = ("last_ts", "last_count", "last_occupancy_pct", "last_speed_kmh", "readings_total")


def check_accumulators(sc: SegmentScratch, want: pd.DataFrame, n_segments: int) -> None:
    segs = range(n_segments)
    for col in ("weight", "weight_free_flow", "weight_per_speed"):  # float32 sums of a few terms
        np.testing.assert_allclose(sc.field(col), want[col].reindex(segs, fill_value=0.0), rtol=1e-5,
                                   err_msg=col)
    want_newest = want.newest_ts.reindex(segs, fill_value=-np.inf).to_numpy(np.float64)
    np.testing.assert_array_equal(sc.field("newest_ts"), want_newest)
    for col in ("n_detectors", "n_cameras", "lane_mask", "n_unknown_lane"):
        want_col = want[col].reindex(segs, fill_value=0).to_numpy(np.int64)
        np.testing.assert_array_equal(sc.field(col), want_col, err_msg=col)


def ref_queue_memory(
    b: ReadingBatch, det_segment: np.ndarray, speed_limit: np.ndarray, settings: EngineSettings,
    age: np.ndarray, last_ts: np.ndarray, reference,
) -> tuple[ReadingBatch, int]:
    """The detectors' queue memory (``accumulate_readings``), one row at a time in plain Python:
    the batch with every empty interval that follows a queue on its loop (within
    ``stale_after_s`` of empty intervals) replaced by what it is read as — nobody passing with
    the loop covered at ``stopped_occupancy_min_pct`` — and how many were replaced. ``age`` (the
    detectors' ``queue_age``) and ``last_ts`` are updated in place."""
    seg = det_segment[b.detector_index]
    v, w, empty = reference.spot_speeds(b.count, b.occupancy_pct, b.speed_kmh, b.interval_s,
                                        speed_limit[seg], speed_limit[seg], settings)
    count, occ, speed = b.count.copy(), b.occupancy_pct.copy(), b.speed_kmh.copy()
    replaced = 0
    for i, d in enumerate(b.detector_index):
        in_order = not b.ts[i] < last_ts[d]
        if in_order:
            last_ts[d] = b.ts[i]
        if not (in_order and w[i] > 0):
            continue
        if empty[i] and age[d] > 0:
            a = float(age[d]) + max(float(b.interval_s[i]) / 10.0, 1.0)
            if (a - 1.0) * 10.0 <= settings.stale_after_s and a <= 255.0:
                age[d] = int(a)
                count[i], occ[i], speed[i] = 0.0, settings.stopped_occupancy_min_pct, np.nan
                replaced += 1
            else:
                age[d] = 0
        elif empty[i]:
            age[d] = 0
        else:
            age[d] = 1 if v[i] <= settings.queue_speed_fraction_of_limit * float(speed_limit[seg[i]]) else 0
    out = ReadingBatch(detector_index=b.detector_index, ts=b.ts, interval_s=b.interval_s, count=count,
                       occupancy_pct=occ, speed_kmh=speed, lane=b.lane)
    return out, replaced


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
def test_accumulate_readings_matches_reference(seed: int, n: int, reference) -> None:
    rng = np.random.default_rng(seed)
    settings = EngineSettings()
    w = random_world(rng, n)
    sc = SegmentScratch.initial(w.speed_limit)
    det = DetectorState.initial(w.det_segment, w.det_lane, w.det_is_camera)
    age = np.zeros(w.n_detectors, dtype=np.int64)
    last_ts = np.full(w.n_detectors, np.nan)
    n_replaced = 0

    # Two ticks in a row on the same state: stamps must separate them, and the second tick's
    # detector "last reading" must respect the first's (late rows do not roll it back).
    for stamp in (1, 2):
        b = reference.random_batch(rng, n, w.n_detectors, (0.0, 200.0) if stamp == 1 else (100.0, 300.0))
        prior = {f: getattr(det, f).copy() for f in DET_FIELDS}
        n_without = k.accumulate_readings(
            b.detector_index, b.ts, b.interval_s, b.count, b.occupancy_pct, b.speed_kmh, b.lane,
            det.records, sc.records, _spot_params(settings), stamp,
        )
        # Empty intervals after a queue are read as the queue standing: the reference takes the
        # batch as the kernel reads it, then aggregates it as any other.
        read_as, replaced = ref_queue_memory(
            b, w.det_segment, w.speed_limit, settings, age, last_ts, reference
        )
        n_replaced += replaced
        np.testing.assert_array_equal(det.queue_age, age)
        want, want_without = reference.aggregate(read_as, w.det_segment, w.det_lane, w.det_is_camera,
                                                 w.speed_limit, w.free_flow, settings)
        assert n_without == want_without
        check_accumulators(sc, want, w.n_segments)
        check_flow_sums(sc, read_as, w.det_segment, w.n_segments, reference, w.speed_limit, settings)
        want_det = reference.detector_last(b, prior)
        for name, arr in want_det.items():
            np.testing.assert_array_equal(getattr(det, name), arr, err_msg=name)
        np.testing.assert_array_equal(det.segment, w.det_segment)  # static fields untouched
        np.testing.assert_array_equal(sc.field("speed_limit_kmh"), w.speed_limit)
        # What update_segments does: clear the accumulators for the next tick.
        fresh = SegmentScratch.initial(w.speed_limit)
        sc.records[:] = fresh.records
    if n >= 500:
        assert (want.n_detectors > 1).any() and (want.n_cameras > 0).any() and (want.lane_mask > 0).any()
        assert (want.weight_free_flow > 0).any() and (want.weight > 0).any()
    if n >= 5000:
        assert n_replaced > 0  # the queue memory was exercised


def test_detector_records_pack_lane_and_camera() -> None:
    """One 32-byte record per detector; lane + 1 (unknown: 0; lanes above ``MAX_LANE_BIT``, which
    the kernel folds onto it, stored as it) and the camera bit share a byte."""
    det = DetectorState.initial(np.arange(5, dtype=np.int32), np.array([-3, -1, 0, 15, 300]),
                                np.array([True, False, True, False, True]))
    assert det.records.dtype.itemsize == 32 and det.records.ctypes.data % 64 == 0
    assert det.records["lane_camera"].tolist() == [k.CAMERA_BIT, 0, k.CAMERA_BIT | 1, 16, k.CAMERA_BIT | 16]
    assert det.usable.all() and not det.queue_age.any() and not det.records["tick_mark"].any()
    assert np.isnan(det.last_ts).all() and det.segment.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("stale_after_s", [300.0, 86400.0])
def test_queue_memory_ends(stale_after_s: float, reference) -> None:
    """A crawl, then empty minutes: read as the standing queue until the empty intervals last
    ``stale_after_s`` — or 255 units of 10 s (``queue_age`` is a uint8) when that is longer."""
    settings = EngineSettings(stale_after_s=stale_after_s)
    limit = np.array([50.0], np.float32)
    det = DetectorState.initial(np.zeros(1, np.int32), np.full(1, -1), np.zeros(1, bool))
    age, last_ts = np.zeros(1, dtype=np.int64), np.full(1, np.nan)
    standing = []
    for minute in range(60):
        crawl = minute == 0
        b = ReadingBatch(
            detector_index=np.zeros(1, np.int32), ts=np.array([60.0 * (minute + 1)]),
            interval_s=np.array([60.0], np.float32), count=np.array([3.0 if crawl else 0.0], np.float32),
            occupancy_pct=np.array([30.0 if crawl else 0.0], np.float32),
            speed_kmh=np.array([6.0 if crawl else np.nan], np.float32), lane=np.full(1, -1, np.int16),
        )
        sc = SegmentScratch.initial(limit)
        k.accumulate_readings(b.detector_index, b.ts, b.interval_s, b.count, b.occupancy_pct, b.speed_kmh,
                              b.lane, det.records, sc.records, _spot_params(settings), minute + 1)
        _, replaced = ref_queue_memory(b, np.zeros(1, np.int32), limit, settings, age, last_ts, reference)
        assert det.queue_age[0] == age[0]
        if not crawl:
            standing.append(sc.field("weight_free_flow")[0] == 0.0)  # no empty-road evidence
            assert standing[-1] == bool(replaced)
    # 60-s intervals age the memory by 6 units: 5 minutes, or 42 minutes at the uint8 cap.
    assert sum(standing) == (5 if stale_after_s == 300.0 else 42) and not any(standing[sum(standing):])


def check_flow_sums(sc: SegmentScratch, b: ReadingBatch, det_segment: np.ndarray, n_segments: int,
                    reference, speed_limit: np.ndarray, settings: EngineSettings) -> None:
    """Vehicles, occupancy-seconds and interval-seconds per segment over the readings with
    evidence and an occupancy (what the travel-speed model reads), by pandas."""
    seg = det_segment[b.detector_index]
    _, w, _ = reference.spot_speeds(b.count, b.occupancy_pct, b.speed_kmh, b.interval_s,
                                    speed_limit[seg], speed_limit[seg], settings)
    df = pd.DataFrame({"seg": seg, "count": b.count.astype(np.float64), "dt": b.interval_s.astype(np.float64),
                       "occ_s": b.occupancy_pct.astype(np.float64) / 100.0 * b.interval_s})
    df = df[(w > 0) & (b.occupancy_pct >= 0) & (b.interval_s > 0)]
    g = df.groupby("seg")
    for col, name in (("count", "count"), ("occ_s", "occupancy_s"), ("dt", "interval_s")):
        np.testing.assert_allclose(sc.field(name), g[col].sum().reindex(range(n_segments), fill_value=0.0),
                                   rtol=1e-4, atol=1e-3, err_msg=name)


def ref_update_segments(a: SimpleNamespace, tick_ts: float, stale_after_s: float, half: float,
                        factor: float, level_of_ratio) -> dict[str, np.ndarray]:
    """update_segments written column-wise from its docstring and the engine's confidence formula."""
    w_all = a.acc_weight.astype(np.float64) + a.acc_weight_free_flow
    take = (w_all > 0) & ~(a.acc_newest_ts < a.evidence_ts)
    ff64 = a.free_flow.astype(np.float64)
    ff_spot = np.clip(ff64, 1.0, np.maximum(factor * a.speed_limit.astype(np.float64), 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        fresh_speed = w_all / (a.acc_weight_per_speed.astype(np.float64) + a.acc_weight_free_flow / ff_spot)
        lanes = np.maximum(a.lanes, 1).astype(np.int64)
        bits = np.array([bin(int(m)).count("1") for m in a.acc_lane_mask], dtype=np.int64).reshape(-1)
        covered = np.minimum(bits + a.acc_n_unknown_lane.astype(np.int64), lanes)
        fresh_quality = 0.5 * covered / lanes + 0.5 * w_all / (w_all + half)
    ev_ts = np.where(take, a.acc_newest_ts, a.evidence_ts)
    quality = np.where(take, fresh_quality, a.evidence_quality).astype(np.float32)
    speed = np.where(take, fresh_speed, a.prev_speed).astype(np.float32)
    age = tick_ts - ev_ts
    known = ~np.isnan(speed) & (age <= stale_after_s)
    speed64 = speed.astype(np.float64)
    ratio = speed64 / ff64
    freshness = 1.0 - np.maximum(age, 0.0) / stale_after_s
    return {
        "evidence_ts": ev_ts,
        "evidence_quality": quality,
        "speed": np.where(known, speed, np.nan).astype(np.float32),
        "tti": np.where(known, ff64 / speed64, np.nan).astype(np.float32),
        "level": np.where(known, level_of_ratio(ratio), 0).astype(np.int8),
        "confidence": np.where(known, quality.astype(np.float64) * freshness, 0.0).astype(np.float32),
        "n_det": np.where(known, np.where(take, a.acc_n_detectors, a.prev_n_det), 0).astype(np.int16),
        "n_cam": np.where(known, np.where(take, a.acc_n_cameras, a.prev_n_cam), 0).astype(np.int16),
        "n_known": int(known.sum()),
    }


@pytest.mark.parametrize("n", [0, 1, 9, 3000])
@pytest.mark.parametrize("seed", SEEDS)
def test_update_segments_matches_reference(seed: int, n: int, reference) -> None:
    rng = np.random.default_rng(seed)
    tick_ts, stale, half, factor = 1000.0, 300.0, 10.0, 1.5
    has_acc = rng.random(n) < 0.5
    # Some segments with only empty-road evidence, some with only speeds, some with both.
    acc_w = np.where(has_acc & (rng.random(n) < 0.8), rng.choice([0.1, 1.0, 7.0, 55.0], n), 0.0)
    acc_w_ff = np.where(has_acc & ((acc_w == 0) | (rng.random(n) < 0.3)), rng.choice([0.1, 0.3], n), 0.0)
    held_ts = np.where(rng.random(n) < 0.2, np.nan, rng.uniform(500, 1000, n))
    a = SimpleNamespace(
        lanes=rng.integers(1, 5, n).astype(np.int16),
        speed_limit=rng.choice([20.0, 50.0, 80.0], n).astype(np.float32),
        free_flow=rng.choice([27.0, 45.0, 54.0, 72.0], n).astype(np.float32),
        acc_weight=acc_w,
        acc_weight_free_flow=acc_w_ff,
        acc_weight_per_speed=np.where(acc_w > 0, acc_w / rng.uniform(1, 110, n), 0.0),
        acc_newest_ts=np.where(has_acc, rng.uniform(600, 1000, n), -np.inf),
        acc_n_detectors=np.where(has_acc, rng.integers(0, 4, n), 0).astype(np.int32),
        acc_n_cameras=np.where(has_acc, rng.integers(0, 2, n), 0).astype(np.int32),
        acc_lane_mask=np.where(has_acc, rng.integers(0, 2**16, n), 0).astype(np.uint16),
        acc_n_unknown_lane=np.where(has_acc, rng.integers(0, 3, n), 0).astype(np.int32),
        evidence_ts=held_ts,
        evidence_quality=rng.uniform(0, 1, n).astype(np.float32),
        prev_speed=np.where(np.isnan(held_ts) | (rng.random(n) < 0.1), np.nan,
                            rng.uniform(1, 100, n)).astype(np.float32),
        prev_n_det=rng.integers(0, 4, n).astype(np.int16),
        prev_n_cam=rng.integers(0, 2, n).astype(np.int16),
    )
    sc = SegmentScratch.initial(a.speed_limit)
    for name in ACC_FIELDS:
        sc.field(name)[:] = getattr(a, "acc_" + name)
        setattr(a, "acc_" + name, sc.field(name).copy())  # as stored (float32 sums)
    want = ref_update_segments(a, tick_ts, stale, half, factor, reference.level_of_ratio)

    ev_ts, ev_q = a.evidence_ts.copy(), a.evidence_quality.copy()
    out = {"speed": np.empty(n, np.float32), "tti": np.empty(n, np.float32), "level": np.empty(n, np.int8),
           "confidence": np.empty(n, np.float32), "n_det": np.empty(n, np.int16),
           "n_cam": np.empty(n, np.int16), "ff": np.empty(n, np.float32)}
    # The naive ("spot") estimator: no junction delay, no smoothing memory, no learned free flow;
    # the travel-speed model has tests of its own (test_congestion_travel_speed.py).
    settings = EngineSettings(
        stale_after_s=stale, confidence_half_vehicles=half, max_speed_factor_of_limit=factor
    )
    model, held = _spot_only(TravelSpeedParams().as_tuple(), _held_params(settings))
    h = SegmentHeld.initial(a.free_flow)
    n_known = k.update_segments(
        tick_ts, held, model, RATIO_UPPER_BOUNDS, sc.records, a.lanes, a.free_flow, a.free_flow, ev_ts, ev_q,
        h.smooth_w, h.smooth_wpace, h.smooth_ts, h.ff_hist, h.ff_samples, h.ff_interval, h.profile,
        a.prev_speed, a.prev_n_det, a.prev_n_cam,
        out["speed"], out["ff"], out["tti"], out["level"], out["confidence"], out["n_det"], out["n_cam"],
        1.0, np.empty(0), np.empty(0),
    )
    np.testing.assert_array_equal(out["ff"], a.free_flow)
    assert n_known == want["n_known"]
    np.testing.assert_array_equal(ev_ts, want["evidence_ts"])
    np.testing.assert_allclose(ev_q, want["evidence_quality"], rtol=1e-6)
    for name in ("speed", "tti", "confidence"):
        # speed = length / (length / v): a rounding apart from the harmonic mean itself.
        np.testing.assert_allclose(out[name], want[name], rtol=2e-6, equal_nan=True, err_msg=name)
    near_bound = np.isin(np.round(want["speed"] / a.free_flow, 5), RATIO_UPPER_BOUNDS)
    for name in ("n_det", "n_cam"):
        np.testing.assert_array_equal(out[name], want[name], err_msg=name)
    # Levels agree except where a rounding can put r on the other side of a level bound.
    np.testing.assert_array_equal(out["level"][~near_bound], want["level"][~near_bound])
    # Accumulators are handed back cleared for the next tick; the speed limit stays.
    fresh = SegmentScratch.initial(a.speed_limit)
    for name in ("speed_limit_kmh", *ACC_FIELDS, "count", "occupancy_s", "interval_s"):
        np.testing.assert_array_equal(sc.field(name), fresh.field(name), err_msg=name)
    if n >= 3000:  # all three fates occurred: fresh evidence, held estimate, stale
        known = ~np.isnan(want["speed"])
        assert known.any() and (~known & ~np.isnan(a.prev_speed)).any()
        assert (known & ~has_acc).any() and len(np.unique(want["level"])) == 6


@pytest.mark.parametrize("decay", [1.0, 0.7])
@pytest.mark.parametrize("seed", SEEDS)
def test_update_segments_smoothed_flow_sums(seed: int, decay: float) -> None:
    # Imputation's junction model: flow_count / flow_seconds = decay × held + the tick's vehicles
    # counted / detector-seconds (late evidence too), every segment; zeros stay zeros.
    rng = np.random.default_rng(seed)
    n = 2000
    limit = rng.choice([20.0, 50.0, 80.0], n).astype(np.float32)
    sc = SegmentScratch.initial(limit)
    has = rng.random(n) < 0.5
    sc.field("weight")[:] = np.where(has, rng.uniform(0.1, 50, n), 0.0)
    sc.field("weight_per_speed")[:] = np.where(has, sc.field("weight") / rng.uniform(5, 90, n), 0.0)
    sc.field("newest_ts")[:] = np.where(has, rng.uniform(600, 1000, n), -np.inf)
    sc.field("count")[:] = np.where(has, rng.poisson(8.0, n), 0.0)
    sc.field("interval_s")[:] = np.where(has, 30.0 * rng.integers(1, 4, n), 0.0)
    count, seconds = sc.field("count").astype(np.float64), sc.field("interval_s").astype(np.float64)
    held_ts = np.where(rng.random(n) < 0.3, 2000.0, rng.uniform(500, 1000, n))  # 2000: late evidence
    held_c = np.where(rng.random(n) < 0.4, 0.0, rng.uniform(0, 100, n))
    held_s = np.where(held_c > 0, rng.uniform(30, 900, n), 0.0)
    fc, fs = held_c.copy(), held_s.copy()
    free_flow = np.full(n, 45.0, dtype=np.float32)
    h = SegmentHeld.initial(free_flow)
    model, held = _spot_only(TravelSpeedParams().as_tuple(), _held_params(EngineSettings()))
    kinds = (np.float32, np.float32, np.float32, np.int8, np.float32, np.int16, np.int16)
    outs = [np.empty(n, t) for t in kinds]
    k.update_segments(
        1000.0, held, model, RATIO_UPPER_BOUNDS, sc.records, np.ones(n, np.int16), free_flow, free_flow,
        held_ts, np.zeros(n, np.float32), h.smooth_w, h.smooth_wpace, h.smooth_ts, h.ff_hist, h.ff_samples,
        h.ff_interval, h.profile, np.full(n, np.nan, np.float32), np.zeros(n, np.int16),
        np.zeros(n, np.int16),
        *outs, decay, fc, fs,
    )
    np.testing.assert_array_equal(fc, decay * held_c + count)
    np.testing.assert_array_equal(fs, decay * held_s + seconds)
    assert (has & (held_ts == 2000.0) & (count > 0)).any()


@pytest.mark.parametrize("n", [0, 1, 10, k.AREA_BLOCK, k.AREA_BLOCK + 1, 4000])
@pytest.mark.parametrize("seed", SEEDS)
def test_area_sums_match_reference(seed: int, n: int, reference) -> None:
    rng = np.random.default_rng(seed)
    names = ("north", "south", "empty")
    ff = rng.choice([27.0, 45.0, 72.0], n).astype(np.float32)
    speed = np.where(rng.random(n) < 0.3, np.nan, ff * rng.uniform(0.05, 1.3, n)).astype(np.float32)
    tti = (ff / speed).astype(np.float32)
    level = reference.level_of_ratio(speed.astype(np.float64) / ff.astype(np.float64))
    weight = rng.uniform(10, 2000, n) * rng.integers(1, 4, n)
    district = rng.choice([-1, 0, 1], n).astype(np.int16)
    sums = np.zeros((len(names) + 1, k.AREA_N_SUMS))
    k.area_sums(speed, ff, tti, level, weight, district, len(names), TPI_RATIO_KNOTS, TPI_VALUE_KNOTS,
                SEVERE_LEVEL, sums)
    assert (sums[:, k.AREA_TOTAL_WEIGHT] == 0.0).all()  # left to area_weight_totals
    k.area_weight_totals(weight, district, len(names), sums[:, k.AREA_TOTAL_WEIGHT])
    want = reference.area_indices(speed, ff, tti, level, weight, district, names)
    for row, area in enumerate((*names, "city")):
        kw = sums[row, k.AREA_KNOWN_WEIGHT]
        total = sums[row, k.AREA_TOTAL_WEIGHT]
        got_tpi = sums[row, k.AREA_TPI_WEIGHTED] / kw if kw > 0 else np.nan
        got_tti = sums[row, k.AREA_TTI_WEIGHTED] / kw if kw > 0 else np.nan
        got_severe = sums[row, k.AREA_SEVERE_WEIGHT] / kw if kw > 0 else np.nan
        np.testing.assert_allclose(got_tpi, want[area]["tpi"], rtol=1e-9, equal_nan=True, err_msg=area)
        np.testing.assert_allclose(got_tti, want[area]["tti"], rtol=1e-6, equal_nan=True, err_msg=area)
        np.testing.assert_allclose(got_severe, want[area]["severe_share"], rtol=1e-9, equal_nan=True)
        np.testing.assert_allclose(kw / total if total > 0 else 0.0, want[area]["known_share"], rtol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_area_terms_tpi_is_tpi_of_ratio_bit_for_bit(seed: int, reference) -> None:
    """``area_sums``'s vectorised segment TPI (one division, for the piece the ratio lies in)
    against ``_tpi_of_ratio`` (a clipped division per piece): the same bits, on ratios at the
    knots exactly, one float32 step either side of them, beyond both ends, and at random."""
    rng = np.random.default_rng(seed)
    ff = rng.choice([10.0, 27.0, 45.0, 72.0], 600).astype(np.float32)
    at_knots = np.array(TPI_RATIO_KNOTS)[rng.integers(0, len(TPI_RATIO_KNOTS), 600)] * ff
    speed = np.concatenate([
        at_knots.astype(np.float32),
        np.nextafter(at_knots.astype(np.float32), np.float32(np.inf)),
        np.nextafter(at_knots.astype(np.float32), np.float32(0.0)),
        (ff * rng.uniform(-0.1, 1.5, 600)).astype(np.float32),
        np.full(4, np.nan, np.float32),
    ])
    ff = np.resize(ff, len(speed))
    n = len(speed)
    terms = [np.full(n, -1.0) for _ in range(4)]
    k._area_terms_of_block(speed, ff, np.ones(n, np.float32), np.zeros(n, np.int8), np.ones(n), 0,
                           TPI_RATIO_KNOTS, TPI_VALUE_KNOTS, SEVERE_LEVEL, *terms)
    ratio = speed.astype(np.float64) / ff.astype(np.float64)
    want = np.empty(n)
    k.tpis_of_ratios(ratio, TPI_RATIO_KNOTS, TPI_VALUE_KNOTS, want)
    known = ~np.isnan(speed)
    np.testing.assert_array_equal(terms[1][known].view(np.int64), want[known].view(np.int64))
    np.testing.assert_allclose(terms[1][known], reference.tpi_of_ratio(ratio[known]), rtol=1e-12, atol=1e-12)
    assert (terms[1][~known] == 0.0).all() and (terms[0] == known).all()
    assert np.isin(want, TPI_VALUE_KNOTS).sum() >= 600  # the knots were hit exactly


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8, np.int64])
def test_select_unpredictable_selects(dtype: type) -> None:
    """The branch-free select of the hot loops is ``np.where``, NaN included."""
    from numba import njit

    @njit
    def select_all(cond: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        for i in range(cond.shape[0]):
            out[i] = k._select_unpredictable(cond[i], a[i], b[i])

    rng = np.random.default_rng(0)
    a = rng.integers(0, 200, 101).astype(dtype)
    b = rng.integers(0, 200, 101).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        a[::7] = np.nan
    cond = rng.random(101) < 0.5
    out = np.empty(101, dtype)
    select_all(cond, a, b, out)
    np.testing.assert_array_equal(out, np.where(cond, a, b))


@pytest.mark.parametrize(
    ("detector_index", "ts", "want", "want_newest"),
    [
        ([], [], -1, -np.inf),
        ([0, 1, 2], [1.0, 2.0, 3.0], -1, 3.0),
        ([0, 1, 2], [5.0, -2.0, 3.0], -1, 5.0),
        ([0, 3, 1], [1.0, 2.0, 3.0], 1, 1.0),  # 3 detectors: index 3 is out of range
        ([0, -1], [1.0, 2.0], 1, 1.0),
        ([0, 1], [np.nan, 2.0], 0, -np.inf),
        ([2, 1], [1.0, np.inf], 1, 1.0),
    ],
)
def test_first_invalid_reading(detector_index: list[int], ts: list[float], want: int,
                               want_newest: float) -> None:
    row, newest = k.first_invalid_reading(np.array(detector_index, np.int32), np.array(ts, np.float64), 3)
    assert row == want
    assert newest == want_newest


@pytest.mark.parametrize("seed", SEEDS)
def test_free_flow_sample_row_matches_numpy(seed: int) -> None:
    """``_free_flow_sample`` (what ``update_segments`` calls: the histogram as one row of the
    table, indexed in place) learns segment ``s``'s free flow as the numpy reference of
    ``test_congestion_travel_speed`` does, halves its row at the cap, and leaves other rows
    alone."""
    from tests.congestion.test_congestion_travel_speed import _ref_free_flow

    rng = np.random.default_rng(seed)
    limit, default, min_samples = 60.0, 54.0, 3.0
    n_segments, s = 5, int(rng.integers(0, 5))
    hist = rng.integers(0, 4, (n_segments, FF_BINS)).astype(np.uint16)
    hist[s] = 0
    others = np.delete(hist, s, axis=0).copy()
    samples = np.zeros(n_segments, dtype=np.uint32)
    ff = default
    speeds = rng.uniform(3.0, 90.0, 200).tolist()
    for n, v in enumerate(speeds, start=1):
        ff = float(k._free_flow_sample(v, limit, ff, default, hist, s, samples, s, 1e9, min_samples))
        assert int(samples[s]) == n == int(hist[s].sum())
        assert ff == pytest.approx(_ref_free_flow(speeds[:n], limit, default, min_samples), rel=1e-6)
    k._free_flow_sample(30.0, limit, ff, default, hist, s, samples, s, 150.0, min_samples)
    assert int(samples[s]) == int(hist[s].sum()) < 150
    np.testing.assert_array_equal(np.delete(hist, s, axis=0), others)
    assert not np.delete(samples, s).any()
