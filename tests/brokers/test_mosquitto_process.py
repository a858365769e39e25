"""MosquittoProcess: start, restart with persistence, kill, clear startup errors."""

from __future__ import annotations

import pytest
from broker_clients import PahoClient

from roadpulse.brokers import MosquittoError, MosquittoProcess, broker_reachable, find_mosquitto
from roadpulse.brokers import mosquitto as mosquitto_module

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="no mosquitto binary")


def test_find_mosquitto_searches_sbin_beyond_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(mosquitto_module, "_EXTRA_DIRS", ("/nonexistent-sbin",))
    assert find_mosquitto() is None
    with pytest.raises(MosquittoError, match="no mosquitto binary found"):
        MosquittoProcess()


@needs_mosquitto
def test_restart_keeps_retained_messages_and_persistent_sessions() -> None:
    with MosquittoProcess() as broker:
        assert broker.kind == "mosquitto" and broker.running
        assert broker_reachable(broker.host, broker.port)
        port = broker.port
        with PahoClient(broker, "persistent-sub", clean=False) as sub:
            sub.subscribe("plant/#", 1)
        with PahoClient(broker) as pub:
            pub.publish("plant/config", b"retained", qos=1, retain=True)
            pub.publish("plant/alert", b"queued", qos=1)
        broker.restart()
        assert broker.port == port and broker.running
        with PahoClient(broker, "persistent-sub", clean=False) as sub:
            assert sub.connect_flags.session_present
            assert {m.payload for m in sub.get_many(2)} == {b"retained", b"queued"}
        with PahoClient(broker, "late") as late:
            late.subscribe("plant/config", 1)
            msg = late.get()
            assert (msg.payload, msg.retain) == (b"retained", True)
    assert not broker.running
    assert broker.workdir is None  # stop() removed the temp dir


@needs_mosquitto
def test_kill_then_start_comes_back_on_the_same_port() -> None:
    with MosquittoProcess() as broker:
        port = broker.port
        broker.kill()
        assert not broker.running
        assert not broker_reachable(broker.host, port, timeout_s=0.3)
        broker.start()
        assert broker.port == port
        assert broker_reachable(broker.host, port)


@needs_mosquitto
def test_startup_failure_reports_the_log_tail() -> None:
    broker = MosquittoProcess(extra_config=["no_such_option on"], startup_timeout_s=5)
    with pytest.raises(MosquittoError, match="no_such_option"):
        broker.start()
    broker.stop()


@needs_mosquitto
def test_port_taken_by_another_process_is_an_error() -> None:
    with MosquittoProcess() as first:
        second = MosquittoProcess(first.port, startup_timeout_s=5)
        with pytest.raises(MosquittoError, match=r"exited|did not listen"):
            second.start()
        second.stop()
        assert first.running
