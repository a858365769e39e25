"""A paho subscriber for integration tests: collects what the engine publishes."""

from __future__ import annotations

import json
import os
import queue
import time
import uuid

import paho.mqtt.client as paho


class Listener:
    """A paho subscriber collecting (topic, payload) pairs on a queue."""

    def __init__(self, host: str, port: int, topics: list[str]) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"test-listener-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, msg.payload))
        self.client.connect(host, port)
        for topic in topics:
            self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def wait_for(self, predicate, *, timeout_s: float) -> tuple[str, dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                topic, payload = self.messages.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                data = json.loads(payload)
            except ValueError:
                continue  # not JSON (a test's own malformed input, a snapshot JPEG): not a match
            if predicate(topic, data):
                return topic, data
        raise AssertionError("expected message did not arrive in time")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
