"""Actuated signals timed by demand (``congestion.actuated``)."""

from __future__ import annotations

import numpy as np
import pytest

from congestion.actuated import MAX_GAP_S, ActuatedSignals, actuated_timing
from congestion.engine import CongestionEngine

SAT = 1800.0 / 3600.0


def _two_phase(n_signals: int = 1) -> ActuatedSignals:
    """Per signal two approaches: one green in phase 0, one in phase 2; phases 1 and 3 yellow.
    Nominal 42 + 3 + 42 + 3 = 90 s, minimum 5 + 3 + 5 + 3 = 16 s, max 50."""
    nominal = np.tile([42.0, 3.0, 42.0, 3.0], (n_signals, 1))
    minimum = np.tile([5.0, 3.0, 5.0, 3.0], (n_signals, 1))
    maximum = np.tile([50.0, 3.0, 50.0, 3.0], (n_signals, 1))
    share = np.tile([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]], (n_signals, 1))
    return ActuatedSignals(
        segment=np.arange(2 * n_signals, dtype=np.int64),
        signal=np.repeat(np.arange(n_signals, dtype=np.int64), 2),
        green_share=share,
        nominal_s=nominal,
        min_s=minimum,
        max_s=maximum,
    )


def test_timing_lies_between_the_minimum_and_the_nominal_program() -> None:
    sig = _two_phase()
    lanes = np.ones(2)
    none = np.zeros(2)
    # Nobody comes: each variable phase gaps out after h, at least minDur.
    c, g = actuated_timing(sig, np.zeros(2), none, lanes, SAT)
    phase = max(5.0, MAX_GAP_S)
    assert c == pytest.approx(np.full(2, 2 * phase + 6.0))
    assert g == pytest.approx(np.full(2, phase / (2 * phase + 6.0)))
    # More flow: longer greens and cycle, never beyond the nominal program.
    last = c[0]
    for q in (100.0, 300.0, 600.0, 1200.0):
        c, g = actuated_timing(sig, np.full(2, q / 3600.0), none, lanes, SAT)
        assert last <= c[0] <= 90.0
        last = c[0]
    assert last == pytest.approx(90.0)
    assert g == pytest.approx(np.full(2, 42.0 / 90.0))
    # A busier approach gets the larger green share.
    c, g = actuated_timing(sig, np.array([500.0, 100.0]) / 3600.0, none, lanes, SAT)
    assert g[0] > g[1] and c[0] == c[1]


def test_a_standing_queue_holds_the_phase_and_unmeasured_signals_keep_the_nominal_program() -> None:
    sig = _two_phase(2)
    lanes = np.ones(4)
    flow = np.array([0.0, 0.0, np.nan, np.nan])  # signal 1: no loops
    occ = np.array([0.5, 0.0, np.nan, np.nan])  # a queue on signal 0's first approach
    c, g = actuated_timing(sig, flow, occ, lanes, SAT)
    # Signal 0: phase 0 held to its nominal 42 s, phase 2 gaps out.
    phase = max(5.0, MAX_GAP_S)
    assert c[:2] == pytest.approx(np.full(2, 42.0 + phase + 6.0))
    assert g[0] == pytest.approx(42.0 / c[0])
    assert c[2:] == pytest.approx(np.full(2, 90.0)) and g[2:] == pytest.approx(np.full(2, 42.0 / 90.0))
    # An unmeasured approach of a measured signal is taken at the mean of the measured ones.
    c1, _ = actuated_timing(sig, np.array([0.1, np.nan, 0.0, 0.0]), np.zeros(4), lanes, SAT)
    c2, _ = actuated_timing(sig, np.array([0.1, 0.1, 0.0, 0.0]), np.zeros(4), lanes, SAT)
    assert c1[0] == pytest.approx(c2[0])


