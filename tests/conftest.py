"""Suite-wide fixtures: an MQTT broker for integration tests.

``mqtt_broker`` (one per test session) and ``fresh_mqtt_broker`` (one per test, for tests that
restart it) run a private Mosquitto on a free port when the binary exists, else the embedded
Python broker.  The run's header names the broker; falling back to the embedded one also warns.

``ROADPULSE_TEST_BROKER=embedded`` forces the embedded broker (so CI can cover that path);
``ROADPULSE_TEST_BROKER=mosquitto`` requires Mosquitto and fails the fixtures without it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from roadpulse.brokers import RestartableBroker

# roadpulse.brokers is imported inside the functions below so that a problem there fails the
# MQTT tests only, not the collection of the whole suite.

_ENV = "ROADPULSE_TEST_BROKER"


def _broker_plan() -> tuple[str, str]:
    """``(kind, reason)`` of the broker the MQTT fixtures will start."""
    from roadpulse.brokers import find_mosquitto

    wanted = os.environ.get(_ENV, "").strip().lower() or "auto"
    if wanted not in ("auto", "mosquitto", "embedded"):
        raise pytest.UsageError(f"{_ENV} must be 'mosquitto', 'embedded' or unset, not {wanted!r}")
    if wanted == "embedded":
        return "embedded", f"forced by {_ENV}=embedded"
    binary = find_mosquitto()
    if binary is not None:
        return "mosquitto", binary
    if wanted == "mosquitto":
        raise pytest.UsageError(f"{_ENV}=mosquitto but no mosquitto binary was found")
    return "embedded", "no mosquitto binary found"


def _start_broker(config: pytest.Config, *, announce: bool) -> RestartableBroker:
    from roadpulse.brokers import start_local_broker

    kind, reason = _broker_plan()
    broker = start_local_broker(prefer="embedded" if kind == "embedded" else "mosquitto")
    if broker.kind != kind:
        reason = "mosquitto failed to start, see the log"
        if os.environ.get(_ENV, "").strip().lower() == "mosquitto":
            broker.stop()
            pytest.fail(f"{_ENV}=mosquitto but {reason}")
    if broker.kind == "embedded" and not reason.startswith("forced"):
        warnings.warn(f"MQTT tests use the embedded Python broker ({reason})", stacklevel=2)
    if announce:
        line = f"mqtt_broker: {broker.kind} on {broker.host}:{broker.port} ({reason})"
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():  # output capture would swallow it
                reporter.write_line(line)
        else:
            print(line)
    return broker


def pytest_report_header(config: pytest.Config) -> str:
    kind, reason = _broker_plan()
    return f"mqtt test broker: {kind} ({reason})"


@pytest.fixture(scope="session")
def mqtt_broker(pytestconfig: pytest.Config) -> Iterator[RestartableBroker]:
    """A broker shared by the whole session (``.host``, ``.port``, ``.kind``); do not restart
    or stop it -- use ``fresh_mqtt_broker`` for that."""
    broker = _start_broker(pytestconfig, announce=True)
    yield broker
    broker.stop()


@pytest.fixture
def fresh_mqtt_broker(pytestconfig: pytest.Config) -> Iterator[RestartableBroker]:
    """A broker of the same kind for one test, free to ``restart()`` (and, for mosquitto,
    ``kill()`` then ``start()``); stopped after the test."""
    broker = _start_broker(pytestconfig, announce=False)
    yield broker
    broker.stop()
