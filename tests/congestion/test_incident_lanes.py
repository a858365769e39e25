"""Lane test: a lane blocked on the segment moves its vehicles into the other lanes; a lane
whose feed stopped upstream takes them away. Only the first is an incident on this segment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from congestion import ReadingBatch, SegmentStates
from congestion import _health_kernels as hk
from congestion import _incident_kernels as ik
from congestion.incidents import IncidentDetector, IncidentSettings


def _states(ts: float, n: int, speed_kmh: float = 45.0) -> SegmentStates:
    return SegmentStates(
        ts=ts,
        speed_kmh=np.full(n, speed_kmh, dtype=np.float32),
        free_flow_kmh=np.full(n, 50.0, dtype=np.float32),
        tti=np.full(n, np.nan, dtype=np.float32),
        level=np.zeros(n, dtype=np.int8),
        confidence=np.ones(n, dtype=np.float32),
        imputed=np.zeros(n, dtype=bool),
        n_detectors=np.ones(n, dtype=np.int16),
        n_cameras=np.zeros(n, dtype=np.int16),
    )


def _batch(ts: float, count: list[float], occ: list[float]) -> ReadingBatch:
    n = len(count)
    return ReadingBatch(
        detector_index=np.arange(n, dtype=np.int32),
        ts=np.full(n, ts),
        interval_s=np.full(n, 60.0, np.float32),
        count=np.array(count, np.float32),
        occupancy_pct=np.array(occ, np.float32),
        speed_kmh=np.full(n, np.nan, np.float32),
        lane=np.full(n, -1, np.int16),
    )


def _run(
    make_network,
    make_registry,
    after,
    *,
    settings: IncidentSettings | None = None,
    seed: int = 3,
    usable: list[bool] | None = None,
    speed_kmh: float = 45.0,
):
    """Two lanes (9 and 6 vehicles a minute) until tick 25, then ``after(rng)`` gives the counts
    and occupancies; returns the incidents opened. ``usable``: detector health's verdict;
    ``speed_kmh``: the segment's travel speed throughout (free flow 50 km/h)."""
    network = make_network(1, lanes=2)
    det = IncidentDetector(network, make_registry([0, 0], lane=[0, 1]), settings or IncidentSettings())
    if usable is not None:
        det.set_usable(np.array(usable))
    rng = np.random.default_rng(seed)
    opened = []
    for k in range(1, 40):
        ts = 60.0 * k
        if k >= 25:
            c, occ = after(rng)
        else:
            c = [float(rng.poisson(9)), float(rng.poisson(6))]
            occ = [0.6 * c[0], 0.6 * c[1]]
        det.add_readings(_batch(ts, c, occ))
        opened += det.update(_states(ts, 1, speed_kmh))[0]
    return opened


SEEDS = range(12)


def test_lane_emptied_upstream_without_the_others_gaining_is_not_an_incident(
    make_network, make_registry
) -> None:
    """Lane 0's feed stops (gridlock upstream): the other lane carries what it carried before.
    Over a dozen random runs at most one alarm; without the compensation check most runs alarm."""

    def after(rng):
        c = [float(rng.poisson(0.3)), float(rng.poisson(6))]
        return c, [0.6 * c[0], 0.6 * c[1]]

    alarms = sum(bool(_run(make_network, make_registry, after, seed=s)) for s in SEEDS)
    loose = IncidentSettings(lane_compensation_min=0.01)
    loose_alarms = sum(bool(_run(make_network, make_registry, after, settings=loose, seed=s)) for s in SEEDS)
    assert alarms <= 1 and loose_alarms >= 9, (alarms, loose_alarms)


def _found_within_5_ticks(opened) -> bool:
    return any(i.cause == "lane" and i.lane_detector == 0 and i.detected_at <= 60.0 * 29 for i in opened)


def test_blocked_lane_with_slow_vehicles_over_its_loop_is_still_found(make_network, make_registry) -> None:
    """Lane 0 blocked upstream of its loop: its vehicles pass in lane 1, the few left in lane 0
    pass its loop slowly (merging back late), so its occupancy stays a few points above usual;
    within ``lane_occ_slack_pct`` it still counts as an emptied lane, not a standing queue."""

    def after(rng):
        c = [float(rng.poisson(1.0)), float(rng.poisson(14))]
        return c, [6.0 + 0.6 * c[0], 0.6 * c[1]]

    found = sum(_found_within_5_ticks(_run(make_network, make_registry, after, seed=s)) for s in SEEDS)
    strict = IncidentSettings(lane_occ_slack_pct=0.5)
    found_strict = sum(
        _found_within_5_ticks(_run(make_network, make_registry, after, settings=strict, seed=s))
        for s in SEEDS
    )
    # A blocked lane hands the other lane what it lost, compensation ≈ 1 ± noise: most runs pass.
    assert found >= 9 and found_strict <= 3, (found, found_strict)


