"""Segment speed accuracy against SUMO ground truth: the travel-speed model beside the naive one.

    .venv/bin/python benchmarks/bench_accuracy.py            # 17 grids + 6 real-city runs
    .venv/bin/python benchmarks/bench_accuracy.py --quick    # 1 small grid + West Oakland

Each scenario (``benchmarks/sumo_scenarios.py``: quiet first third, then a peak with gridlock in
places, loops on every lane of about half the edges at 70 % of their length, a lane blocked for
20 minutes) is replayed through the same code path as ``roadpulse replay --full --tick-s 60``
(``Pipeline`` fed by the JSONL reader, ticks in event time), once with the engine's travel-speed
estimator and once with the naive one (``estimator="spot"``: the count-weighted harmonic mean
of the loops' spot speeds), and judged as issue #3 says:

* at each 5-minute tick T of the **peak** (T − 300 ≥ start of the peak), each segment's state
  against SUMO's ``<edgeData>`` mean speed over (T − 300, T]; also at every 1-minute tick
  against the 60-s ``<edgeData>``;
* **looped** segments (loops of their own) and **unlooped** ones separately;
* **level agreement**: the engine's level (its speed against its *own* free flow, learned or
  default) equals the truth's level (SUMO's speed against SUMO's free flow = GB/T 33171
  §7.2.1.2 on the truth itself: the mean of the top ninth of that edge's 5-min speeds over the
  whole run, at most the edge's speed limit). An unknown state counts as a disagreement;
* **MAE** (km/h) of speed over the segments with a known state (``coverage`` says how many);
* for scale, **nbr oracle**: the unlooped agreement one would get imputing each unlooped
  segment from the *true* states of its graph neighbours (``neighbour_oracle_levels``).

Targets (issue #3): looped level agreement ≥ 70 %, MAE ≤ 4 km/h (grids) / ≤ 6 km/h (cities);
unlooped level agreement ≥ 45 %.

Scenarios are built once into ``benchmarks/out/scenarios/<name>`` (``--rebuild`` to redo).
Prints a table, writes ``benchmarks/out/bench_accuracy.json`` and PNGs (estimate vs truth over
time for a few segments, error by truth level, confusion matrices) to ``benchmarks/out/``.
``--validate K`` first chooses the constants by leave-scenarios-out validation (K folds of the
scenarios; each fold's constants are searched on the other folds and judged on it): the way the
defaults were checked (``--search KEY ...`` limits the search to those keys). Scenarios vary
grid size (3–7), seed, demand, segment length, lanes and signal programs (netgenerate's fixed
90-s cycle, actuated, 60/75/80/100/120-s cycles, one approach at a time); ``HELD_OUT`` were never
looked at while the model was changed.

``--twin`` also asks how reproducible the truth itself is: SUMO runs each scenario a second time
with another random seed (``sumo_scenarios.rerun_twin``: same network, trips, loops and blocked
lane), and the twin's 5-minute levels and speeds are judged against the original's exactly as
the engine's are (``twin_agreement``); the engine is also judged against the twin's truth. A
target that SUMO does not meet against itself is one no estimator can be held to row by row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks.sumo_scenarios import (
    Scenario,
    build_city_scenario,
    build_grid_scenario,
    read_edgedata,
    rerun_twin,
)
from congestion import CongestionEngine
from congestion.engine import engine_parts
from congestion.levels import level_from_ratio
from ingest import iter_jsonl_readings
from roadgraph.detector_load import load_detectors
from roadgraph.load import load_network
from roadpulse.config import defaults
from roadpulse.pipeline import Pipeline, first_tick_at_or_after
from roadpulse.signal_plans import sumo_actuated_signals, sumo_signal_timing

ROOT = Path(__file__).resolve().parent
OUT_DIR = ROOT / "out"
OSM_DIR = ROOT.parent / "tests" / "data" / "osm"
TICK_S = 60.0


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    kind: str  # "grid" | "city"
    options: dict[str, object]


SCENARIOS = {
    "grid4-s1": ScenarioSpec("grid4-s1", "grid", {"grid_n": 4, "seed": 1, "peak_period_s": 0.35}),
    "grid5-s2": ScenarioSpec("grid5-s2", "grid", {"grid_n": 5, "seed": 2, "peak_period_s": 0.3}),
    "grid3-s5": ScenarioSpec(
        "grid3-s5",
        "grid",
        {"grid_n": 3, "seed": 5, "peak_period_s": 0.6, "duration_s": 2400, "length_m": 150.0},
    ),
    "grid4-s7": ScenarioSpec(
        "grid4-s7",
        "grid",
        {"grid_n": 4, "seed": 7, "peak_period_s": 0.4, "length_m": 250.0, "duration_s": 3000},
    ),
    "grid6-s9": ScenarioSpec(
        "grid6-s9", "grid", {"grid_n": 6, "seed": 9, "peak_period_s": 0.25, "duration_s": 3000}
    ),
    "aguascalientes-s8": ScenarioSpec(
        "aguascalientes-s8",
        "city",
        {
            "osm": "aguascalientes.osm.bz2",
            "seed": 8,
            "duration_s": 2400,
            "peak_period_s": 0.5,
            "quiet_period_s": 2.0,
        },
    ),
    "west-oakland": ScenarioSpec(
        "west-oakland",
        "city",
        {
            "osm": "West-Oakland.osm.bz2",
            "seed": 3,
            "duration_s": 2700,
            "peak_period_s": 0.5,
            "quiet_period_s": 2.0,
        },
    ),
    "aguascalientes": ScenarioSpec(
        "aguascalientes",
        "city",
        {
            "osm": "aguascalientes.osm.bz2",
            "seed": 4,
            "duration_s": 2700,
            "peak_period_s": 0.4,
            "quiet_period_s": 1.5,
        },
    ),
    # Validation grids with other signal programs, sizes and demand (leave-scenarios-out).
    "grid3-s11": ScenarioSpec(
        "grid3-s11",
        "grid",
        {"grid_n": 3, "seed": 11, "peak_period_s": 0.5, "duration_s": 2400, "length_m": 180.0,
         "tls_type": "actuated"},
    ),
    "grid5-s12": ScenarioSpec(
        "grid5-s12",
        "grid",
        {"grid_n": 5, "seed": 12, "peak_period_s": 0.3, "duration_s": 2700, "tls_cycle_s": 60,
         "tls_layout": "incoming"},
    ),
    "grid7-s13": ScenarioSpec(
        "grid7-s13",
        "grid",
        {"grid_n": 7, "seed": 13, "peak_period_s": 0.2, "duration_s": 2400, "length_m": 150.0},
    ),
    "grid4-s14": ScenarioSpec(
        "grid4-s14",
        "grid",
        {"grid_n": 4, "seed": 14, "peak_period_s": 0.6, "duration_s": 2700, "lanes": 3,
         "tls_cycle_s": 120},
    ),
    "grid6-s15": ScenarioSpec(
        "grid6-s15",
        "grid",
        {"grid_n": 6, "seed": 15, "peak_period_s": 0.25, "duration_s": 3000, "length_m": 300.0,
         "tls_type": "actuated", "tls_cycle_s": 75},
    ),
    # Validation grids and cities added for the travel-speed work of issue #3 (new seeds, sizes,
    # lanes and signal programs); looked at while its changes were chosen, so not held out.
    "grid5-s21": ScenarioSpec(
        "grid5-s21",
        "grid",
        {"grid_n": 5, "seed": 21, "peak_period_s": 0.3, "duration_s": 2700, "length_m": 220.0},
    ),
    "grid4-s22": ScenarioSpec(
        "grid4-s22",
        "grid",
        {"grid_n": 4, "seed": 22, "peak_period_s": 0.45, "duration_s": 3000, "lanes": 3,
         "tls_type": "actuated"},
    ),
    "grid6-s23": ScenarioSpec(
        "grid6-s23",
        "grid",
        {"grid_n": 6, "seed": 23, "peak_period_s": 0.22, "duration_s": 2700, "length_m": 180.0,
         "tls_cycle_s": 100},
    ),
    "grid3-s24": ScenarioSpec(
        "grid3-s24",
        "grid",
        {"grid_n": 3, "seed": 24, "peak_period_s": 0.5, "duration_s": 2400, "length_m": 250.0,
         "tls_layout": "incoming"},
    ),
    "west-oakland-s25": ScenarioSpec(
        "west-oakland-s25",
        "city",
        {"osm": "West-Oakland.osm.bz2", "seed": 25, "duration_s": 2700, "peak_period_s": 0.45,
         "quiet_period_s": 2.0},
    ),
    "aguascalientes-s26": ScenarioSpec(
        "aguascalientes-s26",
        "city",
        {"osm": "aguascalientes.osm.bz2", "seed": 26, "duration_s": 2400, "peak_period_s": 0.45,
         "quiet_period_s": 1.5},
    ),
    # Held out: built after the changes of the travel-speed work were chosen on the scenarios
    # above; run once with and without them to report them (docs/accuracy.md).
    "grid5-s31": ScenarioSpec(
        "grid5-s31", "grid", {"grid_n": 5, "seed": 31, "peak_period_s": 0.28, "duration_s": 2700}
    ),
    "grid4-s32": ScenarioSpec(
        "grid4-s32",
        "grid",
        {"grid_n": 4, "seed": 32, "peak_period_s": 0.4, "duration_s": 2700, "length_m": 250.0,
         "tls_type": "actuated"},
    ),
    "grid6-s33": ScenarioSpec(
        "grid6-s33",
        "grid",
        {"grid_n": 6, "seed": 33, "peak_period_s": 0.25, "duration_s": 3000, "tls_cycle_s": 80,
         "tls_layout": "incoming"},
    ),
    "west-oakland-s34": ScenarioSpec(
        "west-oakland-s34",
        "city",
        {"osm": "West-Oakland.osm.bz2", "seed": 34, "duration_s": 2700, "peak_period_s": 0.5,
         "quiet_period_s": 2.0},
    ),
    # Held out, second set: built after the stop-start loss was chosen (whose choice looked at
    # the four above); run once with and without it (docs/accuracy.md).
    "grid5-s41": ScenarioSpec(
        "grid5-s41", "grid", {"grid_n": 5, "seed": 41, "peak_period_s": 0.3, "duration_s": 2700}
    ),
    "grid4-s42": ScenarioSpec(
        "grid4-s42",
        "grid",
        {"grid_n": 4, "seed": 42, "peak_period_s": 0.45, "duration_s": 2700, "lanes": 3,
         "tls_type": "actuated"},
    ),
    "grid6-s43": ScenarioSpec(
        "grid6-s43",
        "grid",
        {"grid_n": 6, "seed": 43, "peak_period_s": 0.24, "duration_s": 3000, "length_m": 200.0,
         "tls_cycle_s": 100},
    ),
    "grid4-s44": ScenarioSpec(
        "grid4-s44",
        "grid",
        {"grid_n": 4, "seed": 44, "peak_period_s": 0.4, "duration_s": 2700, "tls_cycle_s": 60,
         "tls_layout": "incoming"},
    ),
    "aguascalientes-s45": ScenarioSpec(
        "aguascalientes-s45",
        "city",
        {"osm": "aguascalientes.osm.bz2", "seed": 45, "duration_s": 2700, "peak_period_s": 0.45,
         "quiet_period_s": 1.5},
    ),
    # Held out, third set: built after the upstream queue share was made to rise with the loop's
    # occupancy (chosen on the scenarios above); run once with and without it (docs/accuracy.md).
    "grid5-s51": ScenarioSpec(
        "grid5-s51",
        "grid",
        {"grid_n": 5, "seed": 51, "peak_period_s": 0.3, "duration_s": 2700, "length_m": 200.0},
    ),
    "grid4-s52": ScenarioSpec(
        "grid4-s52",
        "grid",
        {"grid_n": 4, "seed": 52, "peak_period_s": 0.4, "duration_s": 2700, "length_m": 220.0,
         "tls_type": "actuated"},
    ),
    "grid6-s53": ScenarioSpec(
        "grid6-s53",
        "grid",
        {"grid_n": 6, "seed": 53, "peak_period_s": 0.25, "duration_s": 2700, "tls_cycle_s": 80,
         "tls_layout": "incoming"},
    ),
    "grid4-s54": ScenarioSpec(
        "grid4-s54",
        "grid",
        {"grid_n": 4, "seed": 54, "peak_period_s": 0.5, "duration_s": 2700, "lanes": 3,
         "tls_cycle_s": 120},
    ),
    "west-oakland-s55": ScenarioSpec(
        "west-oakland-s55",
        "city",
        {"osm": "West-Oakland.osm.bz2", "seed": 55, "duration_s": 2700, "peak_period_s": 0.45,
         "quiet_period_s": 2.0},
    ),
    # Fourth held-out set: actuated grids, built after the actuated timing was fitted.
    "grid6-s71": ScenarioSpec(
        "grid6-s71",
        "grid",
        {"grid_n": 6, "seed": 71, "peak_period_s": 0.25, "duration_s": 3000, "length_m": 200.0,
         "tls_type": "actuated"},
    ),
    "grid5-s72": ScenarioSpec(
        "grid5-s72",
        "grid",
        {"grid_n": 5, "seed": 72, "peak_period_s": 0.35, "duration_s": 2700, "length_m": 220.0,
         "tls_type": "actuated"},
    ),
    "grid4-s73": ScenarioSpec(
        "grid4-s73",
        "grid",
        {"grid_n": 4, "seed": 73, "peak_period_s": 0.45, "duration_s": 2700, "lanes": 3,
         "length_m": 250.0, "tls_type": "actuated"},
    ),
    # Fifth held-out set: built at stop 16 after the junction-model imputation and the free
    # flow's delay s.d. were chosen, and run once each way.
    "grid5-s91": ScenarioSpec(
        "grid5-s91",
        "grid",
        {"grid_n": 5, "seed": 91, "peak_period_s": 0.3, "duration_s": 2700, "length_m": 180.0},
    ),
    "grid4-s92": ScenarioSpec(
        "grid4-s92",
        "grid",
        {"grid_n": 4, "seed": 92, "peak_period_s": 0.5, "duration_s": 2700, "lanes": 3,
         "tls_cycle_s": 120},
    ),
    "grid6-s93": ScenarioSpec(
        "grid6-s93",
        "grid",
        {"grid_n": 6, "seed": 93, "peak_period_s": 0.25, "duration_s": 3000, "tls_type": "actuated"},
    ),
    "grid4-s94": ScenarioSpec(
        "grid4-s94",
        "grid",
        {"grid_n": 4, "seed": 94, "peak_period_s": 0.45, "duration_s": 2700, "length_m": 250.0,
         "tls_layout": "incoming"},
    ),
    "grid3-s95": ScenarioSpec(
        "grid3-s95",
        "grid",
        {"grid_n": 3, "seed": 95, "peak_period_s": 0.55, "duration_s": 2400, "length_m": 150.0},
    ),
    "aguascalientes-s96": ScenarioSpec(
        "aguascalientes-s96",
        "city",
        {"osm": "aguascalientes.osm.bz2", "seed": 96, "duration_s": 2700, "peak_period_s": 0.45,
         "quiet_period_s": 1.5},
    ),
    "west-oakland-s97": ScenarioSpec(
        "west-oakland-s97",
        "city",
        {"osm": "West-Oakland.osm.bz2", "seed": 97, "duration_s": 2700, "peak_period_s": 0.45,
         "quiet_period_s": 2.0},
    ),
}
FULL = (
    "grid4-s1", "grid5-s2", "grid4-s7", "grid6-s9", "grid3-s5", "grid3-s11", "grid5-s12",
    "grid7-s13", "grid4-s14", "grid6-s15", "west-oakland", "aguascalientes", "aguascalientes-s8",
    "grid5-s21", "grid4-s22", "grid6-s23", "grid3-s24", "west-oakland-s25", "aguascalientes-s26",
    "grid5-s31", "grid4-s32", "grid6-s33", "west-oakland-s34",
    "grid5-s41", "grid4-s42", "grid6-s43", "grid4-s44", "aguascalientes-s45",
    "grid5-s51", "grid4-s52", "grid6-s53", "grid4-s54", "west-oakland-s55",
    "grid6-s71", "grid5-s72", "grid4-s73",
    "grid5-s91", "grid4-s92", "grid6-s93", "grid4-s94", "grid3-s95", "aguascalientes-s96",
    "west-oakland-s97",
)
#: Never looked at while the model and its constants were chosen (docs/accuracy.md: the held-out rows).
#: (``grid6-s15`` was held out from the previous model's choices, but not from issue #3's queue
#: memory, whose work looked at every scenario above the held-out block; the first held-out four,
#: ``grid5-s31`` … ``west-oakland-s34``, were looked at while the stop-start loss was chosen, and
#: the second five, ``grid5-s41`` … ``aguascalientes-s45``, while the rising upstream queue share
#: was; ``grid5-s51`` … ``west-oakland-s55`` were built after that and run once each way, and
#: the actuated ``grid6-s71`` … ``grid4-s73`` after the actuated timing was fitted; ``grid5-s91``
#: … ``west-oakland-s97`` at stop 16, after its two changes, run once each way.)
HELD_OUT = (
    "grid5-s41", "grid4-s42", "grid6-s43", "grid4-s44", "aguascalientes-s45",
    "grid5-s51", "grid4-s52", "grid6-s53", "grid4-s54", "west-oakland-s55",
    "grid6-s71", "grid5-s72", "grid4-s73",
    "grid5-s91", "grid4-s92", "grid6-s93", "grid4-s94", "grid3-s95", "aguascalientes-s96",
    "west-oakland-s97",
)
QUICK = ("grid3-s5", "west-oakland")


def build(spec: ScenarioSpec, rebuild: bool) -> Scenario:
    work = OUT_DIR / "scenarios" / spec.name
    opts = dict(spec.options)
    marker = work / "scenario.json"
    if marker.exists() and not rebuild:
        meta = json.loads(marker.read_text())
        return Scenario(
            workdir=work,
            net=Path(meta["net"]),
            detectors=Path(meta["detectors"]),
            e1_output=work / "e1.xml",
            readings=work / "readings.jsonl",
            edgedata_300=work / "edgedata300.xml",
            edgedata_60=work / "edgedata60.xml",
            duration_s=int(meta["duration_s"]),
            loop_edges=frozenset(meta["loop_edges"]),
            blocked=meta["blocked"],
        )
    if spec.kind == "grid":
        sc = build_grid_scenario(work, blocked_lane=True, **opts)  # type: ignore[arg-type]
    else:
        osm = OSM_DIR / str(opts.pop("osm"))
        sc = build_city_scenario(osm, work, blocked_lane=True, **opts)  # type: ignore[arg-type]
    marker.write_text(
        json.dumps(
            {
                "net": str(sc.net),
                "detectors": str(sc.detectors),
                "duration_s": sc.duration_s,
                "loop_edges": sorted(sc.loop_edges),
                "blocked": sc.blocked,
            }
        )
    )
    return sc


@dataclass
class Replay:
    """A scenario's readings parsed once, as ``roadpulse replay`` feeds them: batches (after the
    detector watch) and the ticks due between them, in event time; replayed into any engine."""

    network: object
    detectors: object
    events: list[tuple[str, object]]


def prepare(sc: Scenario) -> Replay:
    network = load_network(sc.net)
    detectors = load_detectors(sc.detectors, network)
    pipeline = Pipeline(network, detectors, defaults(), clock=lambda: 0.0, event_time=True)
    events: list[tuple[str, object]] = []
    next_tick: float | None = None
    newest = -np.inf
    for result in iter_jsonl_readings(sc.readings, pipeline.parser):
        if len(result.batch) == 0:
            continue
        events.append(("batch", pipeline.watch.accept(result.batch)))
        if next_tick is None:
            next_tick = first_tick_at_or_after(float(result.batch.ts.min()), TICK_S)
        newest = max(newest, float(result.batch.ts.max()))
        while newest > next_tick:
            events.append(("tick", next_tick))
            next_tick += TICK_S
    if next_tick is not None:
        while next_tick <= first_tick_at_or_after(newest, TICK_S):
            events.append(("tick", next_tick))
            next_tick += TICK_S
    return Replay(network, detectors, events)


#: ``--no-signal-timing``: the model's default C and λ everywhere (the previous model's behaviour).
USE_SIGNAL_TIMING = True


def engine_for(
    replay: Replay, config: dict[str, float] | None = None, estimator: str = "travel_speed"
) -> CongestionEngine:
    """The engine as ``Pipeline`` builds it: ``[engine]`` defaults (plus ``config`` overrides)
    through ``engine_parts``, and the signal timings of the SUMO network file."""
    engine_cfg = dict(defaults()["engine"])
    engine_cfg.update(config or {})
    settings, model, imputation = engine_parts(engine_cfg)
    return CongestionEngine(
        replay.network,  # type: ignore[arg-type]
        replay.detectors,  # type: ignore[arg-type]
        settings,
        model=model,
        imputation=imputation,
        estimator=estimator,
        signal_timing=sumo_signal_timing(replay.network) if USE_SIGNAL_TIMING else None,  # type: ignore[arg-type]
        actuated_signals=sumo_actuated_signals(replay.network) if USE_SIGNAL_TIMING else None,  # type: ignore[arg-type]
    )


def replay_states(
    replay: Replay, engine: CongestionEngine
) -> Iterator[tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(tick ts, speed, free flow, level, imputed) per tick, as ``roadpulse replay`` runs it."""
    for kind, value in replay.events:
        if kind == "batch":
            engine.add_readings(value)  # type: ignore[arg-type]
        else:
            r = engine.tick(float(value))  # type: ignore[arg-type]
            s = r.states
            yield float(value), s.speed_kmh, s.free_flow_kmh, s.level, s.imputed  # type: ignore[arg-type]


