"""MQTT broker plumbing: find a broker to talk to, or start a private one.

* :func:`ensure_broker` is the demo's policy: the configured broker if it answers, else a
  private Mosquitto on a free port, else the embedded Python broker, with a one-line
  description of what it chose.
* :func:`start_local_broker` starts a private broker (Mosquitto if installed, else embedded);
  the test suite's ``mqtt_broker`` fixture uses it.
* :func:`broker_reachable` checks a broker with a real MQTT handshake.
"""

from __future__ import annotations

import logging
from typing import Literal, NamedTuple, Protocol, runtime_checkable

from .embedded import EmbeddedBroker
from .mosquitto import SAVE_EVERY_CHANGE_CONFIG, MosquittoError, MosquittoProcess, find_mosquitto
from .probe import broker_reachable, probe_broker
from .rabbitmq import RabbitMqError, RabbitMqProcess, find_rabbitmq_server

__all__ = [
    "SAVE_EVERY_CHANGE_CONFIG",
    "BrokerChoice",
    "EmbeddedBroker",
    "LocalBroker",
    "MosquittoError",
    "MosquittoProcess",
    "RabbitMqError",
    "RabbitMqProcess",
    "RestartableBroker",
    "broker_reachable",
    "ensure_broker",
    "find_mosquitto",
    "find_rabbitmq_server",
    "probe_broker",
    "start_local_broker",
]

log = logging.getLogger("roadpulse.brokers")

BrokerKind = Literal["mosquitto", "embedded"]


@runtime_checkable
class LocalBroker(Protocol):
    """A broker this process started and must stop."""

    @property
    def host(self) -> str:
        """Address it listens on."""
        ...

    @property
    def port(self) -> int:
        """TCP port it listens on."""
        ...

    @property
    def kind(self) -> str:
        """``"mosquitto"``, ``"embedded"`` or ``"rabbitmq"``."""
        ...

    def stop(self) -> None:
        """Stop it and release its resources."""
        ...


@runtime_checkable
class RestartableBroker(LocalBroker, Protocol):
    """A local broker that can simulate a restart on the same port, keeping retained
    messages and persistent sessions (:class:`MosquittoProcess`, :class:`EmbeddedBroker` and
    :class:`RabbitMqProcess` are)."""

    def restart(self) -> None:
        """Drop all clients and come back on the same port."""
        ...


class BrokerChoice(NamedTuple):
    """What :func:`ensure_broker` settled on; unpacks as ``host, port, description, local``."""

    host: str
    port: int
    description: str
    local: LocalBroker | None  # the broker we started (stop it when done), None if configured


def _start(prefer: BrokerKind, host: str) -> tuple[MosquittoProcess | EmbeddedBroker, str]:
    """Start a private broker; returns it and why it is of its kind (for messages)."""
    if prefer not in ("mosquitto", "embedded"):
        raise ValueError(f"prefer must be 'mosquitto' or 'embedded', not {prefer!r}")
    if prefer == "embedded":
        return EmbeddedBroker(host).start(), "the embedded broker was asked for"
    binary = find_mosquitto()
    if binary is None:
        return EmbeddedBroker(host).start(), "no mosquitto binary found"
    mosquitto = MosquittoProcess(host=host, binary=binary)
    try:
        return mosquitto.start(), binary
    except (MosquittoError, OSError) as exc:
        # A broken or sandboxed mosquitto must not stop the demo or the tests.
        mosquitto.stop()  # removes its temp dir
        log.warning("mosquitto at %s failed to start, using the embedded broker: %s", binary, exc)
        return EmbeddedBroker(host).start(), f"{binary} failed to start, see the log"


def start_local_broker(*, prefer: BrokerKind = "mosquitto", host: str = "127.0.0.1") -> RestartableBroker:
    """Start a private broker on a free port of ``host``.

    ``prefer="mosquitto"`` runs Mosquitto if its binary is found (and starts), else the
    embedded broker; ``prefer="embedded"`` always runs the embedded broker.  The caller stops
    it (``broker.stop()``); check ``broker.kind`` for which one it got.
    """
    return _start(prefer, host)[0]


def ensure_broker(
    host: str = "127.0.0.1",
    port: int = 1883,
    *,
    timeout_s: float = 1.0,
    prefer: BrokerKind = "mosquitto",
) -> BrokerChoice:
    """Find a broker for the demo, in this order:

    1. the configured ``host:port``, if it completes an MQTT handshake;
    2. a private Mosquitto on a free local port, if the binary exists;
    3. the embedded Python broker on a free local port.

    Returns ``(host, port, description, local)``: ``description`` is one sentence for the
    user ("using the configured broker at 127.0.0.1:1883", "started mosquitto on
    127.0.0.1:40123 (no broker at 127.0.0.1:1883)", ...), ``local`` the broker started here,
    which the caller must ``stop()``, or None.
    """
    usable, why = probe_broker(host, port, timeout_s)
    if usable:
        return BrokerChoice(host, port, f"using the configured broker at {host}:{port}", None)
    broker, reason = _start(prefer, "127.0.0.1")
    if broker.kind == "mosquitto":
        description = f"started mosquitto on {broker.host}:{broker.port} ({why})"
    else:
        description = f"started the embedded Python broker on {broker.host}:{broker.port} ({why}; {reason})"
    return BrokerChoice(broker.host, broker.port, description, broker)
