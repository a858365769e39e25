"""The durable outbox and HTTP delivery against a real local HTTP server that misbehaves.

The receiver (``push_receiver.Receiver``) is an aiohttp server in its own thread: it answers 500s
and 429s with ``Retry-After``, never answers (timeouts), drops connections, loses its answers
after applying a request, and is stopped for a while and started again on the same port.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from push_receiver import Receiver  # tests/publishers/push_receiver.py (this folder is on sys.path)

from publishers import amap
from publishers.http_push import HttpPush, classify, parse_retry_after
from publishers.outbox import DeliveryResult, Outbox, OutboxItem


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.close()


def _json_encoder(item: OutboxItem) -> tuple[bytes, dict[str, str]]:
    return item.payload, {"Content-Type": "application/json"}


def _outbox(path: Path, **kw) -> Outbox:
    kw.setdefault("base_backoff_s", 0.02)
    kw.setdefault("max_backoff_s", 0.2)
    kw.setdefault("max_attempts", 50)
    return Outbox(path, rng=random.Random(1), **kw)


def _closure(cid: str, version: int) -> tuple[str, str, str, bytes]:
    body = json.dumps({"type": "closure", "id": cid, "version": version}).encode()
    return f"closure:{cid}", "closure", f"closure:{cid}:v{version}", body


async def _run_until(outbox: Outbox, push: HttpPush, done, *, timeout_s: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(outbox.run(push.deliver, stop))
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not done():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not delivered in {timeout_s} s: {outbox.metrics()}")
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def _versions_by_closure(keys: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for key in keys:
        if key.startswith("closure:"):
            _, cid, v = key.split(":")
            out.setdefault(cid, []).append(int(v[1:]))
    return out


def test_every_closure_version_arrives_once_in_order_through_an_unreliable_receiver(
    receiver: Receiver, tmp_path: Path
) -> None:
    """500s, a dropped connection, a hang, 429 + Retry-After, lost acks and a stopped receiver:
    after recovery every version arrives exactly once per version, in order per closure, and the
    segment push resumes with the latest state."""
    script = ["500", "500", "drop", "hang", "429", "ack_lost", "ok", "500", "ok", "ack_lost"]
    receiver.behaviour = lambda n, key: script[n] if n < len(script) else ("500" if n % 7 == 3 else "ok")
    outbox = _outbox(tmp_path / "outbox.sqlite")
    latest_ts = 0

    async def scenario() -> None:
        nonlocal latest_ts
        async with HttpPush(receiver.url, _json_encoder, timeout_s=0.3) as push:
            stop = asyncio.Event()
            task = asyncio.create_task(outbox.run(push.deliver, stop))
            versions = {"C1": 0, "C2": 0, "C3": 0}
            for step in range(60):
                if step == 20:
                    await asyncio.to_thread(receiver.stop)  # the endpoint goes away mid-run ...
                if step == 45:
                    await asyncio.to_thread(receiver.start)  # ... and comes back
                cid = ("C1", "C2", "C3")[step % 3]
                versions[cid] += 1
                outbox.put(*_closure(cid, versions[cid]))
                latest_ts = 1000 + step
                outbox.put(
                    "segments",
                    "segments",
                    f"segments:{latest_ts}",
                    json.dumps({"ts": latest_ts}).encode(),
                    coalesce=True,
                )
                await asyncio.sleep(0.03)
            deadline = asyncio.get_running_loop().time() + 30
            while outbox.pending() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert outbox.pending() == 0, outbox.metrics()
    keys = receiver.accepted_keys()
    by_closure = _versions_by_closure(keys)
    assert by_closure == {cid: list(range(1, 21)) for cid in ("C1", "C2", "C3")}  # once each, in order
    assert len(keys) == len(set(keys))
    # lost acknowledgements made the sender retry: the receiver saw the same key again and deduped
    assert receiver.duplicates, "the ack_lost answers should have caused retries"
    assert {d.idempotency_key for d in receiver.duplicates} <= set(keys)
    segment_keys = [k for k in keys if k.startswith("segments:")]
    assert segment_keys[-1] == f"segments:{latest_ts}"  # resumed with the current state
    assert len(segment_keys) < 60  # coalesced while the endpoint was away
    m = outbox.metrics()
    assert m["sent"] >= 60 + len(segment_keys) - len(receiver.duplicates)
    assert m["retried"] > 0 and m["failed"] > 0 and m["dead"] == 0 and m["coalesced"] > 0


def test_dead_letter_after_the_configured_attempts_and_the_next_version_still_goes(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.behaviour = lambda n, key: "500" if key == "closure:C1:v1" else "ok"
    dead: list[tuple[str, str]] = []
    outbox = _outbox(
        tmp_path / "o.sqlite",
        max_attempts=3,
        on_dead=lambda item, why: dead.append((item.idempotency_key, why)),
    )
    outbox.put(*_closure("C1", 1))
    outbox.put(*_closure("C1", 2))

    async def go() -> None:
        async with HttpPush(receiver.url, _json_encoder, timeout_s=1) as push:
            await _run_until(outbox, push, lambda: outbox.pending() == 0, timeout_s=20)

    asyncio.run(go())
    assert receiver.accepted_keys() == ["closure:C1:v2"]
    assert [k for k, _ in dead] == ["closure:C1:v1"]
    assert "HTTP 500" in dead[0][1] and "3 failed attempts" in dead[0][1]
    letters = outbox.dead_letters()
    assert [(d["idempotency_key"], d["attempts"]) for d in letters] == [("closure:C1:v1", 3)]
    assert outbox.metrics()["dead"] == 1


def test_a_4xx_is_dead_at_once_and_no_answer_never_counts_as_an_attempt(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.behaviour = lambda n, key: "400" if key.endswith("v1") else "ok"
    outbox = _outbox(tmp_path / "o.sqlite", max_attempts=2)
    outbox.put(*_closure("C1", 1))
    outbox.put(*_closure("C2", 1))
    outbox.put(*_closure("C2", 2))

    async def go() -> None:
        async with HttpPush(receiver.url, _json_encoder, timeout_s=1) as push:
            await _run_until(outbox, push, lambda: outbox.pending() == 0, timeout_s=20)

    asyncio.run(go())
    assert [d["attempts"] for d in outbox.dead_letters()] == [1, 1]
    assert receiver.accepted_keys() == ["closure:C2:v2"]

    # An endpoint that is not there at all (connection refused) never dead-letters: attempts stay 0.
    receiver.stop()
    box2 = _outbox(tmp_path / "o2.sqlite", max_attempts=1)
    box2.put(*_closure("C9", 1))

    async def refused() -> None:
        async with HttpPush(receiver.url, _json_encoder, timeout_s=1) as push:
            stop = asyncio.Event()
            task = asyncio.create_task(box2.run(push.deliver, stop))
            await asyncio.sleep(1.0)
            stop.set()
            await task

    asyncio.run(refused())
    m = box2.metrics()
    assert m["failed"] >= 2 and m["dead"] == 0 and m["queued"] == 1


def test_outbox_survives_a_restart_and_skips_versions_already_sent(
    receiver: Receiver, tmp_path: Path
) -> None:
    path = tmp_path / "o.sqlite"
    first = _outbox(path)
    for v in (1, 2, 3):
        first.put(*_closure("C1", v))
    first.close()  # the process stops before anything was sent

    second = _outbox(path)
    assert second.pending() == 3

    async def go() -> None:
        async with HttpPush(receiver.url, _json_encoder, timeout_s=1) as push:
            await _run_until(second, push, lambda: second.pending() == 0, timeout_s=10)

    asyncio.run(go())
    assert receiver.accepted_keys() == ["closure:C1:v1", "closure:C1:v2", "closure:C1:v3"]
    # After a restart the closure component queues every closure again: the ledger skips them.
    assert second.put(*_closure("C1", 3)) is False
    assert second.put(*_closure("C1", 4)) is True
    assert second.metrics()["duplicates"] == 1


def test_while_the_endpoint_is_down_segments_coalesce_and_closures_are_all_kept(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path / "o.sqlite")
    for k in range(1000):
        outbox.put("segments", "segments", f"segments:{k}", b"{}" * 500, coalesce=True)
        if k % 10 == 0:
            outbox.put(*_closure(f"C{k % 7}", k))
    assert outbox.pending() == 1 + 100
    assert outbox.metrics()["coalesced"] == 999


def test_retry_after_is_honoured(receiver: Receiver, tmp_path: Path) -> None:
    receiver.retry_after_s = 1
    receiver.behaviour = lambda n, key: "429" if n == 0 else "ok"
    outbox = _outbox(tmp_path / "o.sqlite")
    outbox.put(*_closure("C1", 1))
    times: list[float] = []

    async def go() -> None:
        async with HttpPush(receiver.url, _json_encoder, timeout_s=1) as push:

            async def deliver(item: OutboxItem) -> DeliveryResult:
                times.append(asyncio.get_running_loop().time())
                return await push.deliver(item)

            stop = asyncio.Event()
            task = asyncio.create_task(outbox.run(deliver, stop))
            while outbox.pending():
                await asyncio.sleep(0.02)
            stop.set()
            await task

    asyncio.run(go())
    assert len(times) == 2
    assert times[1] - times[0] >= 0.95  # backoff alone would be ≤ 0.2 s here


def test_classification_and_retry_after_parsing() -> None:
    assert classify(200, None).ok and classify(204, None).ok and classify(409, None).ok
    r = classify(503, "7")
    assert not r.ok and not r.permanent and r.retry_after_s == 7.0
    assert classify(429, None).permanent is False
    assert classify(404, None).permanent is True
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None


def test_backoff_is_exponential_with_equal_jitter_and_capped(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", base_backoff_s=1.0, max_backoff_s=60.0, rng=random.Random(3))
    for n, full in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0)):
        samples = [box.backoff_s(n) for _ in range(200)]
        assert min(samples) >= full / 2 and max(samples) <= full
        assert max(samples) - min(samples) > full / 4  # jittered, not constant


def test_amap_form_push_is_signed_and_verified_by_the_receiver(tmp_path: Path) -> None:
    good = Receiver(private_key="s3cret")
    good.start()
    try:
        outbox = _outbox(tmp_path / "o.sqlite", max_attempts=2)
        payload = json.dumps(
            {
                "type": "closure",
                "id": "C1",
                "version": 1,
                "data": {"closure_id": "C1", "description": "封路 施工"},
            }
        ).encode()
        outbox.put("closure:C1", "closure", "closure:C1:v1", payload)
        outbox.put("closure:C2", "closure", "closure:C2:v1", payload.replace(b'"C1"', b'"C2"'))

        async def go(encoder) -> None:
            async with HttpPush(good.url, encoder, timeout_s=1) as push:
                await _run_until(outbox, push, lambda: outbox.pending() == 0, timeout_s=10)

        asyncio.run(go(amap.form_encoder(api_key="k-123", private_key="s3cret")))
        [item, second] = good.accepted
        assert item.signature_ok is True and second.signature_ok is True
        assert item.form["key"] == "k-123" and item.form["type"] == "closure" and item.form["version"] == "1"
        assert json.loads(item.form["data"])["description"] == "封路 施工"

        # A sender with the wrong private key is refused (403): dead-lettered, never retried forever.
        outbox.put("closure:C3", "closure", "closure:C3:v1", payload)
        asyncio.run(go(amap.form_encoder(api_key="k-123", private_key="wrong")))
        assert [d["idempotency_key"] for d in outbox.dead_letters()] == ["closure:C3:v1"]
        assert "HTTP 403" in outbox.dead_letters()[0]["last_error"]
    finally:
        good.close()