def test_lane_test_stays_out_of_a_queue(make_network, make_registry) -> None:
    """The same collapse of one lane's count on a segment already crawling (15 km/h of a 50 km/h
    free flow: ratio 0.3, under ``lane_min_speed_ratio``) is not an incident: in a queue the
    lanes' shares follow what discharges at the junction. Found once the guard is lowered."""

    def after(rng):
        c = [float(rng.poisson(1.0)), float(rng.poisson(14))]
        return c, [0.6 * c[0], 0.6 * c[1]]

    def found(settings: IncidentSettings | None, speed: float) -> int:
        return sum(
            _found_within_5_ticks(
                _run(make_network, make_registry, after, settings=settings, seed=s, speed_kmh=speed)
            )
            for s in SEEDS
        )

    unguarded = IncidentSettings(lane_min_speed_ratio=0.01)
    assert found(None, 15.0) == 0
    assert found(unguarded, 15.0) >= 9
    assert found(None, 45.0) >= 9


def test_standing_queue_over_the_lane_loop_is_not_a_starved_lane(make_network, make_registry) -> None:
    """Few vehicles but the loop covered most of the minute: a queue, not an emptied lane."""

    def after(rng):
        c = [float(rng.poisson(0.5)), float(rng.poisson(14))]
        return c, [70.0, 0.6 * c[1]]

    assert not any(_run(make_network, make_registry, after, seed=s) for s in SEEDS)


def _beta_binomial_cdf_reference(k: float, n: float, a: float, b: float) -> float:
    """Plain-Python P(X <= k), X ~ BetaBinomial(n, a, b), from the definition."""

    def lbeta(x: float, y: float) -> float:
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    n_i = int(n)
    return min(
        1.0,
        sum(math.comb(n_i, j) * math.exp(lbeta(j + a, n_i - j + b) - lbeta(a, b)) for j in range(int(k) + 1)),
    )


def test_beta_binomial_lower_tail_matches_the_definition() -> None:
    rng = np.random.default_rng(5)
    n = rng.integers(1, 200, 300).astype(float)
    k = np.floor(rng.uniform(0, 1, 300) * n)
    a = rng.uniform(0.5, 200, 300)
    b = rng.uniform(0.5, 200, 300)
    out = np.empty(300)
    ik.beta_binomial_lower_tail(k, n, a, b, out)
    ref = np.array([_beta_binomial_cdf_reference(*x) for x in zip(k, n, a, b, strict=True)])
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-300)
    # Invalid input gives NaN; k >= n gives 1.
    bad = np.empty(2)
    ik.beta_binomial_lower_tail(np.array([1.0, 5.0]), np.array([-1.0, 5.0]), np.ones(2), np.ones(2), bad)
    assert math.isnan(bad[0]) and bad[1] == 1.0
    # With a large prior sample it tends to the binomial; with a small one its tail is wider.
    big, small, binom = np.empty(1), np.empty(1), np.empty(1)
    ik.beta_binomial_lower_tail(np.array([3.0]), np.array([30.0]), np.array([5e4]), np.array([5e4]), big)
    ik.beta_binomial_lower_tail(np.array([3.0]), np.array([30.0]), np.array([5.0]), np.array([5.0]), small)
    hk.binomial_lower_tail(np.array([3.0]), np.array([30.0]), np.array([0.5]), binom)
    assert big[0] == pytest.approx(binom[0], rel=1e-2) and small[0] > 100 * binom[0]


def test_lane_starved_along_a_chain_is_one_incident_on_its_first_segment(make_network, make_registry) -> None:
    """s0 -> s1 -> s2, two lanes each: lane 0 starved on all three (whatever empties it is
    upstream of s1 and s2): one incident, on s0."""
    network = make_network(3, lanes=2)
    det = IncidentDetector(
        network, make_registry([0, 0, 1, 1, 2, 2], lane=[0, 1, 0, 1, 0, 1]), IncidentSettings()
    )
    rng = np.random.default_rng(4)
    opened = []
    for k in range(1, 40):
        ts = 60.0 * k
        pair = [rng.poisson(0.3), rng.poisson(16)] if k >= 25 else [rng.poisson(9), rng.poisson(6)]
        c = [float(x) for x in pair * 3]
        det.add_readings(_batch(ts, c, [0.6 * x for x in c]))
        opened += det.update(_states(ts, 3))[0]
    assert [(i.segment_id, i.cause) for i in opened] == [("s0", "lane")]


def test_a_neighbour_lane_flagged_card_off_but_counting_still_serves(make_network, make_registry) -> None:
    """Detector health flagged lane 1's loop `card_off` (the quiet hour left its lane empty); it
    counts vehicles now, so it is not off: lane 0's starvation is still found. A loop flagged
    and counting nothing is left out (then no lane test on a two-lane segment)."""

    def after(rng):
        c = [float(rng.poisson(0.3)), float(rng.poisson(15))]
        return c, [0.6 * c[0], 0.6 * c[1]]

    found = sum(
        _found_within_5_ticks(_run(make_network, make_registry, after, seed=s, usable=[True, False]))
        for s in SEEDS
    )
    assert found >= 11, found

    def dead_after(rng):
        return [float(rng.poisson(0.3)), 0.0], [0.0, 0.0]

    assert not any(_run(make_network, make_registry, dead_after, seed=s, usable=[True, False]) for s in SEEDS)


