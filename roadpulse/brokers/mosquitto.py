"""Run a private Mosquitto broker on a free local port (for the demo and the test suite).

Each :class:`MosquittoProcess` gets its own temporary directory holding the config file, the
log and the persistence database, so a :meth:`~MosquittoProcess.restart` on the same port keeps
retained messages and persistent sessions, like a production broker restarting.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from ._process import BrokerProcess

log = logging.getLogger("roadpulse.brokers.mosquitto")

# Distribution packages install the daemon in sbin, which is often not on a user's PATH.
_EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")
_STOP_TIMEOUT_S = 5.0
_PORT_ATTEMPTS = 3  # a port picked free can be taken before mosquitto binds it


#: Save the database after every change (a queued message, a retained message, a subscription)
#: instead of on a timer. It narrows, but cannot close, the window a broker crash (SIGKILL) loses:
#: Mosquitto 2.0 acknowledges a QoS 1 message before its main loop saves, and a message that goes
#: straight into a connected subscriber's in-flight window is no "change" at all. Each save
#: rewrites the whole database, so this suits the tests' small streams, not a city's 10,000
#: retained segment states per tick (README, "Ingest at city scale": it saturated the broker).
SAVE_EVERY_CHANGE_CONFIG: tuple[str, ...] = ("autosave_on_changes true", "autosave_interval 1")


class MosquittoError(RuntimeError):
    """Mosquitto could not be started (the message carries the end of its log)."""


def find_mosquitto() -> str | None:
    """Path of the ``mosquitto`` binary on PATH or in the usual sbin directories, or None."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_DIRS])
    return shutil.which("mosquitto", path=search)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class MosquittoProcess(BrokerProcess):
    """A ``mosquitto`` child process listening on ``host:port`` with anonymous access.

    ``port=None`` picks a free port at the first start; later starts reuse it.  Use as a
    context manager, or call :meth:`start` and :meth:`stop`.
    """

    kind = "mosquitto"

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        binary: str | None = None,
        startup_timeout_s: float = 10.0,
        extra_config: Sequence[str] = (),
    ) -> None:
        found = binary or find_mosquitto()
        if found is None:
            searched = ", ".join(_EXTRA_DIRS)
            raise MosquittoError(f"no mosquitto binary found (searched PATH and {searched})")
        self.binary = found
        super().__init__(port, host=host, startup_timeout_s=startup_timeout_s, extra_config=extra_config)

    @property
    def log_path(self) -> Path | None:
        """Mosquitto's log file."""
        return None if self._dir is None else self._dir / "mosquitto.log"

    def __repr__(self) -> str:
        return f"MosquittoProcess({self._host!r}, {self._port}, running={self.running})"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start mosquitto and wait until its port accepts connections; returns ``self``.

        Raises :class:`MosquittoError` (with the log's last lines) if it exits or does not
        listen within ``startup_timeout_s``.  A no-op if already running.
        """
        if self.running:
            return self
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="roadpulse-mosquitto-"))
        attempt = 0
        while True:
            if self._port is None or not self._fixed_port:
                self._port = free_port(self._host)
            try:
                self._spawn()
            except MosquittoError:
                attempt += 1
                if self._fixed_port or attempt >= _PORT_ATTEMPTS or not self._address_in_use():
                    raise
                log.info("port %d was taken before mosquitto bound it; trying another", self._port)
                continue
            self._fixed_port = True  # later starts and restarts come back on this port
            return self

    # -- internals --------------------------------------------------------------------------

    def _config(self) -> str:
        assert self._dir is not None
        lines = [
            f"listener {self._port} {self._host}",
            "allow_anonymous true",
            "persistence true",
            # The trailing separator matters: mosquitto appends the file name to it verbatim.
            f"persistence_location {self._dir}{os.sep}",
            f"log_dest file {self._dir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            # The default (1000) silently drops QoS 1/2 messages to a subscriber that falls
            # behind a burst; a private broker for the demo and tests should not.  It matches
            # the embedded broker's queue limit.
            "max_queued_messages 100000",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # Started as root, mosquitto drops to user "mosquitto", which cannot write in our
            # private temp dir; stay root instead (this broker only listens on loopback).
            lines.append("user root")
        lines.extend(self.extra_config)
        return "\n".join(lines) + "\n"

    def _spawn(self) -> None:
        assert self._dir is not None
        conf = self._dir / "mosquitto.conf"
        conf.write_text(self._config())
        if self.log_path is not None and self.log_path.exists():
            # Keep the previous run's log apart, so errors shown are this run's.
            self.log_path.replace(self._dir / "mosquitto.previous.log")
        stderr_path = self._dir / "stderr.log"
        with stderr_path.open("wb") as stderr:
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise MosquittoError(
                    f"mosquitto exited with code {self._proc.returncode} on port {self._port}"
                    + self._log_tail()
                )
            if port_open(self._host, self.port):
                # Something listens; make sure it is our process and not a squatter.
                time.sleep(0.02)
                if self._proc.poll() is None:
                    log.info("mosquitto (pid %d) listening on %s:%d", self._proc.pid, self._host, self.port)
                    return
            else:
                time.sleep(0.02)
        self._terminate(hard=True)
        raise MosquittoError(
            f"mosquitto did not listen on {self._host}:{self._port} within "
            f"{self.startup_timeout_s:g} s" + self._log_tail()
        )

    def _terminate(self, *, hard: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        if hard:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("mosquitto (pid %d) ignored SIGTERM; killing it", proc.pid)
            proc.kill()
            proc.wait(_STOP_TIMEOUT_S)

    def _log_files(self) -> list[Path]:
        assert self._dir is not None
        return [self._dir / "stderr.log", self._dir / "mosquitto.log"]

    def _address_in_use(self) -> bool:
        return "in use" in self._log_text()
