"""A durable outbox per push endpoint: nothing accepted for delivery is lost.

Every item is written to SQLite (WAL; closures and incidents with ``synchronous=FULL``, so a
committed item survives power loss) before ``put`` returns and deleted
only after the endpoint acknowledged it with a 2xx, so a crash, a restart or an endpoint that is
down for hours loses nothing. Memory stays bounded however long the endpoint is away: items live
on disk, one at a time in memory.

Rules, per endpoint:

* **Order per key.** Items share a *key* (``closure:C-1``, ``incident:I-7``, ``segments``); only
  the oldest queued item of a key may be sent, so the versions of one closure arrive in order.
  Different keys do not wait for each other.
* **Coalescing.** ``put(..., coalesce=True)`` replaces the queued item of the same key (segment
  states: only the latest matters); closures and incidents use ``coalesce=False`` and are all kept.
* **Idempotency.** Each item carries an idempotency key (``closure:C-1:v3``); the HTTP layer sends
  it as ``Idempotency-Key`` so a receiver that dedupes never applies a retry twice, and ``put``
  ignores a key it has already queued or sent (e.g. all closures queued again after a restart).
* **Retries.** Exponential backoff with equal jitter (``d/2 + U(0, d/2)``, ``d = base·2^(n-1)``
  capped at ``max_backoff_s``), never sooner than a ``Retry-After`` the endpoint asked for. After
  a failure the whole endpoint pauses for the same delay, so a down endpoint is probed, not
  hammered.
* **Dead letters.** An item is dead-lettered — kept in the table with its last error, counted and
  reported through ``on_dead`` — once the endpoint has *answered* it with an error
  ``max_attempts`` times, or at once when the answer is a 4xx that a retry cannot change (anything
  but 408, 409, 425, 429). Failures with no answer at all (connection refused or dropped, timeout)
  do not count towards ``max_attempts``: an endpoint that is down for hours gets everything once it
  is back.

Metrics (``metrics()``): queued (now), sent, retried, failed, dead, coalesced, duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("roadpulse.outbox")

#: How long an idempotency key is remembered after it was sent (seconds).
SEEN_RETENTION_S = 30 * 86400.0


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    key: str
    kind: str
    idempotency_key: str
    payload: bytes
    attempts: int
    created: float
    coalesce: bool


@dataclass(frozen=True)
class DeliveryResult:
    """What one delivery attempt gave.

    ``answered`` is false when no HTTP answer came back (refused, reset, timeout);
    ``permanent`` when the answer says retrying the same request cannot succeed.
    """

    ok: bool
    status: int | None = None
    answered: bool = True
    permanent: bool = False
    retry_after_s: float | None = None
    error: str = ""


@dataclass
class OutboxMetrics:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    coalesced: int = 0
    duplicates: int = 0


Deliver = Callable[[OutboxItem], Awaitable[DeliveryResult]]


class Outbox:
    """The durable queue of one push endpoint (see the module docstring for the rules)."""

    def __init__(
        self,
        path: str | Path,
        *,
        name: str = "push",
        max_attempts: int = 10,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_dead: Callable[[OutboxItem, str], None] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.name = name
        self.path = str(path)
        self.max_attempts = max_attempts
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_dead = on_dead
        self.stats = OutboxMetrics()
        self._lock = threading.Lock()
        self._inflight: int | None = None
        self._consecutive_failures = 0
        self._paused_until = 0.0
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._sync_full = False
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                key TEXT NOT NULL, kind TEXT NOT NULL, idem TEXT NOT NULL, payload BLOB NOT NULL,
                coalesce INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                created REAL NOT NULL, next_at REAL NOT NULL DEFAULT 0,
                state TEXT NOT NULL DEFAULT 'queued', last_error TEXT NOT NULL DEFAULT '');
            CREATE INDEX IF NOT EXISTS outbox_head ON outbox (state, key, seq);
            CREATE TABLE IF NOT EXISTS seen (idem TEXT PRIMARY KEY, at REAL NOT NULL);
            """
        )
        self._db.execute("DELETE FROM seen WHERE at < ?", (self.clock() - SEEN_RETENTION_S,))

    # -- producer side --------------------------------------------------------------------------

    def put(
        self, key: str, kind: str, idempotency_key: str, payload: bytes, *, coalesce: bool = False
    ) -> bool:
        """Queue ``payload`` durably; False when ``idempotency_key`` was queued or sent before.

        With ``coalesce``, queued items of the same key that are not in flight are replaced.
        Safe to call from any thread.
        """
        now = self.clock()
        with self._lock:
            self._durability(full=not coalesce)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if not coalesce:
                    fresh = self._db.execute(
                        "INSERT OR IGNORE INTO seen (idem, at) VALUES (?, ?)", (idempotency_key, now)
                    ).rowcount
                    if not fresh:
                        self._db.execute("COMMIT")
                        self.stats.duplicates += 1
                        return False
                else:
                    replaced = self._db.execute(
                        "DELETE FROM outbox WHERE key = ? AND state = 'queued' AND seq != ?",
                        (key, -1 if self._inflight is None else self._inflight),
                    ).rowcount
                    self.stats.coalesced += replaced
                self._db.execute(
                    "INSERT INTO outbox (key, kind, idem, payload, coalesce, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (key, kind, idempotency_key, payload, int(coalesce), now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._poke()
        return True

    def _durability(self, *, full: bool) -> None:
        """fsync every commit of an item that must survive power loss (closures, incidents);
        WAL's NORMAL mode for the rest: a lost delete re-sends an item (idempotent) and a lost
        coalesced state is replaced by the next tick's."""
        if full != self._sync_full:
            self._db.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")
            self._sync_full = full

    # -- queries --------------------------------------------------------------------------------

    def pending(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'queued'").fetchone()[0])

    def dead_letters(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, key, kind, idem, attempts, last_error, created FROM outbox "
                "WHERE state = 'dead' ORDER BY seq"
            ).fetchall()
        names = ("seq", "key", "kind", "idempotency_key", "attempts", "last_error", "created")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def metrics(self) -> dict[str, int]:
        s = self.stats
        return {
            "queued": self.pending(),
            "sent": s.sent,
            "retried": s.retried,
            "failed": s.failed,
            "dead": s.dead,
            "coalesced": s.coalesced,
            "duplicates": s.duplicates,
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- delivery -------------------------------------------------------------------------------

    async def run(self, deliver: Deliver, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set: one request in flight at a time, oldest due item first."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while not stop.is_set():
            self._wake.clear()  # before looking, so a put() from now on wakes the sleep below
            now = self.clock()
            wait = self._paused_until - now
            item: OutboxItem | None = None
            if wait <= 0:
                item, next_at = self._next_due(now)
                wait = 1.0 if next_at is None else next_at - now
            if item is None:
                await self._sleep(min(max(wait, 0.001), 1.0), stop)
                continue
            self._inflight = item.seq
            try:
                result = await deliver(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an encoder or transport bug must not stop delivery
                log.exception("outbox %s: delivering %s failed", self.name, item.idempotency_key)
                result = DeliveryResult(ok=False, answered=False, error=f"{type(exc).__name__}: {exc}")
            finally:
                self._inflight = None
            self._settle(item, result)

    def _next_due(self, now: float) -> tuple[OutboxItem | None, float | None]:
        # The head of each key: no older queued item of the same key (an index probe per row).
        # NOT INDEXED makes SQLite walk the rows in seq order and stop at the first due head,
        # instead of collecting every queued row to sort them.
        heads = (
            "FROM outbox o NOT INDEXED WHERE state = 'queued' AND NOT EXISTS (SELECT 1 FROM outbox p "
            "WHERE p.state = 'queued' AND p.key = o.key AND p.seq < o.seq)"
        )
        with self._lock:
            row = self._db.execute(
                "SELECT seq, key, kind, idem, payload, attempts, created, coalesce "
                f"{heads} AND next_at <= ? ORDER BY seq LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                soonest = self._db.execute(f"SELECT MIN(next_at) {heads}").fetchone()[0]
                return None, soonest
        seq, key, kind, idem, payload, attempts, created, coalesce = row
        return OutboxItem(seq, key, kind, idem, bytes(payload), attempts, created, bool(coalesce)), now

    def _settle(self, item: OutboxItem, result: DeliveryResult) -> None:
        now = self.clock()
        if result.ok:
            with self._lock:
                self._durability(full=False)
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (item.seq,))
            self.stats.sent += 1
            self._consecutive_failures = 0
            self._paused_until = 0.0
            return
        self.stats.failed += 1
        attempts = item.attempts + (1 if result.answered else 0)
        reason = result.error or (f"HTTP {result.status}" if result.status else "no answer")
        if result.permanent or attempts >= self.max_attempts:
            why = "refused for good" if result.permanent else f"{attempts} failed attempts"
            self._bury(item, attempts, f"{reason} ({why})")
            return
        with self._lock:
            if item.coalesce:
                newer = self._db.execute(
                    "SELECT 1 FROM outbox WHERE key = ? AND state = 'queued' AND seq > ? LIMIT 1",
                    (item.key, item.seq),
                ).fetchone()
                if newer is not None:  # a fresher state is queued: this one is obsolete
                    self._db.execute("DELETE FROM outbox WHERE seq = ?", (item.seq,))
                    self.stats.coalesced += 1
                    item = None  # type: ignore[assignment]
            self._consecutive_failures += 1
            delay = self.backoff_s(self._consecutive_failures)
            if result.retry_after_s is not None:
                delay = max(delay, min(result.retry_after_s, 3600.0))
            self._paused_until = now + delay
            if item is not None:
                item_delay = max(delay, self.backoff_s(max(attempts, 1)))
                self._db.execute(
                    "UPDATE outbox SET attempts = ?, next_at = ?, last_error = ? WHERE seq = ?",
                    (attempts, now + item_delay, reason, item.seq),
                )
        self.stats.retried += 1

    def _bury(self, item: OutboxItem, attempts: int, reason: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET state = 'dead', attempts = ?, last_error = ? WHERE seq = ?",
                (attempts, reason, item.seq),
            )
        self.stats.dead += 1
        log.warning("outbox %s: dead-lettered %s: %s", self.name, item.idempotency_key, reason)
        if self.on_dead is not None:
            self.on_dead(item, reason)

    def backoff_s(self, failures: int) -> float:
        """Delay before retry number ``failures`` (≥ 1): exponential, capped, equal jitter."""
        d = min(self.max_backoff_s, self.base_backoff_s * 2.0 ** (max(failures, 1) - 1))
        return d / 2.0 + self.rng.uniform(0.0, d / 2.0)

    # -- waking ---------------------------------------------------------------------------------

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> None:
        assert self._wake is not None
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
