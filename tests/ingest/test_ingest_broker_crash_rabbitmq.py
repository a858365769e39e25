"""A broker *killed* (SIGKILL) in the middle of a stream loses no reading it acknowledged, when
the broker is RabbitMQ with its MQTT plugin.

The scenario of the Mosquitto SIGKILL test in ``test_ingest_broker_restart.py``: the engine's
input session is persistent (QoS 1, ``clean_session=False``), a publisher with a persistent
session sends 3,000 readings at QoS 1 and counts the PUBACKs; halfway the broker is SIGKILLed
(beam.smp and all), restarted on the same data directory and ports, and the publisher
reconnects and sends again what was not acknowledged. Mosquitto 2.0 acknowledges before it saves
and loses 0-1 readings in that window; RabbitMQ's MQTT plugin sends the PUBACK only after the
publisher confirm, i.e. after the durable session queue of the engine has the message on disk,
so here every acknowledged reading must be accepted, and exactly once: redeliveries (the
publisher re-sending unacknowledged readings, the broker re-delivering unacknowledged
deliveries) are refused by the engine's duplicate memory.

Shortly before the kill the engine's event loop is blocked for a moment (as a long tick blocks
it: nothing is read, so the broker keeps what it acknowledged in the engine's queue): the kill
then always lands with readings the broker had acknowledged but not yet delivered -- exactly the
readings a broker that acknowledges before it saves would lose. The test checks that there were
some and reports how many.

RabbitMQ itself does not always keep its word: now and then (CI once; 6 of 167 runs beside
``dd oflag=dsync`` writers) the restarted node routes nothing to the recovered session queue
until the engine subscribes again, and acknowledges every reading published meanwhile as
unroutable -- dropped. The test tells the two apart: a reading still with the broker, or a
message the engine read and did not account for, fails it; a loss inside the broker (queue
empty, the node's unroutable counter) is reported as an expected failure with its figures.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from roadpulse.brokers import RabbitMqError, RabbitMqProcess, find_rabbitmq_server
from tests.ingest.live_helpers import OUTAGE_READINGS as N_READINGS
from tests.ingest.live_helpers import stream_through_outage

# The same stream as the Mosquitto crash test (``live_helpers.stream_through_outage``).
#: The engine stops reading this many readings before the kill, for ENGINE_PAUSE_S (the kill
#: comes a few tenths of a second later, inside the pause).
PAUSE_BEFORE_KILL = 400
ENGINE_PAUSE_S = 1.5

pytestmark = pytest.mark.skipif(
    find_rabbitmq_server() is None,
    reason="needs rabbitmq-server (RabbitMQ with the rabbitmq_mqtt plugin; checked with 3.10), not installed",
)


@pytest.fixture
def rabbitmq() -> Iterator[RabbitMqProcess]:
    broker = RabbitMqProcess()
    try:
        broker.start()
    except RabbitMqError as exc:
        broker.stop()
        pytest.skip(f"rabbitmq-server is installed but a private node did not start: {exc}")
    try:
        yield broker
    finally:
        broker.stop()  # also after a failed kill/restart: no beam.smp left behind


def test_killed_rabbitmq_loses_no_acknowledged_reading_and_counts_each_once(
    rabbitmq: RabbitMqProcess,
) -> None:
    def kill_and_restart() -> None:
        rabbitmq.kill()
        time.sleep(0.3)
        rabbitmq.start()

    run = stream_through_outage(
        rabbitmq.host,
        rabbitmq.port,
        kill_and_restart,
        connect_timeout_s=60,
        block_engine=(PAUSE_BEFORE_KILL, ENGINE_PAUSE_S),
        broker_state=lambda: {
            "queues": rabbitmq.queue_states(),
            "since_restart": rabbitmq.routing_counters(),
        },
    )
    at_kill = run.at_outage
    print(
        f"killed RabbitMQ: at the kill {at_kill['acked']} acknowledged, {at_kill['accepted']} accepted "
        f"({at_kill['acked'] - at_kill['accepted']} acknowledged, not yet accepted: in the broker's queue); "
        f"in the end {run.acked} acknowledged, {run.accepted} accepted, "
        f"{N_READINGS - run.accepted} lost, rejected {run.rejected}; the engine's source read "
        f"{run.source_messages} messages over {run.source_reconnects} reconnect(s); "
        f"the broker's queues at the end: {run.broker_state}"
    )
    # The kill hit the window that Mosquitto cannot cover: acknowledged, not yet delivered.
    assert at_kill["acked"] > at_kill["accepted"], at_kill
    assert run.acked == N_READINGS, run
    assert set(run.rejected) <= {"duplicate", "late"}, run
    # The engine's part: every message it was sent is accepted once or refused as a redelivery,
    # and nothing is counted twice.
    assert run.source_messages == run.accepted + sum(run.rejected.values()), run
    assert run.accepted <= N_READINGS, run
    if run.accepted < N_READINGS:
        # A missing reading still with the broker (ready, or delivered and unacknowledged) is
        # the engine's fault. One the broker acknowledged but never queued is the broker's:
        # RabbitMQ 3.10.8 sometimes comes back from the kill routing nothing to the recovered
        # session queue until the engine subscribes again (README, "Ingest at city scale").
        state = run.broker_state
        assert isinstance(state, dict), run
        held = sum(int(q["messages_ready"]) + int(q["messages_unacknowledged"]) for q in state["queues"])
        assert held == 0, run
        routing = state["since_restart"]
        pytest.xfail(
            f"RabbitMQ acknowledged {N_READINGS - run.accepted} readings it never queued: since "
            f"the restart it routed {routing['routed']} messages and dropped "
            f"{routing['unroutable_dropped']} as unroutable; the engine read "
            f"{run.source_messages} messages and accounted for each, its queue is empty"
        )
    # Zero loss and no double count: exactly one acceptance per acknowledged reading.
    assert run.accepted == N_READINGS, run
