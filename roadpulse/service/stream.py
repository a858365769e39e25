"""The live stream's fan-out: one encoded event per tick to every Server-Sent-Events client.

Each client has a small queue. A client too slow to keep up is not allowed to hold memory: its
queue is emptied and it gets a ``resync`` event, on which the dashboard reloads the full state.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

QUEUE_EVENTS = 16


class StreamHub:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[bytes | None]] = set()
        self.closed = False

    @property
    def clients(self) -> int:
        return len(self._queues)

    def subscribe(self) -> asyncio.Queue[bytes | None]:
        q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_EVENTS)
        if self.closed:
            q.put_nowait(None)
        self._queues.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[bytes | None]) -> None:
        self._queues.discard(q)

    def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        frame = f"event: {event_type}\ndata: {data}\n\n".encode()
        for q in list(self._queues):
            try:
                q.put_nowait(frame)
            except asyncio.QueueFull:
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(b"event: resync\ndata: {}\n\n")

    def close(self) -> None:
        """End every stream (on shutdown, so the server need not wait for them)."""
        self.closed = True
        for q in list(self._queues):
            while not q.empty():
                q.get_nowait()
            q.put_nowait(None)
