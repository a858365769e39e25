"""The closure book: closures and traffic controls, validated, versioned, persisted, expired on time.

A record (docs/interfaces.md §2) names the closed ``segment_ids``, which ``lanes`` (``"all"`` or a
list of lane indices, 0 = rightmost), a ``type`` (``road_closed``, ``lane_closed``, ``control``,
``accident``, ``hazard``, ``event``), ``start``/``end`` (epoch seconds or ISO 8601 with an offset;
``end`` may be null for an open-ended control) and free text (``reason``, ``description``).

The book adds ``version`` (1 on creation, +1 on every change, clearing included), ``status``
(``scheduled`` before ``start``, ``active``, ``cleared`` after ``end`` or when cleared),
``updated`` (epoch seconds) and, once cleared, ``cleared_by`` (``operator`` or ``expired``).

**Closed segments.** A segment is closed while an *active* record closes *all* its lanes
(``lanes: "all"``, or a list naming every lane of the segment), whatever the type: an accident
or an event that blocks every lane stops traffic as surely as a road closure. The book hands the
engine a boolean mask through ``on_closed_mask`` (the live service wires it to
``CongestionEngine.set_closed``); a closed segment is then published with ``closed: true`` and
level 5, so routing avoids it. Partial lane closures stay visible in the feeds but do not close the
segment.

The book is synchronous and cheap; ``tick(now)`` activates scheduled records and clears expired
ones, and the live component calls it every second so expiry happens on time, not at the next
engine tick.
"""

from __future__ import annotations

import builtins
import copy
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from roadgraph.network import RoadNetwork

    from .closure_store import ClosureStore

CLOSURE_TYPES = ("road_closed", "lane_closed", "control", "accident", "hazard", "event")
#: Fields a record may carry on input (the book adds version/status/updated/cleared_by).
INPUT_FIELDS = frozenset(
    {
        "closure_id",
        "segment_ids",
        "lanes",
        "type",
        "reason",
        "start",
        "end",
        "description",
        "source",
        "street",
        "direction",
    }
)
BOOK_FIELDS = frozenset({"version", "status", "updated", "cleared_by"})
MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 2000


class ClosureError(ValueError):
    """A closure record that cannot be accepted; the message names the field and what was expected."""


