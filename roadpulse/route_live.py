"""The live router component: one ``Router`` for the service, re-weighted in place every tick.

``start`` builds the router once (landmarks included; seconds on a 100,000-junction city, so in a
worker thread) and shares it as ``ctx.shared["router"]``, where the HTTP service finds it for
``/api/route``. ``after_tick`` copies the tick's state into the router's travel times in place:
length / speed, free flow where the speed is unknown, infinite (never routed through) where the
segment is closed — closed in the published states or in the engine's current closure mask, so
a closure set just now is avoided from the next tick on. Every ``profile_every_ticks`` ticks it
also hands the engine's learned hour-of-day profiles to the router for predicted ETAs, when the
engine exports them. It publishes nothing.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import numpy as np

from roadgraph.routing import Router

if TYPE_CHECKING:
    from congestion import TickResult

    from .components import LiveContext
    from .config import Settings

#: ``uint8`` profile encoding of the engine (congestion/state.py): ratio × 200, 255 = no data.
_PROFILE_SCALE = 200.0
_PROFILE_NONE = 255


class LiveRouter:
    """Component holding the service's router (see the module docstring)."""

    name = "router"

    def __init__(self, settings: Settings, *, profile_every_ticks: int = 15) -> None:
        self.free_flow_fraction = float(settings["engine"]["free_flow_fraction_of_limit"])
        self.profile_every_ticks = profile_every_ticks
        self.router: Router | None = None
        self.ticks = 0

    async def start(self, ctx: LiveContext) -> None:
        fraction = self.free_flow_fraction
        self.router = await asyncio.to_thread(
            Router, ctx.network, free_flow_fraction=fraction, max_speed_factor=fraction
        )
        self.refresh(ctx)
        ctx.shared["router"] = self.router

    def after_tick(self, ctx: LiveContext, result: TickResult) -> list[Any]:
        self.refresh(ctx)
        self.ticks += 1
        if self.profile_every_ticks > 0 and self.ticks % self.profile_every_ticks == 1:
            self.refresh_profile(ctx)
        return []

    def refresh(self, ctx: LiveContext) -> None:
        """Travel times from the engine's latest states, in place (no allocation but the mask)."""
        router = self.router
        if router is None:
            return
        engine = ctx.pipeline.engine
        states = engine.states
        n = len(router.length_m)
        closed = np.asarray(engine.closed, dtype=bool)
        if len(states.closed) == n:
            closed = closed | states.closed
        ts = float(states.ts) if np.isfinite(states.ts) else None
        router.update_from_speeds(states.speed_kmh, states.free_flow_kmh, closed, levels=states.level, ts=ts)

    def refresh_profile(self, ctx: LiveContext) -> None:
        """The engine's typical hour-of-day ratios, when its exported state carries them."""
        router = self.router
        if router is None:
            return
        engine = ctx.pipeline.engine
        export = getattr(engine, "export_state", None)
        if export is None:
            return
        state = export()
        profile = state.get("profile") if isinstance(state, dict) else None
        free_flow = state.get("free_flow_kmh") if isinstance(state, dict) else None
        if not isinstance(profile, np.ndarray) or profile.ndim != 2 or len(profile) != len(router.length_m):
            return
        ratio = np.where(profile == _PROFILE_NONE, np.nan, profile / _PROFILE_SCALE)
        router.set_profile(ratio, free_flow if free_flow is not None else engine.states.free_flow_kmh)
