"""Components: the parts of the live service that sit beside the data path.

The data path itself (MQTT readings → ``Pipeline`` → MQTT states) lives in ``live.serve``. Everything
else a live engine runs — the HTTP service, the closure book, camera workers, map-provider outboxes —
is a *component*: an object with three optional hooks, started once the MQTT sink is connected and
stopped in reverse order on shutdown. Components own their own MQTT connections (through
``ctx.client_factory``) for the topics they subscribe to, so the reading hot path never waits on
them.

Adding a concern to the live service means writing a component and listing it in
``build_components``; ``live.py`` does not change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from publishers.message import Message

if TYPE_CHECKING:
    from congestion import TickResult
    from roadgraph.detectors import DetectorRegistry
    from roadgraph.network import RoadNetwork

    from .config import Settings
    from .pipeline import Pipeline


@dataclass
class LiveContext:
    """What a component may use: the network, the pipeline (engine state), the outgoing MQTT
    sink (``publish``), a factory for its own MQTT clients, the clock and the stop event."""

    network: RoadNetwork
    detectors: DetectorRegistry
    settings: Settings
    pipeline: Pipeline
    publish: Callable[[list[Message]], None]
    client_factory: Callable[..., Any]
    stop: asyncio.Event
    clock: Callable[[], float] = time.time
    #: Free-form shared objects by name (e.g. "closures" → the closure book), so components can
    #: find each other without importing each other's modules.
    shared: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Component(Protocol):
    """A live-service part. Every hook is optional; a component implements what it needs."""

    name: str


async def start_all(components: Sequence[Any], ctx: LiveContext) -> None:
    for c in components:
        start = getattr(c, "start", None)
        if start is not None:
            await start(ctx)


def after_tick_all(components: Sequence[Any], ctx: LiveContext, result: TickResult) -> list[Message]:
    """Call every component's ``after_tick(ctx, result)``; return the messages they want published."""
    out: list[Message] = []
    for c in components:
        hook = getattr(c, "after_tick", None)
        if hook is not None:
            out.extend(hook(ctx, result) or ())
    return out


async def stop_all(components: Sequence[Any]) -> None:
    for c in reversed(components):
        stop = getattr(c, "stop", None)
        if stop is not None:
            await stop()


def build_components(settings: Settings, *, demo: bool = False) -> list[Any]:
    """The components ``roadpulse run`` (and ``demo``) start, from the configuration.

    Each concern registers itself here with one block. Order: the HTTP service first (it looks
    shared objects up per request), then producers of shared objects (closures) before the
    components that use them at start-up (push outboxes).
    """
    components: list[Any] = []
    # The HTTP service first: it finds the shared objects of the others at request time (503 with
    # the reason until they are there), so its URL is printed at once, before slower start-ups
    # (the router's landmarks), and it stops last.
    if settings["api"]["enabled"]:
        from .service import HttpService

        components.append(HttpService(settings, fallback_to_free_port=demo, demo_token=demo))
    # Closures (issue 6) first: push outboxes and the HTTP service use ctx.shared["closures"].
    if settings["closures"]["enabled"]:
        from publishers.closure_store import SqliteClosureStore
        from publishers.closures_component import ClosuresComponent

        # The demo keeps its closures in memory unless a store is configured: no files left behind.
        memory = demo and not settings["closures"]["store"] and not settings["closures"]["dsn"]
        store = SqliteClosureStore(":memory:") if memory else None
        components.append(ClosuresComponent(settings, store=store))
    if settings.push:
        from publishers.push_component import PushComponent

        components.extend(PushComponent(endpoint, settings) for endpoint in settings.push)
    # Cameras (issue 5): MQTT frames and worker-process sources in, stats/snapshots out, zone
    # readings into the engine; ctx.shared["cameras"] for the HTTP service.
    if settings["camera"]["enabled"]:
        from .inputs import configured_cameras

        cameras = configured_cameras(settings)
        if cameras:  # OpenCV is loaded only when there are cameras
            from .camera_component import CameraComponent

            components.append(CameraComponent(settings, cameras))
    # Route guidance (issue 8): ctx.shared["router"], re-weighted from the engine every tick.
    from .route_live import LiveRouter

    components.append(LiveRouter(settings))
    return components
