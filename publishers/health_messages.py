"""Detector health messages: ``{prefix}detectors/{detector_id}/health``, retained.

Payload (the spec's fields, compact strict JSON)::

    {"detector_id":"D0042","status":"high_occupancy",
     "reason":"occupancy >= 35 % in 72% of 58 samples in the last 3600 s (threshold 50%; peers 8%)",
     "since":1776729600}

``status`` is ``ok`` or one of the diagnostics of ``congestion.health.STATUSES``; ``since`` is
when the detector entered this status (for ``no_data``: its last reading; ``null`` if it never
sent one). A message goes out when a detector's status changes, and for every detector at the
first tick (so retained statuses of an earlier run are overwritten). The detector id in the topic
is percent-encoded like segment ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._encode import dumps, topic_level
from .message import Message


def health_message(record: dict[str, Any], *, prefix: str = "traffic/") -> Message:
    """The retained health message for one detector's record (``DetectorHealth.record``)."""
    topic = f"{prefix}detectors/{topic_level(str(record['detector_id']))}/health"
    return Message(topic, dumps(record), True)


def health_messages(records: Iterable[dict[str, Any]], *, prefix: str = "traffic/") -> list[Message]:
    return [health_message(r, prefix=prefix) for r in records]
