"""MQTT 3.1.1 / 5.0 wire-format helpers shared by the embedded broker and the reachability probe.

Only what a broker needs: the fixed header's remaining-length varint, length-prefixed strings and
binary fields, and MQTT 5 property blocks.  Every decoder raises :class:`MalformedPacketError` on bad
input so a connection handler can catch one exception type and drop the offending client.
"""

from __future__ import annotations

from typing import Any

# Control packet types (the high nibble of the fixed header's first byte).
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14
AUTH = 15

MQTT_V31 = 3
MQTT_V311 = 4
MQTT_V5 = 5

# The largest value a 4-byte remaining-length varint can carry (spec 2.2.3).
MAX_REMAINING_LENGTH = 268_435_455

# MQTT 5 property identifiers, grouped by wire type (spec 2.2.2.2).
_BYTE_PROPS = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
_TWO_BYTE_PROPS = frozenset({0x13, 0x21, 0x22, 0x23})
_FOUR_BYTE_PROPS = frozenset({0x02, 0x11, 0x18, 0x27})
_STRING_PROPS = frozenset({0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F})
_BINARY_PROPS = frozenset({0x09, 0x16})
PROP_PAYLOAD_FORMAT = 0x01
PROP_MESSAGE_EXPIRY = 0x02
PROP_CONTENT_TYPE = 0x03
PROP_RESPONSE_TOPIC = 0x08
PROP_CORRELATION_DATA = 0x09
PROP_SUBSCRIPTION_ID = 0x0B
PROP_SESSION_EXPIRY = 0x11
PROP_ASSIGNED_CLIENT_ID = 0x12
PROP_AUTH_METHOD = 0x15
PROP_RECEIVE_MAXIMUM = 0x21
PROP_TOPIC_ALIAS = 0x23
PROP_USER_PROPERTY = 0x26
PROP_MAXIMUM_PACKET_SIZE = 0x27

# Properties of an incoming PUBLISH that the broker forwards unchanged to MQTT 5 subscribers
# (spec 3.3.2.3); topic aliases and subscription identifiers are per-connection and are not.
FORWARDED_PUBLISH_PROPS = frozenset(
    {
        PROP_PAYLOAD_FORMAT,
        PROP_MESSAGE_EXPIRY,
        PROP_CONTENT_TYPE,
        PROP_RESPONSE_TOPIC,
        PROP_CORRELATION_DATA,
        PROP_USER_PROPERTY,
    }
)


class MalformedPacketError(ValueError):
    """The bytes on the wire do not form a valid MQTT packet."""


def encode_varint(value: int) -> bytes:
    """Encode ``value`` as an MQTT variable byte integer (7 bits per byte, low group first)."""
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"varint out of range: {value}")
    if value < 128:  # the overwhelmingly common case for small messages
        return bytes((value,))
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes | bytearray, pos: int, end: int | None = None) -> tuple[int, int] | None:
    """Decode a variable byte integer at ``pos`` (reading no further than ``end``).

    Returns ``(value, next_pos)``, or ``None`` if the data ends before the integer does (the
    caller waits for more bytes).  More than four bytes is malformed.
    """
    limit = len(data) if end is None else end
    value = 0
    for i in range(4):
        if pos + i >= limit:
            return None
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise MalformedPacketError("variable byte integer longer than 4 bytes")


def encode_string(text: str) -> bytes:
    """A UTF-8 string with its 2-byte big-endian length prefix."""
    return encode_binary(text.encode("utf-8"))


