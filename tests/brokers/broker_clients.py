"""Test clients for the broker tests: a blocking paho-mqtt wrapper and raw-socket helpers."""

from __future__ import annotations

import queue
import socket
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from roadpulse.brokers import LocalBroker
from roadpulse.brokers._codec import encode_string, packet

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
TIMEOUT_S = 5.0


class PahoClient:
    """paho-mqtt with blocking connect/subscribe/publish and a queue of received messages."""

    def __init__(
        self,
        broker: LocalBroker,
        client_id: str = "",
        *,
        protocol: int = V311,
        clean: bool = True,
        keepalive: int = 30,
        connect_properties: Properties | None = None,
        will: tuple[str, bytes, int, bool] | None = None,
    ) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.protocol = protocol
        kwargs: dict[str, Any] = {"client_id": client_id, "protocol": protocol}
        if protocol != V5:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, **kwargs)
        self._connected = threading.Event()
        self.disconnected = threading.Event()
        self.disconnect_reason: Any = None
        self._acks: dict[int, threading.Event] = {}
        self._ack_results: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.connect_flags: Any = None
        self.connect_reason: Any = None
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain)
        connect_kwargs: dict[str, Any] = {"keepalive": keepalive}
        if protocol == V5:
            connect_kwargs["clean_start"] = clean
            connect_kwargs["properties"] = connect_properties
        self.client.connect(broker.host, broker.port, **connect_kwargs)
        self.client.loop_start()
        if not self._connected.wait(TIMEOUT_S):
            self.client.loop_stop()
            raise TimeoutError("no CONNACK")

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _props: Any) -> None:
        self.connect_flags, self.connect_reason = flags, reason
        self._connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.disconnect_reason = reason
        self.disconnected.set()

    def _event(self, mid: int) -> threading.Event:
        with self._lock:
            return self._acks.setdefault(mid, threading.Event())

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reason_codes: Any, _props: Any) -> None:
        self._ack_results[mid] = reason_codes
        self._event(mid).set()

    def subscribe(
        self,
        topic: str,
        qos: int = 0,
        *,
        options: SubscribeOptions | None = None,
        properties: Properties | None = None,
    ) -> list[int]:
        """Subscribe and wait for the SUBACK; returns its reason codes as ints."""
        if options is not None:
            result, mid = self.client.subscribe(topic, options=options, properties=properties)
        else:
            result, mid = self.client.subscribe(topic, qos, properties=properties)
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None
        assert self._event(mid).wait(TIMEOUT_S), "no SUBACK"
        return [int(rc.value) for rc in self._ack_results[mid]]

    def unsubscribe(self, topic: str) -> list[int]:
        """Unsubscribe and wait for the UNSUBACK; returns its reason codes (MQTT 5) as ints."""
        result, mid = self.client.unsubscribe(topic)
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None
        assert self._event(mid).wait(TIMEOUT_S), "no UNSUBACK"
        return [int(rc.value) for rc in self._ack_results[mid]]

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        *,
        wait: bool = True,
    ) -> None:
        """Publish; with ``wait``, block until the QoS handshake completes."""
        info = self.client.publish(topic, payload, qos, retain, properties)
        if wait:
            info.wait_for_publish(TIMEOUT_S)
            assert info.is_published()

    def get(self, timeout: float = TIMEOUT_S) -> mqtt.MQTTMessage:
        """The next received message."""
        return self.messages.get(timeout=timeout)

    def get_many(self, n: int, timeout: float = TIMEOUT_S) -> list[mqtt.MQTTMessage]:
        """The next ``n`` received messages (overall deadline ``timeout``)."""
        deadline = time.monotonic() + timeout
        return [self.messages.get(timeout=max(0.0, deadline - time.monotonic())) for _ in range(n)]

    def assert_nothing(self, wait_s: float = 0.3) -> None:
        """Nothing (more) arrives within ``wait_s``."""
        try:
            msg = self.messages.get(timeout=wait_s)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {msg.topic!r}: {msg.payload!r}")

    def close(self) -> None:
        """Clean DISCONNECT."""
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Close the socket without DISCONNECT, as a crashed client would."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def __enter__(self) -> PahoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def props_of(message: Any) -> Any:
    """A received message's MQTT 5 properties, typed loosely (paho sets them dynamically)."""
    assert message.properties is not None
    return message.properties


def user_properties(*pairs: tuple[str, str]) -> Properties:
    """PUBLISH properties carrying MQTT 5 user properties."""
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = list(pairs)
    return props


def raw_connect_packet(
    client_id: str = "raw", *, keepalive: int = 0, level: int = 4, flags: int = 0x02
) -> bytes:
    """An MQTT CONNECT (3.1.1 by default) built by hand."""
    props = b"\x00" if level == 5 else b""
    body = encode_string("MQTT") + bytes((level, flags)) + keepalive.to_bytes(2, "big") + props
    return packet(0x10, body + encode_string(client_id))


def raw_socket(broker: LocalBroker) -> socket.socket:
    """A plain TCP connection to the broker."""
    sock = socket.create_connection((broker.host, broker.port), timeout=TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes (or fewer if the peer closes)."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def wait_closed(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closes ``sock`` within ``timeout`` (data before the close is skipped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(4096):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False
