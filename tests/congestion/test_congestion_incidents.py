"""Incident detection: a queue upstream with an emptied road downstream is an incident; a
recurrent peak is not; a starved lane is; state survives export/import."""

from __future__ import annotations

import math

import numpy as np
import pytest

from congestion import ReadingBatch, SegmentStates
from congestion import _health_kernels as hk
from congestion.incidents import IncidentDetector, IncidentSettings

FREE_FLOW = 50.0


def _states(ts: float, speed: np.ndarray) -> SegmentStates:
    n = len(speed)
    return SegmentStates(
        ts=ts,
        speed_kmh=np.asarray(speed, dtype=np.float32),
        free_flow_kmh=np.full(n, FREE_FLOW, dtype=np.float32),
        tti=np.full(n, np.nan, dtype=np.float32),
        level=np.zeros(n, dtype=np.int8),
        confidence=np.ones(n, dtype=np.float32),
        imputed=np.zeros(n, dtype=bool),
        n_detectors=np.ones(n, dtype=np.int16),
        n_cameras=np.zeros(n, dtype=np.int16),
    )


def _batch(ts: float, det: list[int], count: list[float], occ: list[float]) -> ReadingBatch:
    n = len(det)
    return ReadingBatch(
        detector_index=np.array(det, np.int32),
        ts=np.full(n, ts),
        interval_s=np.full(n, 60.0, np.float32),
        count=np.array(count, np.float32),
        occupancy_pct=np.array(occ, np.float32),
        speed_kmh=np.full(n, np.nan, np.float32),
        lane=np.full(n, -1, np.int16),
    )


def _chain(make_network, make_registry) -> IncidentDetector:
    network = make_network(3)  # s0 -> s1 -> s2, one detector each
    return IncidentDetector(network, make_registry([0, 1, 2]), IncidentSettings())


def _feed(det: IncidentDetector, ts: float, occ: list[float], speed: list[float]):
    det.add_readings(_batch(ts, [0, 1, 2], [10, 10, 10], occ))
    return det.update(_states(ts, np.array(speed)))


def test_queue_upstream_empty_downstream_is_an_incident(make_network, make_registry) -> None:
    det = _chain(make_network, make_registry)
    events = []
    for k in range(1, 60):
        ts = 60.0 * k
        if 20 <= k < 35:  # blocked at the end of s1: s1 fills, s2 starves
            occ, speed = [8.0, 55.0, 1.0], [45.0, 6.0, 48.0]
        else:
            occ, speed = [8.0, 8.0, 8.0], [45.0, 45.0, 45.0]
        started, cleared = _feed(det, ts, occ, speed)
        events += [("start", ts, i) for i in started] + [("clear", ts, i) for i in cleared]
    assert [(kind, ts) for kind, ts, _ in events] == [("start", 60.0 * 24), ("clear", 60.0 * 39)]
    inc = events[0][2]
    assert inc.segment_id == "s1" and inc.start == 60.0 * 20 and inc.incident_id == "s1@1200"
    rec = det.record(inc)
    assert rec["status"] == "cleared" and rec["end"] == 60.0 * 39 and rec["start"] == 1200
    assert rec["source"] == "detector" and rec["severity"] == 3
    assert set(rec) == {
        "incident_id",
        "type",
        "segment_id",
        "lon",
        "lat",
        "start",
        "end",
        "status",
        "source",
        "severity",
        "description",
    }
    assert det.incidents() == [] and len(det.incidents(include_cleared=True)) == 1


def test_recurrent_peak_is_not_an_incident(make_network, make_registry) -> None:
    """Occupancy rises and speed falls gradually and everywhere, downstream first."""
    det = _chain(make_network, make_registry)
    for k in range(1, 90):
        ts = 60.0 * k
        ramp = min(max((k - 20) / 40, 0.0), 1.0)
        occ = [8 + 37 * ramp, 8 + 40 * min(ramp * 1.2, 1), 8 + 42 * min(ramp * 1.4, 1)]
        speed = [45 - 35 * ramp, 45 - 37 * min(ramp * 1.2, 1), 45 - 38 * min(ramp * 1.4, 1)]
        started, _ = _feed(det, ts, occ, speed)
        assert started == [], (k, started)


def test_queue_from_an_incident_downstream_is_not_a_second_incident(make_network, make_registry) -> None:
    det = _chain(make_network, make_registry)
    opened = []
    for k in range(1, 50):
        ts = 60.0 * k
        if k >= 20:  # incident on s1; from k = 26 its queue also fills s0 with s1 still full
            occ = [60.0 if k >= 26 else 8.0, 55.0, 1.0]
            speed = [5.0 if k >= 26 else 45.0, 6.0, 48.0]
        else:
            occ, speed = [8.0] * 3, [45.0] * 3
        opened += _feed(det, ts, occ, speed)[0]
    assert [i.segment_id for i in opened] == ["s1"]