def test_engine_times_actuated_segments_by_demand(make_network, make_registry, make_batch) -> None:
    from congestion.engine import engine_parts

    net = make_network(2, lanes=1, speed_limit_kmh=50.0)
    reg = make_registry([0, 1])
    settings, model, _ = engine_parts({})
    nominal = (np.full(2, 90.0), np.full(2, 42.0 / 90.0))

    def run(actuated: ActuatedSignals | None) -> tuple[np.ndarray, np.ndarray]:
        engine = CongestionEngine(
            net, reg, settings, model=model, signal_timing=nominal, actuated_signals=actuated
        )
        engine._scratch.records["signalised"] = True  # make_network has no signals; force them
        engine.add_readings(make_batch([0, 1], 50.0, count=1.0, occupancy_pct=1.0, speed_kmh=40.0))
        speed = engine.tick(60.0).states.speed_kmh
        return speed, np.asarray(engine._scratch.records["signal_cycle_s"], dtype=np.float64)

    fixed, cycle_fixed = run(None)
    light, cycle_light = run(_two_phase())
    assert cycle_fixed == pytest.approx(np.full(2, 90.0))
    assert np.all(cycle_light < 40.0)  # light traffic: near the minimum program
    assert np.all(light > fixed)  # a shorter cycle: less delay, faster
    bad = _two_phase()
    with pytest.raises(ValueError, match="actuated_signals"):
        CongestionEngine(
            net,
            reg,
            settings,
            actuated_signals=ActuatedSignals(
                bad.segment + 5, bad.signal, bad.green_share, bad.nominal_s, bad.min_s, bad.max_s
            ),
        )


@pytest.mark.sumo
def test_actuated_programs_read_from_a_sumo_network(tmp_path, monkeypatch) -> None:
    import subprocess

    import roadpulse.signal_plans as plans
    from benchmarks.sumo_scenarios import sumo_available, sumo_binary

    if not sumo_available():
        pytest.skip("SUMO (eclipse-sumo) is not installed: pip install '.[dev]'")
    from roadgraph.load import load_network
    from roadpulse.signal_plans import sumo_actuated_signals, sumo_signal_timing

    paths = {}
    for kind in ("static", "actuated"):
        paths[kind] = tmp_path / f"{kind}.net.xml"
        subprocess.run(
            [
                str(sumo_binary("netgenerate")),
                "--grid",
                "--grid.number=3",
                "--default-junction-type=traffic_light",
                f"--tls.default-type={kind}",
                "--no-turnarounds",
                "-o",
                str(paths[kind]),
            ],
            check=True,
            capture_output=True,
        )
    assert sumo_actuated_signals(load_network(paths["static"])) is None  # fixed-time: as before
    net = load_network(paths["actuated"])
    sig = sumo_actuated_signals(net)
    assert sig is not None
    timing = sumo_signal_timing(net)
    assert timing is not None
    # Every controlled segment is listed; its nominal green share is the static reading's.
    assert np.all(np.isfinite(timing[0][sig.segment]))
    cycle = sig.nominal_s.sum(axis=1)[sig.signal]
    assert cycle == pytest.approx(timing[0][sig.segment])
    green = (sig.green_share * sig.nominal_s[sig.signal]).sum(axis=1) / cycle
    assert np.clip(green, 0.05, 0.95) == pytest.approx(timing[1][sig.segment])
    assert np.all(sig.min_s <= sig.nominal_s) and np.all(sig.nominal_s <= sig.max_s)
    # The file is parsed once for both readings (a city's takes seconds), again once it changes.
    parsed = []
    real_parse = plans._parse_plans
    monkeypatch.setattr(plans, "_parse_plans", lambda path: parsed.append(path) or real_parse(path))
    plans._last_read.clear()
    sumo_signal_timing(net)
    sumo_actuated_signals(net)
    assert len(parsed) == 1
    paths["actuated"].write_bytes(paths["static"].read_bytes())
    assert sumo_actuated_signals(net) is None and len(parsed) == 2
    assert np.any(sig.min_s < sig.nominal_s)