def truth_free_flow(truth300: dict[tuple[float, str], float], limit: dict[str, float]) -> dict[str, float]:
    """GB/T 33171 §7.2.1.2 on the truth: mean of the top ninth of each edge's 5-min speeds, ≤ limit."""
    by_edge: dict[str, list[float]] = {}
    for (_, edge), v in truth300.items():
        by_edge.setdefault(edge, []).append(v)
    out = {}
    for edge, vs in by_edge.items():
        arr = np.sort(np.asarray(vs))[::-1]
        k = max(1, int(np.ceil(len(arr) / 9)))
        out[edge] = float(min(arr[:k].mean(), limit.get(edge, np.inf)))
    return out


@dataclass
class Judged:
    """Paired (estimate, truth) rows of one scenario and estimator at one resolution."""

    ts: np.ndarray
    edge: np.ndarray
    looped: np.ndarray
    est_speed: np.ndarray
    est_level: np.ndarray
    true_speed: np.ndarray
    true_level: np.ndarray
    imputed: np.ndarray
    #: ``neighbour_oracle_levels`` of the rows (0 for looped ones).
    oracle_level: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    #: The engine's free flow and the truth's (``truth_free_flow``) of each row, for
    #: ``oracle_split``.
    est_free_flow: np.ndarray = field(default_factory=lambda: np.zeros(0))
    true_free_flow: np.ndarray = field(default_factory=lambda: np.zeros(0))


