"""A small MQTT broker in pure Python, for machines without Mosquitto.

:class:`EmbeddedBroker` serves MQTT 3.1, 3.1.1 and 5.0 on a background thread with its own
asyncio event loop, so synchronous code, paho-mqtt's network thread and other event loops
(aiomqtt in a test) can all use it.  It is meant for the demo and the test suite, not for
production.

Supported: CONNECT/CONNACK, PUBLISH at QoS 0, 1 and 2 (delivered at min(publish QoS,
subscription QoS)), SUBSCRIBE/UNSUBSCRIBE with ``+``/``#`` wildcards (``$`` topics hidden from
leading wildcards), retained messages (an empty retained payload clears the topic), will
messages, PINGREQ, DISCONNECT, keepalive timeouts (1.5 x keepalive), a maximum packet size, and
persistent sessions (subscriptions plus queued QoS 1/2 messages, resent after reconnect).
MQTT 5: properties pass through on PUBLISH (user properties, content type, response topic,
correlation data, payload format, message expiry), session expiry interval, receive maximum,
client maximum packet size, subscription identifiers, No Local, Retain As Published, Retain
Handling, ``$share/{group}/{filter}`` shared subscriptions, assigned client identifiers and
reason codes on SUBACK/UNSUBACK/DISCONNECT.

Simplifications, by design:

* No authentication or ACLs: every client is accepted (like ``allow_anonymous true``).
* State is in memory only; :meth:`EmbeddedBroker.restart` keeps it (like Mosquitto with
  persistence) but :meth:`EmbeddedBroker.stop` loses it.
* Persistent sessions queue at most ``max_queued_messages`` QoS 1/2 messages; QoS 0 messages
  are not queued for offline clients (Mosquitto's default too).
* MQTT 5 message expiry is passed through but not enforced; will delay intervals are ignored
  (the will is published as soon as the connection drops); topic aliases, AUTH packets and
  server redirection are not supported (no Topic Alias Maximum is advertised, so clients do
  not send aliases).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

from ._connection import Connection
from ._state import BrokerState

log = logging.getLogger("roadpulse.brokers.embedded")

DEFAULT_MAX_PACKET_SIZE = 16 * 1024 * 1024
DEFAULT_MAX_QUEUED_MESSAGES = 100_000
_START_TIMEOUT_S = 10.0


class EmbeddedBroker:
    """An in-process MQTT broker listening on ``host:port`` (port 0: any free port)."""

    kind = "embedded"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES,
    ) -> None:
        self._host = host
        self._port = port
        self._max_packet_size = max_packet_size
        self._max_queued_messages = max_queued_messages
        self._state = BrokerState(max_queued_messages=max_queued_messages)
        self._connections: set[Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    @property
    def host(self) -> str:
        """Address the broker listens on."""
        return self._host

    @property
    def port(self) -> int:
        """TCP port the broker listens on (the real one once started, if 0 was asked for)."""
        return self._port

    @property
    def running(self) -> bool:
        """Whether the broker is serving."""
        return self._server is not None

    def __repr__(self) -> str:
        return f"EmbeddedBroker({self._host!r}, {self._port})"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving; returns ``self``.  Raises ``OSError`` if the port cannot be bound."""
        if self._server is not None:
            return self
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=f"mqtt-broker-{self._port}", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._call(self._listen())
        except BaseException:
            self._shutdown_loop()
            raise
        log.info("embedded MQTT broker listening on %s:%d", self._host, self._port)
        return self

    def stop(self) -> None:
        """Stop serving, drop every client and forget all state.  Safe to call twice."""
        if self._loop is None:
            return
        try:
            self._call(self._close(), timeout=5.0)
        finally:
            self._shutdown_loop()
            self._state.log_drops()
            self._state = BrokerState(max_queued_messages=self._max_queued_messages)

    def kill(self) -> None:
        """As when a broker process is killed outright: every client dropped and, the embedded
        broker having no disk, nothing kept. ``start()`` serves again on the same port."""
        self.stop()

    def restart(self) -> None:
        """Drop every client and listen again on the same port, keeping retained messages and
        sessions -- what clients see when a persistent broker restarts."""
        if self._loop is None:
            raise RuntimeError("broker is not running")
        self._call(self._close())
        self._call(self._listen())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- on the broker thread ---------------------------------------------------------------

    async def _listen(self) -> None:
        def factory() -> Connection:
            return Connection(self._state, self._connections, max_packet_size=self._max_packet_size)

        loop = asyncio.get_running_loop()
        # reuse_address lets restart() bind the same port while old sockets sit in TIME_WAIT.
        self._server = await loop.create_server(factory, self._host, self._port, reuse_address=True)
        self._port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self._connections):
            conn.abort()
        # Let the aborted connections run connection_lost, so sessions are detached before
        # anyone can reconnect.
        for _ in range(100):
            if not self._connections:
                break
            await asyncio.sleep(0.001)

    def _call(self, coro: Coroutine[Any, Any, None], timeout: float = _START_TIMEOUT_S) -> None:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.result(timeout)

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5.0)
        if not loop.is_running():
            loop.close()
