"""Push delivery: outbox throughput against raw HTTP posts, and recovery after an endpoint outage.

1. Throughput: N closure versions through ``Outbox`` + ``HttpPush`` to a local aiohttp receiver,
   against a baseline of the same N bodies POSTed in a plain loop on one session (same process,
   same receiver). Also the rate of durable ``put`` calls (fsync per closure) and coalesced ones.
2. Outage: the receiver is stopped for ``--outage-s`` seconds (default 120) while closures change
   every second and segment states are queued every second; after it comes back, the time until
   every closure version has arrived (checked: each exactly once, in order per closure) and the
   latest segment state has arrived, with the endpoint's default backoff (1 s base, 30 s cap).

    .venv/bin/python benchmarks/bench_outbox.py                 # full run (~2.5 min)
    .venv/bin/python benchmarks/bench_outbox.py --outage-s 20   # quick

Prints a table and writes benchmarks/out/bench_outbox.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from publishers.http_push import HttpPush
from publishers.outbox import Outbox, OutboxItem

OUT = Path(__file__).resolve().parent / "out"


class Receiver:
    """aiohttp receiver in its own thread; records Idempotency-Keys; start/stop on one port."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.keys: list[str] = []
        self.times: list[float] = []
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self._runner: web.AppRunner | None = None

    url = property(lambda self: f"http://127.0.0.1:{self.port}/push")

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.keys.append(request.headers.get("Idempotency-Key", ""))
        self.times.append(time.monotonic())
        return web.Response(text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/push", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)


def encoder(item: OutboxItem) -> tuple[bytes, dict[str, str]]:
    return item.payload, {"Content-Type": "application/json"}


def body(cid: str, version: int) -> bytes:
    return json.dumps({"type": "closure", "id": cid, "version": version, "data": {"x": "y" * 400}}).encode()


async def throughput(n: int, tmp: Path) -> dict[str, float]:
    rx = Receiver()
    rx.start()
    bodies = [body(f"C{k % 50}", k) for k in range(n)]
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        for k, b in enumerate(bodies):
            async with session.post(rx.url, data=b, headers={"Idempotency-Key": f"b{k}"}) as resp:
                await resp.read()
        baseline_s = time.perf_counter() - t0
    box = Outbox(tmp / "tp.sqlite", name="bench")
    t0 = time.perf_counter()
    for k, b in enumerate(bodies):
        box.put(f"closure:C{k % 50}", "closure", f"closure:C{k % 50}:v{k}", b)
    put_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in range(n):
        box.put("segments", "segments", f"segments:{k}", bodies[0], coalesce=True)
    put_coalesced_s = time.perf_counter() - t0
    rx.keys.clear()
    async with HttpPush(rx.url, encoder) as push:
        stop = asyncio.Event()
        t0 = time.perf_counter()
        task = asyncio.create_task(box.run(push.deliver, stop))
        while box.pending():
            await asyncio.sleep(0.005)
        outbox_s = time.perf_counter() - t0
        stop.set()
        await task
    rx.stop()
    return {
        "items": n,
        "baseline_posts_per_s": n / baseline_s,
        "outbox_items_per_s": (n + 1) / outbox_s,
        "ratio_outbox_to_baseline": ((n + 1) / outbox_s) / (n / baseline_s),
        "durable_puts_per_s": n / put_s,
        "coalesced_puts_per_s": n / put_coalesced_s,
    }


async def outage(outage_s: float, tmp: Path) -> dict[str, float]:
    rx = Receiver()
    rx.start()
    box = Outbox(tmp / "outage.sqlite", name="bench")  # production defaults: 1 s base, 30 s cap
    versions = {"A": 0, "B": 0, "C": 0}
    versions_sent: list[str] = []
    latest_segments = ""
    async with HttpPush(rx.url, encoder, timeout_s=10) as push:
        stop = asyncio.Event()
        task = asyncio.create_task(box.run(push.deliver, stop))

        def change(step: int) -> None:
            nonlocal latest_segments
            cid = "ABC"[step % 3]
            versions[cid] += 1
            key = f"closure:{cid}:v{versions[cid]}"
            box.put(f"closure:{cid}", "closure", key, body(cid, versions[cid]))
            versions_sent.append(key)
            latest_segments = f"segments:{step}"
            box.put("segments", "segments", latest_segments, b"{}", coalesce=True)

        step = 0
        for _ in range(5):  # warm: the endpoint is up
            change(step)
            step += 1
            await asyncio.sleep(1.0)
        await asyncio.to_thread(rx.stop)
        down_at = time.monotonic()
        while time.monotonic() - down_at < outage_s:
            change(step)
            step += 1
            await asyncio.sleep(1.0)
        queued_during = box.pending()
        await asyncio.to_thread(rx.start)
        up_at = time.monotonic()
        while not (set(versions_sent) <= set(rx.keys) and latest_segments in rx.keys):
            if time.monotonic() - up_at > 600:
                raise SystemExit("not recovered in 600 s")
            await asyncio.sleep(0.05)
        recovered_s = time.monotonic() - up_at
        first_after = min(t for t in rx.times if t >= up_at) - up_at
        stop.set()
        await task
    rx.stop()
    closure_keys = [k for k in rx.keys if k.startswith("closure:")]
    per_closure: dict[str, list[int]] = {}
    for k in closure_keys:
        _, cid, v = k.split(":")
        per_closure.setdefault(cid, []).append(int(v[1:]))
    in_order_once = all(vs == list(range(1, versions[c] + 1)) for c, vs in per_closure.items())
    exactly_once = in_order_once and len(closure_keys) == len(versions_sent)
    return {
        "outage_s": outage_s,
        "closure_versions": len(versions_sent),
        "queued_at_recovery": queued_during,
        "first_delivery_after_recovery_s": first_after,
        "all_delivered_after_recovery_s": recovered_s,
        "closure_versions_exactly_once_in_order": float(exactly_once),
        "segment_pushes_delivered_after_recovery": float(
            sum(1 for k, t in zip(rx.keys, rx.times, strict=True) if k.startswith("segments:") and t >= up_at)
        ),
        **box.metrics(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--outage-s", type=float, default=120.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tp = asyncio.run(throughput(args.items, Path(d)))
        print("| throughput | value |\n|---|---|")
        for k, v in tp.items():
            print(f"| {k} | {v:,.2f} |")
        oo = asyncio.run(outage(args.outage_s, Path(d)))
        print("\n| outage recovery | value |\n|---|---|")
        for k, v in oo.items():
            print(f"| {k} | {v:,.2f} |")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_outbox.json").write_text(json.dumps({"throughput": tp, "outage": oo}, indent=1))


if __name__ == "__main__":
    main()
