"""The embedded broker: aiomqtt clients, robustness against bad clients, keepalive, restart,
throughput.  (Protocol behaviour shared with Mosquitto is in test_broker_conformance.py.)"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import aiomqtt
import pytest
from broker_clients import (
    V5,
    PahoClient,
    props_of,
    raw_connect_packet,
    raw_socket,
    recv_exact,
    user_properties,
    wait_closed,
)

from roadpulse.brokers import EmbeddedBroker, _connection
from roadpulse.brokers._codec import encode_string, encode_varint, packet


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


def assert_still_serving(broker: EmbeddedBroker) -> None:
    with PahoClient(broker, "healthy-sub") as sub, PahoClient(broker) as pub:
        sub.subscribe("health/#", 1)
        pub.publish("health/check", b"ok", qos=1)
        assert sub.get().payload == b"ok"


def connected_raw(broker: EmbeddedBroker, client_id: str = "raw", **kwargs: int) -> socket.socket:
    sock = raw_socket(broker)
    sock.sendall(raw_connect_packet(client_id, **kwargs))
    if kwargs.get("level") == 5:
        header = recv_exact(sock, 2)
        assert header[0] == 0x20
        assert recv_exact(sock, header[1])[:2] == b"\x00\x00"  # no session, success
    else:
        assert recv_exact(sock, 4) == b"\x20\x02\x00\x00"
    return sock


# -- aiomqtt ----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [aiomqtt.ProtocolVersion.V311, aiomqtt.ProtocolVersion.V5])
def test_aiomqtt_round_trip(broker: EmbeddedBroker, protocol: aiomqtt.ProtocolVersion) -> None:
    async def scenario() -> list[aiomqtt.Message]:
        async with (
            aiomqtt.Client(broker.host, broker.port, protocol=protocol) as sub,
            aiomqtt.Client(broker.host, broker.port, protocol=protocol) as pub,
        ):
            await sub.subscribe("roads/+/congestion", qos=1)
            await pub.publish("roads/main/congestion", b"0.8", qos=1, retain=True)
            props = user_properties(("source", "loop-7")) if protocol == aiomqtt.ProtocolVersion.V5 else None
            await pub.publish("roads/side/congestion", b"0.1", qos=0, properties=props)
            got = []
            async with asyncio.timeout(5):
                async for message in sub.messages:
                    got.append(message)
                    if len(got) == 2:
                        break
        # A later subscriber gets the retained value.
        async with aiomqtt.Client(broker.host, broker.port, protocol=protocol) as late:
            await late.subscribe("roads/#", qos=1)
            async with asyncio.timeout(5):
                got.append(await anext(aiter(late.messages)))
        return got

    first, second, retained = asyncio.run(scenario())
    assert (str(first.topic), first.payload, first.qos) == ("roads/main/congestion", b"0.8", 1)
    assert (str(second.topic), second.payload, second.qos) == ("roads/side/congestion", b"0.1", 0)
    assert (retained.payload, retained.retain) == (b"0.8", True)
    if protocol == aiomqtt.ProtocolVersion.V5:
        assert props_of(second).UserProperty == [("source", "loop-7")]


def test_usable_from_several_event_loops_and_threads(broker: EmbeddedBroker) -> None:
    async def publish_some(prefix: str) -> None:
        async with aiomqtt.Client(broker.host, broker.port) as client:
            for i in range(50):
                await client.publish(f"multi/{prefix}", str(i), qos=1)

    with PahoClient(broker, "multi-sub") as sub:
        sub.subscribe("multi/#", 1)
        threads = [threading.Thread(target=asyncio.run, args=(publish_some(f"t{i}"),)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(sub.get_many(200)) == 200


# -- bad clients --------------------------------------------------------------------------------

MALFORMED = {
    "garbage": b"\xff\xff\xff\xff\xff\xff\xff",
    "varint longer than 4 bytes": b"\x30\xff\xff\xff\xff\x01",
    "publish before connect": packet(0x30, encode_string("a/b") + b"x"),
    "not mqtt": packet(0x10, encode_string("HTTP") + b"\x04\x02\x00\x00" + encode_string("x")),
    "connect reserved flag": packet(0x10, encode_string("MQTT") + b"\x04\x03\x00\x00" + encode_string("x")),
    "truncated connect": packet(0x10, encode_string("MQTT") + b"\x04"),
    "string longer than packet": packet(0x10, b"\x00\xffMQTT"),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_connect_closes_only_that_connection(broker: EmbeddedBroker, data: bytes) -> None:
    with raw_socket(broker) as sock:
        sock.sendall(data)
        assert wait_closed(sock, 3.0)
    assert_still_serving(broker)


AFTER_CONNECT = {
    "publish qos 3": packet(0x36, encode_string("a/b") + b"\x00\x01x"),
    "wildcard in topic name": packet(0x30, encode_string("a/+") + b"x"),
    "invalid utf-8 topic": packet(0x30, b"\x00\x02\xc3\x28x"),
    "nul in topic": packet(0x30, encode_string("a\x00b") + b"x"),
    "packet id 0": packet(0x32, encode_string("a/b") + b"\x00\x00x"),
    "subscribe bad flags": packet(0x80, b"\x00\x01" + encode_string("a") + b"\x00"),
    "subscribe without filters": packet(0x82, b"\x00\x01"),
    "subscribe qos 3": packet(0x82, b"\x00\x01" + encode_string("a") + b"\x03"),
    "second connect": raw_connect_packet("again"),
    "server-only packet type": b"\x90\x03\x00\x01\x00",
    "unknown packet type 0": b"\x00\x00",
}


@pytest.mark.parametrize("data", AFTER_CONNECT.values(), ids=AFTER_CONNECT.keys())
def test_protocol_violation_after_connect_closes_the_client(broker: EmbeddedBroker, data: bytes) -> None:
    with connected_raw(broker) as sock:
        sock.sendall(data)
        assert wait_closed(sock, 3.0)
    assert_still_serving(broker)


def test_packet_size_guard() -> None:
    with EmbeddedBroker(max_packet_size=1024) as broker:
        with connected_raw(broker) as sock:
            # Only the header has to arrive: the broker must not buffer what it will refuse.
            sock.sendall(b"\x30" + encode_varint(10 * 1024 * 1024))
            assert wait_closed(sock, 3.0)
        with connected_raw(broker, "v5-raw", level=5) as sock:
            sock.sendall(b"\x30" + encode_varint(2000))
            assert recv_exact(sock, 3) == b"\xe0\x01\x95"  # MQTT 5: DISCONNECT "packet too large"
            assert wait_closed(sock, 3.0)
        with PahoClient(broker, "v5", protocol=V5) as client:
            client.subscribe("big/#")
            client.publish("big/ok", b"x" * 900, wait=False)
            assert client.get().payload == b"x" * 900
        assert_still_serving(broker)


def test_split_and_coalesced_packets(broker: EmbeddedBroker) -> None:
    with connected_raw(broker, "sub") as sub, connected_raw(broker, "pub") as pub:
        sub.sendall(packet(0x82, b"\x00\x01" + encode_string("frag/#") + b"\x00"))
        assert recv_exact(sub, 5) == b"\x90\x03\x00\x01\x00"
        big = packet(0x30, encode_string("frag/big") + bytes(range(256)) * 300)
        small = [packet(0x30, encode_string(f"frag/{i}") + b"s") for i in range(50)]
        stream = b"".join(small) + big + b"\xc0\x00"  # ... then a PINGREQ
        for i in range(0, len(stream), 997):  # odd-sized pieces split every header somewhere
            pub.sendall(stream[i : i + 997])
            time.sleep(0.0005)
        assert recv_exact(pub, 2) == b"\xd0\x00"
        expected = b"".join(small) + big
        assert recv_exact(sub, len(expected)) == expected


def test_unsupported_protocol_level_gets_connack_code_1(broker: EmbeddedBroker) -> None:
    with raw_socket(broker) as sock:
        sock.sendall(raw_connect_packet(level=6))
        assert recv_exact(sock, 4) == b"\x20\x02\x00\x01"
        assert wait_closed(sock, 2.0)


def test_empty_client_id(broker: EmbeddedBroker) -> None:
    with raw_socket(broker) as sock:
        sock.sendall(raw_connect_packet("", flags=0x00))  # persistent session needs an id
        assert recv_exact(sock, 4) == b"\x20\x02\x00\x02"
    with raw_socket(broker) as sock:
        sock.sendall(raw_connect_packet("", flags=0x02))
        assert recv_exact(sock, 4) == b"\x20\x02\x00\x00"
    with PahoClient(broker, "", protocol=V5) as client:  # MQTT 5: the broker assigns one
        assert client.connect_reason == 0


def test_connect_timeout(broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_connection, "CONNECT_TIMEOUT_S", 0.3)
    with raw_socket(broker) as sock:
        assert wait_closed(sock, 3.0)


def test_keepalive(broker: EmbeddedBroker) -> None:
    with (
        connected_raw(broker, "idle", keepalive=1) as idle,
        connected_raw(broker, "pinger", keepalive=1) as pinger,
    ):
        for _ in range(5):  # 2.5 s of PINGREQ every 0.5 s keeps a 1 s keepalive alive
            pinger.sendall(b"\xc0\x00")
            assert recv_exact(pinger, 2) == b"\xd0\x00"
            time.sleep(0.5)
        # The idle one was dropped after 1.5 x keepalive.
        assert wait_closed(idle, 0.1)
        pinger.sendall(b"\xe0\x00")  # DISCONNECT
        assert wait_closed(pinger, 2.0)


def test_will_on_keepalive_timeout(broker: EmbeddedBroker) -> None:
    with PahoClient(broker, "watcher") as watcher:
        watcher.subscribe("status/#")
        will = encode_string("status/idle") + encode_string("gone")
        body = encode_string("MQTT") + b"\x04\x06\x00\x01" + encode_string("idle") + will
        with raw_socket(broker) as sock:
            sock.sendall(packet(0x10, body))
            assert recv_exact(sock, 4) == b"\x20\x02\x00\x00"
            msg = watcher.get(timeout=4.0)
            assert (msg.topic, msg.payload) == ("status/idle", b"gone")


# -- lifecycle ----------------------------------------------------------------------------------


def test_restart_keeps_retained_and_sessions_on_the_same_port(broker: EmbeddedBroker) -> None:
    port = broker.port
    with PahoClient(broker, "keeper", clean=False) as keeper:
        keeper.subscribe("fleet/#", 1)
    with PahoClient(broker) as pub:
        pub.publish("fleet/status", b"retained", qos=1, retain=True)
    with connected_raw(broker, "victim") as victim:
        broker.restart()
        assert wait_closed(victim, 2.0)  # clients see the broker go away
    assert broker.port == port
    with PahoClient(broker) as pub:
        pub.publish("fleet/alert", b"queued", qos=1)
    with PahoClient(broker, "keeper", clean=False) as keeper:
        assert keeper.connect_flags.session_present
        got = {m.payload for m in keeper.get_many(2)}
        assert got == {b"retained", b"queued"}


def test_start_stop_and_port_in_use() -> None:
    broker = EmbeddedBroker()
    assert not broker.running
    broker.start()
    assert broker.running and broker.port > 0 and broker.kind == "embedded"
    with pytest.raises(OSError):
        EmbeddedBroker(port=broker.port).start()
    broker.stop()
    broker.stop()  # idempotent
    assert not broker.running


def test_throughput_tens_of_thousands_per_second(broker: EmbeddedBroker) -> None:
    n = 30_000
    payload = b'{"edge":"e1234","speed":12.5,"flow":3}'
    stream = b"".join(packet(0x30, encode_string(f"edges/e{i % 500}/state") + payload) for i in range(n))
    with connected_raw(broker, "fast-sub") as sub, connected_raw(broker, "fast-pub") as pub:
        sub.sendall(packet(0x82, b"\x00\x01" + encode_string("edges/#") + b"\x00"))
        assert recv_exact(sub, 5) == b"\x90\x03\x00\x01\x00"
        received = bytearray()

        def read() -> None:
            while len(received) < len(stream):
                chunk = sub.recv(1 << 20)
                if not chunk:
                    return
                received.extend(chunk)

        reader = threading.Thread(target=read)
        reader.start()
        start = time.perf_counter()
        pub.sendall(stream)
        reader.join(20)
        elapsed = time.perf_counter() - start
    assert bytes(received) == stream
    rate = n / elapsed
    print(f"embedded broker: {rate:,.0f} msg/s")
    assert rate > 10_000  # typically ~100k/s; generous for slow CI machines
