"""Where and how to connect: one value the wiring builds from ``[mqtt]`` and sources connect with.

The password is held here only; it is kept out of ``repr`` (and so out of logs and tracebacks).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MqttEndpoint:
    host: str
    port: int
    identifier: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: A ready TLS context (CA, client certificate); None: plain TCP.
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    keepalive_s: int = 30
    #: False: a persistent session (the broker keeps the subscription and queues QoS 1 for us).
    clean_session: bool = False

    @property
    def address(self) -> str:
        return f"{'mqtts' if self.tls is not None else 'mqtt'}://{self.host}:{self.port}"
