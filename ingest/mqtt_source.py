"""Live detector readings from an MQTT broker, surviving broker restarts.

Two network backends feed the same parser. The hot path is **gmqtt** (given an `MqttEndpoint`):
its receive loop parses every packet of a 64 KiB read synchronously, and this source parses each
reading right there into plain rows, handing them to ``on_result`` as one `ParseResult` per event
loop turn (``benchmarks/bench_mqtt_receive.py`` measured gmqtt at about 2x paho-mqtt and 5x aiomqtt). The
aiomqtt backend (given a factory of ``aiomqtt.Client``) is kept for callers that have one.

Overload policy: nothing accepted is dropped inside the process. Readings are parsed as they are
read, and the rows of one read are passed on before the next read; while ``on_result`` (the engine)
is busy, nothing is read, so TCP backpressure leaves the messages queued at the broker, in our
persistent session (bounded there by the broker's ``max_queued_messages``). When one turn gathers
more than ``max_pending_readings`` rows they are handed on at once (``early_flushes`` counts it).

Usage with aiomqtt (the wiring supplies the client factory from its configuration)::

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
from typing import Any, Self

import aiomqtt

from congestion.types import ReadingBatch
from ingest.binary_batch import BINARY_TOPIC_SUFFIX
from ingest.gmqtt_client import close_gmqtt, connect_error_text, connect_gmqtt, lean_publish_handler
from ingest.mqtt_endpoint import MqttEndpoint
from ingest.parse import ParseResult, ReadingParser, Row, _batch_of_rows
from ingest.rejections import Rejection

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
        client_factory: Callable[[], aiomqtt.Client] | MqttEndpoint,
        parser: ReadingParser,
        on_result: Callable[[ParseResult], None],
        *,
        prefix: str = "traffic/",
        qos: int = 1,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        on_status: Callable[[str], None] | None = None,
        max_pending_readings: int = 50_000,
        connect_timeout_s: float = 10.0,
        shared_group: str | None = None,
        topic_filters: tuple[str, str] | None = None,
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
        # The binary batch topic is two levels deep, so `+` does not match it: a second filter
        # that cannot overlap the first.
        self._binary_filter = f"{prefix}detectors/{BINARY_TOPIC_SUFFIX}"
        if topic_filters is not None:
            # E.g. the engine behind ingest workers: only ``{prefix}detectors/validated/bin``.
            self._topic_filter, self._binary_filter = topic_filters
        if shared_group is not None:
            # MQTT 5 shared subscription (mosquitto also grants it to 3.1.1 clients): the broker
            # spreads the messages over the group's members, each message to one of them.
            self._topic_filter = f"$share/{shared_group}/{self._topic_filter}"
            self._binary_filter = f"$share/{shared_group}/{self._binary_filter}"
        self._max_pending = max_pending_readings
        self._connect_timeout_s = connect_timeout_s
        self._rows: list[Row] = []
        self._batches: list[ReadingBatch] = []
        self._rejections: list[Rejection] = []
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending_acks: list[int] = []
        self._acks_scheduled = False
        self._ack_client: Any = None
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
        #: Times one event-loop turn gathered more than ``max_pending_readings`` rows.
        self.early_flushes = 0
        #: How long rows gather before they are handed to ``on_result`` (gmqtt backend).
        self.handover_interval_s = 0.005

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
        self._loop = asyncio.get_running_loop()
        run = self._run_gmqtt() if isinstance(self._client_factory, MqttEndpoint) else self._run()
        self._task = task_group.create_task(run, name=f"mqtt-reading-source {self._topic_filter}")
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
            self._flush()  # whatever the last read gathered still reaches the engine
            self._connected.clear()
            self._set_status("stopped")

    async def _run(self) -> None:
        """Connect, subscribe, read until the broker goes away; back off; repeat until cancelled."""
        factory = self._client_factory
        assert not isinstance(factory, MqttEndpoint)
        delay_s = self._backoff_initial_s
        connected_before = False
        while True:
            self._set_status("connecting")
            try:
                async with factory() as client:
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

    async def _run_gmqtt(self) -> None:
        """The gmqtt backend: same states, backoff and jitter as `_run`; gmqtt's own reconnect
        logic (fixed delay, no jitter) is switched off by `connect_gmqtt`."""
        import gmqtt

        endpoint = self._client_factory
        assert isinstance(endpoint, MqttEndpoint)
        delay_s = self._backoff_initial_s
        connected_before = False
        while True:
            self._set_status("connecting")
            suback: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

            def on_subscribe(_c: Any, _mid: int, granted: Any, _props: Any, fut: Any = suback) -> None:
                if not fut.done():
                    fut.set_result(granted)

            def prepare(client: Any) -> None:
                client.on_message = self._on_gmqtt_message
                client.on_subscribe = on_subscribe
                self._coalesce_pubacks(client)
                lean_publish_handler(client, self._on_gmqtt_message, self._pending_acks.append)

            client: Any = None
            try:
                client, lost = await connect_gmqtt(
                    endpoint, connect_timeout_s=self._connect_timeout_s, prepare=prepare
                )
                client.subscribe(
                    [
                        gmqtt.Subscription(self._topic_filter, qos=self._qos),
                        gmqtt.Subscription(self._binary_filter, qos=self._qos),
                    ]
                )
                granted = await asyncio.wait_for(suback, self._connect_timeout_s)
                if any(int(code) >= 0x80 for code in granted):
                    raise ConnectionRefusedError(
                        f"broker refused the subscription to {self._topic_filter}: {list(granted)}"
                    )
                if connected_before:
                    self.reconnects += 1
                connected_before = True
                delay_s = self._backoff_initial_s
                self._connected.set()
                self._set_status("connected")
                await lost.wait()
                self.last_error = f"connection to {endpoint.address} lost"
            except asyncio.CancelledError:
                if client is not None:
                    await close_gmqtt(client)
                raise
            except Exception as exc:  # every failure here means: back off, retry
                self.last_error = connect_error_text(endpoint, exc)
            if client is not None:
                await close_gmqtt(client)
            log.warning("MQTT source %s: %s; reconnecting", self._topic_filter, self.last_error)
            self._connected.clear()
            self._set_status("disconnected")
            await asyncio.sleep(delay_s * (0.5 + 0.5 * random.random()))
            delay_s = min(delay_s * 2.0, self._backoff_max_s)

    def _on_gmqtt_message(self, _client: Any, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
        """Parse at once into the pending rows; hand them on once per event-loop turn."""
        self.messages_received += 1
        try:
            batch = self._parser.parse_into(topic, payload, self._rows, self._rejections)
            if batch is not None:
                self._batches.append(batch)
        except Exception:
            self.handler_errors += 1
            log.exception("MQTT source: handling a message on %s failed; continuing", topic)
        loop = self._loop
        if loop is None:
            return 0
        if self._pending_acks and not self._acks_scheduled:
            # Acks go out at the end of this event-loop turn: the broker's in-flight window is
            # small (Mosquitto: 20 messages), so they must not wait for the hand-over.
            self._acks_scheduled = True
            loop.call_soon(self._send_acks)
        if len(self._rows) >= self._max_pending:
            self.early_flushes += 1
            self._flush()
        elif not self._flush_scheduled:
            # The rows go to the engine a few milliseconds later, gathered over several reads:
            # handing over a batch has a fixed cost (detector watch, engine buffers).
            self._flush_scheduled = True
            loop.call_later(self.handover_interval_s, self._flush)
        return 0  # PUBACK reason code: success

    def _coalesce_pubacks(self, client: Any) -> None:
        """Send the PUBACKs of one socket read as one write instead of one write (a syscall) each.

        gmqtt acknowledges a QoS 1 message before handing it to us (its "optimistic
        acknowledgement"); at tens of thousands of messages per second the per-message
        ``send`` is the largest single cost. The acks are written in `_flush`, at the end of the
        same event-loop turn, so the broker sees them a few hundred microseconds later at most.
        An ack lost with the connection only means a redelivery, which the parser refuses as a
        duplicate.
        """
        self._pending_acks = []  # acks owed on an earlier connection are void

        def send_puback(mid: int, reason_code: int = 0) -> None:
            self._pending_acks.append(mid)

        client._package_handler._send_puback = send_puback
        self._ack_client = client

    def _send_acks(self) -> None:
        self._acks_scheduled = False
        # Copy and clear in place: the publish handler holds this list's ``append``.
        mids = self._pending_acks[:]
        self._pending_acks.clear()
        client = self._ack_client
        if not mids or client is None:
            return
        data = b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in mids)
        try:
            client._connection.send_package(data)
        except Exception as exc:  # the connection is gone; the broker redelivers
            log.debug("MQTT source: could not send %d PUBACKs: %s", len(mids), exc)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._pending_acks:
            self._send_acks()
        rows, batches, rejections = self._rows, self._batches, self._rejections
        if not rows and not batches and not rejections:
            return
        self._rows, self._batches, self._rejections = [], [], []
        if rows:
            batches.append(_batch_of_rows(rows))
        batch = batches[0] if len(batches) == 1 else ReadingBatch.concat(batches) if batches else None
        try:
            self._on_result(ParseResult(batch if batch is not None else ReadingBatch.empty(), rejections))
        except Exception:
            self.handler_errors += 1
            log.exception("MQTT source: on_result failed for %d readings; continuing", len(rows))

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        for topic_filter in (self._topic_filter, self._binary_filter):
            granted = await client.subscribe(topic_filter, qos=self._qos)
            refused = [str(code) for code in granted if _is_failure(code)]
            if refused:
                # Connected but deaf is the worst state to be in: treat it as an outage, so that it
                # shows in the status and is retried with backoff (an ACL may be fixed meanwhile).
                reason = ", ".join(refused)
                raise aiomqtt.MqttError(f"broker refused the subscription to {topic_filter}: {reason}")

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
