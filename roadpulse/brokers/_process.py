"""What every private broker child process shares: address, lifecycle calls, logs.

``MosquittoProcess`` and ``RabbitMqProcess`` differ in how they spawn and stop a broker (a
single ``mosquitto`` process; an Erlang node with helpers in other process groups) and in where
it logs. Both keep a temporary directory for config, data and logs that survives ``kill`` and
``restart`` (so a restarted broker finds its persisted sessions) and goes with ``stop``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self


class BrokerProcess:
    """Base of the broker child processes; subclasses implement ``start``, ``_terminate`` and
    ``_log_files``."""

    #: short name used in messages and by ``LocalBroker.kind``
    kind = "broker"

    def __init__(
        self, port: int | None, *, host: str, startup_timeout_s: float, extra_config: Sequence[str]
    ) -> None:
        self._host = host
        self._port = port
        self._fixed_port = port is not None
        self.startup_timeout_s = startup_timeout_s
        self.extra_config = list(extra_config)
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """Address the broker's MQTT listener is bound to."""
        return self._host

    @property
    def port(self) -> int:
        """TCP port of the broker's MQTT listener."""
        if self._port is None:
            raise RuntimeError(f"{self.kind} has not been started yet")
        return self._port

    @property
    def running(self) -> bool:
        """Whether the broker's (main) process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def workdir(self) -> Path | None:
        """The temporary directory with config, data and logs (None when stopped)."""
        return self._dir

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        raise NotImplementedError

    def _terminate(self, *, hard: bool) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the broker gracefully (SIGTERM: it saves what it persists), wait, and delete
        its directory."""
        self._terminate(hard=False)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would: :meth:`start` brings it back on the same port
        with whatever it had written to disk."""
        self._terminate(hard=True)

    def restart(self) -> None:
        """Stop gracefully and start again on the same port, keeping the data directory."""
        self._terminate(hard=False)
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- logs -------------------------------------------------------------------------------

    def _log_files(self) -> list[Path]:
        """The files the broker writes its output and log to, in reading order."""
        raise NotImplementedError

    def _log_text(self) -> str:
        if self._dir is None:
            return ""
        parts = []
        for path in self._log_files():
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def _log_tail(self, lines: int = 15) -> str:
        tail = self._log_text().strip().splitlines()[-lines:]
        return ("; log tail:\n" + "\n".join(tail)) if tail else f"; {self.kind} wrote no log"
