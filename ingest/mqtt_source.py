"""Live detector readings from an MQTT broker, surviving broker restarts.

Usage (the wiring supplies the client factory from its configuration)::

    def make_client() -> aiomqtt.Client:
        return aiomqtt.Client("broker", 1883, identifier="roadpulse-ingest", clean_session=False)

    async with MqttReadingSource(make_client, parser, on_result=engine_inbox.append) as source:
        await source.wait_connected()
        ...  # the source runs until the block exits

``identifier`` plus ``clean_session=False`` lets the broker keep the subscription and queue QoS 1
readings while the source reconnects; duplicates that such redelivery can cause are refused by the
parser (``duplicate``), so each reading is still accepted once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from types import TracebackType
from typing import Self

import aiomqtt

from ingest.parse import ParseResult, ReadingParser

log = logging.getLogger(__name__)

#: Values passed to ``on_status``, in the order a healthy source goes through them.
STATUSES: tuple[str, ...] = ("connecting", "connected", "disconnected", "stopped")


class MqttReadingSource:
    """An ``async with`` component: one task (in its own task group) that reads detector topics.

    It subscribes to ``{prefix}detectors/+`` and hands every message's `ParseResult` (accepted
    rows and rejections alike) to ``on_result``, in arrival order, on the event loop. When the
    broker goes away (`aiomqtt.MqttError`) it reconnects with exponential backoff and jitter,
    reporting ``connecting`` / ``connected`` / ``disconnected`` (and ``stopped`` on exit) through
    ``on_status``. A message that breaks the parser or ``on_result`` is logged and counted in
    ``handler_errors``; it never stops the source.

    ``client_factory`` must return a fresh, not yet entered `aiomqtt.Client` on each call: a
    client is used for one connection only, so a reconnect never inherits a half-closed one.
    """

    def __init__(
        self,
        client_factory: Callable[[], aiomqtt.Client],
        parser: ReadingParser,
        on_result: Callable[[ParseResult], None],
        *,
        prefix: str = "traffic/",
        qos: int = 1,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        if parser.prefix != prefix:
            # Otherwise every message would be refused as unknown_topic: fail at wiring time.
            raise ValueError(f"parser prefix {parser.prefix!r} differs from the source prefix {prefix!r}")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError(
                f"need 0 < backoff_initial_s <= backoff_max_s, got {backoff_initial_s} and {backoff_max_s}"
            )
        self._client_factory = client_factory
        self._parser = parser
        self._on_result = on_result
        self._on_status = on_status
        self._qos = qos
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        # One subscription, not two: `+` matches `batch` as well, and the parser routes
        # `{prefix}detectors/batch` by topic. Subscribing to `detectors/batch` too would make
        # brokers that deliver once per matching subscription (MQTT 3.1.1 allows it) hand us
        # every batch twice. `+` is one level, so our own `detectors/{id}/health` output is not
        # matched.
        self._topic_filter = f"{prefix}detectors/+"
        self._task_group: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._status = "stopped"

        #: Messages taken from the broker (whatever their fate in the parser).
        self.messages_received = 0
        #: Successful connections after the first one.
        self.reconnects = 0
        #: Messages whose handling raised (a bug in the parser or in ``on_result``).
        self.handler_errors = 0
        #: The last connection error, as text; None until one happens.
        self.last_error: str | None = None

    @property
    def topic_filter(self) -> str:
        return self._topic_filter

    @property
    def parser(self) -> ReadingParser:
        """The parser this source feeds (its counters are the accepted/rejected metrics)."""
        return self._parser

    @property
    def status(self) -> str:
        """One of `STATUSES`."""
        return self._status

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Return once the source is connected and subscribed (immediately if it is now)."""
        await self._connected.wait()

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise RuntimeError("MqttReadingSource is already running; it is not reentrant")
        task_group = asyncio.TaskGroup()
        await task_group.__aenter__()
        self._task_group = task_group
        self._task = task_group.create_task(self._run(), name=f"mqtt-reading-source {self._topic_filter}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task_group, task = self._task_group, self._task
        self._task_group = self._task = None
        if task is not None:
            task.cancel()
        try:
            if task_group is not None:
                await task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._connected.clear()
            self._set_status("stopped")

    async def _run(self) -> None:
        """Connect, subscribe, read until the broker goes away; back off; repeat until cancelled."""
        delay_s = self._backoff_initial_s
        connected_before = False
        while True:
            self._set_status("connecting")
            try:
                async with self._client_factory() as client:
                    await self._subscribe(client)
                    if connected_before:
                        self.reconnects += 1
                    connected_before = True
                    delay_s = self._backoff_initial_s  # a good connection resets the backoff
                    self._connected.set()
                    self._set_status("connected")
                    async for message in client.messages:
                        self._handle(message)
            except aiomqtt.MqttError as exc:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    # We are being stopped and the disconnect itself failed: stopping wins, or
                    # the loop would carry on and __aexit__ would wait for it forever.
                    raise asyncio.CancelledError from exc
                self.last_error = str(exc) or type(exc).__name__
                log.warning("MQTT source %s: %s; reconnecting", self._topic_filter, self.last_error)
            self._connected.clear()
            self._set_status("disconnected")
            # Equal jitter: somewhere in [delay/2, delay], so many engines restarted together do
            # not reconnect in lockstep, yet each still waits at least half the backoff.
            await asyncio.sleep(delay_s * (0.5 + 0.5 * random.random()))
            delay_s = min(delay_s * 2.0, self._backoff_max_s)

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        granted = await client.subscribe(self._topic_filter, qos=self._qos)
        refused = [str(code) for code in granted if _is_failure(code)]
        if refused:
            # Connected but deaf is the worst state to be in: treat it as an outage, so that it
            # shows in the status and is retried with backoff (an ACL may be fixed meanwhile).
            reason = ", ".join(refused)
            raise aiomqtt.MqttError(f"broker refused the subscription to {self._topic_filter}: {reason}")

    def _handle(self, message: aiomqtt.Message) -> None:
        self.messages_received += 1
        topic = message.topic.value
        try:
            payload = message.payload
            if not isinstance(payload, bytes):  # paho always gives bytes; stay safe if not
                payload = str(payload).encode() if payload is not None else b""
            self._on_result(self._parser.parse_message(topic, payload))
        except Exception:
            self.handler_errors += 1
            log.exception("MQTT source: handling a message on %s failed; continuing", topic)

    def _set_status(self, status: str) -> None:
        if status == self._status:
            return
        self._status = status
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:
                log.exception("MQTT source: on_status(%r) failed", status)


def _is_failure(code: object) -> bool:
    """A SUBACK entry that refuses the subscription: a paho ``ReasonCode`` or an int >= 0x80."""
    is_failure = getattr(code, "is_failure", None)
    if isinstance(is_failure, bool):
        return is_failure
    return isinstance(code, int) and code >= 0x80
