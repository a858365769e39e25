"""The one thing every sink takes: an outgoing message."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the live engine would publish it on MQTT.

    ``payload`` is already encoded (UTF-8 JSON for every topic except camera snapshots), so the
    MQTT and file sinks write the same bytes.
    """

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 0
