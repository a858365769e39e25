"""A reading that cannot be used is never dropped silently: it becomes a Rejection.

Rejections are counted (by ``code``, the metric label) and published on ``traffic/rejected``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: How much of an offending payload is echoed back on ``traffic/rejected``.
EXCERPT_CHARS = 200


@dataclass(frozen=True)
class Rejection:
    """Why one message (or one reading inside a batch) was refused."""

    topic: str
    #: Short stable label for metrics, e.g. ``bad_json``, ``unknown_detector``, ``out_of_range``.
    code: str
    #: One line a person can act on, e.g. ``occupancy_pct 140 outside 0..100``.
    reason: str
    payload_excerpt: str
    #: When it was refused (epoch seconds, wall clock).
    ts: float

    def to_payload(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "reason": self.reason,
            "code": self.code,
            "payload_excerpt": self.payload_excerpt,
            "ts": self.ts,
        }


def excerpt(payload: bytes | str) -> str:
    """The start of a payload as text, safe to embed in JSON."""
    if isinstance(payload, bytes):
        text = payload[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    else:
        text = payload
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"
