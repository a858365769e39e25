"""Incident messages: ``{prefix}incidents/{incident_id}``, retained.

Payload (the spec's fields, compact strict JSON)::

    {"incident_id":"A0A1@1776729660","type":"incident","segment_id":"A0A1","lon":121.55,
     "lat":29.87,"start":1776729660,"end":null,"status":"active","source":"detector",
     "severity":2,"description":"Automatic detection on segment A0A1: ..."}

Published when an incident starts (``status: "active"``, ``end: null``) and when it clears
(``status: "cleared"``, ``end`` set). ``lon``/``lat`` are ``null`` on networks without
coordinates. The incident id in the topic is percent-encoded like segment ids (SUMO edge ids
contain ``#``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._encode import dumps, topic_level
from .message import Message


def incident_message(record: dict[str, Any], *, prefix: str = "traffic/") -> Message:
    """The retained message for one incident record (``IncidentDetector.record``)."""
    return Message(f"{prefix}incidents/{topic_level(str(record['incident_id']))}", dumps(record), True)


def incident_messages(records: Iterable[dict[str, Any]], *, prefix: str = "traffic/") -> list[Message]:
    return [incident_message(r, prefix=prefix) for r in records]
