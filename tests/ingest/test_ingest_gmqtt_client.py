"""The lean PUBLISH handler against gmqtt's own: the same topic, payload, QoS and packet id."""

from __future__ import annotations

from typing import Any

import pytest

from ingest.gmqtt_client import lean_publish_handler

gmqtt = pytest.importorskip("gmqtt")


def publish_packet(topic: bytes, payload: bytes, qos: int, mid: int = 0) -> tuple[int, bytes]:
    """(first header byte, variable header + payload) of an MQTT 3.1.1 PUBLISH."""
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"") + payload
    return 0x30 | (qos << 1), body


def client_with(lean: bool) -> tuple[Any, list[tuple[str, bytes, int]], list[int]]:
    from gmqtt.mqtt.constants import MQTTv311

    client = gmqtt.Client("test-lean")
    client._connection_state.protocol_version = MQTTv311  # what connect() would set
    got: list[tuple[str, bytes, int]] = []
    acks: list[int] = []

    def on_message(_c: Any, topic: str, payload: bytes, qos: int, _props: Any) -> int:
        got.append((topic, bytes(payload), qos))
        return 0

    client.on_message = on_message
    client._package_handler._send_puback = lambda mid, reason_code=0: acks.append(mid)
    if lean:
        lean_publish_handler(client, on_message, acks.append)
    return client, got, acks


@pytest.mark.parametrize(
    ("topic", "payload", "qos", "mid"),
    [
        (b"traffic/detectors/D1", b'{"detector_id":"D1"}', 1, 1),
        (b"traffic/detectors/D1", b"", 1, 65535),
        (b"t", b"\x00\xff" * 300, 0, 0),
        ("traffic/detectors/\u00fc".encode(), b"{}", 1, 258),
    ],
)
def test_lean_handler_matches_gmqtt(topic: bytes, payload: bytes, qos: int, mid: int) -> None:
    cmd, raw = publish_packet(topic, payload, qos, mid)
    results = []
    for lean in (False, True):
        client, got, acks = client_with(lean)
        client._package_handler._handle_publish_packet(cmd, raw)
        results.append((got, acks))
    assert results[1] == results[0]
    assert results[1][0] == [(topic.decode(), payload, qos)]
    assert results[1][1] == ([mid] if qos else [])


@pytest.mark.parametrize(
    ("cmd", "raw"),
    [
        publish_packet(b"t/x", b"{}", 2, 7),  # QoS 2: gmqtt's PUBREC flow
        publish_packet(b"t/\xff", b"{}", 1, 7),  # topic not UTF-8
        publish_packet(b"", b"{}", 1, 7),  # empty topic
        (0x32, b"\x00\x05t/x"),  # topic length beyond the packet
        (0x32, b"\x00"),  # truncated
    ],
)
def test_lean_handler_leaves_the_unusual_to_gmqtt(cmd: int, raw: bytes) -> None:
    client, _, _ = client_with(False)
    seen: list[tuple[int, bytes]] = []
    # gmqtt's handler, as the lean one finds it at install time, records what it is given.
    client._package_handler._handle_publish_packet = lambda c, r: seen.append((c, r))
    lean_publish_handler(client, lambda *a: pytest.fail("lean path taken"), lambda mid: None)
    client._package_handler._handle_publish_packet(cmd, raw)
    assert seen == [(cmd, raw)]
