"""MqttReadingSource against a real Mosquitto: delivery, bad messages, broker restarts, shutdown."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from ingest import MqttReadingSource, ParseResult, ReadingParser
from roadgraph.detectors import DetectorRegistry

TS = 1_776_729_630
TEST_TIMEOUT_S = 20.0  # per test; every wait inside is bounded by this or less
WAIT_S = 5.0


def run(coro: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(TEST_TIMEOUT_S):
            await coro

    asyncio.run(bounded())


def reading(detector_id: str = "D2", ts: float = TS, **changes: object) -> dict[str, object]:
    obj: dict[str, object] = {
        "detector_id": detector_id,
        "ts": ts,
        "interval_s": 30,
        "count": 12,
        "occupancy_pct": 8.5,
        "speed_kmh": 42.1,
    }
    obj.update(changes)
    return obj


class Collector:
    """``on_result`` / ``on_status`` sink that tests can await conditions on."""

    def __init__(self) -> None:
        self.results: list[ParseResult] = []
        self.statuses: list[str] = []
        self._changed = asyncio.Event()

    def on_result(self, result: ParseResult) -> None:
        self.results.append(result)
        self._changed.set()

    def on_status(self, status: str) -> None:
        self.statuses.append(status)
        self._changed.set()

    @property
    def rows(self) -> list[tuple[int, float]]:
        return [
            (int(d), float(t))
            for r in self.results
            for d, t in zip(r.batch.detector_index, r.batch.ts, strict=True)
        ]

    @property
    def codes(self) -> list[str]:
        return [x.code for r in self.results for x in r.rejections]

    async def wait_for(self, predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}; statuses {self.statuses}")


def _prefix() -> str:
    """A fresh topic prefix per test, so tests sharing the broker never see each other's messages."""
    return f"t{uuid.uuid4().hex[:8]}/"


def _source(
    broker: Any,
    registry: DetectorRegistry,
    collector: Collector,
    prefix: str,
    on_result: Callable[[ParseResult], None] | None = None,
    **kwargs: Any,
) -> MqttReadingSource:
    parser = ReadingParser(registry, prefix=prefix, clock=lambda: TS + 60)
    return MqttReadingSource(
        lambda: aiomqtt.Client(broker.host, broker.port, identifier=f"ingest-test-{uuid.uuid4().hex[:8]}"),
        parser,
        on_result or collector.on_result,
        prefix=prefix,
        on_status=collector.on_status,
        **kwargs,
    )


def _source_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("mqtt-reading-source")]


