"""MQTT behaviour the engine relies on, checked on the embedded broker and, where installed,
on Mosquitto as the reference: each test runs against both, so the embedded broker is held to
what the real one does."""

from __future__ import annotations

import contextlib
import queue
import time
import uuid
from collections.abc import Iterator

import pytest
from broker_clients import (
    V5,
    V311,
    PahoClient,
    props_of,
    raw_connect_packet,
    raw_socket,
    recv_exact,
    user_properties,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from roadpulse.brokers import EmbeddedBroker, LocalBroker, MosquittoProcess, find_mosquitto
from roadpulse.brokers._codec import encode_string, packet


@pytest.fixture(scope="module", params=["embedded", "mosquitto"])
def broker(request: pytest.FixtureRequest) -> Iterator[LocalBroker]:
    b: EmbeddedBroker | MosquittoProcess
    if request.param == "mosquitto":
        if find_mosquitto() is None:
            pytest.skip("no mosquitto binary: the reference comparison needs one")
        b = MosquittoProcess()
    else:
        b = EmbeddedBroker()
    with b:
        yield b


@pytest.fixture
def t() -> str:
    """A topic prefix unique to the test, so tests sharing a broker do not see each other."""
    return f"rp{uuid.uuid4().hex[:10]}"


def cid() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_qos0_and_qos1_round_trip(broker: LocalBroker, t: str, protocol: int) -> None:
    with PahoClient(broker, cid(), protocol=protocol) as sub, PahoClient(broker, protocol=protocol) as pub:
        sub.subscribe(f"{t}/q0", 0)
        sub.subscribe(f"{t}/q1", 1)
        pub.publish(f"{t}/q0", b"zero", qos=0)
        pub.publish(f"{t}/q1", b"one", qos=1)
        pub.publish(f"{t}/q0", b"one-down", qos=1)  # delivered at min(1, 0) = 0
        got = {(m.topic, m.payload, m.qos) for m in sub.get_many(3)}
        assert got == {(f"{t}/q0", b"zero", 0), (f"{t}/q1", b"one", 1), (f"{t}/q0", b"one-down", 0)}
        assert sub.subscribe(f"{t}/q2", 2) == [2]


def test_qos2_round_trip(broker: LocalBroker, t: str) -> None:
    with PahoClient(broker, cid()) as sub, PahoClient(broker) as pub:
        sub.subscribe(f"{t}/x", 2)
        pub.publish(f"{t}/x", b"exactly once", qos=2)
        msg = sub.get()
        assert (msg.payload, msg.qos) == (b"exactly once", 2)
        sub.assert_nothing()


def test_wildcards_and_dollar_topics(broker: LocalBroker, t: str) -> None:
    with (
        PahoClient(broker, cid()) as plus,
        PahoClient(broker, cid()) as hash_,
        PahoClient(broker, cid()) as root,
        PahoClient(broker) as pub,
    ):
        plus.subscribe(f"{t}/+/speed")
        hash_.subscribe(f"{t}/#")
        root.subscribe("+/edge/#")
        for topic in (f"{t}/e1/speed", f"{t}/e1/flow", t, f"{t}/a/b/speed", "$SYS/edge/x", "$x/edge/y"):
            pub.publish(topic, topic.encode())
        pub.publish(f"{t}/edge/last", b"end")
        assert [m.topic for m in plus.get_many(1)] == [f"{t}/e1/speed"]
        # `a/#` matches `a` itself too.
        assert [m.topic for m in hash_.get_many(5)] == [
            f"{t}/e1/speed",
            f"{t}/e1/flow",
            t,
            f"{t}/a/b/speed",
            f"{t}/edge/last",
        ]
        # `$` topics are hidden from a leading wildcard.
        assert [m.topic for m in root.get_many(1)] == [f"{t}/edge/last"]
        plus.assert_nothing(0.1)
        root.assert_nothing(0.1)


def test_dollar_topics_match_explicit_filters(broker: LocalBroker, t: str) -> None:
    with PahoClient(broker, cid()) as sub, PahoClient(broker) as pub:
        sub.subscribe(f"${t}/#")
        pub.publish(f"${t}/stats", b"1")
        assert sub.get().topic == f"${t}/stats"


def test_invalid_filter_is_refused(broker: LocalBroker, t: str) -> None:
    # paho refuses to send bad filters, so speak the protocol by hand.
    with raw_socket(broker) as sock:
        sock.sendall(raw_connect_packet(cid()))
        assert recv_exact(sock, 4) == b"\x20\x02\x00\x00"
        body = b"\x00\x07" + encode_string(f"{t}/#/x") + b"\x00" + encode_string(f"{t}/ok") + b"\x01"
        sock.sendall(packet(0x82, body))
        reply = recv_exact(sock, 6)
        # Refused with 0x80 (the embedded broker), or the connection is dropped (mosquitto 2).
        assert reply in (b"\x90\x04\x00\x07\x80\x01", b"")


def test_retained_set_replace_and_clear(broker: LocalBroker, t: str) -> None:
    with PahoClient(broker) as pub:
        pub.publish(f"{t}/state", b"old", qos=1, retain=True)
        pub.publish(f"{t}/state", b"new", qos=1, retain=True)
        with PahoClient(broker, cid()) as sub:
            sub.subscribe(f"{t}/#", 1)
            msg = sub.get()
            assert (msg.payload, msg.retain, msg.qos) == (b"new", True, 1)
            # A live message to an existing subscriber is not flagged retained.
            pub.publish(f"{t}/state", b"live", qos=1, retain=True)
            msg = sub.get()
            assert (msg.payload, msg.retain) == (b"live", False)
            pub.publish(f"{t}/state", b"", qos=1, retain=True)  # clears, still delivered
            assert sub.get().payload == b""
        with PahoClient(broker, cid()) as late:
            late.subscribe(f"{t}/#", 1)
            late.assert_nothing()


def test_unsubscribe_stops_delivery(broker: LocalBroker, t: str) -> None:
    with PahoClient(broker, cid()) as sub, PahoClient(broker) as pub:
        sub.subscribe(f"{t}/x")
        pub.publish(f"{t}/x", b"1")
        assert sub.get().payload == b"1"
        sub.unsubscribe(f"{t}/x")
        pub.publish(f"{t}/x", b"2")
        sub.assert_nothing()


def test_overlapping_subscriptions_deliver_once_at_max_qos(broker: LocalBroker, t: str) -> None:
    with PahoClient(broker, cid()) as sub, PahoClient(broker) as pub:
        sub.subscribe(f"{t}/#", 0)
        sub.subscribe(f"{t}/+", 1)
        pub.publish(f"{t}/x", b"1", qos=1)
        assert sub.get().qos == 1
        # Mosquitto sends one copy per matching subscription, the embedded broker one in all
        # (both are allowed, spec 3.3.5); consumers must tolerate either.
        extra = list(sub.messages.queue)
        assert all(m.payload == b"1" for m in extra)


def test_persistent_session_queues_qos1_while_offline(broker: LocalBroker, t: str) -> None:
    client_id = cid()
    with PahoClient(broker, client_id, clean=False) as sub:
        sub.subscribe(f"{t}/alerts", 1)
    with PahoClient(broker) as pub:
        for i in range(3):
            pub.publish(f"{t}/alerts", str(i).encode(), qos=1)
        pub.publish(f"{t}/alerts", b"qos0-dropped", qos=0)
    with PahoClient(broker, client_id, clean=False) as sub:
        assert sub.connect_flags.session_present
        assert [m.payload for m in sub.get_many(3)] == [b"0", b"1", b"2"]
        sub.assert_nothing()
    # A clean session discards the stored subscription.
    with PahoClient(broker, client_id, clean=True) as sub:
        assert not sub.connect_flags.session_present
    with PahoClient(broker) as pub:
        pub.publish(f"{t}/alerts", b"after-clean", qos=1)
    with PahoClient(broker, client_id, clean=False) as sub:
        assert not sub.connect_flags.session_present
        sub.assert_nothing()


def test_will_is_published_when_a_client_drops(broker: LocalBroker, t: str) -> None:
    with PahoClient(broker, cid()) as watcher:
        watcher.subscribe(f"{t}/status/#")
        gone = PahoClient(broker, cid(), will=(f"{t}/status/cam1", b"offline", 0, False))
        polite = PahoClient(broker, cid(), will=(f"{t}/status/cam2", b"offline", 0, False))
        polite.close()  # a clean DISCONNECT discards the will
        gone.drop()
        msg = watcher.get()
        assert (msg.topic, msg.payload) == (f"{t}/status/cam1", b"offline")
        watcher.assert_nothing()


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_session_takeover_disconnects_the_old_client(broker: LocalBroker, t: str, protocol: int) -> None:
    client_id = cid()
    first = PahoClient(broker, client_id, protocol=protocol)
    try:
        first.subscribe(f"{t}/x")
        with PahoClient(broker, client_id, protocol=protocol) as second, PahoClient(broker) as pub:
            assert first.disconnected.wait(5)
            first.client.loop_stop()  # before paho's automatic reconnect (1 s) takes it back
            if protocol == V5:
                # The embedded broker says "session taken over" (0x8E); mosquitto 2.0 just
                # closes the socket, which paho reports as 0x80.
                assert first.disconnect_reason in (0x8E, 0x80)
            second.subscribe(f"{t}/x")
            pub.publish(f"{t}/x", b"to-second")
            assert second.get().payload == b"to-second"
        first.assert_nothing(0.05)
    finally:
        first.client.loop_stop()


@pytest.mark.parametrize("qos", [0, 1])
def test_many_messages_arrive_in_order(broker: LocalBroker, t: str, qos: int) -> None:
    n = 5000
    with PahoClient(broker, cid()) as sub, PahoClient(broker) as pub:
        sub.subscribe(f"{t}/+/flow", 1)
        for i in range(n):
            pub.publish(f"{t}/e{i % 7}/flow", i.to_bytes(4, "big"), qos=qos, wait=False)
        got = [int.from_bytes(m.payload, "big") for m in sub.get_many(n, timeout=30)]
        assert got == list(range(n))


# -- MQTT 5 ---------------------------------------------------------------------------------


def test_v5_user_properties_pass_through(broker: LocalBroker, t: str) -> None:
    with (
        PahoClient(broker, cid(), protocol=V5) as sub5,
        PahoClient(broker, cid()) as sub3,
        PahoClient(broker, protocol=V5) as pub,
    ):
        sub5.subscribe(f"{t}/x", 1)
        sub3.subscribe(f"{t}/x", 1)
        props = user_properties(("edge", "e42"), ("schema", "v2"), ("edge", "dup-key-ok"))
        props.ContentType = "application/json"
        props.CorrelationData = b"\x01\x02"
        props.ResponseTopic = f"{t}/reply"
        pub.publish(f"{t}/x", b"{}", qos=1, properties=props)
        got = props_of(sub5.get())
        assert got.UserProperty == [("edge", "e42"), ("schema", "v2"), ("edge", "dup-key-ok")]
        assert (got.ContentType, got.CorrelationData, got.ResponseTopic) == (
            "application/json",
            b"\x01\x02",
            f"{t}/reply",
        )
        assert sub3.get().payload == b"{}"  # a 3.1.1 subscriber gets the message, no properties


def test_v5_subscription_options(broker: LocalBroker, t: str) -> None:
    with PahoClient(broker, cid(), protocol=V5) as me, PahoClient(broker, protocol=V5) as pub:
        me.subscribe(f"{t}/own", options=SubscribeOptions(qos=1, noLocal=True))
        me.subscribe(f"{t}/rap", options=SubscribeOptions(qos=1, retainAsPublished=True))
        me.publish(f"{t}/own", b"echo?", qos=1)
        pub.publish(f"{t}/rap", b"kept-flag", qos=1, retain=True)
        msg = me.get()
        assert (msg.topic, msg.retain) == (f"{t}/rap", True)
        me.assert_nothing()
        # Retain Handling 2: no retained messages at subscribe time.
        me.subscribe(f"{t}/#", options=SubscribeOptions(qos=1, retainHandling=2))
        me.assert_nothing()
        assert me.unsubscribe(f"{t}/never") == [0x11]


def test_v5_subscription_identifiers(broker: LocalBroker, t: str) -> None:
    with PahoClient(broker, cid(), protocol=V5) as sub, PahoClient(broker, protocol=V5) as pub:
        props = Properties(PacketTypes.SUBSCRIBE)
        props.SubscriptionIdentifier = 7
        sub.subscribe(f"{t}/+", 1, properties=props)
        pub.publish(f"{t}/x", b"1", qos=1)
        assert props_of(sub.get()).SubscriptionIdentifier == [7]


def test_v5_shared_subscriptions_split_the_load(broker: LocalBroker, t: str) -> None:
    with (
        PahoClient(broker, cid(), protocol=V5) as a,
        PahoClient(broker, cid(), protocol=V5) as b,
        PahoClient(broker, protocol=V5) as pub,
    ):
        a.subscribe(f"$share/workers/{t}/jobs/#", 1)
        b.subscribe(f"$share/workers/{t}/jobs/#", 1)
        n = 20
        for i in range(n):
            pub.publish(f"{t}/jobs/{i}", str(i).encode(), qos=1)
        received: dict[str, list[int]] = {"a": [], "b": []}
        deadline = time.monotonic() + 5
        while sum(map(len, received.values())) < n and time.monotonic() < deadline:
            for name, client in (("a", a), ("b", b)):
                with contextlib.suppress(queue.Empty):
                    received[name].append(int(client.messages.get(timeout=0.02).payload))
        assert sorted(received["a"] + received["b"]) == list(range(n))  # each exactly once
        assert received["a"] and received["b"]  # and the group shares the work
        a.assert_nothing(0.1)
        b.assert_nothing(0.1)


def test_v5_session_expiry_keeps_the_session(broker: LocalBroker, t: str) -> None:
    client_id = cid()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 60
    with PahoClient(broker, client_id, protocol=V5, clean=True, connect_properties=props) as sub:
        sub.subscribe(f"{t}/x", 1)
    with PahoClient(broker, protocol=V5) as pub:
        pub.publish(f"{t}/x", b"queued", qos=1)
    with PahoClient(broker, client_id, protocol=V5, clean=False, connect_properties=props) as sub:
        assert sub.connect_flags.session_present
        assert sub.get().payload == b"queued"
