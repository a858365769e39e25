"""Suite-wide fixtures: an MQTT broker for integration tests.

``mqtt_broker`` (one per test session) and ``fresh_mqtt_broker`` (one per test, for tests that
restart it) run a private Mosquitto on a free port when the binary exists, else the embedded
Python broker.  The run's header names the broker; falling back to the embedded one also warns.

``ROADPULSE_TEST_BROKER=embedded`` forces the embedded broker (so CI can cover that path);
``ROADPULSE_TEST_BROKER=mosquitto`` requires Mosquitto and fails the fixtures without it.
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Some wheels (gmqtt's among them) install a top-level ``tests`` package into site-packages; a
# regular package there beats this folder (a namespace package), and ``from tests.roadpulse...``
# imports would fail. Make ``tests`` this folder before any test module is imported.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in list(getattr(sys.modules.get("tests"), "__path__", [])):
    _namespace = types.ModuleType("tests")
    _namespace.__path__ = [_TESTS_DIR]
    sys.modules["tests"] = _namespace

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


class TlsBroker:
    """A Mosquitto with TLS and password authentication (see ``tls_mqtt_broker``)."""

    def __init__(
        self,
        process: RestartableBroker,
        ca_file: Path,
        other_ca_file: Path,
        client_cert: Path,
        client_key: Path,
        username: str,
        password: str,
        password_file: Path,
    ) -> None:
        self.process = process
        self.ca_file = ca_file
        self.other_ca_file = other_ca_file
        self.client_cert = client_cert
        self.client_key = client_key
        self.username = username
        self.password = password
        self.password_file = password_file

    @property
    def host(self) -> str:
        return self.process.host

    @property
    def port(self) -> int:
        return self.process.port


def _openssl(*args: str, cwd: Path) -> None:
    import subprocess

    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")


def _make_ca(name: str, d: Path) -> tuple[Path, Path]:
    key, crt = d / f"{name}.key", d / f"{name}.crt"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-keyout",
        str(key),
        "-out",
        str(crt),
        cwd=d,
    )
    return key, crt


def _issue(name: str, ca_key: Path, ca_crt: Path, d: Path, *, server: bool) -> tuple[Path, Path]:
    key, csr, crt = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt"
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={name}",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        cwd=d,
    )
    ext = d / f"{name}.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else "extendedKeyUsage=clientAuth\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_crt),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        str(crt),
        "-extfile",
        str(ext),
        cwd=d,
    )
    return key, crt


@pytest.fixture(scope="module")
def tls_mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """Mosquitto with TLS (a throwaway CA and server certificate made with openssl) and a
    password file (``mosquitto_passwd``); anonymous access off. Client certificates are
    accepted (``require_certificate false``) so one broker serves both kinds of test.
    Skips when mosquitto, openssl or mosquitto_passwd is missing."""
    import shutil
    import subprocess

    from roadpulse.brokers import MosquittoProcess, find_mosquitto

    if (
        find_mosquitto() is None
        or shutil.which("openssl") is None
        or shutil.which("mosquitto_passwd") is None
    ):
        pytest.skip("needs mosquitto, openssl and mosquitto_passwd")
    d = tmp_path_factory.mktemp("tls")
    ca_key, ca_crt = _make_ca("roadpulse-test-ca", d)
    _other_key, other_crt = _make_ca("some-other-ca", d)
    server_key, server_crt = _issue("server", ca_key, ca_crt, d, server=True)
    client_key, client_crt = _issue("engine", ca_key, ca_crt, d, server=False)
    username, password = "engine", "s3cret-Ünïcode-pw"
    pw_file = d / "passwd"
    pw_file.touch()
    subprocess.run(
        ["mosquitto_passwd", "-b", str(pw_file), username, password], check=True, capture_output=True
    )
    client_pw = d / "engine.password"
    client_pw.write_text(password + "\n")
    broker = MosquittoProcess(
        extra_config=[
            f"cafile {ca_crt}",
            f"certfile {server_crt}",
            f"keyfile {server_key}",
            "require_certificate false",
            "allow_anonymous false",
            f"password_file {pw_file}",
        ]
    ).start()
    try:
        yield TlsBroker(broker, ca_crt, other_crt, client_crt, client_key, username, password, client_pw)
    finally:
        broker.stop()
