"""MqttSink against a real Mosquitto: retained state, broker restarts, queue policy, shutdown."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import aiomqtt
import pytest

from ingest.mqtt_endpoint import MqttEndpoint
from publishers.message import Message
from publishers.mqtt_sink import MqttSink
from publishers.tick_messages import TickMessages

TS = 1776729660.0
#: Every scenario runs under this bound so a bug shows as a failure, not a hung suite.
SCENARIO_TIMEOUT_S = 30.0


def run(scenario: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(SCENARIO_TIMEOUT_S):
            await scenario

    asyncio.run(bounded())


@pytest.fixture(params=["gmqtt", "aiomqtt"])
def backend(request: pytest.FixtureRequest) -> str:
    """The sink's two backends: an `MqttEndpoint` (gmqtt, the engine's) or aiomqtt clients."""
    return str(request.param)


def factory(
    backend: str, host: str, port: int | Callable[[], int]
) -> Callable[[], aiomqtt.Client | MqttEndpoint]:
    """Clients for the sink; ``port`` may be a callable, to point the sink elsewhere later."""
    ids = itertools.count()
    run_id = uuid.uuid4().hex[:8]

    def make() -> aiomqtt.Client | MqttEndpoint:
        identifier = f"sink-{run_id}-{next(ids)}"
        where = port() if callable(port) else port
        if backend == "gmqtt":
            return MqttEndpoint(host, where, identifier, clean_session=True, keepalive_s=5)
        return aiomqtt.Client(host, where, identifier=identifier, timeout=5)

    return make


def fast_sink(client_factory: Callable[[], aiomqtt.Client | MqttEndpoint], **kwargs: Any) -> MqttSink:
    """A sink that retries quickly, with a seeded jitter."""
    options: dict[str, Any] = dict(backoff_initial_s=0.05, backoff_max_s=0.2, rng=random.Random(0))
    options.update(kwargs)
    return MqttSink(client_factory, **options)


async def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


async def collect(
    client: aiomqtt.Client, until: Callable[[list[aiomqtt.Message]], bool], settle_s: float = 0.3
) -> list[aiomqtt.Message]:
    """Messages received until ``until`` holds, plus any arriving within ``settle_s`` after."""
    received: list[aiomqtt.Message] = []

    async def gather() -> None:
        async for message in client.messages:
            received.append(message)

    task = asyncio.create_task(gather())
    try:
        await eventually(lambda: until(received), "the expected messages arrived")
        await asyncio.sleep(settle_s)
    finally:
        task.cancel()
    return received


async def read_retained(host: str, port: int, topic_filter: str, expected: int) -> dict[str, bytes]:
    """What a late subscriber sees: the broker's retained messages under ``topic_filter``."""
    async with aiomqtt.Client(host, port, identifier=f"reader-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(topic_filter)
        received = await collect(client, lambda got: len(got) >= expected)
    assert all(m.retain for m in received)
    return {m.topic.value: bytes(m.payload) for m in received}  # type: ignore[arg-type]


def tick_messages(
    build: Any, prefix: str, speeds: list[float], *, ts: float = TS, tick: TickMessages | None = None
) -> tuple[TickMessages, list[Message]]:
    ids = [f"seg{i}#{i % 2}" for i in range(len(speeds))]
    tick = tick or TickMessages(build.network(ids), prefix=prefix)
    return tick, tick.for_tick(build.result(build.states(ts, speeds)), full=True)


def payloads_by_topic(messages: list[Message], retained_only: bool = True) -> dict[str, bytes]:
    return {m.topic: m.payload for m in messages if m.retain or not retained_only}


# -- integration with a real broker --------------------------------------------------------------------


def test_retained_states_reach_a_late_subscriber(backend: str, mqtt_broker: Any, build: Any) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}/"
    _, messages = tick_messages(build, prefix, [float(10 + i) for i in range(40)])
    statuses: list[str] = []

    async def scenario() -> None:
        async with fast_sink(
            factory(backend, mqtt_broker.host, mqtt_broker.port), on_status=statuses.append
        ) as sink:
            sink.submit(messages)
            await sink.flush()
        assert sink.published_total == len(messages)
        assert sink.dropped_total == 0
        retained = await read_retained(mqtt_broker.host, mqtt_broker.port, f"{prefix}#", expected=41)
        # 40 segments and the city index are retained; the snapshot is not.
        assert retained == payloads_by_topic(messages)
        assert f"{prefix}snapshot" not in retained

    run(scenario())
    assert statuses == ["mqtt sink: connected", "mqtt sink: closed"]


