"""Opening one gmqtt connection the way every roadpulse hot path needs it.

Shared by the reading source (receive) and the MQTT sink (publish): connect with the endpoint's
identity, TLS and credentials as MQTT 3.1.1, switch gmqtt's own reconnect logic off (its fixed
delay has no jitter; the callers back off themselves) and report the connection's loss on one
`asyncio.Event`. gmqtt waits for a CONNACK forever if the broker hangs up first (plain TCP to a
TLS port, a broker shutting down), so the connect is raced against the loss and a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any

from ingest.mqtt_endpoint import MqttEndpoint


async def connect_gmqtt(
    endpoint: MqttEndpoint,
    *,
    connect_timeout_s: float,
    prepare: Callable[[Any], None] | None = None,
) -> tuple[Any, asyncio.Event]:
    """A connected ``gmqtt.Client`` and the event set when its connection is lost.

    ``prepare`` is called with the client before it connects: callbacks must be in place before
    the CONNACK, since a broker with a persistent session starts sending right after it.
    Raises ``TimeoutError``, ``ConnectionResetError`` or gmqtt's own connect errors.
    """
    import gmqtt
    from gmqtt.mqtt.constants import MQTTv311

    lost = asyncio.Event()
    client = gmqtt.Client(endpoint.identifier, clean_session=endpoint.clean_session)

    def on_disconnect(c: Any, _packet: Any, _exc: Any = None) -> None:
        c._is_active = False  # stops gmqtt's own reconnect; the caller does its own
        lost.set()

    client.on_disconnect = on_disconnect
    if endpoint.username:
        client.set_auth_credentials(endpoint.username, endpoint.password)
    if prepare is not None:
        prepare(client)
    connecting = asyncio.ensure_future(
        client.connect(
            endpoint.host,
            endpoint.port,
            ssl=endpoint.tls if endpoint.tls is not None else False,
            keepalive=endpoint.keepalive_s,
            version=MQTTv311,
        )
    )
    losing = asyncio.ensure_future(lost.wait())
    try:
        done, _ = await asyncio.wait(
            {connecting, losing}, timeout=connect_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    except asyncio.CancelledError:
        connecting.cancel()
        await close_gmqtt(client)
        raise
    finally:
        losing.cancel()
    if connecting not in done:
        connecting.cancel()
        await close_gmqtt(client)
        if losing in done:
            raise ConnectionResetError("the broker closed the connection before answering")
        raise TimeoutError
    try:
        connecting.result()
    except BaseException:
        await close_gmqtt(client)
        raise
    return client, lost


async def close_gmqtt(client: Any, timeout_s: float = 2.0) -> None:
    """Disconnect without gmqtt reconnecting; never raises (the connection may be gone)."""
    client._is_active = False
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), timeout_s)


def connect_error_text(endpoint: MqttEndpoint, exc: BaseException) -> str:
    """A connection failure a person can act on; never contains the password."""
    where = f"{endpoint.address} as {endpoint.identifier!r}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of {where} not trusted: {exc.verify_message} (check mqtt.tls_ca_file)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {where} failed: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return f"no answer from {where} within the connect timeout"
    code = getattr(exc, "_code", None)
    if code in (4, 5, 134, 135):
        # Mosquitto answers a wrong password with "not authorised" (5), not "bad password" (4).
        user = endpoint.username or "(anonymous)"
        return (
            f"broker {where} refused user {user!r}: wrong user name or password, or not allowed "
            f"(CONNACK {code}; check mqtt.username and mqtt.password_env / mqtt.password_file)"
        )
    return f"{where}: {type(exc).__name__}: {exc}"


def lean_publish_handler(
    client: Any, on_message: Callable[[Any, str, bytes, int, Any], object], owe_ack: Callable[[int], object]
) -> None:
    """Take incoming QoS 0/1 PUBLISH packets of ``client`` straight to ``on_message``.

    gmqtt's own handler costs about as much per message as parsing and validating a reading
    (struct formats built per packet, MQTT 5 property parsing, two debug-log calls,
    ``inspect.iscoroutinefunction`` on the callback each time); for MQTT 3.1.1 a PUBLISH is just
    ``topic length, topic, [packet id], payload``. For QoS 1 the packet id is handed to
    ``owe_ack`` before ``on_message`` runs (gmqtt's "optimistic acknowledgement"; the caller sends
    the PUBACKs). QoS 2, an empty or non-UTF-8 topic and anything malformed go to gmqtt's
    handler as before. Call before connecting: gmqtt caches its handler per packet type.
    """
    handler = client._package_handler
    fallback = handler._handle_publish_packet

    def handle_publish(cmd: int, raw: bytes) -> None:
        qos = (cmd >> 1) & 0x03
        n = len(raw)
        end = 2 + ((raw[0] << 8) | raw[1]) if n >= 2 else n + 1
        if qos == 2 or end == 2 or end > n - (2 if qos else 0):
            fallback(cmd, raw)
            return
        try:
            topic = raw[2:end].decode("utf-8")
        except UnicodeDecodeError:
            fallback(cmd, raw)
            return
        if qos:
            owe_ack((raw[end] << 8) | raw[end + 1])
            end += 2
        on_message(client, topic, raw[end:], qos, None)

    handler._handle_publish_packet = handle_publish
