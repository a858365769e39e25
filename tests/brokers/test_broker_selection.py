"""broker_reachable, start_local_broker, ensure_broker and the conftest fixtures."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest
from broker_clients import PahoClient

import roadpulse.brokers as brokers
from roadpulse.brokers import (
    EmbeddedBroker,
    LocalBroker,
    RestartableBroker,
    broker_reachable,
    ensure_broker,
    find_mosquitto,
    start_local_broker,
)
from roadpulse.brokers.mosquitto import free_port
from roadpulse.brokers.probe import probe_broker

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="no mosquitto binary")


@pytest.fixture
def not_mqtt() -> Iterator[tuple[str, int]]:
    """A TCP server that accepts connections and answers like HTTP, not MQTT."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield "127.0.0.1", server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


def test_broker_reachable(mqtt_broker: LocalBroker, not_mqtt: tuple[str, int]) -> None:
    assert broker_reachable(mqtt_broker.host, mqtt_broker.port)
    assert not broker_reachable("127.0.0.1", free_port(), timeout_s=0.5)
    assert not broker_reachable(*not_mqtt, timeout_s=0.5)
    assert probe_broker(*not_mqtt, timeout_s=0.5)[1].endswith("did not answer like an MQTT broker")


def test_broker_reachable_times_out_on_a_silent_listener() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog) but never answers
        ok, why = probe_broker("127.0.0.1", silent.getsockname()[1], timeout_s=0.3)
    assert not ok and "no MQTT answer" in why


def test_ensure_broker_uses_the_configured_broker(mqtt_broker: LocalBroker) -> None:
    host, port, description, local = ensure_broker(mqtt_broker.host, mqtt_broker.port)
    assert (host, port, local) == (mqtt_broker.host, mqtt_broker.port, None)
    assert description == f"using the configured broker at {host}:{port}"


@needs_mosquitto
def test_ensure_broker_starts_mosquitto_when_nothing_answers() -> None:
    unused = free_port()
    choice = ensure_broker("127.0.0.1", unused, timeout_s=0.5)
    try:
        assert choice.local is not None and choice.local.kind == "mosquitto"
        assert choice.port != unused and broker_reachable(choice.host, choice.port)
        assert choice.description == (
            f"started mosquitto on 127.0.0.1:{choice.port} (no broker at 127.0.0.1:{unused})"
        )
    finally:
        if choice.local is not None:
            choice.local.stop()


def test_ensure_broker_falls_back_to_the_embedded_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(brokers, "find_mosquitto", lambda: None)
    unused = free_port()
    host, port, description, local = ensure_broker("127.0.0.1", unused, timeout_s=0.5)
    try:
        assert isinstance(local, EmbeddedBroker)
        assert broker_reachable(host, port)
        assert description == (
            f"started the embedded Python broker on 127.0.0.1:{port} "
            f"(no broker at 127.0.0.1:{unused}; no mosquitto binary found)"
        )
    finally:
        assert local is not None
        local.stop()


def test_a_broken_mosquitto_falls_back_to_the_embedded_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(brokers, "find_mosquitto", lambda: "/bin/false")
    broker = start_local_broker()
    try:
        assert broker.kind == "embedded"
        assert broker_reachable(broker.host, broker.port)
    finally:
        broker.stop()


def test_start_local_broker_preferences() -> None:
    broker = start_local_broker(prefer="embedded")
    try:
        assert broker.kind == "embedded" and isinstance(broker, RestartableBroker)
    finally:
        broker.stop()
    with pytest.raises(ValueError, match="prefer"):
        start_local_broker(prefer="rabbitmq")  # type: ignore[arg-type]


def test_session_fixture(mqtt_broker: RestartableBroker) -> None:
    forced = os.environ.get("ROADPULSE_TEST_BROKER", "").strip().lower() == "embedded"
    expected = "mosquitto" if find_mosquitto() is not None and not forced else "embedded"
    assert mqtt_broker.kind == expected
    with PahoClient(mqtt_broker, "fixture-sub") as sub, PahoClient(mqtt_broker) as pub:
        sub.subscribe("fixture/#", 1)
        pub.publish("fixture/x", b"1", qos=1)
        assert sub.get().payload == b"1"


def test_fresh_fixture_restarts_with_retained_messages(fresh_mqtt_broker: RestartableBroker) -> None:
    port = fresh_mqtt_broker.port
    with PahoClient(fresh_mqtt_broker) as pub:
        pub.publish("fresh/state", b"kept", qos=1, retain=True)
    fresh_mqtt_broker.restart()
    assert fresh_mqtt_broker.port == port
    with PahoClient(fresh_mqtt_broker, "fresh-sub") as sub:
        sub.subscribe("fresh/#", 1)
        assert sub.get().payload == b"kept"
