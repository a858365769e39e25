"""roadpulse's sinks: they read engine snapshots and deliver them (MQTT, JSON Lines files).

Importing ``publishers`` is cheap: the names below load their module (numpy, aiomqtt, …) on first
use. ``from publishers.tick_messages import TickMessages`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .jsonl_sink import JsonlSink
    from .message import Message
    from .mqtt_sink import MqttSink
    from .tick_messages import SNAPSHOT_COLUMNS, TickMessages, rejection_message

__all__ = [
    "SNAPSHOT_COLUMNS",
    "JsonlSink",
    "Message",
    "MqttSink",
    "TickMessages",
    "rejection_message",
]

_MODULE_OF = {
    "JsonlSink": ".jsonl_sink",
    "Message": ".message",
    "MqttSink": ".mqtt_sink",
    "SNAPSHOT_COLUMNS": ".tick_messages",
    "TickMessages": ".tick_messages",
    "rejection_message": ".tick_messages",
}


def __getattr__(name: str) -> Any:
    """Load a public name's module on first access (PEP 562)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
