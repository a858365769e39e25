"""One client connection of the embedded broker: MQTT 3.1, 3.1.1 and 5.0 on the wire.

An :class:`asyncio.Protocol` rather than streams: parsing straight out of ``data_received`` and
batching writes once per loop iteration is what lets a pure-Python broker move tens of
thousands of small messages a second.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from . import _codec as c
from ._codec import MalformedPacketError, Reader, packet
from ._state import BrokerState, Message, Outgoing, Session, Subscription
from ._topics import split_shared, valid_topic_filter, valid_topic_name

log = logging.getLogger("roadpulse.brokers.embedded")

# A client must send CONNECT this soon after the TCP connection opens.
CONNECT_TIMEOUT_S = 10.0
# Beyond this much unsent data a subscriber is too slow: its QoS 0 messages are dropped
# (QoS 1/2 are bounded by the receive window and the session queue instead).
SLOW_CONSUMER_BYTES = 32 * 1024 * 1024

# MQTT 5 reason codes the broker sends.
RC_MALFORMED = 0x81
RC_PROTOCOL_ERROR = 0x82
RC_UNSPECIFIED = 0x80
RC_BAD_AUTH_METHOD = 0x8C
RC_KEEPALIVE_TIMEOUT = 0x8D
RC_SESSION_TAKEN_OVER = 0x8E
RC_TOPIC_FILTER_INVALID = 0x8F
RC_TOPIC_NAME_INVALID = 0x90
RC_TOPIC_ALIAS_INVALID = 0x94
RC_PACKET_TOO_LARGE = 0x95
RC_NO_SUBSCRIPTION = 0x11
RC_DISCONNECT_WITH_WILL = 0x04


class ProtocolViolationError(Exception):
    """The client broke the protocol; the connection is closed with ``reason`` (MQTT 5)."""

    def __init__(self, message: str, reason: int = RC_PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.reason = reason


class Connection(asyncio.Protocol):
    """Protocol instance for one TCP connection."""

    def __init__(self, state: BrokerState, registry: set[Connection], *, max_packet_size: int) -> None:
        self.state = state
        self.registry = registry  # the server's live connections, so it can drop them all
        self.max_packet_size = max_packet_size
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.client_id = ""
        self.connected = False  # CONNECT accepted
        self.version = c.MQTT_V311
        self.keepalive = 0
        self.last_rx = 0.0
        self.receive_maximum = 0xFFFF  # client's MQTT 5 Receive Maximum (default: no limit)
        self.client_max_packet = c.MAX_REMAINING_LENGTH + 5
        self.will: Message | None = None
        self.closing = False
        self.suppress_will = False
        self._buf = bytearray()
        self._need = 0  # bytes _buf must hold before parsing is worth trying again
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.registry.add(self)
        self.last_rx = self.loop.time()
        self._timer = self.loop.call_later(CONNECT_TIMEOUT_S, self._connect_timeout)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_rx = self.loop.time()
        if self._buf:
            # Accumulate a partial packet cheaply; only copy once it can be complete.
            self._buf += data
            if len(self._buf) < self._need:
                return
            data = bytes(self._buf)
            self._buf = bytearray()
        try:
            pos = self._parse(data)
        except ProtocolViolationError as exc:
            log.info("closing client %r: %s", self.client_id, exc)
            self.close(exc.reason)
            return
        except MalformedPacketError as exc:
            log.info("closing client %r: malformed packet: %s", self.client_id, exc)
            self.close(RC_MALFORMED)
            return
        except Exception:  # a broker bug must cost one connection, never the broker
            log.exception("closing client %r: internal error", self.client_id)
            self.close(RC_UNSPECIFIED)
            return
        if pos < len(data) and not self.closing:
            self._buf = bytearray(data[pos:])

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
        self.registry.discard(self)
        session, self.session = self.session, None
        if session is not None and session.link is self:
            self.state.detach(session)
        if self.will is not None and not self.suppress_will:
            will, self.will = self.will, None
            self.state.publish(will)

    # -- parsing ----------------------------------------------------------------------------

    def _parse(self, data: bytes) -> int:
        """Handle every complete packet in ``data``; returns where the incomplete rest starts."""
        pos = 0
        n = len(data)
        while n - pos >= 2 and not self.closing:
            decoded = c.decode_varint(data, pos + 1)
            if decoded is None:
                self._need = n - pos + 1
                return pos
            length, body_start = decoded
            end = body_start + length
            if end - pos > self.max_packet_size:
                raise ProtocolViolationError(
                    f"packet of {end - pos} bytes exceeds the limit of {self.max_packet_size}",
                    RC_PACKET_TOO_LARGE,
                )
            if end > n:
                self._need = end - pos
                return pos
            self._dispatch(data[pos], data[body_start:end])
            pos = end
        self._need = 2
        return pos

    def _dispatch(self, first: int, body: bytes) -> None:
        ptype, flags = first >> 4, first & 0x0F
        session = self.session
        if session is None:
            if ptype != c.CONNECT:
                raise ProtocolViolationError("first packet is not CONNECT")
            self._on_connect(body)
        elif ptype == c.PUBLISH:
            self._on_publish(session, flags, body)
        elif ptype == c.PUBACK or ptype == c.PUBCOMP:
            self._check(flags == 0 and len(body) >= 2)
            self.state.acknowledged(session, int.from_bytes(body[:2], "big"))
        elif ptype == c.PUBREC:
            self._check(flags == 0 and len(body) >= 2)
            out = session.inflight.get(int.from_bytes(body[:2], "big"))
            if out is not None:
                out.released = True
            self.write(b"\x62\x02" + body[:2])  # PUBREL
        elif ptype == c.PUBREL:
            self._check(flags == 2 and len(body) >= 2)
            session.qos2_received.discard(int.from_bytes(body[:2], "big"))
            self.write(b"\x70\x02" + body[:2])  # PUBCOMP
        elif ptype == c.SUBSCRIBE:
            self._check(flags == 2)
            self._on_subscribe(session, Reader(body))
        elif ptype == c.UNSUBSCRIBE:
            self._check(flags == 2)
            self._on_unsubscribe(session, Reader(body))
        elif ptype == c.PINGREQ:
            self.write(b"\xd0\x00")
        elif ptype == c.DISCONNECT:
            self._on_disconnect(session, Reader(body))
        elif ptype == c.CONNECT:
            raise ProtocolViolationError("second CONNECT on one connection")
        else:
            # AUTH (no enhanced authentication here) or a server-to-client packet type.
            raise ProtocolViolationError(f"unexpected packet type {ptype}")

    @staticmethod
    def _check(condition: bool) -> None:
        if not condition:
            raise MalformedPacketError("bad fixed-header flags or length")

    # -- CONNECT ----------------------------------------------------------------------------

    def _on_connect(self, body: bytes) -> None:
        r = Reader(body)
        name, level = r.string(), r.byte()
        if (name, level) not in (("MQTT", c.MQTT_V311), ("MQTT", c.MQTT_V5), ("MQIsdp", c.MQTT_V31)):
            if name in ("MQTT", "MQIsdp"):
                # Spec 3.1.2.2: answer an unknown level with "unacceptable protocol version".
                self.write(b"\x20\x02\x00\x01")
                self.close(None)
                return
            raise ProtocolViolationError(f"not MQTT: protocol name {name!r}")
        self.version = level
        v5 = level == c.MQTT_V5
        flags = r.byte()
        if flags & 0x01:
            raise MalformedPacketError("reserved CONNECT flag set")
        self.keepalive = r.uint16()
        props: dict[int, Any] = r.properties()[0] if v5 else {}
        client_id = r.string()
        if flags & 0x04:
            will_props = r.properties(keep_forwarded=True)[1] if v5 else b""
            will_topic, will_payload = r.string(), r.binary()
            will_qos = (flags >> 3) & 0x03
            if will_qos == 3 or not valid_topic_name(will_topic):
                raise MalformedPacketError("bad will QoS or topic")
            will = Message(will_topic, will_payload, will_qos, bool(flags & 0x20), will_props, client_id)
        elif flags & 0x38:
            raise MalformedPacketError("will QoS/retain set without a will")
        else:
            will = None
        if flags & 0x80:
            r.string()  # user name: anonymous access, like mosquitto's `allow_anonymous true`
        if flags & 0x40:
            if not v5 and not flags & 0x80:
                raise MalformedPacketError("password without user name")
            r.binary()
        if r.remaining():
            raise MalformedPacketError("trailing bytes after CONNECT payload")

        if c.PROP_AUTH_METHOD in props:
            self._connack(False, RC_BAD_AUTH_METHOD, b"")
            self.close(None)
            return
        clean = bool(flags & 0x02)
        assigned = b""
        if not client_id:
            if not v5 and not clean:
                self._connack(False, 0x02, b"")  # 3.1.1: identifier rejected
                self.close(None)
                return
            client_id = "auto-" + uuid.uuid4().hex
            assigned = c.prop_string(c.PROP_ASSIGNED_CLIENT_ID, client_id)
        if v5:
            receive_max = props.get(c.PROP_RECEIVE_MAXIMUM, 0xFFFF)
            max_packet = props.get(c.PROP_MAXIMUM_PACKET_SIZE, self.client_max_packet)
            if receive_max == 0 or max_packet == 0:
                raise ProtocolViolationError("receive maximum or maximum packet size of 0")
            self.receive_maximum = receive_max
            self.client_max_packet = max_packet
            interval = props.get(c.PROP_SESSION_EXPIRY, 0)
            expiry_s: float | None = None if interval == 0xFFFFFFFF else float(interval)
        else:
            # MQTT 3.1.1: a persistent session lives as long as the broker (no expiry).
            expiry_s = 0.0 if clean else None
        if will is not None:
            will.publisher = client_id
        self.client_id = client_id
        self.will = will
        session, present = self.state.attach(self, client_id, clean=clean, expiry_s=expiry_s)
        self.session = session
        self.connected = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        server_props = assigned + c.prop_uint32(c.PROP_MAXIMUM_PACKET_SIZE, self.max_packet_size)
        self._connack(present, 0, server_props)
        if self.keepalive:
            self._timer = self.loop.call_later(self.keepalive * 1.5, self._check_keepalive)
        log.debug("client %r connected (MQTT level %d, session present %s)", client_id, level, present)
        if present:
            self.state.resume(session)

    def _connack(self, session_present: bool, code: int, props: bytes) -> None:
        if self.version == c.MQTT_V5:
            self.write(packet(0x20, bytes((int(session_present), code)) + c.encode_properties(props)))
        else:
            self.write(bytes((0x20, 0x02, int(session_present), code)))

    # -- PUBLISH ----------------------------------------------------------------------------

    def _on_publish(self, session: Session, flags: int, body: bytes) -> None:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise MalformedPacketError("PUBLISH with QoS 3")
        r = Reader(body)
        topic = r.string()
        packet_id = 0
        if qos:
            packet_id = r.uint16()
            if packet_id == 0:
                raise MalformedPacketError("packet id 0")
        props = b""
        if self.version == c.MQTT_V5:
            parsed, props = r.properties(keep_forwarded=True)
            # The CONNACK advertised no Topic Alias Maximum, so the client may not use aliases.
            if c.PROP_TOPIC_ALIAS in parsed:
                raise ProtocolViolationError("topic alias not allowed", RC_TOPIC_ALIAS_INVALID)
        if not valid_topic_name(topic):
            raise ProtocolViolationError(f"invalid topic name {topic!r}", RC_TOPIC_NAME_INVALID)
        message = Message(topic, r.take(r.remaining()), qos, bool(flags & 0x01), props, self.client_id)
        if qos == 2:
            # Deliver once per packet id until the PUBREL (spec 4.3.3, "method B").
            if packet_id not in session.qos2_received:
                session.qos2_received.add(packet_id)
                self.state.publish(message)
            self.write(b"\x50\x02" + packet_id.to_bytes(2, "big"))  # PUBREC
            return
        self.state.publish(message)
        if qos == 1:
            self.write(b"\x40\x02" + packet_id.to_bytes(2, "big"))  # PUBACK

    def send_publish(self, out: Outgoing, packet_id: int, dup: bool) -> bool:
        """Encode and queue one PUBLISH for this client (see :class:`._state.Link`)."""
        if self.closing or self.transport is None:
            return False
        if out.qos == 0 and self.transport.get_write_buffer_size() > SLOW_CONSUMER_BYTES:
            return False
        message = out.message
        header = 0x30 | (dup << 3) | (out.qos << 1) | out.retain
        variable = message.topic_bytes
        if out.qos:
            variable += packet_id.to_bytes(2, "big")
        if self.version == c.MQTT_V5:
            props = message.props
            if out.sub_ids:
                props += b"".join(c.prop_varint(c.PROP_SUBSCRIPTION_ID, i) for i in out.sub_ids)
            variable += c.encode_properties(props)
        length = len(variable) + len(message.payload)
        encoded = bytes((header,)) + c.encode_varint(length) + variable + message.payload
        if len(encoded) > self.client_max_packet:
            return False  # MQTT 5: discard what the client said it cannot receive
        self.write(encoded)
        return True

    def send_pubrel(self, packet_id: int) -> None:
        """Resend a PUBREL after a reconnect (see :class:`._state.Link`)."""
        self.write(b"\x62\x02" + packet_id.to_bytes(2, "big"))

    # -- SUBSCRIBE / UNSUBSCRIBE / DISCONNECT -------------------------------------------------

    def _on_subscribe(self, session: Session, r: Reader) -> None:
        v5 = self.version == c.MQTT_V5
        packet_id = r.uint16()
        sub_id = None
        if v5:
            ids = r.properties()[0].get(c.PROP_SUBSCRIPTION_ID)
            if ids:
                sub_id = ids[0]
                if sub_id == 0:
                    raise ProtocolViolationError("subscription identifier 0")
        if not r.remaining():
            raise ProtocolViolationError("SUBSCRIBE without topic filters")
        codes = bytearray()
        wants_retained: list[Subscription] = []
        while r.remaining():
            topic_filter, options = r.string(), r.byte()
            qos = options & 0x03
            retain_handling = (options >> 4) & 0x03
            if qos == 3 or retain_handling == 3 or options & (0xC0 if v5 else 0xFC):
                raise MalformedPacketError("bad subscription options")
            try:
                group, match_filter = split_shared(topic_filter)
            except ValueError:
                codes.append(RC_TOPIC_FILTER_INVALID if v5 else 0x80)
                continue
            if not valid_topic_filter(match_filter):
                codes.append(RC_TOPIC_FILTER_INVALID if v5 else 0x80)
                continue
            sub = Subscription(
                topic_filter,
                group,
                match_filter,
                qos,
                no_local=v5 and bool(options & 0x04) and group is None,
                retain_as_published=v5 and bool(options & 0x08),
                sub_id=sub_id,
            )
            is_new = self.state.subscribe(session, sub)
            codes.append(qos)
            # Retained messages go to new subscribers, never to shared ones (MQTT 5 4.8.2).
            if group is None and (retain_handling == 0 or (retain_handling == 1 and is_new)):
                wants_retained.append(sub)
        props = b"\x00" if v5 else b""
        self.write(packet(0x90, packet_id.to_bytes(2, "big") + props + bytes(codes)))
        for sub in wants_retained:
            self.state.send_retained(session, sub)

    def _on_unsubscribe(self, session: Session, r: Reader) -> None:
        v5 = self.version == c.MQTT_V5
        packet_id = r.uint16()
        if v5:
            r.properties()
        if not r.remaining():
            raise ProtocolViolationError("UNSUBSCRIBE without topic filters")
        codes = bytearray()
        while r.remaining():
            found = self.state.unsubscribe(session, r.string())
            codes.append(0 if found else RC_NO_SUBSCRIPTION)
        body = packet_id.to_bytes(2, "big") + (b"\x00" + bytes(codes) if v5 else b"")
        self.write(packet(0xB0, body))

    def _on_disconnect(self, session: Session, r: Reader) -> None:
        reason = 0
        if self.version == c.MQTT_V5 and r.remaining():
            reason = r.byte()
            if r.remaining():
                interval = r.properties()[0].get(c.PROP_SESSION_EXPIRY)
                if interval is not None:
                    session.expiry_s = None if interval == 0xFFFFFFFF else float(interval)
        if reason != RC_DISCONNECT_WITH_WILL:
            self.will = None  # a normal DISCONNECT discards the will (spec 3.14.4)
        self.close(None)

    # -- timers -----------------------------------------------------------------------------

    def _connect_timeout(self) -> None:
        if self.session is None:
            log.info("closing a connection that sent no CONNECT within %.0f s", CONNECT_TIMEOUT_S)
            self.close(None)

    def _check_keepalive(self) -> None:
        # One timer per keepalive period, re-armed from the last packet seen: cheaper than
        # rescheduling on every packet.
        limit = self.keepalive * 1.5
        idle = self.loop.time() - self.last_rx
        if idle >= limit:
            log.info("closing client %r: keepalive of %d s expired", self.client_id, self.keepalive)
            self.close(RC_KEEPALIVE_TIMEOUT)
        else:
            self._timer = self.loop.call_later(limit - idle, self._check_keepalive)

    # -- output and closing -----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes; everything queued in one loop iteration goes out in one write."""
        if self.closing:
            return
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def close(self, reason: int | None) -> None:
        """Close after sending what is queued, with an MQTT 5 DISCONNECT if ``reason`` is set."""
        if self.closing or self.transport is None:
            return
        if reason is not None and self.version == c.MQTT_V5 and self.connected:
            self._out.append(bytes((0xE0, 0x01, reason)))
        self._flush()
        self.closing = True
        self.transport.close()

    def close_taken_over(self) -> None:
        """Another connection took over this client id (see :class:`._state.Link`)."""
        self.session = None
        self.close(RC_SESSION_TAKEN_OVER)

    def abort(self) -> None:
        """Drop the connection at once, as a crashing broker would (no will is published)."""
        self.suppress_will = True
        self._out.clear()
        self.closing = True
        if self.transport is not None:
            self.transport.abort()