def test_exit_drains_the_queue(backend: str, mqtt_broker: Any, build: Any) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}/"
    _, messages = tick_messages(build, prefix, [float(i % 70) for i in range(3000)])

    async def scenario() -> None:
        async with fast_sink(factory(backend, mqtt_broker.host, mqtt_broker.port)) as sink:
            sink.submit(messages)
            # Leave at once: __aexit__ must deliver everything queued before disconnecting.
        assert (sink.published_total, sink.dropped_total, sink.pending) == (len(messages), 0, 0)
        assert asyncio.all_tasks() == {asyncio.current_task()}, "the sink left tasks behind"
        retained = await read_retained(mqtt_broker.host, mqtt_broker.port, f"{prefix}segments/#", 3000)
        assert len(retained) == 3000

    run(scenario())


def test_latest_state_per_topic_arrives_after_broker_restart(
    backend: str, fresh_mqtt_broker: Any, build: Any
) -> None:
    broker = fresh_mqtt_broker
    prefix = f"test-{uuid.uuid4().hex[:8]}/"
    n = 30
    statuses: list[str] = []

    async def scenario() -> None:
        async with fast_sink(factory(backend, broker.host, broker.port), on_status=statuses.append) as sink:
            tick, first = tick_messages(build, prefix, [50.0] * n)
            sink.submit(first)
            await sink.flush()

            broker.kill()
            # The sink notices the dead connection even with nothing to send.
            await eventually(lambda: not sink.connected, "the sink saw the broker go")

            # Two ticks while the broker is away: every segment changes twice.
            _, second = tick_messages(build, prefix, [20.0] * n, ts=TS + 60, tick=tick)
            _, third = tick_messages(build, prefix, [float(5 + i) for i in range(n)], ts=TS + 120, tick=tick)
            sink.submit(second)
            sink.submit(third)
            # Retained messages coalesced to one per topic; the two snapshots wait in order.
            assert sink.pending == n + 1 + 2

            broker.start()
            await sink.wait_connected()
            await sink.flush()
            assert sink.reconnects == 1
        assert sink.dropped_total == 0

        # The restarted broker (no persistence) knows only what the sink re-published.
        retained = await read_retained(broker.host, broker.port, f"{prefix}#", expected=n + 1)
        assert retained == payloads_by_topic(third)
        speeds = sorted(json.loads(p)["speed_kmh"] for t, p in retained.items() if "/segments/" in t)
        assert speeds == [float(5 + i) for i in range(n)]
        assert sink.coalesced_total == n + 1  # the second tick's segment states and city index

    run(scenario())
    assert statuses[0] == "mqtt sink: connected"
    assert any(s.startswith("mqtt sink: connection lost") for s in statuses)
    assert "mqtt sink: reconnected" in statuses


def test_overflow_drops_oldest_not_retained_first(
    backend: str, mqtt_broker: Any, fresh_mqtt_broker: Any
) -> None:
    """While unreachable, the queue keeps the latest retained state per topic and drops the oldest
    not-retained messages; once the broker is reachable, exactly the survivors arrive, in order."""
    live_port = mqtt_broker.port
    dead_port = fresh_mqtt_broker.port
    fresh_mqtt_broker.kill()  # nothing listens there now
    target = {"port": dead_port}
    prefix = f"test-{uuid.uuid4().hex[:8]}/"

    async def scenario() -> None:
        async with aiomqtt.Client(mqtt_broker.host, live_port) as subscriber:
            await subscriber.subscribe(f"{prefix}#")
            sink = fast_sink(factory(backend, mqtt_broker.host, lambda: target["port"]), max_pending=6)
            async with sink:
                sink.submit([Message(f"{prefix}state/{k}", b'{"v":0}', True) for k in "abc"])
                sink.submit([Message(f"{prefix}event", b'{"n":%d}' % i) for i in range(5)])
                sink.submit([Message(f"{prefix}state/a", b'{"v":1}', True)])
                assert (sink.pending, sink.dropped_total, sink.coalesced_total) == (6, 2, 1)

                target["port"] = live_port
                received = await collect(subscriber, lambda got: len(got) >= 6)
            assert [(m.topic.value, bytes(m.payload)) for m in received] == [  # type: ignore[arg-type]
                (f"{prefix}state/a", b'{"v":1}'),
                (f"{prefix}state/b", b'{"v":0}'),
                (f"{prefix}state/c", b'{"v":0}'),
                (f"{prefix}event", b'{"n":2}'),
                (f"{prefix}event", b'{"n":3}'),
                (f"{prefix}event", b'{"n":4}'),
            ]

    run(scenario())


def test_exit_gives_up_after_drain_timeout_when_broker_is_unreachable(
    backend: str, fresh_mqtt_broker: Any
) -> None:
    broker = fresh_mqtt_broker
    broker.kill()

    async def scenario() -> None:
        sink = fast_sink(factory(backend, broker.host, broker.port), drain_timeout_s=0.3)
        started = time.monotonic()
        async with sink:
            sink.submit([Message("t/a", b"{}", True), Message("t/b", b"{}")])
        assert time.monotonic() - started < 3.0
        assert (sink.published_total, sink.dropped_total, sink.pending) == (0, 2, 0)

    run(scenario())