async def _publish(broker: Any, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


def test_single_and_batch_readings_arrive_as_batches(mqtt_broker: Any, registry: DetectorRegistry) -> None:
    async def scenario() -> None:
        collector, prefix = Collector(), _prefix()
        async with _source(mqtt_broker, registry, collector, prefix) as source:
            async with asyncio.timeout(WAIT_S):
                await source.wait_connected()
            assert source.topic_filter == f"{prefix}detectors/+"
            batch = [reading("D2", TS + 30), reading("D3", TS + 30)]
            batch_message = (f"{prefix}detectors/batch", json.dumps(batch).encode())
            await _publish(
                mqtt_broker,
                [
                    (f"{prefix}detectors/D2", json.dumps(reading("D2")).encode()),
                    (f"{prefix}detectors/D3", json.dumps(reading("D3", speed_kmh=None)).encode()),
                    batch_message,
                ],
            )
            await collector.wait_for(lambda: len(collector.rows) == 4, "4 readings")
            assert collector.rows == [(1, TS), (2, TS), (1, TS + 30), (2, TS + 30)]
            assert collector.codes == []
            # `+` also matches `batch`: the batch was delivered and parsed once (one subscription).
            assert source.messages_received == 3
            assert len(collector.results) == 3
            assert source.parser.accepted_total == 4
        assert collector.statuses == ["connecting", "connected", "stopped"]

    run(scenario())


def test_malformed_message_is_rejected_and_later_ones_still_arrive(
    mqtt_broker: Any, registry: DetectorRegistry
) -> None:
    async def scenario() -> None:
        collector, prefix = Collector(), _prefix()
        async with _source(mqtt_broker, registry, collector, prefix) as source:
            async with asyncio.timeout(WAIT_S):
                await source.wait_connected()
            await _publish(
                mqtt_broker,
                [
                    (f"{prefix}detectors/D2", b"{oops"),
                    (f"{prefix}detectors/D2", b"\xff\xfe\x00"),
                    (f"{prefix}detectors/D2", json.dumps(reading("D2", occupancy_pct=140)).encode()),
                    (f"{prefix}detectors/D2", json.dumps(reading("D2")).encode()),
                    (f"{prefix}detectors/D2", json.dumps(reading("D2")).encode()),  # QoS-1 style redelivery
                ],
            )
            await collector.wait_for(lambda: len(collector.results) == 5, "5 results")
            assert collector.codes == ["bad_json", "bad_json", "out_of_range", "duplicate"]
            assert collector.rows == [(1, TS)]
            rejection = collector.results[2].rejections[0]
            assert rejection.topic == f"{prefix}detectors/D2"
            assert rejection.reason == "occupancy_pct 140 outside 0..100"
            assert source.handler_errors == 0

    run(scenario())


def test_a_failing_on_result_never_stops_the_source(mqtt_broker: Any, registry: DetectorRegistry) -> None:
    async def scenario() -> None:
        collector, prefix = Collector(), _prefix()
        calls = 0

        def flaky(result: ParseResult) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("downstream bug")
            collector.on_result(result)

        async with _source(mqtt_broker, registry, collector, prefix, on_result=flaky) as source:
            async with asyncio.timeout(WAIT_S):
                await source.wait_connected()
            await _publish(
                mqtt_broker,
                [
                    (f"{prefix}detectors/D2", json.dumps(reading("D2")).encode()),
                    (f"{prefix}detectors/D3", json.dumps(reading("D3")).encode()),
                ],
            )
            await collector.wait_for(lambda: len(collector.rows) == 1, "the second reading")
            assert collector.rows == [(2, TS)]
            assert source.handler_errors == 1
            assert source.is_connected

    run(scenario())


def test_reconnects_after_the_broker_restarts(fresh_mqtt_broker: Any, registry: DetectorRegistry) -> None:
    broker = fresh_mqtt_broker
    # An abrupt outage where the broker can do it (mosquitto), else a clean stop (embedded broker).
    take_down = broker.kill if hasattr(broker, "kill") else broker.stop

    async def scenario() -> None:
        collector, prefix = Collector(), _prefix()
        source = _source(broker, registry, collector, prefix, backoff_initial_s=0.05, backoff_max_s=0.2)
        async with source:
            async with asyncio.timeout(WAIT_S):
                await source.wait_connected()
            await _publish(broker, [(f"{prefix}detectors/D2", json.dumps(reading("D2")).encode())])
            await collector.wait_for(lambda: len(collector.rows) == 1, "the first reading")

            await asyncio.to_thread(take_down)
            await collector.wait_for(lambda: "disconnected" in collector.statuses, "the disconnect")
            assert not source.is_connected
            assert source.last_error
            await asyncio.sleep(0.3)  # let a few reconnect attempts fail against the dead port

            await asyncio.to_thread(broker.start)
            await collector.wait_for(lambda: source.reconnects == 1 and source.is_connected, "the reconnect")
            await _publish(broker, [(f"{prefix}detectors/D2", json.dumps(reading("D2", TS + 30)).encode())])
            await collector.wait_for(lambda: len(collector.rows) == 2, "a reading after the restart")
            assert collector.rows == [(1, TS), (1, TS + 30)]

        statuses = collector.statuses
        assert statuses[:3] == ["connecting", "connected", "disconnected"]
        assert statuses.count("connected") == 2
        assert statuses[-2:] == ["connected", "stopped"]
        # Failed attempts while the broker was down go connecting -> disconnected, never connected.
        middle = statuses[2:-2]
        assert set(middle) <= {"connecting", "disconnected"} and middle[-1] == "connecting"

    run(scenario())


def test_shutdown_while_the_broker_is_unreachable_is_prompt(registry: DetectorRegistry) -> None:
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    class Nowhere:
        host = "127.0.0.1"

    Nowhere.port = port  # type: ignore[attr-defined]

    async def scenario() -> None:
        collector = Collector()
        source = _source(Nowhere, registry, collector, "traffic/", backoff_initial_s=0.05, backoff_max_s=10.0)
        async with source:
            await collector.wait_for(lambda: collector.statuses.count("disconnected") >= 3, "3 failures")
            assert not source.is_connected
            assert source.last_error
            started = time.monotonic()
        assert time.monotonic() - started < 1.0
        assert source.status == "stopped"
        assert source.reconnects == 0
        assert _source_tasks() == []

    run(scenario())


def test_backoff_grows_exponentially_up_to_the_cap(registry: DetectorRegistry) -> None:
    attempts: list[float] = []

    def failing_factory() -> aiomqtt.Client:
        attempts.append(time.monotonic())
        raise aiomqtt.MqttError("broker unreachable")

    async def scenario() -> None:
        parser = ReadingParser(registry)
        source = MqttReadingSource(
            failing_factory, parser, lambda _: None, backoff_initial_s=0.02, backoff_max_s=0.08
        )
        async with source:
            while len(attempts) < 6:
                await asyncio.sleep(0.01)
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        # Equal jitter: each wait lies in [delay/2, delay] for delays 0.02, 0.04, 0.08, 0.08, ...
        for gap, delay in zip(gaps, [0.02, 0.04, 0.08, 0.08, 0.08], strict=False):
            assert delay / 2 * 0.9 <= gap <= delay + 0.05

    run(scenario())


class _DeafClient:
    """Stands in for aiomqtt.Client: connects, but the broker refuses the subscription."""

    def __init__(self, log: list[str]) -> None:
        self._log = log

    async def __aenter__(self) -> _DeafClient:
        self._log.append("enter")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._log.append("exit")

    async def subscribe(self, topic: str, qos: int = 0) -> list[ReasonCode]:
        self._log.append(f"subscribe {topic} {qos}")
        return [ReasonCode(PacketTypes.SUBACK, identifier=0x87)]  # Not authorized


def test_refused_subscription_counts_as_an_outage(registry: DetectorRegistry) -> None:
    calls: list[str] = []
    statuses: list[str] = []

    async def scenario() -> None:
        source = MqttReadingSource(
            lambda: _DeafClient(calls),  # type: ignore[arg-type,return-value]
            ReadingParser(registry),
            lambda _: None,
            backoff_initial_s=0.01,
            backoff_max_s=0.02,
            on_status=statuses.append,
        )
        async with source:
            while calls.count("exit") < 2:
                await asyncio.sleep(0.01)
            assert not source.is_connected
            assert source.last_error == (
                "broker refused the subscription to traffic/detectors/+: Not authorized"
            )

    run(scenario())
    assert calls[:3] == ["enter", "subscribe traffic/detectors/+ 1", "exit"]
    assert "connected" not in statuses
    assert statuses[:2] == ["connecting", "disconnected"]


class _FailingDisconnectClient:
    """Stands in for aiomqtt.Client: connects and subscribes, then fails to disconnect."""

    connections = 0

    async def __aenter__(self) -> _FailingDisconnectClient:
        type(self).connections += 1
        # A second connection means the source carried on after being stopped; fail loudly
        # (not with MqttError, which the source would retry) instead of hanging the test.
        assert type(self).connections == 1, "the source reconnected after it was stopped"
        return self

    async def __aexit__(self, *exc: object) -> None:
        raise aiomqtt.MqttError("Operation timed out")

    async def subscribe(self, topic: str, qos: int = 0) -> list[int]:
        return [qos]

    @property
    def messages(self) -> AsyncIterator[aiomqtt.Message]:
        async def never() -> AsyncIterator[aiomqtt.Message]:
            await asyncio.Event().wait()
            yield  # type: ignore[misc]  # pragma: no cover - makes this an async generator

        return never()


def test_exit_is_not_undone_by_an_error_while_disconnecting(registry: DetectorRegistry) -> None:
    async def scenario() -> None:
        source = MqttReadingSource(
            _FailingDisconnectClient,  # type: ignore[arg-type]
            ReadingParser(registry),
            lambda _: None,
            backoff_initial_s=0.01,
            backoff_max_s=0.02,
        )
        async with source:
            async with asyncio.timeout(WAIT_S):
                await source.wait_connected()
        assert source.status == "stopped"
        assert _source_tasks() == []

    run(scenario())


def test_clean_exit_while_connected(mqtt_broker: Any, registry: DetectorRegistry) -> None:
    async def scenario() -> None:
        collector = Collector()
        source = _source(mqtt_broker, registry, collector, _prefix())
        async with source:
            async with asyncio.timeout(WAIT_S):
                await source.wait_connected()
            assert len(_source_tasks()) == 1
        assert _source_tasks() == []
        assert not source.is_connected
        assert collector.statuses[-1] == "stopped"
        # The component can be entered again after a clean exit.
        async with source:
            async with asyncio.timeout(WAIT_S):
                await source.wait_connected()

    run(scenario())


def test_not_reentrant(mqtt_broker: Any, registry: DetectorRegistry) -> None:
    async def scenario() -> None:
        source = _source(mqtt_broker, registry, Collector(), _prefix())
        async with source:
            with pytest.raises(RuntimeError, match="not reentrant"):
                await source.__aenter__()

    run(scenario())


def test_configuration_errors_fail_at_construction(registry: DetectorRegistry) -> None:
    parser = ReadingParser(registry, prefix="city/")
    with pytest.raises(ValueError, match="prefix"):
        MqttReadingSource(lambda: None, parser, lambda _: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="qos"):
        MqttReadingSource(lambda: None, parser, lambda _: None, prefix="city/", qos=3)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="backoff"):
        MqttReadingSource(lambda: None, parser, lambda _: None, prefix="city/", backoff_initial_s=0)  # type: ignore[arg-type,return-value]
