"""``roadpulse replay``: the live engine, in event time, over a recorded JSONL file.

Ticks fall on multiples of ``tick_s`` in event time. Tick ``T`` covers readings with ``ts ≤ T``
and is run once the file has moved past it: as soon as a reading with ``ts > T + lateness_s`` is
read (readings are expected in roughly increasing ``ts``; ones that arrive after their tick was run
are used at the next tick, as late data would be live). After the last reading the remaining ticks
up to the one covering the newest reading are run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest import iter_jsonl_readings
from ingest.sumo_e1 import convert_e1
from publishers.jsonl_sink import JsonlSink
from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork

from .config import Settings
from .pipeline import Pipeline, first_tick_at_or_after


def is_sumo_e1_output(path: str | Path) -> bool:
    """A ``.xml`` (or ``.xml.gz``) readings file is SUMO's induction-loop output (JSONL is the
    spec's format)."""
    name = Path(path).name.lower()
    return name.endswith(".xml") or name.endswith(".xml.gz")


@dataclass(frozen=True)
class ReplayReport:
    readings_accepted: int
    readings_rejected: int
    ticks: int
    messages: int
    seconds: float

    @property
    def readings_per_s(self) -> float:
        return (self.readings_accepted + self.readings_rejected) / self.seconds if self.seconds > 0 else 0.0


def run_replay(
    network: RoadNetwork,
    detectors: DetectorRegistry,
    settings: Settings,
    *,
    readings_path: str | Path,
    out_path: str | Path,
    tick_s: float,
    full: bool = False,
    lateness_s: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> ReplayReport:
    """Replay ``readings_path`` through the engine and write every message to ``out_path``.

    ``readings_path`` is readings JSONL, or SUMO's induction-loop (E1) output as SUMO wrote it
    (``.xml``, ``.xml.gz``): that is converted first, as ``roadpulse sumo-readings`` does (epoch
    base 0, so ticks line up with SUMO's ``<edgeData>`` intervals)."""
    if is_sumo_e1_output(readings_path):
        with tempfile.TemporaryDirectory(prefix="roadpulse-e1-") as tmp:
            converted = Path(tmp) / "readings.jsonl"
            with open(converted, "w", encoding="utf-8") as fh:
                n = convert_e1(readings_path, fh)
            if progress is not None:
                progress(f"replay: {readings_path}: SUMO induction-loop output, {n:,} readings converted")
            return run_replay(
                network,
                detectors,
                settings,
                readings_path=converted,
                out_path=out_path,
                tick_s=tick_s,
                full=full,
                lateness_s=lateness_s,
                progress=progress,
            )
    started = time.perf_counter()
    event_clock = _EventClock()
    pipeline = Pipeline(network, detectors, settings, clock=event_clock, event_time=True)
    next_tick: float | None = None
    newest_ts = -np.inf
    last_report = started
    with JsonlSink(out_path) as sink:
        for result in iter_jsonl_readings(readings_path, pipeline.parser):
            sink.write(pipeline.accept(result))
            if len(result.batch) == 0:
                continue
            ts = result.batch.ts
            if next_tick is None:
                next_tick = first_tick_at_or_after(float(ts.min()), tick_s)
            # Tick T is due once a reading beyond T + lateness appears. Rows within a chunk are in
            # file order, so find ticks crossed by the running maximum rather than the chunk max.
            newest_ts = max(newest_ts, float(ts.max()))
            event_clock.now = newest_ts
            while newest_ts > next_tick + lateness_s:
                sink.write(pipeline.tick(next_tick, full=full))
                next_tick += tick_s
            if progress is not None and time.perf_counter() - last_report > 2.0:
                last_report = time.perf_counter()
                progress(_progress_line(pipeline, started, next_tick))
        if next_tick is not None:
            last_tick = first_tick_at_or_after(newest_ts, tick_s)
            while next_tick <= last_tick:
                sink.write(pipeline.tick(next_tick, full=full))
                next_tick += tick_s
    counters = pipeline.counters
    report = ReplayReport(
        readings_accepted=counters.accepted,
        readings_rejected=counters.rejected,
        ticks=counters.ticks,
        messages=counters.messages_out + counters.rejected,
        seconds=time.perf_counter() - started,
    )
    if progress is not None:
        progress(
            f"replay done: {report.readings_accepted} readings accepted, "
            f"{report.readings_rejected} rejected, "
            f"{report.ticks} ticks, {report.messages} messages in {report.seconds:.1f} s "
            f"({report.readings_per_s:,.0f} readings/s)"
        )
    return report


class _EventClock:
    """The parser's clock in replay: the newest event time seen (no wall-clock checks)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _progress_line(pipeline: Pipeline, started: float, next_tick: float | None) -> str:
    elapsed = time.perf_counter() - started
    c = pipeline.counters
    return (
        f"replay: {c.accepted + c.rejected:,} readings ({(c.accepted + c.rejected) / elapsed:,.0f}/s), "
        f"{c.ticks} ticks, event time {next_tick}"
    )


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
