"""A real HTTP receiver for push tests: an aiohttp server in its own thread and event loop.

It misbehaves on demand — answers 500, 429 with ``Retry-After``, 400, never answers (the client
times out), drops the connection — can be stopped and started again on the same port, dedupes by
``Idempotency-Key`` as a careful receiver would, and verifies Amap signatures when given the
private key. Every request that reached a handler is recorded.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from publishers import amap
from roadpulse.brokers.mosquitto import free_port


@dataclass
class Received:
    idempotency_key: str
    body: bytes
    headers: dict[str, str]
    at: float
    signature_ok: bool | None = None
    form: dict[str, str] = field(default_factory=dict)


#: A behaviour maps the n-th request (0-based, over the receiver's life) to an action:
#: "ok", "500", "429", "400", "hang", "drop" (no answer, not applied), "ack_lost" (applied, no answer).
Behaviour = Callable[[int, str], str]



class Receiver:
    def __init__(self, *, private_key: str | None = None, retry_after_s: int = 1) -> None:
        self.port = free_port()
        self.private_key = private_key
        self.retry_after_s = retry_after_s
        self.behaviour: Behaviour = lambda n, key: "ok"
        self.accepted: list[Received] = []  # first delivery of each idempotency key, in order
        self.duplicates: list[Received] = []  # deliveries of a key already accepted
        self.requests = 0
        self.actions: list[str] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/push"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)

    def close(self) -> None:
        self.stop()
        asyncio.run_coroutine_threadsafe(self._cancel_handlers(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/push", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()

    async def _cancel_handlers(self) -> None:
        """Cancel handlers still running (a "hang" whose client gave up), so the loop stops clean."""
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the handler ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        key = request.headers.get("Idempotency-Key", "")
        with self._lock:
            n = self.requests
            self.requests += 1
        action = self.behaviour(n, key)
        self.actions.append(action)
        if action == "500":
            return web.Response(status=500, text="try later")
        if action == "429":
            return web.Response(status=429, headers={"Retry-After": str(self.retry_after_s)})
        if action == "400":
            return web.Response(status=400, text="bad item")
        if action == "hang":
            await asyncio.sleep(3600)
        if action == "drop":
            assert request.transport is not None
            request.transport.abort()  # the connection dies with no answer
            raise ConnectionResetError("dropped on purpose")
        item = Received(key, body, dict(request.headers), time.monotonic())
        if self.private_key is not None:
            form = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            item.form = form
            item.signature_ok = amap.verify(form, self.private_key)
            if not item.signature_ok:
                return web.Response(status=403, text="bad signature")
        with self._lock:
            if key in self._seen:
                self.duplicates.append(item)
            else:
                self._seen.add(key)
                self.accepted.append(item)
        if action == "ack_lost":  # applied, but the answer never reaches the sender: it will retry
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("answer lost on purpose")
        return web.Response(status=200, text="ok")

    # -- helpers for assertions -----------------------------------------------------------------

    def accepted_keys(self) -> list[str]:
        with self._lock:
            return [r.idempotency_key for r in self.accepted]

    def wait_until(self, predicate: Callable[[Receiver], Any], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.02)
        raise AssertionError(f"receiver condition not met in {timeout_s} s; accepted {self.accepted_keys()}")