def test_the_other_direction_is_not_downstream(make_pairs_network, make_registry) -> None:
    """A blocked segment whose own reverse (the other carriageway, reached by a U-turn) stands
    in a queue all along: its real successor empties, so it is an incident. Counted as
    downstream, the reverse's queue read as congestion backing up and its occupancy diluted the
    downstream station's sudden drop."""
    # s0: a->b, s1: b->c (blocked), s2: c->d (its successor), s3: c->b (s1's reverse).
    network = make_pairs_network([("a", "b"), ("b", "c"), ("c", "d"), ("c", "b")])
    det = IncidentDetector(network, make_registry([0, 1, 2, 3]), IncidentSettings())
    opened = []
    for k in range(1, 40):
        ts = 60.0 * k
        blocked = k >= 20
        occ = [8.0, 55.0 if blocked else 8.0, 1.0 if blocked else 8.0, 40.0]
        speed = [45.0, 6.0 if blocked else 45.0, 48.0 if blocked else 45.0, 10.0]
        det.add_readings(_batch(ts, [0, 1, 2, 3], [10, 10, 10, 10], occ))
        opened += det.update(_states(ts, np.array(speed)))[0]
    assert [(i.segment_id, i.start) for i in opened] == [("s1", 60.0 * 20)]


@pytest.mark.parametrize("dead_end_measured", [False, True])
def test_an_imputed_dead_end_is_not_evidence_of_free_exits(
    make_pairs_network, make_registry, dead_end_measured: bool
) -> None:
    """s0 (a->b) fills while its looped exit s1 (b->c) empties but crawls; its other exit s2
    (b->d) is a dead end (only its reverse s3 leaves d). Imputed, s2 runs free by imputation's
    rule, which says nothing about s0: the exits are read from s1 alone (congested, so no
    incident). Measured free, s2 is evidence: the exits' mean is free and s0 is an incident."""
    network = make_pairs_network([("a", "b"), ("b", "c"), ("b", "d"), ("d", "b")])
    loops = [0, 1, 2] if dead_end_measured else [0, 1]
    det = IncidentDetector(network, make_registry(loops), IncidentSettings())
    opened = []
    for k in range(1, 40):
        ts = 60.0 * k
        jam = k >= 20
        occ = [55.0 if jam else 8.0, 1.0 if jam else 8.0, 1.0 if jam else 8.0][: len(loops)]
        speed = np.array([6.0 if jam else 45.0, 20.0 if jam else 45.0, 48.0, 45.0])
        det.add_readings(_batch(ts, loops, [10] * len(loops), occ))
        states = _states(ts, speed)
        states.imputed[2] = not dead_end_measured
        states.imputed[3] = True
        opened += det.update(states)[0]
    want = [("s0", 60.0 * 20)] if dead_end_measured else []
    assert [(i.segment_id, i.start) for i in opened] == want


def _lane_setup(make_network, make_registry) -> IncidentDetector:
    network = make_network(1, lanes=2)
    reg = make_registry([0, 0], lane=[0, 1])
    return IncidentDetector(network, reg, IncidentSettings())


def test_starved_lane_is_an_incident_within_three_ticks(make_network, make_registry) -> None:
    det = _lane_setup(make_network, make_registry)
    rng = np.random.default_rng(1)
    opened = []
    for k in range(1, 40):
        ts = 60.0 * k
        if k >= 25:  # lane 0 blocked upstream of its loop: its vehicles move to lane 1
            c = [rng.poisson(0.3), rng.poisson(11)]
        else:
            c = [rng.poisson(6), rng.poisson(5)]
        occ = [0.6 * c[0], 0.6 * c[1]]
        det.add_readings(_batch(ts, [0, 1], c, occ))
        started, _ = det.update(_states(ts, np.array([45.0])))
        opened += [(ts, i) for i in started]
    assert len(opened) == 1
    ts, inc = opened[0]
    assert inc.cause == "lane" and inc.segment_id == "s0" and inc.lane_detector == 0
    assert ts <= 60.0 * 27  # detected at the third tick of the fault
    # The start is estimated from noisy counts: the first starved tick of the pooled window.
    assert 60.0 * 24 <= inc.start <= 60.0 * 25


