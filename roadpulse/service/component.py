"""The HTTP service as a live component: uvicorn serving the app inside the engine's event loop.

``start`` binds the listening socket itself (so a taken port is a clear start-up error, not
uvicorn's ``sys.exit``), then serves in a task; ``after_tick`` updates the live view, writes the
index history and pushes the tick to stream clients; ``stop`` ends the streams and the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn

from roadpulse.config import ConfigError, Settings, parse_host_port

from .app import ServiceState, _jsonable, create_app
from .auth import operator_token
from .history import HistoryStore, default_history_path
from .live_view import LiveView
from .network_view import NetworkView
from .stream import StreamHub

if TYPE_CHECKING:
    from congestion import TickResult
    from publishers.message import Message
    from roadpulse.components import LiveContext

log = logging.getLogger("roadpulse.service")

#: Beyond this many changed segments a tick event carries every code instead of a list.
FULL_CODES_SHARE = 0.5


class _Server(uvicorn.Server):
    """uvicorn inside someone else's event loop: the engine owns SIGINT/SIGTERM, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int, *, fallback_to_free_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on sockets that say they are TCP;
    # without it Nagle's algorithm and delayed ACKs add ~40 ms to every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        if fallback_to_free_port and port != 0:
            sock.close()
            return bind_socket(host, 0, fallback_to_free_port=False)
        sock.close()
        raise ConfigError(
            f"api.listen {host}:{port}: cannot listen there ({exc.strerror}); "
            "choose another address with --listen HOST:PORT"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class HttpService:
    """Component ``http``: the API and the dashboard (see ``roadpulse.service``)."""

    name = "http"

    def __init__(
        self,
        settings: Settings,
        *,
        fallback_to_free_port: bool = False,
        token: str | None = None,
        announce: Callable[[str], None] | None = None,
        demo_token: bool = False,
    ) -> None:
        self.settings = settings
        self.fallback_to_free_port = fallback_to_free_port
        self.token = token if token is not None else operator_token(settings)
        # The demo has no configuration to write a token into: it makes one up and prints it.
        self.token_generated = self.token is None and demo_token
        if self.token_generated:
            self.token = secrets.token_urlsafe(12)
        self.announce = announce if announce is not None else _to_stderr
        self.url: str | None = None
        self.state: ServiceState | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, ctx: LiveContext) -> None:
        api = self.settings["api"]
        host, port = parse_host_port(api["listen"], key="api.listen")
        sock = bind_socket(host, port, fallback_to_free_port=self.fallback_to_free_port)
        bound_port = sock.getsockname()[1]
        history_path = api["history_path"] or str(default_history_path())
        history = HistoryStore(history_path, retention_s=float(api["history_retention_days"]) * 86400.0)
        net = NetworkView.from_network(ctx.network)
        self.state = ServiceState(
            settings=self.settings,
            net=net,
            view=LiveView(net),
            pipeline=ctx.pipeline,
            history=history,
            hub=StreamHub(),
            token=self.token,
            clock=ctx.clock,
            shared=ctx.shared,
            network=ctx.network,
        )
        config = uvicorn.Config(
            create_app(self.state),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=5,
            limit_concurrency=512,
            h11_max_incomplete_event_size=65536,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="roadpulse-http")
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()  # raises what stopped it
            raise RuntimeError("HTTP service stopped during start-up")
        url_host = f"[{host}]" if ":" in host else host
        self.url = f"http://{url_host}:{bound_port}/"
        ctx.shared["http_url"] = self.url
        note = "" if bound_port == port else f" (port {port} was taken)"
        writes = (
            "operator writes enabled"
            if self.token
            else (f"operator writes disabled: set ${api['token_env']} or api.token_file")
        )
        if self.token_generated:
            writes = f"operator token {self.token} (made up for this run; set ${api['token_env']} to choose)"
        self.announce(f"dashboard and API at {self.url}{note}; {writes}")

    def after_tick(self, ctx: LiveContext, result: TickResult) -> list[Message]:
        state = self.state
        if state is None:
            return []
        changed = state.view.update(result)
        try:
            state.history.add(result.city, result.districts)
        except Exception as exc:  # a full disk must not stop the engine; say it and go on
            log.warning("index history not written: %s", exc)
        if state.hub.clients:
            state.hub.publish("tick", self._tick_event(ctx, changed))
        return []

    def _tick_event(self, ctx: LiveContext, changed: Any) -> dict[str, Any]:
        state = self.state
        assert state is not None
        view = state.view
        event: dict[str, Any] = view.index_payload()
        if len(changed) > FULL_CODES_SHARE * max(state.net.n_segments, 1):
            event["codes"] = view.codes_text()
        else:
            event["changed"] = {"rows": changed.tolist(), "codes": view.codes_text(changed)}
        event["top"] = view.top[:10]
        c = ctx.pipeline.counters
        event["counters"] = {
            "accepted": c.accepted,
            "rejected": c.rejected,
            "ticks": c.ticks,
            "last_tick_ms": round(c.last_tick_s * 1000.0, 2),
        }
        incidents = getattr(ctx.pipeline, "incident_records", None)
        event["incidents"] = _jsonable(incidents()) if incidents is not None else None
        book = ctx.shared.get("closures")
        event["closures"] = _jsonable(book.list()) if book is not None else None
        return event

    async def stop(self) -> None:
        if self.state is not None:
            self.state.hub.close()
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.state is not None:
            self.state.history.close()


def _to_stderr(text: str) -> None:
    print(f"roadpulse: {text}", file=sys.stderr, flush=True)
