"""Run a private RabbitMQ node with its MQTT plugin on free local ports (for the crash tests).

Why RabbitMQ: its MQTT plugin publishes a QoS 1 message as a *persistent* AMQP message on a
publisher-confirm channel and sends the PUBACK only when the confirm arrives, i.e. once every
durable queue it was routed to (a ``clean_session=False`` subscriber's session queue) has
written it to disk (``rabbit_mqtt_processor:amqp_pub/2`` and ``amqp_callback/2`` in 3.10).
Mosquitto 2.0 acknowledges first and saves later, so a killed Mosquitto can lose readings it
had acknowledged (README, "Ingest at city scale").

Each :class:`RabbitMqProcess` is a node of its own: its own node name, Erlang cookie (``HOME``
points into its temp dir), data and log directories, config file and enabled-plugins file, so
nothing touches ``/etc/rabbitmq``, ``/var/lib/rabbitmq`` or a system node already running. The
node registers with the machine's epmd (shared, started by Erlang if none runs).
:meth:`~RabbitMqProcess.kill` SIGKILLs the whole process tree and :meth:`~RabbitMqProcess.start`
brings the node back on the same ports and data directory, as a crashed broker restarting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from ._process import BrokerProcess
from .mosquitto import free_port
from .probe import broker_reachable

log = logging.getLogger("roadpulse.brokers.rabbitmq")

# Debian's /usr/sbin/rabbitmq-server is a wrapper that switches to the "rabbitmq" user (dropping
# our environment) and logs to /var/log/rabbitmq; the real script sits in /usr/lib/rabbitmq/bin.
_PREFERRED_DIRS = ("/usr/lib/rabbitmq/bin",)
_EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")
_STOP_TIMEOUT_S = 30.0  # a graceful stop syncs queues and Mnesia; a loaded machine is slow
_PORT_ATTEMPTS = 3


class RabbitMqError(RuntimeError):
    """The RabbitMQ node could not be started (the message carries the end of its log)."""


def find_rabbitmq_server() -> str | None:
    """Path of the ``rabbitmq-server`` script that honours ``RABBITMQ_*`` variables, or None."""
    for directory in _PREFERRED_DIRS:
        candidate = Path(directory) / "rabbitmq-server"
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    search = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_DIRS])
    return shutil.which("rabbitmq-server", path=search)


def _descendants(root: int) -> list[int]:
    """Pids of every process below ``root`` (read from /proc; empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name may contain spaces
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _pids_of_node(node: str) -> list[int]:
    """Pids of processes started for ``node`` (beam.smp, erl_child_setup, inet_gethost), found
    by the ``RABBITMQ_NODENAME`` they inherited, whoever their parent is now. The node name
    carries its port, so no other node matches."""
    needle = f"RABBITMQ_NODENAME={node}".encode()
    out = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class RabbitMqProcess(BrokerProcess):
    """A private RabbitMQ node with ``rabbitmq_mqtt`` enabled, MQTT on ``host:port``.

    Anonymous MQTT clients log in as ``guest`` (allowed from loopback only, RabbitMQ's
    default). ``port=None`` picks free ports at the first start; later starts reuse them and
    the data directory. ``extra_config`` lines are appended to the new-style ``rabbitmq.conf``
    (e.g. ``"mqtt.prefetch = 100"``). Use as a context manager, or call :meth:`start` and
    :meth:`stop`.
    """

    kind = "rabbitmq"

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        binary: str | None = None,
        startup_timeout_s: float = 60.0,
        extra_config: Sequence[str] = (),
    ) -> None:
        found = binary or find_rabbitmq_server()
        if found is None:
            searched = ", ".join((*_PREFERRED_DIRS, *_EXTRA_DIRS))
            raise RabbitMqError(f"no rabbitmq-server found (searched PATH and {searched})")
        self.binary = found
        super().__init__(port, host=host, startup_timeout_s=startup_timeout_s, extra_config=extra_config)
        self._amqp_port: int | None = None
        self._dist_port: int | None = None
        self._node: str | None = None

    @property
    def node_name(self) -> str | None:
        """The Erlang node name (``rp-<port>@localhost``), fixed at the first start."""
        return self._node

    @property
    def log_path(self) -> Path | None:
        """The node's main log file."""
        if self._dir is None or self._node is None:
            return None
        return self._dir / "log" / f"{self._node}.log"

    def __repr__(self) -> str:
        return f"RabbitMqProcess({self._host!r}, {self._port}, node={self._node!r}, running={self.running})"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the node and wait until its MQTT listener completes a CONNECT/CONNACK;
        returns ``self``.

        Raises :class:`RabbitMqError` (with the log's last lines) if the node exits or does not
        answer MQTT within ``startup_timeout_s``. A no-op if already running.
        """
        if self.running:
            return self
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="roadpulse-rabbitmq-"))
            self._write_home()
        attempt = 0
        while True:
            if self._amqp_port is None or not self._fixed_port:
                self._pick_ports()
            try:
                self._spawn()
            except RabbitMqError:
                attempt += 1
                if self._fixed_port or attempt >= _PORT_ATTEMPTS or not self._address_in_use():
                    raise
                log.info("a port was taken before the RabbitMQ node bound it; trying others")
                continue
            self._fixed_port = True  # restarts come back on these ports, with this node name
            return self

    # -- diagnostics ------------------------------------------------------------------------

    def queue_states(self, timeout_s: float = 30.0) -> list[dict[str, object]]:
        """The node's queues as ``rabbitmqctl list_queues`` tells them (name, ready and
        unacknowledged messages, consumers): where readings wait when a test misses some.

        Raises :class:`RabbitMqError` if the node is not running or the tool fails.
        """
        fields = ["name", "messages_ready", "messages_unacknowledged", "consumers"]
        out = self._ctl(["list_queues", *fields, "--formatter", "json"], timeout_s)
        states: list[dict[str, object]] = json.loads(out or "[]")
        return states

    def routing_counters(self, timeout_s: float = 30.0) -> dict[str, int]:
        """Messages the node has routed to at least one queue (``routed``) and dropped because
        no queue was bound (``unroutable_dropped``) since it last started, over all publishers
        (an engine's sink included): RabbitMQ's global counters for AMQP 0-9-1, which its MQTT
        plugin publishes through. Raises :class:`RabbitMqError` like :meth:`queue_states`."""
        expr = (
            "M = maps:get([{protocol, amqp091}], rabbit_global_counters:overview()), "
            'io:format("~b ~b~n", [maps:get(messages_routed_total, M), '
            "maps:get(messages_unroutable_dropped_total, M)])."
        )
        first = self._ctl(["eval", expr], timeout_s).split()
        try:
            routed, dropped = int(first[0]), int(first[1])
        except (IndexError, ValueError) as exc:
            raise RabbitMqError(f"rabbitmqctl eval gave no counters: {first!r}") from exc
        return {"routed": routed, "unroutable_dropped": dropped}

    # -- internals --------------------------------------------------------------------------

    def _ctl(self, args: list[str], timeout_s: float) -> str:
        """Run ``rabbitmqctl`` against this node; its standard output."""
        if not self.running or self._node is None:
            raise RabbitMqError("the RabbitMQ node is not running")
        ctl = Path(self.binary).with_name("rabbitmqctl")
        try:
            done = subprocess.run(
                [str(ctl), "-n", self._node, "-q", *args],
                env=self._environment(),
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RabbitMqError(f"{ctl} {args[0]}: {exc}") from exc
        if done.returncode != 0:
            raise RabbitMqError(f"{ctl} {args[0]} exited with {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def _pick_ports(self) -> None:
        """Free ports for MQTT (unless given), AMQP and Erlang distribution; names the node."""
        taken = {self._port} if self._fixed_port else set()
        ports: set[int] = set()
        while len(ports) < 3 - len(taken):  # distinct: the OS may hand a port out twice
            port = free_port(self._host)
            if port not in taken:
                ports.add(port)
        picked = sorted(ports)
        if not self._fixed_port:
            self._port = picked.pop(0)
        self._amqp_port, self._dist_port = picked
        self._node = f"rp-{self._port}@localhost"

    def _write_home(self) -> None:
        """A private HOME with its own Erlang cookie, so the node and any CLI tool run against
        it never read or create ``~/.erlang.cookie`` of the real user."""
        assert self._dir is not None
        home = self._dir / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)  # Erlang refuses a cookie file others can read
        (self._dir / "log").mkdir()
        (self._dir / "data").mkdir()
        # Empty files instead of /etc/rabbitmq/rabbitmq-env.conf and advanced.config.
        (self._dir / "rabbitmq-env.conf").write_text("")
        (self._dir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")

    def _config(self) -> str:
        lines = [
            f"listeners.tcp.default = {self._host}:{self._amqp_port}",
            f"mqtt.listeners.tcp.default = {self._host}:{self._port}",
            "mqtt.allow_anonymous = true",
            "mqtt.default_user = guest",
            "mqtt.default_pass = guest",
            "loopback_users.guest = true",  # RabbitMQ's default, stated: guest from loopback only
            # A nearly full /tmp must not raise the disk alarm, which blocks every publisher.
            "disk_free_limit.absolute = 10MB",
            "log.console = false",
            "log.file.level = info",
        ]
        lines.extend(self.extra_config)
        return "\n".join(lines) + "\n"

    def _environment(self) -> dict[str, str]:
        assert self._dir is not None and self._node is not None
        d = self._dir
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(d / "home"),
            RABBITMQ_NODENAME=self._node,
            RABBITMQ_CONF_ENV_FILE=str(d / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(d / "advanced.config"),  # absent on purpose
            RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(d / "data"),
            RABBITMQ_LOG_BASE=str(d / "log"),
            RABBITMQ_PID_FILE=str(d / "node.pid"),
            RABBITMQ_DIST_PORT=str(self._dist_port),
            # Node-to-node distribution on loopback only, like a private broker's listeners.
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        return env

    def _spawn(self) -> None:
        assert self._dir is not None
        (self._dir / "rabbitmq.conf").write_text(self._config())
        stdout_path = self._dir / "stdout.log"
        if stdout_path.exists():
            stdout_path.replace(self._dir / "stdout.previous.log")
        if self.log_path is not None and self.log_path.exists():
            # Keep the previous run's log apart, so errors shown are this run's.
            self.log_path.replace(self.log_path.with_suffix(".previous.log"))
        with stdout_path.open("wb") as out:
            self._proc = subprocess.Popen(
                [self.binary],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                cwd=self._dir,
                # Its own process group: kill() takes the script and beam.smp in one signal,
                # and a Ctrl-C meant for the tests does not reach the node.
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._terminate(hard=True)
                raise RabbitMqError(f"the RabbitMQ node exited with code {code}" + self._log_tail())
            # A real MQTT handshake: the AMQP side starts first, the MQTT plugin seconds later.
            if broker_reachable(self._host, self.port, timeout_s=1.0):
                log.info(
                    "RabbitMQ node %s (pid %d) answers MQTT on %s:%d",
                    self._node,
                    self._proc.pid,
                    self._host,
                    self.port,
                )
                return
            time.sleep(0.2)
        self._terminate(hard=True)
        raise RabbitMqError(
            f"the RabbitMQ node did not answer MQTT on {self._host}:{self._port} within "
            f"{self.startup_timeout_s:g} s" + self._log_tail()
        )

    def _terminate(self, *, hard: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        # beam.smp, erl_child_setup and inet_gethost: the latter two put themselves in
        # process groups of their own, so the group signal alone would not reach them.
        tree = _descendants(proc.pid)
        if self._node is not None:
            # beam.smp outlives a start script that died first (reparented to init).
            tree.extend(pid for pid in _pids_of_node(self._node) if pid not in tree and pid != proc.pid)
        if proc.poll() is None and not hard:
            proc.terminate()  # the script forwards SIGTERM to beam.smp: a graceful stop
            try:
                proc.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("RabbitMQ node %s ignored SIGTERM; killing it", self._node)
        for pid in tree:
            # A graceful stop lets erl_child_setup exit by itself once beam.smp is gone.
            if hard or _alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(_STOP_TIMEOUT_S)
        # beam.smp is the script's child: orphaned, it is reaped by init; wait until it is gone
        # so that a restart finds its ports and its epmd registration released.
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while any(_alive(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _log_files(self) -> list[Path]:
        assert self._dir is not None
        log_path = self.log_path
        return [self._dir / "stdout.log"] + ([log_path] if log_path is not None else [])

    def _log_tail(self, lines: int = 20) -> str:
        return super()._log_tail(lines)

    def _address_in_use(self) -> bool:
        return "eaddrinuse" in self._log_text().lower()
