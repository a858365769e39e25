"""MQTT over TLS with a user name and password, against a Mosquitto that requires both.

Right credentials and the right CA connect (reading source and sink); a wrong password and an
untrusted CA are refused with a clear error; the password never shows in errors or logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import time
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest

from ingest import MqttReadingSource, ParseResult, ReadingParser
from roadpulse.config import ConfigError, load_config
from roadpulse.mqtt import client_factory, endpoint
from tests.ingest.live_helpers import grid_with_detectors


def _settings(broker: Any, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "mqtt.host": "127.0.0.1",
        "mqtt.port": broker.port,
        "mqtt.tls": True,
        "mqtt.tls_ca_file": str(broker.ca_file),
        "mqtt.username": broker.username,
        "mqtt.password_file": str(broker.password_file),
        "mqtt.client_id": f"tls-{time.monotonic_ns()}",
    }
    values.update(overrides)
    return load_config(overrides=values)


def _publish_tls(broker: Any, topic: str, payload: bytes) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.tls_set(ca_certs=str(broker.ca_file))
    client.username_pw_set(broker.username, broker.password)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def _run_source(settings: Any, *, seconds: float, publish: Any = None) -> tuple[MqttReadingSource, list[Any]]:
    _network, detectors = grid_with_detectors(4)
    parser = ReadingParser(detectors)
    results: list[ParseResult] = []

    async def scenario() -> MqttReadingSource:
        source = MqttReadingSource(
            endpoint(settings, role="in", persistent=True), parser, results.append, backoff_initial_s=0.2
        )
        async with source:
            try:
                await asyncio.wait_for(source.wait_connected(), seconds)
            except TimeoutError:
                return source
            if publish is not None:
                await asyncio.to_thread(publish)
                for _ in range(100):
                    if results:
                        break
                    await asyncio.sleep(0.05)
        return source

    return asyncio.run(scenario()), results


def test_right_credentials_and_ca_connect_and_receive(tls_mqtt_broker: Any) -> None:
    settings = _settings(tls_mqtt_broker)
    reading = {"detector_id": "D1", "ts": time.time() - 30, "interval_s": 30, "count": 3, "occupancy_pct": 5}
    source, results = _run_source(
        settings,
        seconds=10,
        publish=lambda: _publish_tls(tls_mqtt_broker, "traffic/detectors/D1", json.dumps(reading).encode()),
    )
    assert source.last_error is None
    assert sum(len(r.batch) for r in results) == 1


def test_client_certificate_is_presented_when_configured(tls_mqtt_broker: Any) -> None:
    settings = _settings(
        tls_mqtt_broker,
        **{
            "mqtt.tls_cert_file": str(tls_mqtt_broker.client_cert),
            "mqtt.tls_key_file": str(tls_mqtt_broker.client_key),
        },
    )
    source, _ = _run_source(settings, seconds=10)
    assert source.last_error is None


def test_sink_clients_use_tls_and_auth_too(tls_mqtt_broker: Any) -> None:
    settings = _settings(tls_mqtt_broker)

    async def scenario() -> None:
        async with client_factory(settings, role="out")() as client:
            await client.publish("traffic/probe", b"x", qos=1)

    asyncio.run(scenario())


def test_wrong_password_is_refused_and_never_shown(
    tls_mqtt_broker: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-Password-123"
    pw = tmp_path / "wrong.password"
    pw.write_text(wrong + "\n")
    settings = _settings(tls_mqtt_broker, **{"mqtt.password_file": str(pw)})
    with caplog.at_level(logging.DEBUG):
        source, results = _run_source(settings, seconds=2)
    assert not results
    assert source.last_error is not None
    assert "refused user 'engine': wrong user name or password" in source.last_error
    text = caplog.text + source.last_error + repr(endpoint(settings, role="in"))
    assert wrong not in text
    assert tls_mqtt_broker.password not in text

    async def aiomqtt_attempt() -> str:
        try:
            async with client_factory(settings, role="out")():
                return "connected"
        except aiomqtt.MqttError as exc:
            return str(exc)

    message = asyncio.run(aiomqtt_attempt())
    assert message != "connected"
    assert wrong not in message


def test_untrusted_ca_is_refused_with_a_clear_error(tls_mqtt_broker: Any) -> None:
    settings = _settings(tls_mqtt_broker, **{"mqtt.tls_ca_file": str(tls_mqtt_broker.other_ca_file)})
    source, _ = _run_source(settings, seconds=2)
    assert source.last_error is not None
    assert "not trusted" in source.last_error and "mqtt.tls_ca_file" in source.last_error


def test_plain_tcp_to_a_tls_listener_does_not_connect(tls_mqtt_broker: Any) -> None:
    settings = _settings(tls_mqtt_broker, **{"mqtt.tls": False, "mqtt.tls_ca_file": ""})
    source, _ = _run_source(settings, seconds=2)
    assert source.last_error is not None and not source.is_connected


def test_password_from_environment(tls_mqtt_broker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RP_TEST_MQTT_PASSWORD", tls_mqtt_broker.password)
    settings = _settings(
        tls_mqtt_broker, **{"mqtt.password_file": "", "mqtt.password_env": "RP_TEST_MQTT_PASSWORD"}
    )
    source, _ = _run_source(settings, seconds=10)
    assert source.last_error is None


def test_secret_configuration_errors_name_the_key_not_the_secret(tmp_path: Any) -> None:
    with pytest.raises(
        ConfigError, match=re.escape("mqtt.password_env: environment variable 'RP_NOT_SET_ANYWHERE'")
    ):
        endpoint(load_config(overrides={"mqtt.password_env": "RP_NOT_SET_ANYWHERE"}), role="in")
    with pytest.raises(ConfigError, match=re.escape("mqtt.password_file: cannot read")):
        endpoint(load_config(overrides={"mqtt.password_file": str(tmp_path / "missing")}), role="in")
    with pytest.raises(ConfigError, match=re.escape("mqtt.tls_ca_file is set but mqtt.tls is false")):
        endpoint(load_config(overrides={"mqtt.tls_ca_file": "ca.pem"}), role="in")
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate")
    with pytest.raises(ConfigError, match=re.escape("mqtt.tls_ca_file: cannot load")):
        endpoint(load_config(overrides={"mqtt.tls": True, "mqtt.tls_ca_file": str(bad_ca)}), role="in")


def test_tls_verification_is_on_by_default() -> None:
    context = endpoint(load_config(overrides={"mqtt.tls": True}), role="in").tls
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
