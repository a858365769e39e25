"""MQTT clients for the engine, built from ``[mqtt]`` in the configuration.

Sources and sinks take a *factory* (a fresh, not yet connected ``aiomqtt.Client`` per call) or an
`MqttEndpoint` (the reading source's gmqtt hot path) so that they can reconnect on their own; only
this module knows about hosts, TLS and credentials.

Secrets: the password comes from the environment variable named by ``mqtt.password_env`` or the
file named by ``mqtt.password_file`` -- never from config.toml itself -- and is never logged: error
messages name the variable or file, not its content, and `MqttEndpoint` keeps it out of ``repr``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from typing import Any

import aiomqtt

from ingest.mqtt_endpoint import MqttEndpoint

from .config import ConfigError, Settings


def mqtt_password(settings: Settings) -> str | None:
    """The password from ``mqtt.password_env`` or ``mqtt.password_file``; None when neither is set."""
    cfg = settings["mqtt"]
    if cfg["password_env"]:
        password = os.environ.get(cfg["password_env"])
        if password is None:
            raise ConfigError(f"mqtt.password_env: environment variable {cfg['password_env']!r} is not set")
        return password
    if cfg["password_file"]:
        path = cfg["password_file"]
        try:
            with open(path, encoding="utf-8") as fh:
                first = fh.readline()
        except OSError as exc:
            raise ConfigError(f"mqtt.password_file: cannot read {path!r}: {exc.strerror}") from None
        password = first.rstrip("\r\n")
        if not password:
            raise ConfigError(
                f"mqtt.password_file: {path!r} is empty (expected the password on its first line)"
            )
        return password
    return None


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context ``[mqtt]`` asks for (None when ``mqtt.tls`` is false).

    Verification is on unless ``mqtt.tls_insecure``: the broker's certificate must chain to
    ``mqtt.tls_ca_file`` (or the system's CAs) and name the host connected to.
    """
    cfg = settings["mqtt"]
    if not cfg["tls"]:
        for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            if cfg[key]:
                raise ConfigError(f"mqtt.{key} is set but mqtt.tls is false; set mqtt.tls = true")
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if cfg["tls_ca_file"]:
        try:
            context.load_verify_locations(cafile=cfg["tls_ca_file"])
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"mqtt.tls_ca_file: cannot load {cfg['tls_ca_file']!r}: {exc}") from None
    if cfg["tls_cert_file"] or cfg["tls_key_file"]:
        if not cfg["tls_cert_file"]:
            raise ConfigError("mqtt.tls_key_file is set without mqtt.tls_cert_file")
        try:
            context.load_cert_chain(cfg["tls_cert_file"], cfg["tls_key_file"] or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"mqtt.tls_cert_file/tls_key_file: cannot load {cfg['tls_cert_file']!r}: {exc}"
            ) from None
    if cfg["tls_insecure"]:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def endpoint(
    settings: Settings, *, role: str, persistent: bool = False, unique_suffix: str = ""
) -> MqttEndpoint:
    """Where and how ``role`` (``in`` or ``out``) connects. ``persistent`` asks the broker to keep
    the session (and queue QoS 1 messages for it) while the engine is away: it needs a stable
    client id, hence no random suffix unless one is given."""
    cfg = settings["mqtt"]
    return MqttEndpoint(
        host=cfg["host"],
        port=int(cfg["port"]),
        identifier=f"{cfg['client_id']}-{role}{unique_suffix}",
        username=cfg["username"] or None,
        password=mqtt_password(settings),
        tls=tls_context(settings),
        keepalive_s=int(cfg["keepalive_s"]),
        clean_session=not persistent,
    )


def aiomqtt_client(ep: MqttEndpoint, **options: Any) -> aiomqtt.Client:
    """An aiomqtt client for ``ep`` (address, identifier, credentials, keepalive, TLS), with
    ``options`` passed on (clean session, protocol, queue limits)."""
    return aiomqtt.Client(
        hostname=ep.host,
        port=ep.port,
        identifier=ep.identifier,
        username=ep.username,
        password=ep.password,
        keepalive=ep.keepalive_s,
        tls_context=ep.tls,
        **options,
    )


def client_factory(
    settings: Settings, *, role: str, persistent: bool = False, unique_suffix: str = ""
) -> Callable[[], aiomqtt.Client]:
    """A factory of aiomqtt clients for ``role`` (see `endpoint`)."""
    ep = endpoint(settings, role=role, persistent=persistent, unique_suffix=unique_suffix)

    def make() -> aiomqtt.Client:
        # Bursts of tens of thousands of messages per tick must queue, not fail.
        return aiomqtt_client(ep, clean_session=ep.clean_session, max_queued_outgoing_messages=None)

    return make
