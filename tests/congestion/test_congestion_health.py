"""Detector health: each PeMS-style diagnostic fires on its fault and not on healthy real data.

Healthy data: six hours of real WSDOT loop readings on I-90 (tests/data/loops, with a morning
jam: occupancies up to ~50 %). Faults are injected into one detector of that data from 08:00 on.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from congestion import ReadingBatch
from congestion import _health_kernels as hk
from congestion.health import DetectorHealth, HealthSettings
from publishers.health_messages import health_message
from tests.congestion.wsdot_loops import wsdot_batch, wsdot_rows, wsdot_setup

#: 5-minute data: a 2-hour window holds 24 samples.
SETTINGS = HealthSettings(window_s=7200, window_samples=24, min_samples=12, no_data_after_s=1800)
FAULT_FROM = dt.datetime(2018, 5, 8, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=-7))).timestamp()


@pytest.fixture(scope="module")
def wsdot() -> tuple[list[str], pd.DataFrame]:
    return wsdot_rows()


def _run(health: DetectorHealth, frame: pd.DataFrame, ids: list[str]) -> dict[float, np.ndarray]:
    """Feed the readings tick by tick (5 minutes); return each tick's status codes."""
    out = {}
    for ts, part in frame.groupby("ts", sort=True):
        health.add_readings(wsdot_batch(part, ids))
        health.evaluate(float(ts))
        out[float(ts)] = health.status_code.copy()
    return out


def test_healthy_real_data_stays_ok_through_a_morning_jam(make_network, wsdot) -> None:
    ids, frame = wsdot
    network, reg = wsdot_setup(make_network, ids)
    assert frame["occ"].max() > 35.0  # the jam is there: a naive high-occupancy rule would fire
    health = DetectorHealth(reg, SETTINGS, network=network)
    statuses = _run(health, frame, ids)
    bad = {ts: [ids[k] for k in np.flatnonzero(s != 0)] for ts, s in statuses.items() if (s != 0).any()}
    assert bad == {}
    assert health.usable.all()
    assert {r["status"] for r in health.records()} == {"ok"}


