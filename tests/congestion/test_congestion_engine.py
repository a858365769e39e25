"""CongestionEngine end to end: buffering, ticks, staleness, late data, districts, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from congestion import CongestionEngine, EngineSettings, ReadingBatch, TickResult, _kernels

STALE_S = 300.0


@pytest.fixture
def engine(make_network, make_registry) -> CongestionEngine:
    """3 two-lane segments, limit 50 km/h, free flow = the limit (fraction 1.0) for round numbers.
    Detectors: d0 lane 0 and d1 lane 1 on s0; d2 camera on s1; d3 unknown lane on s2."""
    net = make_network(3, lanes=2, speed_limit_kmh=50.0)
    reg = make_registry([0, 0, 1, 2], lane=[0, 1, 0, -1], kind=["loop", "loop", "camera", "radar"])
    return CongestionEngine(
        net, reg, EngineSettings(stale_after_s=STALE_S, free_flow_fraction_of_limit=1.0), estimator="spot"
    )


def speeds(result: TickResult) -> list[float]:
    return [round(float(v), 4) if not math.isnan(v) else math.nan for v in result.states.speed_kmh]


# ---------------------------------------------------------------------------------------------
# add_readings
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_index", [-1, 4, 1_000_000])
def test_add_readings_rejects_unknown_detector(engine, make_batch, bad_index: int) -> None:
    message = rf"reading 1: detector_index {bad_index} outside the registry \(0..3\)"
    with pytest.raises(ValueError, match=message):
        engine.add_readings(make_batch([0, bad_index], [10.0, 10.0]))
    assert engine.pending_readings == 0  # nothing of a bad batch is kept
    assert engine.tick(60.0).readings_used == 0


def test_add_readings_rejects_non_finite_ts(engine, make_batch) -> None:
    with pytest.raises(ValueError, match="ts = nan"):
        engine.add_readings(make_batch([0], [np.nan]))
    with pytest.raises(TypeError):
        engine.add_readings([0, 1])  # type: ignore[arg-type]


def test_empty_batches_and_empty_ticks(engine, make_batch) -> None:
    engine.add_readings(ReadingBatch.empty())
    engine.add_readings(make_batch([], []))
    result = engine.tick(60.0)
    assert result.readings_used == 0 and result.readings_pending == 0
    assert (result.states.level == 0).all() and math.isnan(result.city.tpi) and result.city.level == 0


# ---------------------------------------------------------------------------------------------
# tick: which readings, and what they give
# ---------------------------------------------------------------------------------------------


def test_readings_after_tick_ts_wait_for_the_next_tick(engine, make_batch) -> None:
    engine.add_readings(make_batch([0, 0], [60.0, 61.0], speed_kmh=[40.0, 20.0]))
    first = engine.tick(60.0)  # ts == tick_ts is included; 61 is not
    assert first.readings_used == 1 and first.readings_pending == 1 and engine.pending_readings == 1
    assert speeds(first)[0] == 40.0
    second = engine.tick(120.0)
    assert second.readings_used == 1 and second.readings_pending == 0
    assert speeds(second)[0] == 20.0


def test_readings_wait_over_several_ticks_and_batches(engine, make_batch) -> None:
    """The engine knows from ``add_readings`` when every buffered reading is due; readings left
    buffered keep that right across ticks and later batches."""
    engine.add_readings(make_batch([0, 0, 0], [200.0, 10.0, 130.0], speed_kmh=[30.0, 40.0, 20.0]))
    first = engine.tick(60.0)
    assert (first.readings_used, first.readings_pending) == (1, 2) and speeds(first)[0] == 40.0
    engine.add_readings(make_batch([0], [100.0], speed_kmh=[25.0]))
    second = engine.tick(150.0)
    assert (second.readings_used, second.readings_pending) == (2, 1)
    third = engine.tick(190.0)
    assert (third.readings_used, third.readings_pending) == (0, 1)
    fourth = engine.tick(200.0)
    assert (fourth.readings_used, fourth.readings_pending) == (1, 0) and engine.pending_readings == 0
    assert engine.tick(260.0).readings_used == 0


def test_all_readings_of_one_detector_in_a_tick_are_used(engine, make_batch) -> None:
    # Two intervals of d0 in one tick: 10 vehicles at 60 and 10 at 20 km/h. Harmonic mean,
    # 20 / (10/60 + 10/20) = 30 km/h, not the arithmetic 40.
    engine.add_readings(make_batch([0], [30.0], count=10, speed_kmh=60.0))
    engine.add_readings(make_batch([0], [60.0], count=10, speed_kmh=20.0))
    result = engine.tick(60.0)
    assert result.readings_used == 2
    assert speeds(result)[0] == pytest.approx(30.0)
    assert result.states.n_detectors[0] == 1  # one detector, however many readings


def test_late_reading_is_evidence(engine, make_batch) -> None:
    engine.add_readings(make_batch([2], [100.0], count=10, speed_kmh=30.0))
    assert engine.tick(120.0).states.level[0] == 0
    engine.add_readings(make_batch([0], [50.0], count=10, speed_kmh=30.0))  # before the last tick
    result = engine.tick(180.0)
    assert result.readings_used == 1
    assert speeds(result)[0] == 30.0
    assert result.states.confidence[0] == pytest.approx(
        (0.5 * 1 / 2 + 0.5 * 10 / 20) * (1 - 130 / STALE_S), rel=1e-6)


def test_late_reading_does_not_roll_back_a_newer_estimate(engine, make_batch) -> None:
    engine.add_readings(make_batch([0], [100.0], count=10, speed_kmh=40.0))
    engine.tick(120.0)
    engine.add_readings(make_batch([1], [90.0], count=10, speed_kmh=10.0))
    result = engine.tick(180.0)
    assert speeds(result)[0] == 40.0
    assert engine.detector_state.last_ts[1] == 90.0  # the reading still reached its detector


def test_staleness_known_then_unknown(engine, make_batch) -> None:
    engine.add_readings(make_batch([0, 1], [100.0, 100.0], count=5, speed_kmh=25.0))
    confidences = []
    for tick_ts in (100.0, 250.0, 100.0 + STALE_S):
        result = engine.tick(tick_ts)
        assert speeds(result)[0] == 25.0 and result.states.level[0] == 3
        confidences.append(float(result.states.confidence[0]))
    # Both lanes, 10 vehicles: 0.5 + 0.25 = 0.75, fading linearly with age to 0 at stale_after_s.
    assert confidences == pytest.approx([0.75, 0.375, 0.0], abs=1e-6)
    result = engine.tick(100.0 + STALE_S + 0.5)
    s = result.states
    assert math.isnan(s.speed_kmh[0]) and math.isnan(s.tti[0])
    assert s.level[0] == 0 and s.confidence[0] == 0 and s.n_detectors[0] == 0
    assert result.city.level == 0 and result.city.known_share == 0.0
    # and a fresh reading brings it back
    engine.add_readings(make_batch([0], [500.0], count=5, speed_kmh=45.0))
    assert engine.tick(500.0).states.level[0] == 1


@pytest.mark.parametrize(("speed_kmh", "level"), [(35.0, 2), (25.0, 3), (20.0, 4), (15.0, 5), (35.01, 1)])
def test_level_boundaries_through_the_engine(engine, make_batch, speed_kmh: float, level: int) -> None:
    engine.add_readings(make_batch([0], [10.0], count=10, speed_kmh=speed_kmh))
    s = engine.tick(10.0).states
    assert s.level[0] == level
    assert s.tti[0] == pytest.approx(50.0 / speed_kmh)


def test_sources_free_flow_and_flags(engine, make_batch) -> None:
    engine.add_readings(make_batch([0, 1, 2, 3], [10.0] * 4, count=[5, 5, 5, 0], occupancy_pct=[5, 5, 5, 0]))
    s = engine.tick(10.0).states
    assert s.n_detectors.tolist() == [2, 0, 1] and s.n_cameras.tolist() == [0, 1, 0]
    assert s.free_flow_kmh.tolist() == [50.0, 50.0, 50.0]
    assert speeds(engine.tick(10.0))[2] == 50.0  # empty road on s2: free-flow evidence
    assert not s.imputed.any() and not s.closed.any() and len(s) == 3


def test_distinct_detectors_counted_when_the_tick_stamp_comes_round(engine, make_batch) -> None:
    """A detector's per-tick mark holds a 7-bit tick stamp (``state.DETECTOR_RECORD``): one that
    reports again exactly when the stamp comes round must still count, once, as must its
    unknown lane; a detector with several readings a tick counts once every tick."""
    wrap = _kernels.MAX_TICK_STAMP
    seen_ticks = (1, wrap + 1, 2 * wrap + 1)  # the same stamp each time
    first = None
    for k in range(1, 2 * wrap + 3):
        rows = [0, 0] + ([3, 3] if k in seen_ticks else [])
        engine.add_readings(make_batch(rows, 60.0 * k, count=5, speed_kmh=40.0))
        s = engine.tick(60.0 * k).states
        assert s.n_detectors[0] == 1
        if k in seen_ticks:
            assert s.n_detectors[2] == 1
            # the unknown lane counted once: half the segment's two lanes covered, as at tick 1
            first = s.confidence[2] if first is None else first
            assert s.confidence[2] == first


def test_detector_state_keeps_the_newest_reading(engine, make_batch) -> None:
    engine.add_readings(make_batch([3, 3, 3], [50.0, 40.0, 50.0], count=[1, 2, 3], occupancy_pct=0.0))
    result = engine.tick(60.0)
    ds = engine.detector_state
    assert ds.last_ts[3] == 50.0 and ds.last_count[3] == 3.0  # newest ts; its later row on a tie
    assert ds.readings_total.tolist() == [0, 0, 0, 3]
    assert math.isnan(ds.last_ts[0])
    # vehicles counted but neither occupancy nor speed: no evidence, still counted
    assert result.readings_without_evidence == 3 and result.states.level[2] == 0


def test_tick_time_must_be_finite_and_not_go_back(engine) -> None:
    engine.tick(100.0)
    engine.tick(100.0)
    with pytest.raises(ValueError, match="before the previous tick"):
        engine.tick(99.0)
    with pytest.raises(ValueError, match="finite"):
        engine.tick(math.inf)


# ---------------------------------------------------------------------------------------------
# against the references, districts, construction
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [11, 12])
def test_random_tick_matches_reference(make_network, make_registry, reference, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_seg, n_det, n_read = 400, 900, 6000
    limit = rng.choice([30.0, 50.0, 80.0], n_seg)
    net = make_network(n_seg, lanes=rng.integers(1, 4, n_seg), speed_limit_kmh=limit)
    reg = make_registry(rng.integers(0, n_seg, n_det), lane=rng.choice([-1, 0, 1, 2], n_det),
                        kind=rng.choice(["loop", "radar", "camera"], n_det))
    settings = EngineSettings(stale_after_s=120.0)
    engine = CongestionEngine(net, reg, settings, estimator="spot")
    batch = reference.random_batch(rng, n_read, n_det, (0.0, 200.0))
    engine.add_readings(batch)
    result = engine.tick(150.0)

    due = batch.take(batch.ts <= 150.0)
    limit32 = limit.astype(np.float32)
    ff = (limit32.astype(np.float64) * settings.free_flow_fraction_of_limit).astype(np.float32)
    agg, n_without = reference.aggregate(due, reg.segment_index, reg.lane, reg.kind == "camera",
                                         limit32, ff, settings)
    fresh = agg[agg.newest_ts >= 150.0 - settings.stale_after_s]
    want_speed = np.full(n_seg, np.nan, dtype=np.float32)
    want_speed[fresh.index] = (fresh.weight_all / fresh.weight_per_speed_all).to_numpy(np.float32)
    np.testing.assert_allclose(result.states.speed_kmh, want_speed, rtol=1e-6, equal_nan=True)
    want_level = reference.level_of_ratio(want_speed.astype(np.float64) / ff.astype(np.float64))
    np.testing.assert_array_equal(result.states.level, want_level)
    assert result.readings_used == len(due) and result.readings_pending == n_read - len(due)
    assert result.readings_without_evidence == n_without
    assert 0 < np.count_nonzero(want_level) < n_seg  # some known, some stale or without data


def test_districts_through_the_engine(make_network, make_registry, make_batch) -> None:
    net = make_network(4, lanes=[1, 2, 1, 3], length_m=[100.0, 100.0, 400.0, 50.0])
    reg = make_registry([0, 1, 2, 3])
    engine = CongestionEngine(net, reg, EngineSettings(free_flow_fraction_of_limit=1.0), estimator="spot",
                              district_names=("east", "west"), segment_district=np.array([0, 0, 1, -1]))
    # s0: r = 0.9 (TPI 2/3), s1: r = 0.2 (TPI 26/3, severe), s2: nothing, s3: r = 0.5 (TPI 4).
    engine.add_readings(make_batch([0, 1, 3], [10.0] * 3, count=10, speed_kmh=[45.0, 10.0, 25.0]))
    result = engine.tick(10.0)
    east, west = result.districts["east"], result.districts["west"]
    assert east.tpi == pytest.approx((100 * 2 / 3 + 200 * 26 / 3) / 300)
    assert east.level == 4 and east.severe_share == pytest.approx(2 / 3) and east.known_share == 1.0
    assert west.level == 0 and math.isnan(west.tpi) and west.known_share == 0.0
    assert result.city.known_share == pytest.approx(450 / 850)
    assert result.city.tpi == pytest.approx((100 * 2 / 3 + 200 * 26 / 3 + 150 * 4) / 450)


def test_construction_errors(make_network, make_registry) -> None:
    net = make_network(2)
    with pytest.raises(ValueError, match=r"detector 'd1': segment_index 5 outside 0..1"):
        CongestionEngine(net, make_registry([0, 5]), EngineSettings())
    with pytest.raises(ValueError, match="segment_district"):
        CongestionEngine(net, make_registry([0]), EngineSettings(), district_names=("a",),
                         segment_district=np.array([0, 1]))
    with pytest.raises(ValueError, match="speed_limit_kmh"):
        CongestionEngine(make_network(2, speed_limit_kmh=[50.0, 0.0]), make_registry([0]), EngineSettings())


@pytest.mark.parametrize(
    "kwargs",
    [{"stale_after_s": 0.0}, {"effective_vehicle_length_m": -1.0}, {"stale_after_s": math.nan},
     {"empty_occupancy_max_pct": 60.0}, {"free_flow_fraction_of_limit": 3.0}],
)
def test_settings_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"\[engine\]"):
        EngineSettings(**kwargs)


def test_empty_network_and_registry(make_network, make_registry, make_batch) -> None:
    engine = CongestionEngine(make_network(0), make_registry([]), EngineSettings())
    with pytest.raises(ValueError, match=r"outside the registry \(0..-1\)"):
        engine.add_readings(make_batch([0], [1.0]))
    result = engine.tick(60.0)
    assert len(result.states) == 0 and result.city.level == 0 and result.city.known_share == 0.0


def test_engine_config_keys_match_the_schema_and_the_defaults() -> None:
    """Every tunable [engine] key is declared in the config SCHEMA with the parameter's own
    default, and ``engine_parts`` routes each to its field."""
    import dataclasses

    from congestion.engine import ENGINE_CONFIG_FIELDS, engine_parts
    from roadpulse.config import SCHEMA

    settings, model, imputation = engine_parts({})
    parts = {"settings": settings, "model": model, "imputation": imputation}
    for key, (part, name) in ENGINE_CONFIG_FIELDS.items():
        assert key in SCHEMA["engine"], f"[engine] {key} is not declared in roadpulse.config.SCHEMA"
        assert SCHEMA["engine"][key].default == pytest.approx(getattr(parts[part], name)), key
        # A changed value arrives in its field.
        changed = engine_parts({key: float(getattr(parts[part], name)) * 0.5 + 0.01})
        chosen = dict(zip(("settings", "model", "imputation"), changed, strict=True))[part]
        assert getattr(chosen, name) == pytest.approx(float(getattr(parts[part], name)) * 0.5 + 0.01)
        assert dataclasses.is_dataclass(chosen)
    with pytest.raises(ValueError, match="queue_occupancy"):
        engine_parts({"queue_occupancy": 0.0})


def test_signal_timing_is_validated_and_used(make_network, make_registry, make_batch) -> None:
    from congestion.engine import engine_parts

    net = make_network(2, lanes=1, speed_limit_kmh=50.0)
    reg = make_registry([0, 1])
    with pytest.raises(ValueError, match="signal_timing"):
        CongestionEngine(net, reg, EngineSettings(), signal_timing=(np.array([90.0]), np.array([0.5])))
    with pytest.raises(ValueError, match="signal_timing"):
        CongestionEngine(net, reg, EngineSettings(), signal_timing=(np.full(2, 90.0), np.array([0.5, 1.5])))
    settings, model, _ = engine_parts({})

    def speed_with(timing: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        engine = CongestionEngine(net, reg, settings, model=model, signal_timing=timing)
        engine._scratch.records["signalised"] = True  # make_network has no signals; force them
        engine.add_readings(make_batch([0, 1], 50.0, count=5.0, occupancy_pct=5.0, speed_kmh=40.0))
        return engine.tick(60.0).states.speed_kmh

    default = speed_with(None)
    timed = speed_with((np.array([np.nan, 150.0]), np.array([np.nan, 0.3])))
    assert timed[0] == pytest.approx(default[0])  # NaN: the model's default timing
    assert timed[1] < default[1]  # a longer cycle and less green: more delay, slower
