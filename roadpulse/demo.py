"""``roadpulse demo``: the whole live system on the bundled city, with generated traffic.

1. Find a broker: the configured one if it answers, else a ``mosquitto`` started on a free port,
   else the embedded Python broker (and say which).
2. Load the bundled OSM city and place detectors on its main roads.
3. Run a simulated clock from 06:30 local time at ``speedup`` × real time; at the end of every
   counting interval publish every detector's reading over MQTT (half as single-reading messages,
   half as one batch array: both input paths are exercised).
4. Run the live engine (the same ``serve`` as ``roadpulse run``) on that clock, and show a
   one-screen summary that updates in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import aiomqtt
import numpy as np

from congestion import LEVELS
from roadgraph import place_detectors
from roadgraph.detectors import DetectorRegistry
from roadgraph.network import ROAD_CLASS_CODE, RoadNetwork

from .bundled import DEMO_CITY_ATTRIBUTION
from .components import build_components
from .config import Settings
from .demo_traffic import DayPlan, DemoTraffic, pick_incident_segment
from .inputs import load_inputs
from .live import serve
from .pipeline import Pipeline

#: The bundled city (Aguascalientes) keeps UTC−6 all year.
DEMO_UTC_OFFSET_H = -6.0
DEMO_START_LOCAL_H = 6.5


class SimClock:
    """Simulated epoch seconds running ``speedup`` times faster than the wall clock."""

    def __init__(self, start_ts: float, speedup: float) -> None:
        self.start_ts = start_ts
        self.speedup = speedup
        self._wall0 = time.monotonic()

    def __call__(self) -> float:
        return self.start_ts + (time.monotonic() - self._wall0) * self.speedup


def demo_start_ts(now: float) -> float:
    """06:30 local time of today in the demo city, as epoch seconds."""
    day_start_utc = math.floor(now / 86400.0) * 86400.0
    return day_start_utc + (DEMO_START_LOCAL_H - DEMO_UTC_OFFSET_H) * 3600.0


def run_demo(settings: Settings, *, screen: bool) -> int:
    from .brokers import ensure_broker

    mqtt = settings["mqtt"]
    host, port, broker_note, local_broker = ensure_broker(mqtt["host"], int(mqtt["port"]))
    values = {section: dict(keys) for section, keys in settings.values.items()}
    values["mqtt"].update(host=host, port=port)
    settings = Settings(values=values, districts=settings.districts, source=settings.source)
    try:
        return asyncio.run(_demo(settings, broker_note, screen=screen))
    finally:
        if local_broker is not None:
            local_broker.stop()


def demo_layout(settings: Settings, network: RoadNetwork) -> tuple[DetectorRegistry, DayPlan]:
    """The demo's detectors (on a share of the main roads) and its day plan (the scripted
    incident on a central arterial that loops see: on it, downstream and upstream of it)."""
    demo = settings["demo"]
    detectors = place_detectors(
        network,
        share=float(demo["detector_share"]),
        seed=int(demo["seed"]),
        rel_pos=0.7,
        min_class=int(ROAD_CLASS_CODE["secondary"]),
    )
    covered = np.bincount(detectors.segment_index, minlength=len(network)) > 0
    incident_segment = pick_incident_segment(network, seed=int(demo["seed"]), covered=covered)
    return detectors, DayPlan(utc_offset_h=DEMO_UTC_OFFSET_H, incident_segment=incident_segment)


async def _demo(settings: Settings, broker_note: str, *, screen: bool) -> int:
    demo = settings["demo"]
    network, _ = load_inputs(settings)
    detectors, plan = demo_layout(settings, network)
    traffic = DemoTraffic(
        network, detectors, interval_s=int(demo["interval_s"]), plan=plan, seed=int(demo["seed"])
    )
    speedup = float(demo["speedup"])
    clock = SimClock(demo_start_ts(time.time()), speedup)
    suffix = f"-demo-{os.getpid()}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if demo["duration_s"] > 0:
        loop.call_later(float(demo["duration_s"]), stop.set)

    view = SummaryView(network, detectors, traffic, clock, broker_note, screen=screen)
    components = build_components(settings, demo=True)
    for component in components:
        if getattr(component, "name", "") == "http":  # its URL line goes on the summary screen
            component.announce = view.service_note
    generator = asyncio.create_task(_publish_readings(settings, traffic, clock, stop, view.count_published))
    try:
        await serve(
            network,
            detectors,
            settings,
            stop=stop,
            clock=clock,
            # Readings for an interval are published at its end; give them a quarter wall second.
            tick_delay_s=0.25 * speedup,
            on_tick=view.render,
            on_status=view.status,
            client_suffix=suffix,
            components=components,
        )
    finally:
        stop.set()
        generator.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await generator
    view.farewell()
    return 0


async def _publish_readings(
    settings: Settings,
    traffic: DemoTraffic,
    clock: SimClock,
    stop: asyncio.Event,
    count_published: Callable[[int], None],
) -> None:
    """Publish each interval's readings when the simulated clock reaches its end."""
    mqtt = settings["mqtt"]
    prefix = mqtt["prefix"]
    interval = traffic.interval_s
    next_end = math.ceil(clock() / interval) * interval
    async with aiomqtt.Client(
        mqtt["host"], int(mqtt["port"]), identifier=f"roadpulse-demo-gen-{os.getpid()}"
    ) as client:
        while not stop.is_set():
            wait_wall = (next_end - clock()) / clock.speedup
            if wait_wall > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait_wall)
                continue
            readings = traffic.readings(next_end)
            half = len(readings) // 2
            for reading in readings[:half]:
                await client.publish(
                    f"{prefix}detectors/{reading['detector_id']}", json.dumps(reading), qos=1
                )
            await client.publish(f"{prefix}detectors/batch", json.dumps(readings[half:]), qos=1)
            count_published(len(readings))
            next_end += interval


