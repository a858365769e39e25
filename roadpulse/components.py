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

    Each concern registers itself here with one line; keep the order: producers of shared objects
    (closures) before their consumers (HTTP service).
    """
    components: list[Any] = []
    return components
