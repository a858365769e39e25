"""The data path, in one place: parsed readings → engine → tick messages.

``Pipeline`` is what both the live engine (``roadpulse run``/``demo``) and ``roadpulse replay``
drive; only the source (MQTT or a JSONL file) and the sink (MQTT or a JSONL file) differ, and the
clock (wall time or event time) that decides when a tick falls due.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from congestion import CongestionEngine, TickResult
from congestion.engine import engine_parts
from ingest import IngestLimits, ParseResult, ReadingParser
from publishers.message import Message
from publishers.tick_messages import TickMessages, rejection_message
from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork

from .config import District, Settings
from .detector_watch import DetectorWatch
from .signal_plans import sumo_actuated_signals, sumo_signal_timing


@dataclass
class PipelineCounters:
    """Running totals the summary screen and /metrics show."""

    accepted: int = 0
    rejected: int = 0
    ticks: int = 0
    last_tick_s: float = 0.0
    tick_seconds_total: float = 0.0
    messages_out: int = 0
    rejected_by_code: dict[str, int] = field(default_factory=dict)
    #: Overload and fault counters (issue 4; README "Overload policy"): ticks skipped because the
    #: engine fell behind by whole ticks, early hand-overs of a full ingest buffer, output
    #: messages the sink dropped, source reconnects, readings from clock-skewed detectors,
    #: state snapshots written.
    ticks_skipped: int = 0
    ingest_early_flushes: int = 0
    output_dropped: int = 0
    source_reconnects: int = 0
    #: MQTT messages the reading source has read, good or bad: with ``accepted`` and the
    #: refusals it tells whether a reading missing downstream ever reached the engine.
    source_messages: int = 0
    skewed_readings: int = 0
    snapshots_written: int = 0


class Pipeline:
    """Parser, engine and message builder for one network; no I/O of its own."""

    def __init__(
        self,
        network: RoadNetwork,
        detectors: DetectorRegistry,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        event_time: bool = False,
    ) -> None:
        self.network = network
        self.detectors = detectors
        self.settings = settings
        self.prefix: str = settings["mqtt"]["prefix"]
        self.parser = ReadingParser(
            detectors,
            prefix=self.prefix,
            limits=ingest_limits(settings, event_time=event_time),
            clock=clock,
        )
        names, district_of = assign_districts(network, settings.districts)
        # Every [engine] key that tunes the estimator (congestion.engine.ENGINE_CONFIG_FIELDS).
        engine_settings, model, imputation = engine_parts(settings["engine"])
        self.engine = CongestionEngine(
            network,
            detectors,
            engine_settings,
            model=model,
            imputation=imputation,
            signal_timing=sumo_signal_timing(network),
            actuated_signals=sumo_actuated_signals(network),
            district_names=names,
            segment_district=district_of,
        )
        publish_cfg = settings["publish"]
        self.tick_messages = TickMessages(
            network,
            prefix=self.prefix,
            segment_states=bool(publish_cfg["segment_states"]),
            snapshot=bool(publish_cfg["snapshot"]),
            min_speed_change_kmh=float(publish_cfg["min_speed_change_kmh"]),
        )
        # Detector health, g-factors and incidents around the engine tick (issue 3).
        self.watch = DetectorWatch(network, detectors, settings, self.engine, prefix=self.prefix)
        self.counters = PipelineCounters()
        self.last_result: TickResult | None = None

    def accept(self, result: ParseResult) -> list[Message]:
        """Feed parsed readings to the engine; return the rejection messages to publish."""
        if len(result.batch):
            self.engine.add_readings(self.watch.accept(result.batch))
            self.counters.accepted += len(result.batch)
        out = []
        for rejection in result.rejections:
            self.counters.rejected += 1
            by_code = self.counters.rejected_by_code
            by_code[rejection.code] = by_code.get(rejection.code, 0) + 1
            out.append(rejection_message(rejection, prefix=self.prefix))
        return out

    def tick(self, tick_ts: float, *, full: bool = False) -> list[Message]:
        """Run one engine tick at event time ``tick_ts``; return every message it publishes."""
        started = time.perf_counter()
        self.parser.mark_ticked(tick_ts)  # readings for this tick that come later may be late
        health = self.watch.before_tick(tick_ts)
        result = self.engine.tick(tick_ts)
        messages = self.tick_messages.for_tick(result, full=full)
        messages.extend(health)
        messages.extend(self.watch.after_tick(result))
        elapsed = time.perf_counter() - started
        self.last_result = result
        self.counters.ticks += 1
        self.counters.last_tick_s = elapsed
        self.counters.tick_seconds_total += elapsed
        self.counters.messages_out += len(messages)
        return messages

    def detector_health_records(self) -> list[dict[str, Any]]:
        """Every detector's health record (payload of ``traffic/detectors/{id}/health``)."""
        return self.watch.health_records()

    def incident_records(self, *, include_cleared: bool = False) -> list[dict[str, Any]]:
        """Active incidents (and recently cleared ones) as spec payloads of ``traffic/incidents/{id}``."""
        return self.watch.incident_records(include_cleared=include_cleared)


def ingest_limits(settings: Settings, *, event_time: bool) -> IngestLimits:
    """Ingest limits from config. In event time (replay) recorded timestamps are not checked
    against the wall clock: a recording may start at t=0 (SUMO) or years ago."""
    cfg = settings["ingest"]
    return IngestLimits(
        max_payload_bytes=int(cfg["max_payload_bytes"]),
        max_batch_readings=int(cfg["max_batch_readings"]),
        max_interval_s=float(cfg["max_interval_s"]),
        max_speed_kmh=float(cfg["max_speed_kmh"]),
        max_future_s=math.inf if event_time else float(cfg["max_future_s"]),
        lateness_s=float(cfg["lateness_s"]),
        max_skew_s=float(cfg["max_skew_s"]),
        min_ts=0.0 if event_time else IngestLimits().min_ts,
    )


def assign_districts(
    network: RoadNetwork, districts: tuple[District, ...]
) -> tuple[tuple[str, ...], np.ndarray | None]:
    """Each segment's district: the first polygon containing its midpoint (-1: none)."""
    if not districts:
        return (), None
    import shapely

    polygons = [shapely.Polygon(d.polygon) for d in districts]
    midpoints = shapely.line_interpolate_point(list(network.segments.geometry), 0.5, normalized=True)
    district_of = np.full(len(network), -1, dtype=np.int16)
    for k in range(len(polygons) - 1, -1, -1):  # reverse so the first listed polygon wins
        district_of[shapely.contains(polygons[k], midpoints)] = k
    return tuple(d.name for d in districts), district_of


def first_tick_at_or_after(ts: float, tick_s: float) -> float:
    """The first multiple of ``tick_s`` that is ≥ ts (ticks fall on multiples of tick_s)."""
    return math.ceil(ts / tick_s) * tick_s
