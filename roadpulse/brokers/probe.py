"""Is there a usable MQTT broker at ``host:port``?  Answered with a real handshake.

A TCP connect alone would call any listening process a broker (and, on some systems, a port
being forwarded); sending an MQTT 3.1.1 CONNECT and reading the CONNACK proves an MQTT broker
that accepts this client, which is what the demo needs before it picks a broker.
"""

from __future__ import annotations

import os
import secrets
import socket
import time

from ._codec import encode_string, packet

_CONNACK_REFUSALS = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


def probe_broker(host: str, port: int, timeout_s: float = 1.0) -> tuple[bool, str]:
    """Try an anonymous MQTT 3.1.1 CONNECT; returns ``(usable, why)``.

    ``why`` is a short phrase for messages, e.g. ``"no broker at 127.0.0.1:1883"`` or
    ``"the broker at 127.0.0.1:1883 refused the connection (not authorized)"``.
    The whole exchange, connect included, is bounded by ``timeout_s``.
    """
    where = f"{host}:{port}"
    deadline = time.monotonic() + timeout_s
    client_id = f"roadpulse-probe-{os.getpid()}-{secrets.token_hex(4)}"
    # Protocol "MQTT" level 4, clean session, keepalive 10 s.
    connect = packet(0x10, encode_string("MQTT") + b"\x04\x02\x00\x0a" + encode_string(client_id))
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError:  # refused, unreachable, unresolvable or timed out
        return False, f"no broker at {where}"
    try:
        with sock:
            sock.sendall(connect)
            reply = b""
            while len(reply) < 4:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False, f"no MQTT answer from {where} within {timeout_s:g} s"
                sock.settimeout(left)
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    return False, f"{where} closed the connection without an MQTT CONNACK"
                reply += chunk
            if reply[0] != 0x20 or reply[1] != 0x02:
                return False, f"{where} did not answer like an MQTT broker"
            if reply[3] != 0:
                reason = _CONNACK_REFUSALS.get(reply[3], f"return code {reply[3]}")
                return False, f"the broker at {where} refused the connection ({reason})"
            sock.sendall(b"\xe0\x00")  # DISCONNECT, so the broker logs a clean goodbye
            return True, f"an MQTT broker is at {where}"
    except TimeoutError:
        return False, f"no MQTT answer from {where} within {timeout_s:g} s"
    except OSError as exc:  # e.g. reset by something that is not an MQTT broker
        return False, f"{where} did not complete an MQTT handshake ({exc.strerror or exc})"


def broker_reachable(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether an MQTT broker at ``host:port`` completes a CONNECT/CONNACK handshake with an
    anonymous MQTT 3.1.1 client within ``timeout_s``."""
    return probe_broker(host, port, timeout_s)[0]