def _run_with_speeds(
    make_network,
    make_registry,
    last_speed_kmh: float,
    settings: IncidentSettings | None = None,
    restart_at: int | None = None,
):
    """Two lanes in a peak (9 and 6 vehicles a minute at 40 km/h) until tick 24; at tick 24 lane
    0's vehicles pass its loop at ``last_speed_kmh``; from tick 25 lane 0 counts nobody, its loop
    uncovered, while lane 1 carries more. Returns the incidents opened. ``restart_at``: before
    that tick the detector's state is exported into a new detector, which carries on."""
    network = make_network(1, lanes=2)  # limit 50 km/h
    registry = make_registry([0, 0], lane=[0, 1])
    det = IncidentDetector(network, registry, settings or IncidentSettings())
    rng = np.random.default_rng(5)
    opened = []
    for k in range(1, 40):
        if k == restart_at:
            state = det.export_state()
            det = IncidentDetector(network, registry, settings or IncidentSettings())
            det.import_state(state)
        ts = 60.0 * k
        if k >= 25:
            c, v = [0.0, float(rng.poisson(14))], [math.nan, 40.0]
        else:
            c, v = [float(rng.poisson(9)), float(rng.poisson(6))], [40.0, 40.0]
            if k == 24:
                v[0] = last_speed_kmh
        batch = _batch(ts, c, [0.6 * x for x in c])
        batch.speed_kmh[:] = np.where(np.array(c) > 0, v, np.nan)
        det.add_readings(batch)
        opened += det.update(_states(ts, 1))[0]
    return opened


def test_lane_emptied_after_its_vehicles_crawled_is_a_queue_at_rest(make_network, make_registry) -> None:
    """The lane's last vehicles crawled over the loop (5 km/h, at most 0.3 × the 50 km/h limit,
    at tick 24, 1,440 s), then nobody passes and the loop stays uncovered: a queue standing with
    the loop in the gap between two cars, not a lane emptied before its loop — for as long as
    the queue memory holds (``lane_crawl_lapse_s``, 300 s). A queue that has not moved in that
    long while the other lane flows is a lane blocked just past its loop: the incident opens
    after the memory lapses, and starts where the lane emptied. The same counts after vehicles
    that passed at 40 km/h are a starved lane at once. Without the memory (a fraction too small
    to call anything a crawl) the crawl case alarms at once too; with a memory that never
    lapses, never."""
    last_crawl = 60.0 * 24
    moving = _run_with_speeds(make_network, make_registry, 40.0)
    assert [(i.cause, i.lane_detector) for i in moving] == [("lane", 0)]
    assert moving[0].detected_at <= last_crawl + 180.0
    crawled = _run_with_speeds(make_network, make_registry, 5.0)
    assert [(i.cause, i.lane_detector) for i in crawled] == [("lane", 0)]
    # Not before the memory lapses; some minutes after it, as the empty minutes have entered the
    # older history the lane's usual share is learned from. The episode starts where the lane
    # emptied.
    assert last_crawl + 300.0 < crawled[0].detected_at <= last_crawl + 600.0
    assert crawled[0].start == last_crawl + 60.0
    never = IncidentSettings(lane_crawl_lapse_s=1e9)
    assert _run_with_speeds(make_network, make_registry, 5.0, never) == []
    no_memory = IncidentSettings(lane_queue_speed_fraction=0.01)
    at_once = _run_with_speeds(make_network, make_registry, 5.0, no_memory)
    assert [i.cause for i in at_once] == ["lane"] and at_once[0].detected_at == moving[0].detected_at


def test_queue_memory_lapse_survives_a_restart(make_network, make_registry) -> None:
    """A restart at tick 31, after the crawl memory lapsed (1,740 s) and before the incident opens
    (its state exported and imported), opens the incident at the same tick as the run that never
    stopped: the memory's age is part of the state, not restarted with it."""
    straight = _run_with_speeds(make_network, make_registry, 5.0)
    restarted = _run_with_speeds(make_network, make_registry, 5.0, restart_at=31)
    assert [(i.start, i.detected_at) for i in restarted] == [(i.start, i.detected_at) for i in straight]
    assert len(straight) == 1


def test_the_runtime_holds_the_crawl_memory_as_long_as_the_engine() -> None:
    """``roadpulse`` sets the lane test's memory to the engine's queue-memory hold, so the two
    read the same empty minutes alike (``engine.stale_after_s``)."""
    from roadpulse.config import load_config
    from roadpulse.detector_watch import incident_settings

    assert incident_settings(load_config(None)).lane_crawl_lapse_s == 300.0
    held = incident_settings(load_config(None, overrides={"engine.stale_after_s": 120}))
    assert held.lane_crawl_lapse_s == 120.0
    # The schema allows stale_after_s = 0: the memory then holds no longer than the crawl's tick.
    none = incident_settings(load_config(None, overrides={"engine.stale_after_s": 0}))
    assert none.lane_crawl_lapse_s == 0.0
    with pytest.raises(ValueError, match="stale_after_s"):
        IncidentSettings(lane_crawl_lapse_s=-1.0)
