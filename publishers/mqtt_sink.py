"""Deliver messages to an MQTT broker, riding out broker restarts.

``MqttSink`` is an ``async with`` object (in the manner of aiomqtt's ``Client``): entering it starts
the one publisher task it owns, leaving it drains the queue (bounded by ``drain_timeout_s``),
disconnects and stops the task, so nothing is orphaned.

Queue policy
    ``submit`` never blocks and never does I/O: it puts messages on a bounded queue that the
    publisher task empties. Retained messages **coalesce by topic**: a newer retained message on a
    topic replaces the queued one in its place in the queue, so while the broker is away only the
    latest state per segment or index is kept (and sent first when it returns) — however many ticks
    pass. Not-retained messages (snapshots, rejections) queue in order. When more than
    ``max_pending`` messages are queued, the **oldest not-retained** messages are dropped first;
    only when none is left does the oldest retained message go. Every dropped message is counted in
    ``dropped_total``; replaced retained messages are counted in ``coalesced_total`` (their topic's
    latest state still goes out, so nothing a subscriber would see is lost).

Delivery
    Two backends with the same guarantees: gmqtt (given an `MqttEndpoint`; the live engine's, chunks
    of ``chunk_messages`` PUBLISH packets per socket write) and aiomqtt (given a factory of clients;
    one awaited publish per message). A message counts as published (``published_total``) for QoS 0
    once the broker has handled it — after each chunk (gmqtt) or batch (aiomqtt) an UNSUBSCRIBE of a
    filter never subscribed is sent, and the broker answers requests of one connection in order —
    and for QoS 1/2 once the broker acknowledged it. Messages whose publish fails or is interrupted
    by a lost connection go back to the front of the queue — retained ones only if no newer message
    for their topic is queued — and are sent after reconnection (so a message cut off mid-send may
    arrive twice; for retained states that is harmless). QoS 0 packets the kernel accepted in the
    instant before the broker died cannot be told apart from delivered ones; and a broker restarted
    *without persistence* has forgotten every retained message. Callers that need the broker's
    retained state complete after a reconnect should republish in full on the ``connected`` status
    (e.g. ``TickMessages.for_tick(..., full=True)``).

Reconnection
    On a lost or refused connection the task waits (exponential backoff from
    ``backoff_initial_s`` to ``backoff_max_s``, with jitter so a fleet of engines does not stampede
    a recovering broker) and connects again with a fresh client from ``client_factory``.
    ``reconnects`` counts successful connections after the first.

``submit`` must be called from the event loop that entered the sink.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self

import aiomqtt

from ingest.gmqtt_client import close_gmqtt, connect_gmqtt
from ingest.mqtt_endpoint import MqttEndpoint

from ._gmqtt_publish import BARRIER_FILTER, GmqttPublisher
from .message import Message

log = logging.getLogger(__name__)


def _gmqtt_errors() -> type[BaseException]:
    try:
        from gmqtt.mqtt.handler import MQTTConnectError
    except ImportError:  # gmqtt is optional for the aiomqtt backend
        return OSError
    return MQTTConnectError


#: Errors that mean "the connection is gone or unusable": reconnect, keep the messages.
#: (gmqtt's refusals, e.g. a CONNACK "not authorised", are ``MQTTConnectError``.)
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (aiomqtt.MqttError, OSError, _gmqtt_errors())


class MqttSink:
    """Publishes submitted messages through clients from ``client_factory``, reconnecting as needed.

    ``client_factory`` is an `MqttEndpoint` (the fast gmqtt backend, see ``_gmqtt_publish``), or
    is called once per connection attempt, inside the running event loop, and returns either an
    `MqttEndpoint` or a fresh (not yet entered) ``aiomqtt.Client`` (one awaited publish per
    message, ``publish_concurrency`` at a time). ``on_status`` receives one line of
    text for each connection change (``"mqtt sink: connected"``, ``"mqtt sink: connection lost
    (…); retrying in 1.2 s"``, …), for a log or a status screen.
    """

    def __init__(
        self,
        client_factory: MqttEndpoint | Callable[[], aiomqtt.Client | MqttEndpoint],
        *,
        max_pending: int = 1_000_000,
        on_status: Callable[[str], None] | None = None,
        publish_concurrency: int = 32,
        chunk_messages: int = 2000,
        drain_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        if publish_concurrency < 1:
            raise ValueError(f"publish_concurrency must be >= 1, got {publish_concurrency}")
        if chunk_messages < 1:
            raise ValueError(f"chunk_messages must be >= 1, got {chunk_messages}")
        self._client_factory = client_factory
        self.max_pending = max_pending
        self._on_status = on_status
        # aiomqtt awaits each publish separately; keeping a few dozen in flight lets the socket
        # writes batch up (measured 3-5x the rate of one at a time). Hundreds are slower again:
        # aiomqtt scans all its pending calls on each publish.
        self.publish_concurrency = publish_concurrency
        # gmqtt backend: messages per socket write. Between chunks the event loop runs other
        # work (the reading source), so a 10,000-message tick does not stall ingest.
        self.chunk_messages = chunk_messages
        self.drain_timeout_s = drain_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._rng = rng if rng is not None else random.Random()

        self.published_total = 0
        self.dropped_total = 0
        self.coalesced_total = 0
        self.reconnects = 0

        # Queue: retained messages keyed by topic (so a newer one replaces the queued one in its
        # place), not-retained ones by a sequence number. ``_transient_keys`` holds those numbers
        # in queue order, so the oldest not-retained message is found without scanning.
        self._pending: OrderedDict[str | int, Message] = OrderedDict()
        self._transient_keys: deque[int] = deque()
        self._next_key = 0

        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._connected = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    # -- public -----------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Messages queued and not yet handed to the client."""
        return len(self._pending)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def submit(self, messages: Iterable[Message]) -> None:
        """Queue ``messages`` for publishing; returns at once (see the module doc for the policy)."""
        if self._task is None or self._closing:
            raise RuntimeError("MqttSink.submit() outside its `async with` block")
        if self._task.done():
            # The publisher task died of a bug; surface it here rather than queue forever.
            raise RuntimeError("MqttSink publisher task has stopped") from self._task.exception()
        pending = self._pending
        for message in messages:
            if message.retain:
                if message.topic in pending:
                    self.coalesced_total += 1
                pending[message.topic] = message
            else:
                key = self._next_key
                self._next_key += 1
                pending[key] = message
                self._transient_keys.append(key)
        self._enforce_capacity()
        if pending:
            self._idle.clear()
            self._wakeup.set()

    async def wait_connected(self) -> None:
        """Return once the sink is connected to the broker."""
        await self._connected.wait()

    async def flush(self) -> None:
        """Return once everything submitted so far has been published (or dropped)."""
        await self._idle.wait()

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError("MqttSink can be entered only once")
        self._task = asyncio.create_task(self._run(), name="roadpulse-mqtt-sink")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Drain what is queued (at most ``drain_timeout_s``), disconnect, stop the task."""
        task = self._task
        assert task is not None
        self._closing = True
        self._wakeup.set()
        try:
            await asyncio.wait({task}, timeout=self.drain_timeout_s)
        finally:
            if not task.done():
                task.cancel()
            # Wait for the task to finish cancelling (it disconnects on the way out).
            await asyncio.wait({task})
        left = len(self._pending)
        if left:
            self.dropped_total += left
            log.warning(
                "mqtt sink: %d messages not delivered within %.1f s of shutdown", left, self.drain_timeout_s
            )
            self._pending.clear()
            self._transient_keys.clear()
        self._connected.clear()
        self._status("mqtt sink: closed")
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error

    # -- the publisher task -------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        connected_before = False
        while not (self._closing and not self._pending):
            error, was_connected = await self._session(connected_before)
            if error is None:
                return
            connected_before = connected_before or was_connected
            failures = 0 if was_connected else failures + 1
            delay = self._backoff(failures)
            what = "connection lost" if was_connected else "cannot connect"
            self._status(f"mqtt sink: {what} ({_describe(error)}); retrying in {delay:.1f} s")
            await asyncio.sleep(delay)

    async def _session(self, connected_before: bool) -> tuple[BaseException | None, bool]:
        """One connection: publish until closing and drained (→ None) or until it breaks
        (→ the error). Also tells whether the connection was established at all."""
        error: BaseException | None = None
        connected = False

        def on_connected() -> None:
            nonlocal connected
            connected = True
            if connected_before:
                self.reconnects += 1
            self._connected.set()
            self._status("mqtt sink: reconnected" if connected_before else "mqtt sink: connected")

        try:
            target = self._client_factory() if callable(self._client_factory) else self._client_factory
            if isinstance(target, MqttEndpoint):
                await self._session_gmqtt(target, on_connected)
            else:
                await self._session_aiomqtt(target, on_connected)
        except* _CONNECTION_ERRORS as group:
            error = _first_leaf(group)
        finally:
            self._connected.clear()
        return error, connected

    async def _session_aiomqtt(self, client: aiomqtt.Client, on_connected: Callable[[], None]) -> None:
        async with client:
            # Keep aiomqtt from warning about the publishes we deliberately keep in flight.
            client.pending_calls_threshold = max(client.pending_calls_threshold, self.publish_concurrency + 1)
            on_connected()
            async with asyncio.TaskGroup() as tasks:
                watcher = tasks.create_task(_raise_on_disconnect(client))
                await self._pump(client)
                watcher.cancel()

    async def _session_gmqtt(self, endpoint: MqttEndpoint, on_connected: Callable[[], None]) -> None:
        publisher = GmqttPublisher()
        client, lost = await connect_gmqtt(
            endpoint, connect_timeout_s=self.connect_timeout_s, prepare=publisher.prepare
        )
        try:
            on_connected()
            await self._pump_gmqtt(publisher, lost, endpoint)
        finally:
            publisher.abandon()
            await close_gmqtt(client)

    async def _pump(self, client: aiomqtt.Client) -> None:
        """Publish queued messages until closing with an empty queue."""
        while True:
            if not self._pending:
                self._idle.set()
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._take(self.publish_concurrency)
            await self._publish(client, batch)

    async def _publish(self, client: aiomqtt.Client, batch: list[Message]) -> None:
        """Publish ``batch`` concurrently; put back what was not delivered, then raise the first
        connection error, if any."""
        sends = [
            asyncio.ensure_future(client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain))
            for m in batch
        ]
        # A QoS 0 publish "succeeds" once written; the broker has handled it only when a later
        # request on the same connection is answered (the gmqtt backend's barrier, likewise).
        handled = False
        barrier_error: BaseException | None = None
        try:
            await asyncio.gather(*sends, return_exceptions=True)
            try:
                if any(not m.qos for m in batch):
                    await client.unsubscribe(BARRIER_FILTER)
                handled = True
            except _CONNECTION_ERRORS as exc:
                barrier_error = exc
        finally:
            # Also reached when the connection watcher cancels us mid-batch: sort out what went.
            undelivered: list[Message] = []
            first_error: BaseException | None = barrier_error
            for message, send in zip(batch, sends, strict=True):
                if not send.done() or send.cancelled():
                    send.cancel()
                    undelivered.append(message)
                    continue
                error = send.exception()
                if error is None and not message.qos and not handled:
                    undelivered.append(message)  # written, but the broker may not have it
                elif error is None:
                    self.published_total += 1
                elif isinstance(error, _CONNECTION_ERRORS):
                    undelivered.append(message)
                    first_error = first_error or error
                else:
                    # Not a connection problem (e.g. paho refusing a malformed topic): retrying
                    # cannot help, so drop it loudly rather than block the queue.
                    self.dropped_total += 1
                    log.error("mqtt sink: dropped message on %r: %r", message.topic, error)
            self._requeue(undelivered)
        if first_error is not None:
            raise first_error

    async def _pump_gmqtt(
        self, publisher: GmqttPublisher, lost: asyncio.Event, endpoint: MqttEndpoint
    ) -> None:
        """Publish queued messages in chunks until closing with an empty queue."""
        while True:
            if lost.is_set():
                raise ConnectionResetError(f"connection to {endpoint.address} lost")
            if not self._pending:
                self._idle.set()
                if self._closing:
                    return
                self._wakeup.clear()
                await _first_of(self._wakeup, lost)
                continue
            await self._publish_gmqtt(publisher, self._take(self.chunk_messages), lost, endpoint)

    async def _publish_gmqtt(
        self, publisher: GmqttPublisher, batch: list[Message], lost: asyncio.Event, endpoint: MqttEndpoint
    ) -> None:
        """Write ``batch`` in one go and wait until the broker has handled it (a barrier; QoS 1/2:
        acknowledged); put back what was not delivered, then raise if the connection was lost."""
        dropped: set[int] = set()  # positions in batch
        for i, why in publisher.write(batch):
            dropped.add(i)
            log.error("mqtt sink: dropped message on %r: %s", batch[i].topic, why)
        acks = [(i, publisher.publish_acked(m)) for i, m in enumerate(batch) if m.qos]
        barrier = publisher.barrier()
        delivered: set[int] = set()
        try:
            await _all_or_lost([barrier, *(f for _, f in acks)], lost)
            if barrier.done() and not barrier.cancelled() and barrier.exception() is None:
                # The broker has handled every QoS 0 packet of the chunk.
                delivered.update(i for i, m in enumerate(batch) if not m.qos and i not in dropped)
        finally:
            # Also reached when we are cancelled mid-wait: sort out what went.
            for i, future in acks:
                if not future.done() or future.cancelled():
                    continue
                error = future.exception()
                if error is None:
                    delivered.add(i)
                else:  # the broker refused it (MQTT 5 reason code) or gmqtt could not build it
                    dropped.add(i)
                    log.error("mqtt sink: dropped message on %r: %s", batch[i].topic, error)
            self.published_total += len(delivered)
            self.dropped_total += len(dropped)
            self._requeue([m for i, m in enumerate(batch) if i not in delivered and i not in dropped])
        if lost.is_set():
            raise ConnectionResetError(f"connection to {endpoint.address} lost")

    # -- queue --------------------------------------------------------------------------------------

    def _take(self, limit: int) -> list[Message]:
        batch: list[Message] = []
        while self._pending and len(batch) < limit:
            key, message = self._pending.popitem(last=False)
            if isinstance(key, int):
                self._transient_keys.popleft()
            batch.append(message)
        return batch

    def _requeue(self, messages: list[Message]) -> None:
        """Put undelivered messages back at the front of the queue, in their original order."""
        pending = self._pending
        for message in reversed(messages):
            if message.retain:
                if message.topic in pending:
                    # A newer state for this topic was submitted meanwhile; it supersedes this one.
                    self.coalesced_total += 1
                    continue
                pending[message.topic] = message
                pending.move_to_end(message.topic, last=False)
            else:
                key = self._next_key
                self._next_key += 1
                pending[key] = message
                pending.move_to_end(key, last=False)
                self._transient_keys.appendleft(key)
        self._enforce_capacity()

    def _enforce_capacity(self) -> None:
        excess = len(self._pending) - self.max_pending
        if excess <= 0:
            return
        dropped = 0
        while excess > 0 and self._transient_keys:
            del self._pending[self._transient_keys.popleft()]
            excess -= 1
            dropped += 1
        while excess > 0:
            # Only retained messages left, each the latest for its topic: drop the oldest.
            self._pending.popitem(last=False)
            excess -= 1
            dropped += 1
        self.dropped_total += dropped
        log.warning("mqtt sink: queue over %d messages, dropped the %d oldest", self.max_pending, dropped)

    # -- helpers ------------------------------------------------------------------------------------

    def _backoff(self, failures: int) -> float:
        """Delay before the next attempt: doubling per failure, capped, with "equal jitter"
        (half fixed, half random) so that it never collapses to zero."""
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** min(failures, 30))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _status(self, text: str) -> None:
        if self._on_status is None:
            log.info("%s", text)
            return
        try:
            self._on_status(text)
        except Exception:  # a broken status display must not stop publishing
            log.exception("mqtt sink: on_status callback failed")


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _describe(error: BaseException) -> str:
    """The error and its cause: aiomqtt wraps the socket error in a generic "Disconnected…"."""
    cause = error.__cause__
    return f"{error}: {cause}" if cause is not None and str(cause) else str(error)


async def _raise_on_disconnect(client: aiomqtt.Client) -> None:
    """Raise ``MqttError`` when the connection drops.

    aiomqtt reports a lost connection through its message iterator; the sink subscribes to nothing,
    so iterating just waits for that — and notices a dead broker even while the queue is empty.
    """
    async for _ in client.messages:
        pass


async def _first_of(event: asyncio.Event, other: asyncio.Event) -> None:
    """Wait until either event is set."""
    waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(other.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def _all_or_lost(futures: list[asyncio.Future[None]], lost: asyncio.Event) -> None:
    """Wait until every future is done or ``lost`` is set."""
    everything = asyncio.ensure_future(asyncio.wait(futures))
    losing = asyncio.ensure_future(lost.wait())
    try:
        await asyncio.wait([everything, losing], return_when=asyncio.FIRST_COMPLETED)
    finally:
        everything.cancel()
        losing.cancel()
