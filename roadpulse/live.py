"""The live engine: MQTT source → pipeline → MQTT sink, ticking on a clock.

``serve`` is the whole live data path; ``roadpulse run`` calls it with the wall clock and
``roadpulse demo`` with a simulated one. Tick ``T`` (a multiple of ``tick_s``) runs once the clock
passes ``T + tick_delay_s``, so that readings for intervals ending at ``T`` have time to arrive;
it covers every reading with ``ts ≤ T`` received by then.
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
from publishers.mqtt_sink import MqttSink
from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork

from .components import LiveContext, after_tick_all, build_components, start_all, stop_all
from .config import Settings
from .mqtt import client_factory
from .pipeline import Pipeline, first_tick_at_or_after

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
    sink = MqttSink(client_factory(settings, role="out", unique_suffix=client_suffix), on_status=on_status)
    async with sink:

        def on_result(result: ParseResult) -> None:
            rejected = pipeline.accept(result)
            if rejected:
                sink.submit(rejected)

        source = MqttReadingSource(
            client_factory(settings, role="in", persistent=True, unique_suffix=client_suffix),
            pipeline.parser,
            on_result,
            prefix=prefix,
            on_status=on_status,
        )
        async with source:
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
            await start_all(components, ctx)
            try:
                await _tick_loop(pipeline, sink, ctx, components, tick_s, tick_delay_s, on_tick)
            finally:
                await stop_all(components)
    return pipeline


async def _tick_loop(
    pipeline: Pipeline,
    sink: MqttSink,
    ctx: LiveContext,
    components: Sequence[Any],
    tick_s: float,
    tick_delay_s: float,
    on_tick: Callable[[Pipeline], None] | None,
) -> None:
    stop, clock = ctx.stop, ctx.clock
    next_tick = first_tick_at_or_after(clock(), tick_s)
    reconnects_seen = sink.reconnects
    while not stop.is_set():
        now = clock()
        if now < next_tick + tick_delay_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=_POLL_S)
            continue
        # If the engine fell behind by whole ticks (a suspended laptop, a stalled broker),
        # run only the newest due tick: the skipped ones would publish stale states.
        behind = int((now - tick_delay_s - next_tick) // tick_s)
        if behind > 0:
            log.warning("skipping %d overdue ticks", behind)
            next_tick += behind * tick_s
        # A broker that restarted without persistence forgot the retained states: after
        # the sink reconnects, publish every segment once more, not only the changes.
        full = sink.reconnects != reconnects_seen
        reconnects_seen = sink.reconnects
        sink.submit(pipeline.tick(next_tick, full=full))
        if pipeline.last_result is not None:
            extra = after_tick_all(components, ctx, pipeline.last_result)
            if extra:
                sink.submit(extra)
        next_tick += tick_s
        if on_tick is not None:
            on_tick(pipeline)


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
