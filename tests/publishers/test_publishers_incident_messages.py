"""Incident and detector-health messages: topics, retained flag and exact payloads."""

from __future__ import annotations

import json

import pytest

from publishers.health_messages import health_messages
from publishers.incident_messages import incident_message, incident_messages

RECORD = {
    "incident_id": "-4711#2@1776729660",
    "type": "incident",
    "segment_id": "-4711#2",
    "lon": 121.55,
    "lat": 29.87,
    "start": 1776729660,
    "end": None,
    "status": "active",
    "source": "detector",
    "severity": 2,
    "description": "Automatic detection on segment -4711#2: …",
}


def test_incident_topic_is_percent_encoded_and_retained() -> None:
    msg = incident_message(RECORD, prefix="city/")
    assert msg.topic == "city/incidents/-4711%232@1776729660"
    assert msg.retain
    assert json.loads(msg.payload) == RECORD
    assert list(json.loads(msg.payload)) == list(RECORD)  # field order as built


def test_incident_payload_is_strict_utf8_json() -> None:
    payload = incident_message(RECORD).payload
    assert "…".encode() in payload  # not \\u-escaped
    with pytest.raises(ValueError):
        incident_message({**RECORD, "lon": float("nan")})


def test_many_messages_keep_order() -> None:
    cleared = {**RECORD, "status": "cleared", "end": 1776730860}
    msgs = incident_messages([RECORD, cleared])
    assert [json.loads(m.payload)["status"] for m in msgs] == ["active", "cleared"]
    health = health_messages([{"detector_id": "a/b", "status": "ok", "reason": "", "since": 1}])
    assert health[0].topic == "traffic/detectors/a%2Fb/health" and health[0].retain