def test_poisson_noise_in_lane_counts_raises_no_alarm(make_network, make_registry) -> None:
    """Two lanes with steady random traffic, 240 segment-hours: the binomial test stays within
    the target of at most one false alarm per hour per 100 segments."""
    network = make_network(20, lanes=2)
    reg = make_registry(np.repeat(np.arange(20), 2), lane=np.tile([0, 1], 20))
    det = IncidentDetector(network, reg, IncidentSettings())
    rng = np.random.default_rng(7)
    means = rng.uniform(2, 12, 40)
    alarms = 0
    for k in range(1, 721):
        ts = 60.0 * k
        c = rng.poisson(means).astype(float)
        det.add_readings(_batch(ts, list(range(40)), list(c), list(0.6 * c)))
        alarms += len(det.update(_states(ts, np.full(20, 45.0)))[0])
    assert alarms / 240 * 100 <= 1.0, alarms


def test_export_import_round_trip_mid_incident(make_network, make_registry) -> None:
    a = _chain(make_network, make_registry)
    for k in range(1, 26):
        occ, speed = ([8.0, 55.0, 1.0], [45.0, 6.0, 48.0]) if k >= 20 else ([8.0] * 3, [45.0] * 3)
        _feed(a, 60.0 * k, occ, speed)
    assert [i.segment_id for i in a.active()] == ["s1"]
    state = a.export_state()
    b = _chain(make_network, make_registry)
    b.import_state(state)
    for k in range(26, 45):
        for det in (a, b):
            _feed(det, 60.0 * k, [8.0] * 3, [45.0] * 3)
    ra = [a.record(i) for i in a.incidents(include_cleared=True)]
    rb = [b.record(i) for i in b.incidents(include_cleared=True)]
    assert ra == rb and ra[0]["status"] == "cleared"
    other = IncidentDetector(make_network(4), make_registry([0]), IncidentSettings())
    with pytest.raises(ValueError, match="different network"):
        other.import_state(state)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="occrdf_min"):
        IncidentSettings(occrdf_min=1.5)
    with pytest.raises(ValueError, match="history_ticks"):
        IncidentSettings(history_ticks=5, persistence_ticks=5)


# --------------------------------------------------------------------------------------------
# Kernels against references
# --------------------------------------------------------------------------------------------


def test_binomial_lower_tail_matches_exact_sum() -> None:
    rng = np.random.default_rng(3)
    n = rng.integers(0, 80, 300).astype(np.float64)
    k = np.floor(rng.uniform(0, 1, 300) * (n + 3))
    p = rng.choice([0.0, 1.0, 0.02, 0.3, 0.5, 0.9], 300)
    out = np.empty(300)
    hk.binomial_lower_tail(k, n, p, out)
    for i in range(300):
        ni, ki = int(n[i]), int(k[i])
        exact = sum(math.comb(ni, j) * p[i] ** j * (1 - p[i]) ** (ni - j) for j in range(min(ki, ni) + 1))
        assert out[i] == pytest.approx(min(exact, 1.0), rel=1e-9, abs=1e-300)


def test_segment_occupancy_matches_numpy_reference() -> None:
    rng = np.random.default_rng(5)
    nd, ns = 200, 30
    seg = rng.integers(0, ns, nd)
    usable = rng.random(nd) < 0.9
    ts = rng.choice([np.nan, 500.0, 900.0, 1000.0, 1100.0], nd)
    count = rng.integers(0, 20, nd).astype(np.float64)
    occ = rng.choice([np.nan, 0.0, 5.0, 40.0], nd)
    itv = rng.choice([0.0, 30.0, 60.0], nd)
    out = [np.empty(ns) for _ in range(4)]
    hk.segment_occupancy(seg, usable, ts, count, occ, itv, 1000.0, 180.0, *out)
    ok = usable & (ts > 820) & (ts <= 1000) & np.isfinite(occ) & (itv > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = count * 3600 / itv
    for s in range(ns):
        m = ok & (seg == s)
        if not m.any():
            assert all(np.isnan(o[s]) for o in out)
            continue
        np.testing.assert_allclose(
            [out[0][s], out[1][s], out[2][s], out[3][s]],
            [occ[m].mean(), q[m].sum(), occ[m].max(), q[m].min()],
        )


def test_row_nanmedian_matches_numpy() -> None:
    rng = np.random.default_rng(2)
    values = rng.choice([np.nan, 1.0, 2.5, 7.0, 30.0], (200, 9)).astype(np.float32)
    values[0] = np.nan  # a segment without history
    cols = np.array([0, 2, 3, 5, 8], dtype=np.int64)
    out = np.empty(200)
    hk.row_nanmedian(values, cols, out)
    with pytest.warns(RuntimeWarning):  # numpy warns on the all-NaN rows the kernel handles quietly
        expected = np.nanmedian(values[:, cols].astype(np.float64), axis=1)
    np.testing.assert_allclose(out, expected)