def judge(
    sc: Scenario, replay: Replay, engine: CongestionEngine, *, minutes: bool = True
) -> dict[str, Judged]:
    network = replay.network
    segs = network.segments  # type: ignore[attr-defined]
    ids = [str(x) for x in segs.segment_id]
    index = {sid: i for i, sid in enumerate(ids)}
    limit = {sid: float(v) for sid, v in zip(ids, segs.speed_limit_kmh, strict=True)}
    t300 = read_edgedata(sc.edgedata_300)
    t60 = read_edgedata(sc.edgedata_60) if minutes else {}
    ff_true = truth_free_flow(t300, limit)
    peak = sc.peak_start_s
    rows: dict[str, list[tuple]] = {"5min": [], "1min": []}
    ff_rows: dict[str, list[tuple[float, float]]] = {"5min": [], "1min": []}
    for ts, speed, ff, level, imputed in replay_states(replay, engine):
        for res, truth, span in (("5min", t300, 300.0), ("1min", t60, 60.0)):
            if res == "1min" and not minutes:
                continue
            if res == "5min" and ts % 300.0 != 0:
                continue
            if ts - span < peak:
                continue
            for (end, edge), v in truth.items():
                if end != ts or edge not in index or edge not in ff_true:
                    continue
                i = index[edge]
                tl = int(level_from_ratio(v / ff_true[edge]))
                rows[res].append(
                    (ts, edge, edge in sc.loop_edges, float(speed[i]), int(level[i]), v, tl, bool(imputed[i]))
                )
                ff_rows[res].append((float(ff[i]), ff_true[edge]))
    out = {}
    for res, rr in rows.items():
        cols: list[tuple[object, ...]] = list(zip(*rr, strict=True)) if rr else [()] * 8
        out[res] = Judged(*(np.asarray(c) for c in cols))
        out[res].oracle_level = neighbour_oracle_levels(network, rr, ff_true)
        out[res].est_free_flow, out[res].true_free_flow = (
            np.asarray(c, dtype=np.float64) for c in (zip(*ff_rows[res], strict=True) if rr else ((), ()))
        )
    return out


