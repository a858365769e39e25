"""The live engine: MQTT source → pipeline → MQTT sink, ticking on a clock.

``serve`` is the whole live data path; ``roadpulse run`` calls it with the wall clock and
``roadpulse demo`` with a simulated one. Tick ``T`` (a multiple of ``tick_s``) runs once the clock
passes ``T + tick_delay_s``, so that readings for intervals ending at ``T`` have time to arrive;
it covers every reading with ``ts ≤ T`` received by then.

Faults: engine state is restored at start from ``[state] path`` (when set) and snapshotted every
``[state] interval_s`` and at shutdown. Shutdown (SIGTERM, SIGINT, or ``stop`` set) drains: the
source stops reading (the broker keeps what follows for our persistent session), the readings
already accepted get a last tick, the sink delivers what is queued, then the snapshot is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from ingest import MqttReadingSource, ParseResult
from publishers.message import Message
from publishers.mqtt_sink import MqttSink
from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork

from .components import LiveContext, after_tick_all, build_components, start_all, stop_all
from .config import Settings
from .mqtt import client_factory, endpoint
from .pipeline import Pipeline, first_tick_at_or_after
from .snapshot import restore_snapshot, save_snapshot, stateful_parts

log = logging.getLogger("roadpulse.live")

#: How often the tick loop looks at the clock (wall seconds).
_POLL_S = 0.02


async def serve(
    network: RoadNetwork,
    detectors: DetectorRegistry,
    settings: Settings,
    *,
    stop: asyncio.Event,
    clock: Callable[[], float] = time.time,
    tick_delay_s: float = 2.0,
    on_tick: Callable[[Pipeline], None] | None = None,
    on_status: Callable[[str], None] | None = None,
    client_suffix: str = "",
    components: Sequence[Any] = (),
    shared: dict[str, Any] | None = None,
) -> Pipeline:
    """Run until ``stop`` is set; returns the pipeline (for its counters).

    ``components`` (see ``roadpulse.components``) start once the sink and source are connected,
    see every tick through ``after_tick`` and stop, in reverse order, before the sink closes.
    """
    pipeline = Pipeline(network, detectors, settings, clock=clock)
    prefix = settings["mqtt"]["prefix"]
    tick_s = float(settings["engine"]["tick_s"])
    ingest_cfg = settings["ingest"]
    snapshots = _Snapshots(settings, pipeline)
    snapshots.restore()
    # The gmqtt backend: a tick's 10,000 segment states go out in a few socket writes.
    sink = MqttSink(endpoint(settings, role="out", unique_suffix=client_suffix), on_status=on_status)
    try:
        async with sink:

            def on_result(result: ParseResult) -> None:
                rejected = pipeline.accept(result)
                if rejected:
                    sink.submit(rejected)

            source = MqttReadingSource(
                endpoint(settings, role="in", persistent=True, unique_suffix=client_suffix),
                pipeline.parser,
                on_result,
                prefix=prefix,
                on_status=on_status,
                max_pending_readings=int(ingest_cfg["max_pending_readings"]),
                shared_group=ingest_cfg["shared_group"] or None,
                topic_filters=_worker_filters(prefix) if ingest_cfg["from_workers"] else None,
            )
            ctx = LiveContext(
                network=network,
                detectors=detectors,
                settings=settings,
                pipeline=pipeline,
                publish=sink.submit,
                client_factory=lambda **kw: client_factory(settings, unique_suffix=client_suffix, **kw),
                stop=stop,
                clock=clock,
                shared=shared if shared is not None else {},
            )
            loop = _TickLoop(
                pipeline, sink, source, ctx, components, tick_s, tick_delay_s, on_tick, snapshots
            )
            source_open = False
            try:
                await source.__aenter__()
                source_open = True
                await start_all(components, ctx)
                try:
                    await loop.run()
                    # Graceful shutdown: stop accepting (the source hands over what it read),
                    # then tick what was accepted since the last tick, while the sink is up.
                    source_open = False
                    await source.__aexit__(None, None, None)
                    loop.final_tick()
                finally:
                    await stop_all(components)
            finally:
                if source_open:
                    await source.__aexit__(None, None, None)
            loop.update_counters()
    finally:
        pipeline.counters.output_dropped = sink.dropped_total
        snapshots.save()
    return pipeline


def _worker_filters(prefix: str) -> tuple[str, str]:
    """Behind ingest workers the engine reads only what they validated (both filters the same
    topic: a second, identical subscription is a no-op at the broker)."""
    from ingest.binary_batch import VALIDATED_TOPIC_SUFFIX

    topic = f"{prefix}detectors/{VALIDATED_TOPIC_SUFFIX}"
    return topic, topic


class _Snapshots:
    """``[state] path`` / ``interval_s``: restore at start, save on an interval and at the end."""

    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        self.path = settings["state"]["path"]
        self.interval_s = float(settings["state"]["interval_s"])
        self.pipeline = pipeline
        self.parts = stateful_parts(pipeline)
        self.last_saved = time.monotonic()

    def restore(self) -> None:
        if self.path:
            restore_snapshot(self.path, self.parts)

    def maybe_save(self) -> None:
        if self.path and time.monotonic() - self.last_saved >= self.interval_s:
            self.save()

    def save(self) -> None:
        if not self.path:
            return
        try:
            size = save_snapshot(self.path, self.parts)
        except OSError as exc:  # a full disk must not stop the engine; the next save retries
            log.error("state snapshot %s not written: %s", self.path, exc)
            return
        self.last_saved = time.monotonic()
        self.pipeline.counters.snapshots_written += 1
        log.info("state snapshot written to %s (%d bytes)", self.path, size)


class _TickLoop:
    def __init__(
        self,
        pipeline: Pipeline,
        sink: MqttSink,
        source: MqttReadingSource,
        ctx: LiveContext,
        components: Sequence[Any],
        tick_s: float,
        tick_delay_s: float,
        on_tick: Callable[[Pipeline], None] | None,
        snapshots: _Snapshots,
    ) -> None:
        self.pipeline, self.sink, self.source, self.ctx = pipeline, sink, source, ctx
        self.components, self.tick_s, self.tick_delay_s = components, tick_s, tick_delay_s
        self.on_tick, self.snapshots = on_tick, snapshots
        self.next_tick = first_tick_at_or_after(ctx.clock(), tick_s)
        self.reconnects_seen = sink.reconnects
        self.accepted_at_last_tick = pipeline.counters.accepted

    async def run(self) -> None:
        stop, clock, tick_s = self.ctx.stop, self.ctx.clock, self.tick_s
        while not stop.is_set():
            now = clock()
            if now < self.next_tick + self.tick_delay_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=_POLL_S)
                continue
            # If the engine fell behind by whole ticks (a suspended laptop, a stalled broker),
            # run only the newest due tick: the skipped ones would publish stale states.
            behind = int((now - self.tick_delay_s - self.next_tick) // tick_s)
            if behind > 0:
                log.warning("skipping %d overdue ticks", behind)
                self.pipeline.counters.ticks_skipped += behind
                self.next_tick += behind * tick_s
            self._tick(self.next_tick)
            self.next_tick += tick_s
            self.snapshots.maybe_save()

    def final_tick(self) -> None:
        """At shutdown: tick the readings accepted since the last tick (at the next tick's time)."""
        if self.pipeline.counters.accepted > self.accepted_at_last_tick:
            log.info(
                "shutdown: ticking %d readings accepted since the last tick",
                self.pipeline.counters.accepted - self.accepted_at_last_tick,
            )
            self._tick(self.next_tick)

    def _tick(self, tick_ts: float) -> None:
        pipeline, sink = self.pipeline, self.sink
        # A broker that restarted without persistence forgot the retained states: after
        # the sink reconnects, publish every segment once more, not only the changes.
        full = sink.reconnects != self.reconnects_seen
        self.reconnects_seen = sink.reconnects
        self.accepted_at_last_tick = pipeline.counters.accepted
        prefix = self.ctx.settings["mqtt"]["prefix"]
        sink.submit(_snapshot_first(pipeline.tick(tick_ts, full=full), prefix))
        if pipeline.last_result is not None:
            extra = after_tick_all(self.components, self.ctx, pipeline.last_result)
            if extra:
                sink.submit(extra)
        self.update_counters()
        if self.on_tick is not None:
            self.on_tick(pipeline)

    def update_counters(self) -> None:
        c = self.pipeline.counters
        c.output_dropped = self.sink.dropped_total
        c.source_reconnects = self.source.reconnects
        c.source_messages = self.source.messages_received
        c.ingest_early_flushes = self.source.early_flushes
        c.skewed_readings = self.pipeline.parser.skewed_readings


def _snapshot_first(messages: list[Message], prefix: str) -> list[Message]:
    """The tick's messages with the not-retained ones (the snapshot) and the indices ahead of the
    per-segment states: one message brings every segment's new state to snapshot readers before
    the up to one-per-segment retained messages follow."""
    head = f"{prefix}segments/"
    first = [m for m in messages if not m.topic.startswith(head)]
    if len(first) == len(messages):
        return messages
    return first + [m for m in messages if m.topic.startswith(head)]


def run_service(network: RoadNetwork, detectors: DetectorRegistry, settings: Settings) -> int:
    """``roadpulse run``: serve until SIGINT/SIGTERM, logging one line per tick."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    mqtt = settings["mqtt"]
    print(
        f"roadpulse run: {len(network)} segments, {len(detectors)} detectors, "
        f"broker {mqtt['host']}:{mqtt['port']}, topics under {mqtt['prefix']!r}, "
        f"tick {settings['engine']['tick_s']} s",
        file=sys.stderr,
        flush=True,
    )

    def tick_line(p: Pipeline) -> None:
        r = p.last_result
        if r is None:
            return
        c = p.counters
        log.info(
            "tick %s: city TPI %.2f (%s), %d readings accepted, %d rejected, tick %.1f ms",
            r.states.ts,
            r.city.tpi,
            r.city.level_name,
            c.accepted,
            c.rejected,
            c.last_tick_s * 1000,
        )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(
            network,
            detectors,
            settings,
            stop=stop,
            on_tick=tick_line,
            on_status=lambda s: log.info("%s", s),
            components=build_components(settings),
        )

    asyncio.run(main())
    return 0
