"""The sink's fast publish path: many MQTT PUBLISH packets per socket write, on a gmqtt connection.

Why: a tick can publish 10,000 retained segment states. aiomqtt awaits every publish separately
(a task, an event and a timeout each: ~100-250 µs per message, seconds per tick on a loaded
machine); ``benchmarks/bench_mqtt_publish.py`` compares the clients. Here QoS 0 messages are
encoded straight into MQTT 3.1.1 PUBLISH packets (a few µs each), joined and written with one
``transport.write`` per chunk, followed by a *barrier*: an UNSUBSCRIBE of a filter we never
subscribed to, whose UNSUBACK (matched by packet id) the broker sends only after it has handled
every packet before it on this connection. So a chunk counts as published once the broker has
processed it — a stronger statement than "written to the socket", which is all QoS 0 gives paho
(and aiomqtt above it). QoS 1/2 messages go through gmqtt's own packet builder and count once
the broker's PUBACK (QoS 2: PUBREC) arrives.

gmqtt (already the hot path of the reading source) supplies the connection: TLS,
authentication, keepalive and the loss notification.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from typing import Any

from .message import Message

#: Longest topic name MQTT can carry (a 16-bit length).
_MAX_TOPIC_BYTES = 0xFFFF
#: The filter of the barrier's UNSUBSCRIBE: never subscribed to, so unsubscribing changes nothing.
BARRIER_FILTER = "roadpulse/sink-barrier/never-subscribed"
#: Largest remaining length MQTT can encode (four 7-bit groups).
_MAX_REMAINING = 268_435_455


class InvalidMessageError(ValueError):
    """A message no broker would take (e.g. a wildcard in the topic name): drop, do not retry."""


def encode_publish_qos0(topic: str, payload: bytes, retain: bool) -> bytes:
    """One MQTT 3.1.1 PUBLISH packet at QoS 0 (no packet id); `InvalidMessageError` for a bad topic."""
    name = topic.encode("utf-8")
    if not name or len(name) > _MAX_TOPIC_BYTES or "+" in topic or "#" in topic or "\x00" in topic:
        raise InvalidMessageError(
            f"invalid topic name {topic!r} (empty, too long, or a wildcard or NUL in it)"
        )
    remaining = 2 + len(name) + len(payload)
    if remaining > _MAX_REMAINING:
        raise InvalidMessageError(f"message on {topic!r} of {len(payload)} bytes exceeds MQTT's packet size")
    header = bytearray((0x31 if retain else 0x30,))
    while True:
        byte = remaining & 0x7F
        remaining >>= 7
        if remaining:
            header.append(byte | 0x80)
        else:
            header.append(byte)
            break
    return bytes(header) + len(name).to_bytes(2, "big") + name + payload


class GmqttPublisher:
    """Publishes on one connected gmqtt client; call `prepare` on the client before it connects."""

    def __init__(self) -> None:
        self._client: Any = None
        # Packet id → future resolved by the broker's PUBACK/PUBREC (QoS 1/2) or UNSUBACK (barrier).
        self._acks: dict[int, asyncio.Future[None]] = {}

    def prepare(self, client: Any) -> None:
        """Hook the acknowledgements of our QoS 1/2 publishes and barriers (before connecting)."""
        self._client = client
        handler = client._package_handler
        for name in ("_handle_puback_packet", "_handle_pubrec_packet", "_handle_unsuback_packet"):
            original = getattr(handler, name)

            def acknowledged(cmd: int, packet: bytes, original: Any = original) -> None:
                original(cmd, packet)
                (mid,) = struct.unpack("!H", packet[:2])
                future = self._acks.pop(mid, None)
                if future is not None and not future.done():
                    if len(packet) > 2 and packet[2] >= 0x80:  # MQTT 5 refusal; 3.1.1 has no code
                        future.set_exception(
                            InvalidMessageError(f"broker refused it (reason {packet[2]:#x})")
                        )
                    else:
                        future.set_result(None)

            setattr(handler, name, acknowledged)

    def write(self, messages: Sequence[Message]) -> list[tuple[int, InvalidMessageError]]:
        """Hand the QoS 0 ``messages`` to the connection in one write (they are published once a
        later `barrier` resolves); QoS 1/2 ones are left to `publish_acked`. Returns the positions of the
        messages refused before sending, with why.
        """
        packets: list[bytes] = []
        refused: list[tuple[int, InvalidMessageError]] = []
        for i, message in enumerate(messages):
            if message.qos:
                continue
            try:
                packets.append(encode_publish_qos0(message.topic, message.payload, message.retain))
            except InvalidMessageError as exc:
                refused.append((i, exc))
        if packets:
            # send_package also notes the time for gmqtt's keepalive.
            self._client._connection.send_package(b"".join(packets))
        return refused

    def publish_acked(self, message: Message) -> asyncio.Future[None]:
        """Send one QoS 1/2 message; the future resolves when the broker has acknowledged it."""
        import gmqtt

        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            packet = gmqtt.Message(message.topic, message.payload, qos=message.qos, retain=message.retain)
            mid, _ = self._client._connection.publish(packet)
        except (ValueError, TypeError) as exc:  # gmqtt refusing the topic or payload
            future.set_exception(InvalidMessageError(str(exc)))
            return future
        self._acks[mid] = future
        return future

    def barrier(self) -> asyncio.Future[None]:
        """A future resolved once the broker has handled everything written before this call."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        mid = self._client._connection.unsubscribe(BARRIER_FILTER)
        self._acks[mid] = future
        return future

    def abandon(self) -> None:
        """The connection is gone: nothing more will be acknowledged on it."""
        for future in self._acks.values():
            if not future.done():
                future.cancel()
        self._acks.clear()
