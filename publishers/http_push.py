"""HTTP delivery of outbox items (aiohttp): one POST per item, classified for the outbox.

An *encoder* turns an ``OutboxItem`` into the request body and headers at send time (so a
signature can carry the time of sending); ``HttpPush.deliver`` posts it with the item's
``Idempotency-Key`` and maps the outcome onto a ``DeliveryResult``:

* 2xx → delivered; 409 Conflict → delivered too (receivers that dedupe by idempotency key answer a
  replay with 409);
* 408, 425, 429, 5xx → retry later, honouring ``Retry-After`` (seconds or an HTTP date);
* other 4xx → refused for good (dead letter): the same bytes will be refused again;
* no answer (refused, reset, dropped, timeout) → retry later, not counted against the attempts.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from .outbox import DeliveryResult, OutboxItem

Encoder = Callable[[OutboxItem], tuple[bytes, dict[str, str]]]

RETRYABLE_STATUS = frozenset({408, 425, 429})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify(status: int, retry_after: str | None) -> DeliveryResult:
    if 200 <= status < 300 or status == 409:
        return DeliveryResult(ok=True, status=status)
    if status in RETRYABLE_STATUS or status >= 500:
        return DeliveryResult(ok=False, status=status, retry_after_s=parse_retry_after(retry_after))
    return DeliveryResult(ok=False, status=status, permanent=True)


class HttpPush:
    """POSTs outbox items to ``url``; an async context manager that owns its client session.

    ``session`` may be injected (tests, shared connection pools); ``timeout_s`` bounds a whole
    request, so a receiver that accepts the connection and never answers cannot stall delivery.
    """

    def __init__(
        self,
        url: str,
        encoder: Encoder,
        *,
        timeout_s: float = 10.0,
        headers: dict[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url
        self.encoder = encoder
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.headers = dict(headers or {})
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> HttpPush:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        assert self._session is not None, "use HttpPush as an async context manager"
        body, headers = self.encoder(item)
        headers = {**self.headers, **headers, "Idempotency-Key": item.idempotency_key}
        try:
            async with self._session.post(self.url, data=body, headers=headers, timeout=self.timeout) as resp:
                await resp.read()
                return classify(resp.status, resp.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return DeliveryResult(ok=False, answered=False, error=f"{type(exc).__name__}: {exc}".strip(": "))
