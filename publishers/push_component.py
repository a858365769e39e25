"""Live push components: one per ``[[push]]`` endpoint, each with its durable outbox.

Kinds (``[[push]] kind``):

* ``amap`` — Amap conventions, signed form posts (``publishers.amap``): ``traffic_status`` (all
  segments, coalesced to the latest), one ``closure`` per closure version, one ``incident`` per
  incident change;
* ``webhook`` — the same items as JSON (``{"type", "id", "version", "data"}`` with roadpulse's
  own records), ``Authorization: Bearer`` from ``key_env`` when set;
* ``waze_json``, ``waze_xml``, ``datex2_situations``, ``datex2_measured``, ``geojson``, ``osrm``
  — the whole feed document, re-sent (coalesced) when it changes.

Closures come from the closure book (``ctx.shared["closures"]``) as they change; segment states
and incidents from each tick (every ``every_s`` seconds; 0 = every tick). Outboxes are put in
``ctx.shared["outboxes"]`` by endpoint name (their ``metrics()`` feed /metrics); a dead letter is
logged and published on ``{prefix}push/{name}/dead_letter``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import amap, datex2, geojson_feed, osrm, waze
from ._encode import topic_level
from ._geometry import SegmentGeometry
from .http_push import HttpPush
from .message import Message
from .outbox import Outbox, OutboxItem

if TYPE_CHECKING:
    import aiohttp

    from congestion import TickResult
    from roadpulse.components import LiveContext
    from roadpulse.config import PushEndpoint, Settings

log = logging.getLogger("roadpulse.push")

ITEM_KINDS = ("amap", "webhook")
DOCUMENT_KINDS = ("waze_json", "waze_xml", "datex2_situations", "datex2_measured", "geojson", "osrm")
PUSH_KINDS = ITEM_KINDS + DOCUMENT_KINDS
_CONTENT_TYPE = {
    "waze_json": "application/json",
    "waze_xml": "application/xml",
    "datex2_situations": "application/xml",
    "datex2_measured": "application/xml",
    "geojson": "application/geo+json",
    "osrm": "text/csv",
}


def default_outbox_path(name: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "roadpulse" / f"outbox-{name}.sqlite"


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


class PushComponent:
    """Feeds one endpoint through its outbox (see the module docstring)."""

    def __init__(
        self, endpoint: PushEndpoint, settings: Settings, *, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.endpoint = endpoint
        self.name = f"push:{endpoint.name}"
        self.prefix: str = settings["mqtt"]["prefix"]
        self._session = session
        self.outbox: Outbox | None = None
        self._http: HttpPush | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._ctx: LiveContext | None = None
        self._roads: amap.AmapRoads | None = None
        self._geometry: SegmentGeometry | None = None
        self._last_push_ts = -float("inf")
        self._incident_marks: dict[str, str] = {}
        self._last_document = b""

    # -- component hooks ------------------------------------------------------------------------

    async def start(self, ctx: LiveContext) -> None:
        ep = self.endpoint
        self._ctx = ctx
        if ep.kind == "amap" and (not ep.key_env or ep.key_env not in os.environ):
            raise RuntimeError(
                f"[[push]] {ep.name}: the Amap private key must be in the environment variable named by "
                f"key_env ({ep.key_env!r} is {'not set' if ep.key_env else 'empty'})"
            )
        if ep.kind == "osrm" and ctx.network.meta.get("osm_nodes") is None:
            raise RuntimeError(
                f"[[push]] {ep.name}: kind osrm needs a network loaded from OSM XML (OSM node ids); "
                f"{ctx.network.source!r} has none"
            )
        self.outbox = Outbox(
            ep.outbox or default_outbox_path(ep.name),
            name=ep.name,
            max_attempts=ep.attempts,
            base_backoff_s=ep.base_backoff_s,
            max_backoff_s=ep.max_backoff_s,
            on_dead=self._on_dead,
        )
        ctx.shared.setdefault("outboxes", {})[ep.name] = self.outbox
        if ep.kind in ("amap", "waze_json", "waze_xml", "datex2_situations"):
            self._geometry = SegmentGeometry(ctx.network)
        if ep.kind == "amap":
            self._roads = amap.AmapRoads(ctx.network, self._geometry)
        self._http = HttpPush(
            ep.url,
            self._encoder(),
            timeout_s=ep.timeout_s,
            headers=self._auth_headers(),
            session=self._session,
        )
        await self._http.__aenter__()
        book = ctx.shared.get("closures")
        if book is not None:
            book.add_listener(self.on_closure)
            # Versions changed while this endpoint's component was not running; sent ones are
            # skipped by the outbox's idempotency ledger.
            for record in book.list(include_cleared=True):
                self.on_closure(record)
        self._task = asyncio.create_task(self.outbox.run(self._http.deliver, self._stop), name=self.name)

    def after_tick(self, ctx: LiveContext, result: TickResult) -> list[Message]:
        ts = float(result.states.ts)
        if ts - self._last_push_ts < self.endpoint.every_s:
            return []
        self._last_push_ts = ts
        if self.endpoint.kind in ITEM_KINDS:
            self._queue_segments(result)
            self._queue_incidents(ctx)
        else:
            self._queue_document(result.states)
        return []

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, timeout=self.endpoint.timeout_s + 1)
        if self._http is not None:
            await self._http.__aexit__(None, None, None)
        if self.outbox is not None:
            self.outbox.close()

    # -- producers ------------------------------------------------------------------------------

    def on_closure(self, record: dict[str, Any]) -> None:
        """Closure book listener: queue this version (item kinds) or re-send the document."""
        assert self.outbox is not None
        if self.endpoint.kind in ITEM_KINDS:
            cid, version = str(record["closure_id"]), int(record["version"])
            data = amap.closure_payload(self._roads, record) if self._roads is not None else record
            item = {"type": "closure", "id": cid, "version": version, "data": data}
            self.outbox.put(f"closure:{cid}", "closure", f"closure:{cid}:v{version}", _json(item))
        elif self.endpoint.kind not in ("datex2_measured", "geojson", "osrm"):
            states = None
            if self._ctx is not None and self._ctx.pipeline.last_result is not None:
                states = self._ctx.pipeline.last_result.states
            self._queue_document(states)

    def _queue_segments(self, result: TickResult) -> None:
        assert self.outbox is not None
        states = result.states
        ts = float(states.ts)
        if self._roads is not None:
            data: Any = amap.traffic_status_payload(self._roads, states)
        else:
            data = geojson_feed.feature_collection(self._ctx.network, states) if self._ctx else {}
        item = {"type": "traffic_status", "id": "segments", "version": int(ts), "data": data}
        self.outbox.put("segments", "segments", f"segments:{ts:.0f}", _json(item), coalesce=True)

    def _queue_incidents(self, ctx: LiveContext) -> None:
        assert self.outbox is not None
        records_of = getattr(ctx.pipeline, "incident_records", None)
        if records_of is None:
            return
        seen: dict[str, str] = {}
        for record in records_of(include_cleared=True):
            iid = str(record.get("incident_id"))
            mark = hashlib.sha1(_json(record)).hexdigest()[:16]
            seen[iid] = mark
            if self._incident_marks.get(iid) == mark:
                continue
            data = amap.incident_payload(self._roads, record) if self.endpoint.kind == "amap" else record
            item = {"type": "incident", "id": iid, "version": mark, "data": data}
            self.outbox.put(f"incident:{iid}", "incident", f"incident:{iid}:{mark}", _json(item))
        self._incident_marks = seen

    def _queue_document(self, states: Any) -> None:
        assert self.outbox is not None and self._ctx is not None
        doc = self.render(states)
        if doc is None or doc == self._last_document:
            return
        self._last_document = doc
        digest = hashlib.sha1(doc).hexdigest()[:16]
        self.outbox.put("feed", self.endpoint.kind, f"{self.endpoint.kind}:{digest}", doc, coalesce=True)

    def render(self, states: Any) -> bytes | None:
        """The endpoint's feed document now (None when it needs states not yet computed)."""
        assert self._ctx is not None
        ctx, kind = self._ctx, self.endpoint.kind
        book = ctx.shared.get("closures")
        closures = book.list() if book is not None else []
        full = book.closes_all_lanes if book is not None else None
        records_of = getattr(ctx.pipeline, "incident_records", None)
        incidents = records_of() if records_of is not None else []
        offset = int(self.endpoint.utc_offset_h * 3600)
        if kind in ("waze_json", "waze_xml"):
            items = waze.cifs_incidents(
                ctx.network,
                closures,
                incidents,
                closes_all_lanes=full,
                utc_offset_s=offset,
                geometry=self._geometry,
            )
            return waze.to_json(items) if kind == "waze_json" else waze.to_xml(items)
        if kind == "datex2_situations":
            return datex2.situation_publication(
                ctx.network,
                closures,
                incidents,
                publication_time=ctx.clock(),
                closes_all_lanes=full,
                utc_offset_s=offset,
                geometry=self._geometry,
            )
        if states is None:
            return None
        if kind == "datex2_measured":
            return datex2.measured_data_publication(ctx.network, states, utc_offset_s=offset)
        if kind == "geojson":
            return geojson_feed.to_bytes(ctx.network, states)
        return osrm.traffic_csv(ctx.network, states)

    # -- delivery -------------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        ep = self.endpoint
        if ep.kind == "amap" or not ep.key_env:
            return {}
        return {"Authorization": f"Bearer {os.environ.get(ep.key_env, '')}"}

    def _encoder(self) -> Any:
        ep = self.endpoint
        if ep.kind == "amap":
            return amap.form_encoder(api_key=ep.key, private_key=os.environ[ep.key_env])
        if ep.kind == "webhook":
            return lambda item: (item.payload, {"Content-Type": "application/json"})
        content_type = _CONTENT_TYPE[ep.kind]
        return lambda item: (item.payload, {"Content-Type": content_type})

    def _on_dead(self, item: OutboxItem, reason: str) -> None:
        if self._ctx is None:
            return
        body = {
            "endpoint": self.endpoint.name,
            "key": item.key,
            "idempotency_key": item.idempotency_key,
            "attempts": item.attempts,
            "reason": reason,
            "ts": self._ctx.clock(),
        }
        topic = f"{self.prefix}push/{topic_level(self.endpoint.name)}/dead_letter"
        self._ctx.publish([Message(topic, json.dumps(body, ensure_ascii=False).encode(), False)])