def encode_binary(data: bytes) -> bytes:
    """Binary data with its 2-byte big-endian length prefix."""
    if len(data) > 0xFFFF:
        raise ValueError("field longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def packet(first_byte: int, body: bytes) -> bytes:
    """A whole control packet: fixed header byte, remaining length, then ``body``."""
    return bytes((first_byte,)) + encode_varint(len(body)) + body


class Reader:
    """A cursor over one packet's variable header and payload.

    Every read checks bounds, so a truncated or lying packet raises :class:`MalformedPacketError`
    instead of an ``IndexError`` deep inside the broker.
    """

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        """How many bytes are left."""
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes."""
        if n < 0 or self.pos + n > self.end:
            raise MalformedPacketError("packet shorter than its fields")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        """One unsigned byte."""
        if self.pos >= self.end:
            raise MalformedPacketError("packet shorter than its fields")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uint16(self) -> int:
        """A big-endian two-byte integer."""
        return int.from_bytes(self.take(2), "big")

    def uint32(self) -> int:
        """A big-endian four-byte integer."""
        return int.from_bytes(self.take(4), "big")

    def varint(self) -> int:
        """A variable byte integer."""
        decoded = decode_varint(self.data, self.pos, self.end)
        if decoded is None:
            raise MalformedPacketError("truncated variable byte integer")
        value, self.pos = decoded
        return value

    def binary(self) -> bytes:
        """A 2-byte-length-prefixed binary field."""
        return self.take(self.uint16())

    def string(self) -> str:
        """A 2-byte-length-prefixed UTF-8 string; U+0000 is forbidden (spec 1.5.3)."""
        raw = self.binary()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPacketError("invalid UTF-8 string") from exc
        if "\x00" in text:
            raise MalformedPacketError("string contains U+0000")
        return text

    def properties(self, *, keep_forwarded: bool = False) -> tuple[dict[int, Any], bytes]:
        """An MQTT 5 property block.

        Returns ``(props, forwarded)``: ``props`` maps identifier to value, except user
        properties (0x26) and subscription identifiers (0x0B), which may repeat and map to lists.
        ``forwarded`` holds the raw encoded bytes of the properties in
        :data:`FORWARDED_PUBLISH_PROPS` (only when ``keep_forwarded``), so a broker can pass
        them on to subscribers without re-encoding.
        """
        length = self.varint()
        if length == 0:  # the usual case: skip all the bookkeeping
            return {}, b""
        end = self.pos + length
        if end > self.end:
            raise MalformedPacketError("property block longer than the packet")
        props: dict[int, Any] = {}
        kept: list[bytes] = []
        while self.pos < end:
            start = self.pos
            ident = self.varint()
            value: Any
            if ident in _BYTE_PROPS:
                value = self.byte()
            elif ident in _TWO_BYTE_PROPS:
                value = self.uint16()
            elif ident in _FOUR_BYTE_PROPS:
                value = self.uint32()
            elif ident in _STRING_PROPS:
                value = self.string()
            elif ident in _BINARY_PROPS:
                value = self.binary()
            elif ident == PROP_SUBSCRIPTION_ID:
                props.setdefault(ident, []).append(self.varint())
                continue
            elif ident == PROP_USER_PROPERTY:
                pair = (self.string(), self.string())
                props.setdefault(ident, []).append(pair)
                if keep_forwarded:
                    kept.append(self.data[start : self.pos])
                continue
            else:
                raise MalformedPacketError(f"unknown property identifier 0x{ident:02x}")
            if ident in props:
                raise MalformedPacketError(f"property 0x{ident:02x} given twice")
            props[ident] = value
            if keep_forwarded and ident in FORWARDED_PUBLISH_PROPS:
                kept.append(self.data[start : self.pos])
        if self.pos != end:
            raise MalformedPacketError("property overruns its block")
        return props, b"".join(kept)


def encode_properties(raw: bytes) -> bytes:
    """Prefix already-encoded properties with their length."""
    return encode_varint(len(raw)) + raw


def prop_byte(ident: int, value: int) -> bytes:
    """One single-byte property."""
    return bytes((ident, value))


def prop_uint16(ident: int, value: int) -> bytes:
    """One two-byte-integer property."""
    return bytes((ident,)) + value.to_bytes(2, "big")


def prop_uint32(ident: int, value: int) -> bytes:
    """One four-byte-integer property."""
    return bytes((ident,)) + value.to_bytes(4, "big")


def prop_string(ident: int, value: str) -> bytes:
    """One UTF-8 string property."""
    return bytes((ident,)) + encode_string(value)


def prop_varint(ident: int, value: int) -> bytes:
    """One variable-byte-integer property (only the subscription identifier is one)."""
    return bytes((ident,)) + encode_varint(value)