def _inject(frame: pd.DataFrame, detector: str, fault: str, rng: np.random.Generator) -> pd.DataFrame:
    out = frame.copy()
    hit = (out["detector_id"] == detector) & (out["ts"] > FAULT_FROM)
    n = int(hit.sum())
    if fault == "constant":
        first = out[hit].iloc[0]
        out.loc[hit, ["count", "occ", "speed"]] = [first["count"], first["occ"], first["speed"]]
    elif fault == "zero_occupancy_with_flow":
        out.loc[hit, "occ"] = 0.0
    elif fault == "high_occupancy":
        out.loc[hit, "occ"] = rng.uniform(70, 95, n)
    elif fault == "card_off":
        out.loc[hit, ["count", "occ"]] = 0.0
        out.loc[hit, "speed"] = np.nan
    elif fault == "intermittent":
        out.loc[hit, "count"] = np.where(rng.random(n) < 0.7, 0.0, out.loc[hit, "count"])
        out.loc[hit & (out["count"] == 0), "occ"] = rng.uniform(1, 20, int((hit & (out["count"] == 0)).sum()))
    elif fault == "insufficient_data":
        # Two readings of three lost: a third of the expected samples, but no long silence.
        drop = hit & ((out["ts"] // 300) % 3 != 0)
        out = out[~drop]
    elif fault == "no_data":
        out = out[~hit]
    return out


FAULTS = (
    "constant",
    "zero_occupancy_with_flow",
    "high_occupancy",
    "card_off",
    "intermittent",
    "insufficient_data",
    "no_data",
)


@pytest.mark.parametrize("fault", FAULTS)
def test_each_diagnostic_fires_on_its_fault_only(make_network, wsdot, fault: str) -> None:
    ids, frame = wsdot
    network, reg = wsdot_setup(make_network, ids)
    victim = "090es00380_MW_lane2"
    faulty = _inject(frame, victim, fault, np.random.default_rng(3))
    health = DetectorHealth(reg, SETTINGS, network=network)
    statuses = _run(health, faulty, ids)
    k = ids.index(victim)
    seen = {int(s[k]) for s in statuses.values()}
    from congestion.health import STATUS_CODE, STATUSES

    assert STATUS_CODE[fault] in seen, f"{fault} never diagnosed; saw {[STATUSES[c] for c in seen]}"
    # Before the fault: ok. After: this fault only (besides ok while the window fills).
    before = [int(s[k]) for ts, s in statuses.items() if ts <= FAULT_FROM]
    assert set(before) == {0}
    assert seen <= {0, STATUS_CODE[fault]}, [STATUSES[c] for c in seen]
    # Nobody else is blamed.
    others = np.delete(np.array(list(statuses.values())), k, axis=1)
    assert (others == 0).all()
    # Unhealthy means unusable; the record says why.
    if fault != "no_data":
        assert health.status_of(victim) == fault
        assert not health.usable[k]
        rec = health.record(k)
        assert rec["status"] == fault and rec["reason"] and rec["since"] > FAULT_FROM


def test_detector_recovers_when_the_fault_ends(make_network, wsdot) -> None:
    ids, frame = wsdot
    network, reg = wsdot_setup(make_network, ids)
    victim = "090es00430_MW_lane1"
    k = ids.index(victim)
    until = FAULT_FROM + 3600
    faulty = frame.copy()
    hit = (faulty["detector_id"] == victim) & (faulty["ts"] > FAULT_FROM) & (faulty["ts"] <= until)
    faulty.loc[hit, "occ"] = 0.0
    health = DetectorHealth(reg, SETTINGS, network=network)
    statuses = _run(health, faulty, ids)
    codes = [int(s[k]) for _, s in sorted(statuses.items())]
    assert 3 in codes or 4 in codes  # zero_occupancy_with_flow
    assert codes[-1] == 0 and health.usable[k]


def test_no_data_since_is_the_last_reading(make_network, make_registry) -> None:
    network = make_network(2)
    reg = make_registry([0, 1])
    health = DetectorHealth(reg, HealthSettings(no_data_after_s=120), network=network)
    first = health.evaluate(0.0)
    assert first == [0, 1]  # every detector at the first evaluation
    assert health.record(0) == {
        "detector_id": "d0",
        "status": "no_data",
        "reason": "no reading received yet",
        "since": 0,
    }
    batch = ReadingBatch(
        detector_index=np.array([0, 1], dtype=np.int32),
        ts=np.array([60.0, 60.0]),
        interval_s=np.full(2, 60, np.float32),
        count=np.full(2, 5, np.float32),
        occupancy_pct=np.full(2, 4, np.float32),
        speed_kmh=np.full(2, 40, np.float32),
        lane=np.full(2, -1, np.int16),
    )
    health.add_readings(batch)
    assert sorted(health.evaluate(60.0)) == [0, 1]
    assert health.status_of("d0") == "ok"
    assert health.evaluate(120.0) == []  # nothing changed: nothing to publish
    health.add_readings(
        batch.take(np.array([1])).__class__(
            np.array([1], np.int32),
            np.array([240.0]),
            np.full(1, 60, np.float32),
            np.full(1, 5, np.float32),
            np.full(1, 4, np.float32),
            np.full(1, 40, np.float32),
            np.full(1, -1, np.int16),
        )
    )
    assert health.evaluate(240.0) == [0]
    assert health.record(0)["status"] == "no_data" and health.record(0)["since"] == 60
    assert health.usable.tolist() == [False, True]


def test_export_import_round_trip(make_network, wsdot) -> None:
    ids, frame = wsdot
    network, reg = wsdot_setup(make_network, ids)
    faulty = _inject(frame, "090es00353_MW_lane3", "high_occupancy", np.random.default_rng(1))
    ticks = sorted(faulty["ts"].unique())
    half = ticks[len(ticks) // 2]
    a = DetectorHealth(reg, SETTINGS, network=network)
    _run(a, faulty[faulty["ts"] <= half], ids)
    state = a.export_state()
    b = DetectorHealth(reg, SETTINGS, network=network)
    b.import_state(state)
    rest = faulty[faulty["ts"] > half]
    _run(a, rest, ids)
    _run(b, rest, ids)
    assert a.records() == b.records()
    assert (a.usable == b.usable).all() and not a.usable.all()
    # Only numpy arrays and JSON-able values.
    for value in state.values():
        assert isinstance(value, np.ndarray | list | int | float | type(None))


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="card_off_share"):
        HealthSettings(card_off_share=1.5)
    with pytest.raises(ValueError, match="window_s"):
        HealthSettings(window_s=0)


def test_health_message_topic_and_payload() -> None:
    msg = health_message(
        {"detector_id": "e1_-4711#2_0", "status": "card_off", "reason": "x", "since": 60}, prefix="traffic/"
    )
    assert msg.topic == "traffic/detectors/e1_-4711%232_0/health"
    assert msg.retain
    assert msg.payload == b'{"detector_id":"e1_-4711#2_0","status":"card_off","reason":"x","since":60}'


# --------------------------------------------------------------------------------------------
# Kernels against numpy references
# --------------------------------------------------------------------------------------------


def _ref_stats(
    samples: list[tuple[float, float, float, float]],
    tick: float,
    cfg: HealthSettings,
    itv: float,
    lanes: float,
) -> list[float]:
    """The ``ST_*`` statistics of one detector's samples (oldest first), written from the docs."""
    frame = pd.DataFrame(samples, columns=["ts", "count", "occ", "speed"])
    win = frame[(frame.ts > tick - cfg.window_s) & (frame.ts <= tick)]
    c, o = win["count"], win["occ"]
    run = 0
    empty_run = 0
    for _, row in frame.iloc[::-1].iterrows():
        if row["count"] == 0 and row["occ"] == 0:
            empty_run += 1
        else:
            break
    if len(frame):
        last = frame.iloc[-1]
        if last["count"] > 0 or last["occ"] > 0:
            for _, row in frame.iloc[::-1].iterrows():
                same_speed = row["speed"] == last["speed"] or (
                    np.isnan(row["speed"]) and np.isnan(last["speed"])
                )
                if row["count"] == last["count"] and row["occ"] == last["occ"] and same_speed:
                    run += 1
                else:
                    break
    return [
        len(win),
        float(((o == 0) & (c == 0)).sum()),
        float(((c == 0) & (o > 0) & (o < cfg.stopped_occupancy_pct)).sum()),
        float(((c >= cfg.flow_min_count) & (o == 0)).sum()),
        float((c >= cfg.flow_min_count).sum()),
        float(
            (
                (o >= cfg.high_occupancy_pct)
                & (
                    c * 3600 / itv / lanes
                    > cfg.high_occupancy_flow_margin
                    * cfg.lane_capacity_veh_h
                    * (100 - o)
                    / (100 - cfg.critical_occupancy_pct)
                )
            ).sum()
        ),
        float(run),
        float(empty_run),
    ]


def test_ring_and_window_stats_match_reference() -> None:
    rng = np.random.default_rng(11)
    cfg = HealthSettings(window_s=600, window_samples=16)
    n_det, w = 7, 16
    ring = [
        np.full((n_det, w), np.nan),
        np.zeros((n_det, w), np.float32),
        np.zeros((n_det, w), np.float32),
        np.full((n_det, w), np.nan, np.float32),
    ]
    itv = rng.choice([60.0, 30.0], n_det)
    lanes = rng.choice([1.0, 2.0], n_det)
    head = np.zeros(n_det, np.int64)
    filled = np.zeros(n_det, np.int64)
    kept: dict[int, list[tuple[float, float, float, float]]] = {d: [] for d in range(n_det)}
    for tick in range(60, 2400, 60):
        n = int(rng.integers(0, 12))
        d = rng.integers(0, n_det, n).astype(np.int32)
        ts = np.sort(tick - rng.choice([0.0, 15.0, 30.0, 45.0, 90.0], n))  # some late, some repeated
        cnt = rng.choice([0, 0, 1, 3, 8, 40], n).astype(np.float32)
        occ = rng.choice([0.0, 0.0, 2.5, 40.0, 60.0], n).astype(np.float32)
        spd = rng.choice([np.nan, 30.0], n).astype(np.float32)
        if tick % 600 == 0 and n:  # repeats: a stuck detector
            cnt[:] = 3
            occ[:] = 2.5
            spd[:] = 30.0
        hk.ring_append(d, ts, cnt, occ, spd, *ring, head, filled)
        for i in range(n):
            hist = kept[int(d[i])]
            if not hist or ts[i] > hist[-1][0]:
                hist.append((float(ts[i]), float(cnt[i]), float(occ[i]), float(spd[i])))
                del hist[:-w]
        out = np.zeros((n_det, hk.ST_N))
        hk.window_stats(
            float(tick),
            cfg.window_s,
            cfg.high_occupancy_pct,
            cfg.stopped_occupancy_pct,
            cfg.flow_min_count,
            (cfg.lane_capacity_veh_h, cfg.critical_occupancy_pct, cfg.high_occupancy_flow_margin),
            itv,
            lanes,
            *ring,
            head,
            filled,
            out,
        )
        for det in range(n_det):
            assert out[det].tolist() == _ref_stats(kept[det], float(tick), cfg, itv[det], lanes[det]), (
                tick,
                det,
            )