def oracle_split(j: Judged) -> dict[str, float]:
    """Where the looped rows' level error comes from. A level is speed ÷ free flow on each side;
    the engine's speed over the truth's free flow (``agreement_with_true_free_flow``) keeps only
    the speed's error, the truth's speed over the engine's free flow
    (``agreement_with_true_speed``) only the free flow's. Each alone still misses the level where
    the other is wrong; the two together would be the truth."""
    looped = j.looped.astype(bool)
    if not looped.any() or len(j.est_free_flow) != len(j.looped):
        return {}
    truth = j.true_level[looped]
    with np.errstate(invalid="ignore", divide="ignore"):
        speed_only = level_from_ratio(j.est_speed[looped] / j.true_free_flow[looped])
        ff_only = level_from_ratio(j.true_speed[looped] / j.est_free_flow[looped])
        ff_ratio = j.true_free_flow[looped] / j.est_free_flow[looped]
    return {
        "looped_level_agreement": float((j.est_level[looped] == truth).mean()),
        "agreement_with_true_free_flow": float((speed_only == truth).mean()),
        "agreement_with_true_speed": float((ff_only == truth).mean()),
        "true_over_engine_free_flow_median": float(np.nanmedian(ff_ratio)),
    }


def by_true_level(parts: list[Judged]) -> dict[int, dict[str, float]]:
    """The looped rows of several runs pooled and split by the truth's level: how many, how many
    the engine agrees with, and the median ratios engine ÷ truth of the speed and of the free flow.
    Where the speed ratio is near 1 and the free-flow ratio is not, the level's misses are the
    free flow's."""
    rows = [j for j in parts if len(j.est_free_flow) == len(j.looped)]
    if not rows:
        return {}
    looped = np.concatenate([j.looped.astype(bool) for j in rows])
    cols = {
        k: np.concatenate([getattr(j, k) for j in rows])[looped]
        for k in ("est_level", "true_level", "est_speed", "true_speed", "est_free_flow", "true_free_flow")
    }
    out: dict[int, dict[str, float]] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for level in range(1, 6):
            m = cols["true_level"] == level
            if not m.any():
                continue
            out[level] = {
                "n": float(m.sum()),
                "agreement": float((cols["est_level"][m] == level).mean()),
                "speed_engine_over_truth": float(np.nanmedian(cols["est_speed"][m] / cols["true_speed"][m])),
                "free_flow_engine_over_truth": float(
                    np.nanmedian(cols["est_free_flow"][m] / cols["true_free_flow"][m])
                ),
            }
    return out


