"""The live closures component: MQTT ``{prefix}closures/{id}/set`` in, retained closures out.

* Subscribes ``{prefix}closures/+/set`` (QoS 1, persistent session, its own MQTT client), so
  records sent while the engine is down are delivered when it is back. A JSON record creates or
  updates the closure (``closure_id`` may be omitted: the topic names it; a different one is
  refused); an empty payload clears it.
* Every change — from MQTT, from the Python API the HTTP service calls, or expiry — is published
  retained on ``{prefix}closures/{id}`` (the record with ``version`` and ``status``; cleared ones
  keep their topic with ``status: "cleared"``).
* A record that cannot be accepted is published on ``{prefix}rejected`` with the reason (e.g.
  ``segment_ids: unknown segment 'X9'``) and code ``bad_closure``; it never stops the engine.
* Puts the ``ClosureBook`` in ``ctx.shared["closures"]``, restores it from the store on start
  (closures that ended while the engine was down are cleared then) and checks start/end times
  every ``closures.check_every_s`` so expiry happens on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt

from ._encode import topic_level
from .closure_store import ClosureStore, ClosureStoreError, open_store
from .closures import BOOK_FIELDS, ClosureBook, ClosureError
from .message import Message

if TYPE_CHECKING:
    from roadpulse.components import LiveContext
    from roadpulse.config import Settings

log = logging.getLogger("roadpulse.closures")

MAX_PAYLOAD_BYTES = 256_000


def default_store_path() -> Path:
    """``$XDG_STATE_HOME/roadpulse/closures.sqlite`` (``~/.local/state`` when unset)."""
    import os

    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "roadpulse" / "closures.sqlite"


class ClosuresComponent:
    name = "closures"

    def __init__(self, settings: Settings, *, store: ClosureStore | None = None) -> None:
        cfg = settings["closures"]
        self.settings = settings
        self.prefix: str = settings["mqtt"]["prefix"]
        self.check_every_s = float(cfg["check_every_s"])
        self._store = store
        self._store_path = str(cfg["store"]) or str(default_store_path())
        self._dsn = str(cfg["dsn"])
        self.book: ClosureBook | None = None
        self.subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ctx: LiveContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    # -- component hooks ------------------------------------------------------------------------

    async def start(self, ctx: LiveContext) -> None:
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        store = self._store or open_store(path=self._store_path, dsn=self._dsn)
        self._store = store
        book = ClosureBook(ctx.network, store, clock=ctx.clock, on_closed_mask=ctx.pipeline.engine.set_closed)
        self.book = book
        book.start()  # before listening: a restore publishes everything just below
        book.add_listener(self._announce)
        ctx.shared["closures"] = book
        ctx.publish([self.closure_message(r) for r in book.list(include_cleared=True)])
        log.info("closures: %d restored (%d active)", len(book.list(include_cleared=True)), len(book.list()))
        self._tasks = [
            asyncio.create_task(self._subscribe(), name="closures-mqtt"),
            asyncio.create_task(self._expiry_loop(), name="closures-expiry"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._store is not None:
            self._store.close()

    # -- messages -------------------------------------------------------------------------------

    def closure_message(self, record: dict[str, Any]) -> Message:
        payload = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
        return Message(f"{self.prefix}closures/{topic_level(record['closure_id'])}", payload, True)

    def rejection(self, topic: str, reason: str, payload: bytes, *, code: str = "bad_closure") -> Message:
        assert self._ctx is not None
        body = {
            "topic": topic,
            "reason": reason,
            "code": code,
            "payload_excerpt": payload[:200].decode("utf-8", "replace"),
            "ts": self._ctx.clock(),
        }
        return Message(f"{self.prefix}rejected", json.dumps(body, ensure_ascii=False).encode(), False)

    def _announce(self, record: dict[str, Any]) -> None:
        """Book listener: publish the changed record (from whichever thread changed it)."""
        assert self._ctx is not None
        messages = [self.closure_message(record)]
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._ctx.publish, messages)
        else:
            self._ctx.publish(messages)

    # -- MQTT in --------------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        """Apply one ``closures/{id}/set`` message; refusals go to ``{prefix}rejected``."""
        assert self._ctx is not None and self.book is not None
        head, tail = f"{self.prefix}closures/", "/set"
        if not (topic.startswith(head) and topic.endswith(tail)) or len(topic) <= len(head) + len(tail):
            self._ctx.publish(
                [
                    self.rejection(
                        topic,
                        f"not a closures set topic; expected {head}{{id}}{tail}",
                        payload,
                        code="unknown_topic",
                    )
                ]
            )
            return
        closure_id = urllib.parse.unquote(topic[len(head) : -len(tail)])
        try:
            if not payload.strip():
                if self.book.clear(closure_id) is None:
                    raise ClosureError(f"closure_id: {closure_id!r} is not known; nothing to clear")
                return
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise ClosureError(f"payload of {len(payload)} bytes is larger than {MAX_PAYLOAD_BYTES}")
            try:
                record = json.loads(payload)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ClosureError(f"payload is not JSON: {exc}") from None
            if not isinstance(record, dict):
                raise ClosureError(f"a closure must be a JSON object, got {type(record).__name__}")
            given = record.setdefault("closure_id", closure_id)
            if given != closure_id:
                raise ClosureError(f"closure_id: {given!r} differs from the topic's {closure_id!r}")
            if retained and self._is_stale_replay(record):
                return
            self.book.set(record, source=str(record.get("source") or "operator"))
        except ClosureError as exc:
            self._ctx.publish([self.rejection(topic, str(exc), payload)])
        except ClosureStoreError as exc:
            log.error("%s", exc)
            self._ctx.publish([self.rejection(topic, f"not stored: {exc}", payload, code="store_error")])

    def _is_stale_replay(self, record: dict[str, Any]) -> bool:
        """A retained ``set`` the book already holds as cleared: replayed by the broker at
        (re)subscription, not a new instruction — do not resurrect the closure."""
        assert self.book is not None
        old = self.book.get(str(record["closure_id"]))
        if old is None or old["status"] != "cleared":
            return False
        try:
            clean = self.book.validate(record)
        except ClosureError:
            return False
        return {k: v for k, v in old.items() if k not in BOOK_FIELDS} == clean

    async def _subscribe(self) -> None:
        assert self._ctx is not None
        topic = f"{self.prefix}closures/+/set"
        backoff = 0.5
        make = self._ctx.client_factory(role="closures", persistent=True)
        while True:
            try:
                async with make() as client:
                    await client.subscribe(topic, qos=1)
                    self.subscribed.set()
                    backoff = 0.5
                    async for msg in client.messages:
                        raw = msg.payload
                        data = raw if isinstance(raw, bytes | bytearray) else str(raw or "").encode()
                        self.handle(str(msg.topic), bytes(data), retained=bool(msg.retain))
            except aiomqtt.MqttError as exc:
                self.subscribed.clear()
                log.warning("closures: MQTT connection lost (%s); reconnecting in %.1f s", exc, backoff)
                await asyncio.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, 30.0)

    async def _expiry_loop(self) -> None:
        assert self.book is not None and self._ctx is not None
        while True:
            await asyncio.sleep(self.check_every_s)
            try:
                self.book.tick(self._ctx.clock())
            except ClosureStoreError as exc:  # keep trying: the store may come back
                log.error("closures: %s", exc)
