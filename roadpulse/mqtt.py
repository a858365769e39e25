"""MQTT clients for the engine, built from ``[mqtt]`` in the configuration.

Sources and sinks take a *factory* (a fresh, not yet connected ``aiomqtt.Client`` per call) so
that they can reconnect on their own; only this module knows about hosts and credentials.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import aiomqtt

from .config import ConfigError, Settings


def client_factory(
    settings: Settings, *, role: str, persistent: bool = False, unique_suffix: str = ""
) -> Callable[[], aiomqtt.Client]:
    """A factory of clients for ``role`` (``in`` or ``out``).

    ``persistent`` asks the broker to keep the session (and queue QoS 1 messages for it) while the
    engine is away: it needs a stable client id, hence no random suffix unless one is given.
    """
    cfg = settings["mqtt"]
    password: str | None = None
    if cfg["password_env"]:
        password = os.environ.get(cfg["password_env"])
        if password is None:
            raise ConfigError(f"mqtt.password_env: environment variable {cfg['password_env']!r} is not set")
    identifier = f"{cfg['client_id']}-{role}{unique_suffix}"

    def make() -> aiomqtt.Client:
        return aiomqtt.Client(
            hostname=cfg["host"],
            port=int(cfg["port"]),
            identifier=identifier,
            username=cfg["username"] or None,
            password=password,
            keepalive=int(cfg["keepalive_s"]),
            clean_session=not persistent,
            # Bursts of tens of thousands of messages per tick must queue, not fail.
            max_queued_outgoing_messages=None,
        )

    return make