def test_rejected_message_is_dropped_not_retried(backend: str, mqtt_broker: Any) -> None:
    """A message paho refuses (wildcard in a topic name) is counted and skipped; the rest flows."""

    async def scenario() -> None:
        async with fast_sink(factory(backend, mqtt_broker.host, mqtt_broker.port)) as sink:
            sink.submit([Message("bad/#", b"{}"), Message("ok/topic", b"{}")])
            await sink.flush()
            assert (sink.published_total, sink.dropped_total, sink.reconnects) == (1, 1, 0)

    run(scenario())


# -- without a broker ----------------------------------------------------------------------------------


def test_submit_outside_async_with_is_an_error() -> None:
    async def scenario() -> None:
        sink = MqttSink(factory("aiomqtt", "127.0.0.1", 1))
        with pytest.raises(RuntimeError, match="outside"):
            sink.submit([Message("t", b"{}")])
        async with sink:
            pass
        with pytest.raises(RuntimeError, match="outside"):
            sink.submit([Message("t", b"{}")])

    run(scenario())


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    async def scenario() -> None:
        sink = MqttSink(
            factory("aiomqtt", "127.0.0.1", 1), backoff_initial_s=0.5, backoff_max_s=4.0, rng=random.Random(1)
        )
        for failures, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (1000, 4.0)]:
            delays = [sink._backoff(failures) for _ in range(200)]
            assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
            assert max(delays) - min(delays) > ceiling / 4  # actually jittered

    run(scenario())


def test_a_bug_in_the_publisher_task_surfaces() -> None:
    """Errors other than connection errors are not retried forever: submit and exit raise."""

    def broken_factory() -> aiomqtt.Client:
        raise LookupError("no such broker setting")

    async def scenario() -> None:
        with pytest.raises(LookupError, match="no such broker setting"):
            async with MqttSink(broken_factory) as sink:
                await asyncio.sleep(0.05)
                with pytest.raises(RuntimeError, match="publisher task has stopped"):
                    sink.submit([Message("t", b"{}")])

    run(scenario())


@pytest.mark.parametrize("bad", [{"max_pending": 0}, {"publish_concurrency": 0}])
def test_invalid_settings(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        MqttSink(factory("aiomqtt", "127.0.0.1", 1), **bad)


def test_qos1_messages_count_once_acknowledged(backend: str, mqtt_broker: Any) -> None:
    """QoS 1 messages mixed with QoS 0 ones: every one arrives, counted once the broker acked it."""
    prefix = f"test-{uuid.uuid4().hex[:8]}/"
    messages = [Message(f"{prefix}m/{i}", b'{"i":%d}' % i, i % 3 == 0, qos=i % 2) for i in range(50)]

    async def scenario() -> None:
        async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as subscriber:
            await subscriber.subscribe(f"{prefix}#", qos=1)
            async with fast_sink(factory(backend, mqtt_broker.host, mqtt_broker.port)) as sink:
                sink.submit(messages)
                await sink.flush()
                assert (sink.published_total, sink.dropped_total) == (50, 0)
            received = await collect(subscriber, lambda got: len(got) >= 50)
        got = sorted((m.topic.value, bytes(m.payload)) for m in received)  # type: ignore[arg-type]
        assert got == sorted((m.topic, m.payload) for m in messages)

    run(scenario())


@pytest.mark.parametrize(
    ("topic", "size", "retain"),
    [
        ("a", 0, False),
        ("traffic/segments/4711%230", 120, True),
        ("t/ü", 127, False),
        ("t", 16_383, True),
        ("x" * 300, 2_100_000, False),
    ],
)
def test_qos0_packet_matches_gmqtt_encoding(topic: str, size: int, retain: bool) -> None:
    """The fast path's PUBLISH packets are byte for byte what gmqtt builds (MQTT 3.1.1), across
    the remaining-length varint's 1-4 byte boundaries."""
    import gmqtt
    from gmqtt.mqtt.package import PublishPacket

    from publishers._gmqtt_publish import encode_publish_qos0

    class Protocol:  # what PublishPacket reads of a connection
        proto_ver = 4

    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    _, reference = PublishPacket.build_package(
        gmqtt.Message(topic, payload, qos=0, retain=retain), Protocol()
    )
    assert encode_publish_qos0(topic, payload, retain) == reference


@pytest.mark.parametrize("topic", ["", "a/+/b", "a/#", "a\x00b"])
def test_qos0_encoding_refuses_invalid_topics(topic: str) -> None:
    from publishers._gmqtt_publish import InvalidMessageError, encode_publish_qos0

    with pytest.raises(InvalidMessageError, match="invalid topic"):
        encode_publish_qos0(topic, b"{}", False)