def print_by_true_level(
    pooled: dict[str, list[Judged]], who: str = "engine"
) -> dict[str, dict[int, dict[str, float]]]:
    out = {}
    print(f"\nLooped 5-min rows pooled, by the truth's level: agreement, and median {who} ÷ truth")
    print(f"{'runs':<7} {'level':>5} {'rows':>6} {'agree':>6} {'speed':>6} {'free flow':>9}")
    for kind, parts in pooled.items():
        out[kind] = table = by_true_level(parts)
        for level, m in table.items():
            print(
                f"{kind:<7} {level:>5} {m['n']:>6.0f} {m['agreement']:>6.1%} "
                f"{m['speed_engine_over_truth']:>6.2f} {m['free_flow_engine_over_truth']:>9.2f}"
            )
    return out


def neighbour_oracle_levels(network: object, rows: list[tuple], ff_true: dict[str, float]) -> np.ndarray:
    """Per judged row of a segment without loops, the level one would impute from the *true*
    states of its graph neighbours (the issue's scale for unlooped agreement: "filling them from
    the true states of their neighbours, if one knew them, gets 42–59 %"): the weighted mean of
    their true travel-time indices (SUMO speed ÷ SUMO free flow), downstream neighbours weighing
    1 and upstream 0.6 as in the engine; 0 where no neighbour has a true state, and for looped
    rows."""
    segs = network.segments  # type: ignore[attr-defined]
    ids = [str(x) for x in segs.segment_id]
    index = {sid: i for i, sid in enumerate(ids)}
    succ = network.successors_csr()  # type: ignore[attr-defined]
    pred = network.predecessors_csr()  # type: ignore[attr-defined]
    ratio = {(r[0], r[1]): r[5] / ff_true[r[1]] for r in rows}
    out = np.zeros(len(rows), dtype=np.int8)
    for k, (ts, edge, looped, *_rest) in enumerate(rows):
        if looped:
            continue
        i = index[edge]
        tti_sum = weight = 0.0
        for w, (ptr, nbr) in ((1.0, succ), (0.6, pred)):
            for j in nbr[ptr[i] : ptr[i + 1]].tolist():
                r = ratio.get((ts, ids[j]))
                if r is not None and r > 0:
                    tti_sum += w / r
                    weight += w
        if weight > 0:
            out[k] = int(level_from_ratio(weight / tti_sum))
    return out


#: SUMO's seed for ``--twin`` runs (the scenarios' own seeds are small numbers).
TWIN_SEED = 9999