def _ts(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ClosureError(f"{field}: expected epoch seconds or an ISO 8601 time, got {value!r}")
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ClosureError(
                f"{field}: {value!r} is not an ISO 8601 time such as '2026-04-21T08:00:00+08:00'"
            ) from None
        if moment.utcoffset() is None:
            raise ClosureError(f"{field}: {value!r} has no UTC offset (append 'Z' or e.g. '+08:00')")
        return moment.timestamp()
    if not math.isfinite(value) or value < 0:
        raise ClosureError(f"{field}: {value!r} is not a valid epoch time")
    return float(value)


def _text(record: dict[str, Any], field: str, *, default: str = "") -> str:
    value = record.get(field, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ClosureError(f"{field}: expected a string, got {type(value).__name__} {value!r}")
    if len(value) > MAX_TEXT_CHARS:
        raise ClosureError(f"{field}: longer than {MAX_TEXT_CHARS} characters")
    return value


class ClosureBook:
    """Closures by id, with their versions, the store behind them and the engine's closed mask.

    ``store`` (optional) persists every change; ``on_closed_mask`` receives the boolean closed mask
    whenever it changes; listeners added with ``add_listener`` receive every changed record
    (created, updated, activated, cleared) — the live component publishes them on MQTT and the
    push outboxes queue them. Thread-safe: the HTTP service may call it from another thread.
    """

    def __init__(
        self,
        network: RoadNetwork,
        store: ClosureStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_closed_mask: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        self.network = network
        self.store = store
        self.clock = clock
        self.on_closed_mask = on_closed_mask
        self._records: dict[str, dict[str, Any]] = {}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._lock = threading.RLock()
        self._mask = np.zeros(len(network), dtype=bool)
        if store is not None:
            for record in store.load_all():
                self._records[str(record["closure_id"])] = record

    # -- the agreed interface ------------------------------------------------------------------

    def list(self, *, include_cleared: bool = False) -> builtins.list[dict[str, Any]]:
        """Every record (copies), by closure id; cleared ones only when asked."""
        with self._lock:
            return [
                copy.deepcopy(r)
                for _, r in sorted(self._records.items())
                if include_cleared or r["status"] != "cleared"
            ]

    def get(self, closure_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._records.get(closure_id)
            return copy.deepcopy(record) if record is not None else None

    def set(self, record: dict[str, Any], *, source: str = "operator") -> dict[str, Any]:
        """Create or update a closure; the stored record (with ``version`` and ``status``).

        Raises ``ClosureError`` naming the field for anything invalid, touching nothing. Setting
        the same content again returns the stored record unchanged (no new version), so a
        redelivered MQTT message or a retried HTTP call is harmless.
        """
        clean = self.validate(record, source=source)
        with self._lock:
            now = self.clock()
            if clean["end"] is not None and clean["end"] <= now:
                raise ClosureError(f"end: {clean['end']:g} has already passed (now {now:g})")
            old = self._records.get(clean["closure_id"])
            if old is not None and _content(old) == _content(clean) and old["status"] != "cleared":
                return copy.deepcopy(old)
            clean["version"] = 1 if old is None else int(old["version"]) + 1
            clean["status"] = _status_at(clean, now)
            clean["updated"] = now
            self._commit(clean)
            return copy.deepcopy(clean)

    def clear(self, closure_id: str) -> dict[str, Any] | None:
        """Clear a closure (status ``cleared``, a new version); None when the id is unknown.
        Clearing an already cleared record returns it unchanged."""
        with self._lock:
            old = self._records.get(closure_id)
            if old is None:
                return None
            if old["status"] == "cleared":
                return copy.deepcopy(old)
            cleared = dict(
                old,
                version=int(old["version"]) + 1,
                status="cleared",
                updated=self.clock(),
                cleared_by="operator",
            )
            self._commit(cleared)
            return copy.deepcopy(cleared)

    # -- lifecycle ------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> builtins.list[dict[str, Any]]:
        """Activate records whose ``start`` has come and clear those whose ``end`` has passed;
        return the changed records (each a new version)."""
        changed = []
        with self._lock:
            now = self.clock() if now is None else now
            for record in list(self._records.values()):
                if record["status"] == "cleared":
                    continue
                status = _status_at(record, now)
                if status == record["status"]:
                    continue
                new = dict(record, version=int(record["version"]) + 1, status=status, updated=now)
                if status == "cleared":
                    new["cleared_by"] = "expired"
                self._commit(new)
                changed.append(copy.deepcopy(new))
            self._refresh_mask()
        return changed

    def add_listener(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(record)`` after every change (in the thread that made it)."""
        self._listeners.append(listener)

    def closed_mask(self) -> np.ndarray:
        """Bool per segment: closed to all traffic by an active record (a copy)."""
        with self._lock:
            return self._mask.copy()

    def lane_closures(self) -> dict[str, builtins.list[dict[str, Any]]]:
        """Active records by segment id (for feeds that show partial closures too)."""
        out: dict[str, builtins.list[dict[str, Any]]] = {}
        with self._lock:
            for record in self._records.values():
                if record["status"] == "active":
                    for sid in record["segment_ids"]:
                        out.setdefault(sid, []).append(copy.deepcopy(record))
        return out

    def closes_all_lanes(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` closes every lane of every segment it names."""
        lanes = record["lanes"]
        if lanes == "all":
            return True
        seg = self.network.segments
        wanted = set(lanes)
        return all(wanted >= set(range(int(seg.lanes[seg.index_of[sid]]))) for sid in record["segment_ids"])

    # -- validation -----------------------------------------------------------------------------

    def validate(self, record: Any, *, source: str = "operator") -> dict[str, Any]:
        """A clean copy of ``record`` (times as epoch seconds), or ``ClosureError`` naming the field."""
        if not isinstance(record, dict):
            raise ClosureError(f"a closure must be a JSON object, got {type(record).__name__}")
        unknown = sorted(set(record) - INPUT_FIELDS - BOOK_FIELDS)
        if unknown:
            raise ClosureError(
                f"unknown field {unknown[0]!r}; expected fields {', '.join(sorted(INPUT_FIELDS))}"
            )
        cid = record.get("closure_id")
        if not isinstance(cid, str) or not cid.strip():
            raise ClosureError(f"closure_id: expected a non-empty string, got {cid!r}")
        if len(cid) > MAX_ID_CHARS or any(c in cid for c in "\0\n\r"):
            raise ClosureError(f"closure_id: at most {MAX_ID_CHARS} characters without control characters")
        segment_ids = record.get("segment_ids")
        if not isinstance(segment_ids, list) or not segment_ids:
            raise ClosureError(f"segment_ids: expected a non-empty list of segment ids, got {segment_ids!r}")
        index_of = self.network.segments.index_of
        for sid in segment_ids:
            if not isinstance(sid, str):
                raise ClosureError(f"segment_ids: expected strings, got {sid!r}")
            if sid not in index_of:
                raise ClosureError(f"segment_ids: unknown segment {sid!r} (not in the network)")
        if len(set(segment_ids)) != len(segment_ids):
            raise ClosureError("segment_ids: a segment is listed twice")
        lanes = record.get("lanes", "all")
        if lanes != "all":
            if (
                not isinstance(lanes, list)
                or not lanes
                or not all(isinstance(k, int) and not isinstance(k, bool) for k in lanes)
            ):
                raise ClosureError(
                    f'lanes: expected "all" or a non-empty list of lane indices, got {lanes!r}'
                )
            seg = self.network.segments
            for sid in segment_ids:
                n = int(seg.lanes[index_of[sid]])
                bad = [k for k in lanes if not 0 <= k < n]
                if bad:
                    raise ClosureError(
                        f"lanes: lane {bad[0]} does not exist on segment {sid!r} "
                        f"({n} lane{'s' if n != 1 else ''}, numbered 0..{n - 1} from the right)"
                    )
            lanes = sorted(set(lanes))
        kind = record.get("type")
        if kind not in CLOSURE_TYPES:
            raise ClosureError(f"type: expected one of {', '.join(CLOSURE_TYPES)}, got {kind!r}")
        start = _ts(record["start"], "start") if record.get("start") is not None else None
        end = _ts(record["end"], "end") if record.get("end") is not None else None
        if start is None:
            start = float(self.clock())
        if end is not None and end <= start:
            raise ClosureError(f"end: {end:g} is not after start {start:g}")
        return {
            "closure_id": cid,
            "segment_ids": list(segment_ids),
            "lanes": lanes,
            "type": kind,
            "reason": _text(record, "reason"),
            "start": start,
            "end": end,
            "description": _text(record, "description"),
            "source": _text(record, "source", default=source) or source,
            **({"street": _text(record, "street")} if "street" in record else {}),
            **({"direction": _text(record, "direction")} if "direction" in record else {}),
        }

    # -- internals ------------------------------------------------------------------------------

    def _commit(self, record: dict[str, Any]) -> None:
        """Store, remember, refresh the mask and tell the listeners (store first: a record the
        store refused is not announced)."""
        if self.store is not None:
            self.store.save(record)
        self._records[record["closure_id"]] = record
        self._refresh_mask()
        for listener in self._listeners:
            listener(copy.deepcopy(record))

    def _refresh_mask(self) -> None:
        mask = np.zeros(len(self.network), dtype=bool)
        index_of = self.network.segments.index_of
        for record in self._records.values():
            if record["status"] == "active" and self.closes_all_lanes(record):
                mask[[index_of[s] for s in record["segment_ids"]]] = True
        if not np.array_equal(mask, self._mask):
            self._mask = mask
            if self.on_closed_mask is not None:
                self.on_closed_mask(mask.copy())

    def start(self) -> builtins.list[dict[str, Any]]:
        """After a restore: apply the times (records that ended meanwhile are cleared) and hand
        the engine its mask. Returns the records that changed."""
        changed = self.tick()
        if self.on_closed_mask is not None:
            self.on_closed_mask(self._mask.copy())
        return changed


def _status_at(record: dict[str, Any], now: float) -> str:
    if record["end"] is not None and now >= record["end"]:
        return "cleared"
    return "active" if now >= record["start"] else "scheduled"


def _content(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in BOOK_FIELDS}