class SummaryView:
    """The one-screen live summary (redrawn in place on a terminal, else one line per tick)."""

    def __init__(
        self,
        network: Any,
        detectors: Any,
        traffic: DemoTraffic,
        clock: SimClock,
        broker_note: str,
        *,
        screen: bool,
    ) -> None:
        self.network = network
        self.detectors = detectors
        self.traffic = traffic
        self.clock = clock
        self.broker_note = broker_note
        self.screen = screen
        self.published = 0
        self.wall0 = time.monotonic()
        self.last_status = ""
        self.http_line = ""
        self.last_pipeline: Pipeline | None = None
        print(f"roadpulse demo: {broker_note}", flush=True)
        print(
            f"  city: {len(network)} segments (bundled OSM extract; {DEMO_CITY_ATTRIBUTION}), "
            f"{len(detectors)} detectors, speedup ×{clock.speedup:g}",
            flush=True,
        )

    def count_published(self, n: int) -> None:
        self.published += n

    def service_note(self, text: str) -> None:
        """The HTTP service's line (dashboard URL, operator token): printed now, kept on the screen."""
        self.http_line = text
        print(f"  {text}", flush=True)

    def status(self, text: str) -> None:
        self.last_status = text
        if not self.screen:
            print(f"  [{text}]", flush=True)

    def render(self, pipeline: Pipeline) -> None:
        self.last_pipeline = pipeline
        result = pipeline.last_result
        if result is None:
            return
        c = pipeline.counters
        wall = max(time.monotonic() - self.wall0, 1e-6)
        local = self.traffic.local_hour(result.states.ts)
        city = result.city
        name_en, name_zh, _ = LEVELS[city.level]
        tpi_text = "—" if math.isnan(city.tpi) else f"{city.tpi:4.1f}"
        if not self.screen:
            print(
                f"{_hhmm(local)} tick {c.ticks}: city TPI {tpi_text} {name_zh} {name_en}, "
                f"readings {c.accepted:,} accepted ({c.accepted / wall:,.0f}/s), {c.rejected:,} rejected, "
                f"{c.messages_out:,} messages out",
                flush=True,
            )
            return
        lines = [
            "roadpulse demo — live (Ctrl-C to stop)",
            f"  {self.broker_note}",
            *([f"  {self.http_line}"] if self.http_line else []),
            f"  simulated {_hhmm(local)} local  ×{self.clock.speedup:g}   tick {c.ticks}  "
            f"({c.last_tick_s * 1000:.1f} ms)   "
            f"{len(self.network)} segments, {len(self.detectors)} detectors",
            "",
            f"  City TPI {tpi_text}  {_bar(city.tpi)}  {name_zh} {name_en}",
            f"  TTI {city.tti:.2f}   severe {city.severe_share * 100:.1f}%   "
            f"known {city.known_share * 100:.0f}%",
            f"  readings {c.accepted:,} accepted ({c.accepted / wall:,.0f}/s)   rejected {c.rejected:,} "
            f"{_codes(c.rejected_by_code)}   messages out {c.messages_out:,}",
            "",
            "  Worst segments                          speed / free    TTI  level",
        ]
        lines += self._worst(result.states)
        plan = self.traffic.plan
        incident_road = self.network.segments.name[plan.incident_segment] or "(unnamed)"
        lines += [
            "",
            f"  scripted incident: {incident_road} from {_hhmm(plan.incident_start_h)} "
            f"for {plan.incident_minutes:.0f} min",
        ]
        if self.last_status:
            lines.append(f"  status: {self.last_status}")
        sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
        sys.stdout.flush()

    def _worst(self, states: Any, top: int = 8) -> list[str]:
        known = np.flatnonzero(states.level > 0)
        if len(known) == 0:
            return ["  (no segment known yet)"]
        order = known[np.argsort(-states.tti[known], kind="stable")][:top]
        out = []
        for i in order:
            name = (self.network.segments.name[i] or str(self.network.segments.segment_id[i]))[:36]
            lvl = int(states.level[i])
            out.append(
                f"  {name:<36} {states.speed_kmh[i]:6.1f} / {states.free_flow_kmh[i]:4.0f} km/h"
                f"  {states.tti[i]:5.2f}  {LEVELS[lvl][1]} {LEVELS[lvl][0]}"
            )
        return out

    def farewell(self) -> None:
        p = self.last_pipeline
        if p is None:
            print("roadpulse demo: stopped before the first tick", flush=True)
            return
        c = p.counters
        print(
            f"roadpulse demo: stopped after {c.ticks} ticks; {c.accepted:,} readings accepted, "
            f"{c.rejected:,} rejected, {c.messages_out:,} messages published",
            flush=True,
        )


def _hhmm(hour: float) -> str:
    minutes = round(hour * 60.0) % (24 * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _bar(tpi: float, width: int = 20) -> str:
    if math.isnan(tpi):
        return "[" + " " * width + "]"
    filled = round(tpi / 10.0 * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _codes(by_code: dict[str, int]) -> str:
    if not by_code:
        return ""
    return "(" + ", ".join(f"{k} {v:,}" for k, v in sorted(by_code.items())) + ")"