def twin_judged(
    truth: dict[tuple[float, str], float],
    twin: dict[tuple[float, str], float],
    limit: dict[str, float],
    loop_edges: frozenset[str],
    peak_start_s: float,
) -> Judged:
    """A second SUMO run's 5-minute truth as if it were an estimate of the first's: the rows of
    the peak (T − 300 ≥ its start) on edges both runs saw, each side's level taken against its
    *own* free flow (``truth_free_flow``), in the shape ``metrics`` and ``by_true_level`` judge."""
    ff = truth_free_flow(truth, limit)
    ff_twin = truth_free_flow(twin, limit)
    rows = [
        (key[0], key[1], key[1] in loop_edges, v, twin[key], ff[key[1]], ff_twin[key[1]])
        for key, v in truth.items()
        if key[0] - 300.0 >= peak_start_s and key in twin and key[1] in ff_twin
    ]
    cols: list[tuple[object, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 7
    v, v_twin, f, f_twin = (np.asarray(c, dtype=np.float64) for c in cols[3:])
    j = Judged(
        ts=np.asarray(cols[0], dtype=np.float64),
        edge=np.asarray(cols[1]),
        looped=np.asarray(cols[2], dtype=bool),
        est_speed=v_twin,
        est_level=level_from_ratio(v_twin / f_twin),
        true_speed=v,
        true_level=level_from_ratio(v / f),
        imputed=np.zeros(len(v), dtype=bool),
    )
    j.est_free_flow, j.true_free_flow = f_twin, f
    return j


def twin_agreement(
    truth: dict[tuple[float, str], float],
    twin: dict[tuple[float, str], float],
    limit: dict[str, float],
    loop_edges: frozenset[str],
    peak_start_s: float,
) -> dict[str, float]:
    """``twin_judged`` judged as the engine is (``twin_metrics``)."""
    return twin_metrics(twin_judged(truth, twin, limit, loop_edges, peak_start_s))


def twin_metrics(j: Judged) -> dict[str, float]:
    """A twin's rows judged as the engine's are: per looped and unlooped edges, level agreement,
    MAE (km/h) and rows. ``free_flow_only_agreement_looped`` changes only the free flow (the
    first run's speed over the twin's free flow): what the free flow's own randomness costs."""
    out = metrics(j)
    looped = j.looped
    if looped.any():
        only_ff = level_from_ratio(j.true_speed[looped] / j.est_free_flow[looped])
        out["free_flow_only_agreement_looped"] = float((only_ff == j.true_level[looped]).mean())
    return out


def run_twin(
    sc: Scenario, rebuild: bool, engine_vs_truth: dict[str, float]
) -> tuple[dict[str, dict[str, float]], Judged]:
    """``--twin`` for one scenario: the twin against the truth, and the engine against the twin
    (``engine_vs_truth``, the plain run's 5-minute metrics, is passed in, not replayed again);
    and the twin's rows (``twin_judged``), for the by-level table."""
    twin = rerun_twin(sc, seed=TWIN_SEED, rebuild=rebuild)
    replay = prepare(sc)
    segs = replay.network.segments  # type: ignore[attr-defined]
    limit = {str(i): float(v) for i, v in zip(segs.segment_id, segs.speed_limit_kmh, strict=True)}
    truth, twin_truth = read_edgedata(sc.edgedata_300), read_edgedata(twin.edgedata_300)
    rows = twin_judged(truth, twin_truth, limit, sc.loop_edges, sc.peak_start_s)
    against_twin = judge(twin, replay, engine_for(replay, OVERRIDES), minutes=False)["5min"]
    out = {
        "twin_vs_truth": twin_metrics(rows),
        "engine_vs_truth": engine_vs_truth,
        "engine_vs_twin": metrics(against_twin),
    }
    return out, rows


def print_twin(twins: dict[str, dict[str, dict[str, float]]]) -> None:
    print("\nHow reproducible the truth is (--twin: SUMO again with another seed; 5-min rows of the peak)")
    print(
        f"{'scenario':<19} {'looped: twin':>12} {'engine':>7} {'eng vs twin':>11} {'twin MAE':>9} "
        f"{'engine MAE':>10} {'unlooped: twin':>14} {'engine':>7}"
    )
    for kind, plural in (("grid", "grids"), ("city", "cities")):
        rows = {n: t for n, t in twins.items() if SCENARIOS[n].kind == kind}
        cols: list[list[float]] = []
        for name, t in rows.items():
            tw, en, ev = (t[k] for k in ("twin_vs_truth", "engine_vs_truth", "engine_vs_twin"))
            vals = [
                tw.get("looped_level_agreement", np.nan),
                en.get("looped_level_agreement", np.nan),
                ev.get("looped_level_agreement", np.nan),
                tw.get("looped_mae_kmh", np.nan),
                en.get("looped_mae_kmh", np.nan),
                tw.get("unlooped_level_agreement", np.nan),
                en.get("unlooped_level_agreement", np.nan),
            ]
            cols.append(vals)
            print(_twin_row(name, vals))
        if cols:
            print(_twin_row(f"mean of {plural}", list(np.nanmean(np.asarray(cols), axis=0))))
            under = sum(c[0] < 0.7 for c in cols)
            print(f"  {plural}: SUMO's twin under 70 % looped agreement on {under} of {len(cols)}")


def plot_twin(twins: dict[str, dict[str, dict[str, float]]]) -> str:
    """``accuracy-twin.png``: per scenario, looped level agreement of SUMO's twin against the
    truth beside the engine's against the truth and against the twin, with the 70 % target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(twins)
    bars = (
        ("twin_vs_truth", "SUMO again, other seed, vs the truth", "0.55"),
        ("engine_vs_truth", "engine vs the truth", "C0"),
        ("engine_vs_twin", "engine vs the twin's truth", "C1"),
    )
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.42 * len(names)), 4.2))
    for k, (key, label, colour) in enumerate(bars):
        vals = [100 * twins[n][key].get("looped_level_agreement", np.nan) for n in names]
        ax.bar(x + (k - 1) * 0.27, vals, 0.27, label=label, color=colour)
    ax.axhline(70, color="k", lw=0.8, ls="--", label="target 70 %")
    ax.set_xticks(x, names, rotation=70, fontsize=7)
    ax.set_ylabel("looped level agreement, %")
    ax.set_ylim(0, 115)  # room for the legend above the bars
    ax.set_title("How reproducible the truth is: 5-min levels of the peak, segments with loops", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", ncol=4)
    fig.tight_layout()
    path = OUT_DIR / "accuracy-twin.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def _twin_row(name: str, v: list[float]) -> str:
    return (
        f"{name:<19} {v[0]:>12.1%} {v[1]:>7.1%} {v[2]:>11.1%} {v[3]:>9.2f} {v[4]:>10.2f} "
        f"{v[5]:>14.1%} {v[6]:>7.1%}"
    )


def metrics(j: Judged) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, mask in (("looped", j.looped.astype(bool)), ("unlooped", ~j.looped.astype(bool))):
        if not mask.any():
            continue
        known = mask & np.isfinite(j.est_speed)
        out[f"{name}_n"] = float(mask.sum())
        out[f"{name}_level_agreement"] = float((j.est_level[mask] == j.true_level[mask]).mean())
        out[f"{name}_mae_kmh"] = (
            float(np.abs(j.est_speed[known] - j.true_speed[known]).mean()) if known.any() else np.nan
        )
        out[f"{name}_coverage"] = float(known.sum() / mask.sum())
    unlooped = ~j.looped.astype(bool)
    if unlooped.any() and len(j.oracle_level) == len(j.looped):
        out["unlooped_neighbour_oracle_agreement"] = float(
            (j.oracle_level[unlooped] == j.true_level[unlooped]).mean()
        )
    return out


def plots(name: str, judged: dict[str, dict[str, Judged]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    model, naive = judged["travel_speed"]["1min"], judged["spot"]["1min"]
    # 1. Estimate vs truth over time for the four looped segments with the slowest truth.
    looped = model.looped.astype(bool)
    edges = sorted(
        set(model.edge[looped].tolist()), key=lambda e: float(model.true_speed[model.edge == e].mean())
    )
    pick = edges[:2] + edges[len(edges) // 2 : len(edges) // 2 + 1] + edges[-1:]
    fig, axes = plt.subplots(len(pick), 1, figsize=(9, 2.4 * len(pick)), sharex=True)
    for ax, edge in zip(np.atleast_1d(axes), pick, strict=False):
        m = model.edge == edge
        n = naive.edge == edge
        ax.plot(model.ts[m] / 60, model.true_speed[m], "k-", label="SUMO 1-min edge speed")
        ax.plot(model.ts[m] / 60, model.est_speed[m], "C0-", label="travel-speed model")
        ax.plot(naive.ts[n] / 60, naive.est_speed[n], "C3--", label="naive (loop spot speeds)")
        ax.set_ylabel("km/h")
        ax.set_title(f"{name}: {edge}", fontsize=9)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    np.atleast_1d(axes)[-1].set_xlabel("minutes")
    fig.tight_layout()
    path = OUT_DIR / f"accuracy-{name}-timeseries.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(str(path))
    # 2. Error by truth level and 3. confusion matrices (5-min, looped).
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for k, est in enumerate(("travel_speed", "spot")):
        j = judged[est]["5min"]
        lp = j.looped.astype(bool)
        cm = np.zeros((5, 6), dtype=int)
        for t, e in zip(j.true_level[lp], j.est_level[lp], strict=True):
            if 1 <= t <= 5:
                cm[t - 1, e] += 1
        axes[k + 1].imshow(cm, cmap="Blues")
        for (r, c), v in np.ndenumerate(cm):
            axes[k + 1].text(c, r, str(v), ha="center", va="center", fontsize=8)
        axes[k + 1].set_xticks(range(6), ["?", "1", "2", "3", "4", "5"])
        axes[k + 1].set_yticks(range(5), ["1", "2", "3", "4", "5"])
        axes[k + 1].set_xlabel("estimated level")
        axes[k + 1].set_ylabel("SUMO level")
        axes[k + 1].set_title(f"{est}: looped, 5-min", fontsize=9)
        maes = []
        for lvl in range(1, 6):
            m = lp & (j.true_level == lvl) & np.isfinite(j.est_speed)
            maes.append(float(np.abs(j.est_speed[m] - j.true_speed[m]).mean()) if m.any() else 0.0)
        axes[0].bar(np.arange(1, 6) + (k - 0.5) * 0.35, maes, width=0.35, label=est)
    axes[0].set_xlabel("SUMO level")
    axes[0].set_ylabel("MAE km/h (looped, 5-min)")
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"{name}: error by level", fontsize=9)
    fig.tight_layout()
    path = OUT_DIR / f"accuracy-{name}-levels.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(str(path))
    return written


def run_scenario(sc: Scenario, config: dict[str, float] | None = None) -> dict[str, dict[str, Judged]]:
    config = {**OVERRIDES, **(config or {})}
    replay = prepare(sc)
    return {
        est: judge(sc, replay, engine_for(replay, config, estimator=est)) for est in ("travel_speed", "spot")
    }


#: Constants searched by ``--validate`` (``[engine]`` keys → candidate values).
SEARCH: dict[str, list[float]] = {
    "signal_delay_factor": [0.4, 0.6, 0.8, 1.0],
    "free_flow_delay_share": [0.25, 0.5, 0.75, 1.0],
    "smoothing_tau_s": [90.0, 150.0, 250.0],
    "queue_occupancy": [0.1, 0.15, 0.2, 0.3],
    "upstream_queue_share": [0.0, 0.25, 0.5, 0.75],
    "impute_upstream_weight": [0.3, 0.6, 1.0],
    "queue_speed_fraction_of_limit": [0.0, 0.2, 0.3, 0.4],
    "impute_tti_power": [1.0, 2.0, 4.0, 8.0],
}
CITIES = {"west-oakland", "aguascalientes", "aguascalientes-s8"}
#: ``--set KEY=VALUE``: [engine] overrides for the plain run (e.g. the previous defaults).
OVERRIDES: dict[str, float] = {}


def score(name: str, m: dict[str, float]) -> float:
    """One scenario's figure of merit: looped level agreement, minus MAE over 20 km/h (grids)
    or 30 km/h (cities; the target is 6 rather than 4), plus half the unlooped agreement."""
    return m["looped_level_agreement"] - m["looped_mae_kmh"] / (30.0 if name in CITIES else 20.0) + (
        0.5 * m.get("unlooped_level_agreement", 0.0)
    )


def validate(scenarios: dict[str, Scenario], folds: int) -> dict[str, object]:
    """Leave-scenarios-out choice of the constants: for each fold of scenarios, coordinate
    descent over ``SEARCH`` on the *other* scenarios (objective: mean score + worst score, so
    that no scenario is sacrificed), then the held-out fold's figures with the constants chosen
    without it. Prints a line per held-out scenario; the shipped defaults are the "start"."""
    replays = {n: prepare(sc) for n, sc in scenarios.items()}
    cache: dict[tuple[str, str], dict[str, float]] = {}

    def figures(cfg: dict[str, float], name: str) -> dict[str, float]:
        key = (json.dumps(cfg, sort_keys=True), name)
        if key not in cache:
            judged = judge(scenarios[name], replays[name], engine_for(replays[name], cfg), minutes=False)
            cache[key] = metrics(judged["5min"])
        return cache[key]

    def objective(cfg: dict[str, float], names: list[str]) -> float:
        sc = [score(n, figures(cfg, n)) for n in names]
        return float(np.mean(sc) + min(sc))

    def fit(names: list[str]) -> dict[str, float]:
        cfg: dict[str, float] = {}
        best = objective(cfg, names)
        for _ in range(2):
            changed = False
            for key, values in SEARCH.items():
                for v in values:
                    trial = {**cfg, key: v}
                    o = objective(trial, names)
                    if o > best + 1e-4:
                        cfg, best, changed = trial, o, True
            if not changed:
                break
        return cfg

    names = list(scenarios)
    out: dict[str, object] = {}
    for k in range(folds):
        held = names[k::folds]
        cfg = fit([n for n in names if n not in held])
        chosen = cfg or "the defaults"
        print(f"fold {k + 1}/{folds}: held out {', '.join(held)}; chosen on the rest: {chosen}")
        for n in held:
            before, after = figures({}, n), figures(cfg, n)
            out[n] = {"chosen": cfg, "defaults": before, "held_out": after}
            print(
                f"  {n:<18} defaults {before['looped_level_agreement']:.1%} / "
                f"{before['looped_mae_kmh']:.2f} / "
                f"{before.get('unlooped_level_agreement', np.nan):.1%}   chosen without it "
                f"{after['looped_level_agreement']:.1%} / {after['looped_mae_kmh']:.2f} / "
                f"{after.get('unlooped_level_agreement', np.nan):.1%}",
                flush=True,
            )
    return out


def print_oracle_split(split: dict[str, dict[str, float]]) -> None:
    """The table of ``oracle_split`` (travel-speed model, 5-min rows with loops)."""
    print("\nLooped level agreement (5 min): the engine's, then with the truth's free flow in place of")
    print("its own (what the speed error alone costs), then with the truth's speed (the free flow's)")
    print(f"{'scenario':<19} {'engine':>7} {'true ff':>8} {'true speed':>10} {'ff true/engine':>15}")
    for kind, plural in (("grid", "grids"), ("city", "cities")):
        rows = {n: m for n, m in split.items() if m and SCENARIOS[n].kind == kind}
        for name, m in rows.items():
            print(
                f"{name:<19} {m['looped_level_agreement']:>7.1%} {m['agreement_with_true_free_flow']:>8.1%} "
                f"{m['agreement_with_true_speed']:>10.1%} {m['true_over_engine_free_flow_median']:>15.2f}"
            )
        if rows:
            mean = {k: float(np.mean([m[k] for m in rows.values()])) for k in next(iter(rows.values()))}
            print(
                f"{'mean of ' + plural:<19} {mean['looped_level_agreement']:>7.1%} "
                f"{mean['agreement_with_true_free_flow']:>8.1%} {mean['agreement_with_true_speed']:>10.1%} "
                f"{mean['true_over_engine_free_flow_median']:>15.2f}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid and West Oakland only")
    parser.add_argument("--scenarios", nargs="*", choices=sorted(SCENARIOS), default=None)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the SUMO scenarios")
    parser.add_argument(
        "--validate", type=int, default=0, metavar="FOLDS",
        help="leave-scenarios-out choice of the constants over FOLDS folds of the scenarios first",
    )
    parser.add_argument(
        "--search", nargs="+", choices=sorted(SEARCH), default=None, metavar="KEY",
        help="--validate searches only these [engine] keys (default: all of SEARCH)",
    )
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override an [engine] key in the plain run, e.g. --set signal_delay_factor=0.6",
    )
    parser.add_argument(
        "--no-signal-timing", action="store_true",
        help="ignore the signal timings of the network file (the previous model)",
    )
    parser.add_argument(
        "--twin", action="store_true",
        help="also run SUMO again with another seed and judge that twin against the truth (about 2 min)",
    )
    args = parser.parse_args(argv)
    names = args.scenarios or (QUICK if args.quick else FULL)
    global USE_SIGNAL_TIMING
    USE_SIGNAL_TIMING = not args.no_signal_timing
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in defaults()["engine"]:
            parser.error(f"--set {item}: {key!r} is not an [engine] key")
        OVERRIDES[key] = float(value)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    scenarios = {n: build(SCENARIOS[n], args.rebuild) for n in names}
    result: dict[str, object] = {"benchmark": "bench_accuracy", "scenarios": {}}
    if args.validate:
        if args.search:
            for key in set(SEARCH) - set(args.search):
                del SEARCH[key]
        result["validate"] = validate(scenarios, args.validate)

    header = (
        f"{'scenario':<15} {'estimator':<13} {'res':<5} {'loop agree':>10} {'loop MAE':>9} "
        f"{'cover':>6} {'unloop agree':>12} {'unloop MAE':>10} {'cover':>6} {'nbr oracle':>10}"
    )
    print(header)
    print("-" * len(header))
    split: dict[str, dict[str, float]] = {}
    pooled: dict[str, list[Judged]] = {"grids": [], "cities": []}
    for name, sc in scenarios.items():
        t0 = time.perf_counter()
        judged = run_scenario(sc)
        per: dict[str, object] = {"blocked": sc.blocked, "seconds": 0.0}
        for est in ("travel_speed", "spot"):
            for res in ("5min", "1min"):
                m = metrics(judged[est][res])
                per[f"{est}/{res}"] = m
                print(
                    f"{name + ('*' if name in HELD_OUT else ''):<15} {est:<13} {res:<5} "
                    f"{m.get('looped_level_agreement', np.nan):>10.1%} "
                    f"{m.get('looped_mae_kmh', np.nan):>9.2f} {m.get('looped_coverage', np.nan):>6.0%} "
                    f"{m.get('unlooped_level_agreement', np.nan):>12.1%} "
                    f"{m.get('unlooped_mae_kmh', np.nan):>10.2f} "
                    f"{m.get('unlooped_coverage', np.nan):>6.0%} "
                    f"{m.get('unlooped_neighbour_oracle_agreement', np.nan):>10.1%}",
                    flush=True,
                )
        per["oracle_split"] = split[name] = oracle_split(judged["travel_speed"]["5min"])
        pooled["grids" if SCENARIOS[name].kind == "grid" else "cities"].append(judged["travel_speed"]["5min"])
        if not args.no_plots:
            per["plots"] = plots(name, judged)
        per["seconds"] = time.perf_counter() - t0
        result["scenarios"][name] = per  # type: ignore[index]
    print_oracle_split(split)
    result["by_true_level"] = print_by_true_level(pooled)
    if args.twin:
        twins: dict[str, dict[str, dict[str, float]]] = {}
        twin_pooled: dict[str, list[Judged]] = {"grids": [], "cities": []}
        for name, sc in scenarios.items():
            engine_metrics = result["scenarios"][name]["travel_speed/5min"]  # type: ignore[index]
            twins[name], twin_rows = run_twin(sc, args.rebuild, engine_metrics)
            twin_pooled["grids" if SCENARIOS[name].kind == "grid" else "cities"].append(twin_rows)
            result["scenarios"][name]["twin"] = twins[name]  # type: ignore[index]
        print_twin(twins)
        result["twin_by_true_level"] = print_by_true_level(twin_pooled, "SUMO's twin")
        if not args.no_plots:
            result["twin_plot"] = plot_twin(twins)
    result["seconds_total"] = time.perf_counter() - started
    path = OUT_DIR / "bench_accuracy.json"
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print("* held out: never looked at while the model and its constants were chosen")
    print("targets: looped agreement ≥ 70 %, MAE ≤ 4 km/h grids / ≤ 6 km/h cities; unlooped agreement ≥ 45 %")
    print("nbr oracle: unlooped level agreement imputing from the neighbours' *true* states (for scale)")
    print(f"wrote {path} ({result['seconds_total']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
