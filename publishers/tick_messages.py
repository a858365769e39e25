"""Turn one engine tick into the messages the spec's output topics carry.

``TickMessages`` is the only place that knows the payload formats of ``{prefix}segments/…``,
``{prefix}snapshot`` and ``{prefix}index/…``; the MQTT and JSONL sinks just deliver its bytes.
It reads the engine's ``TickResult`` (a frozen snapshot) and nothing else of the engine.

Segment state — ``{prefix}segments/{segment_id}``, retained
    Exactly the spec's fields in the spec's order, compact JSON::

        {"segment_id":"A0A1","ts":1776729660,"speed_kmh":31.5,"free_flow_kmh":48.0,"tti":1.52,
         "level":3,"level_name":"light","confidence":0.8,"imputed":false,
         "sources":{"detectors":2,"cameras":0},"closed":false}

    ``speed_kmh`` and ``free_flow_kmh`` have 1 decimal, ``tti`` and ``confidence`` 2; numbers
    that are not finite (unknown speed, hence unknown tti) are ``null``. ``ts`` is an integer when
    the tick time is whole. Extension field: ``closed`` — the segment is closed to traffic by an
    active closure (its state then reflects the closure, not a measurement).

    A segment is published when its state *changed since the last message published for it*:
    its level differs, it went unknown↔known, its speed moved by ``min_speed_change_kmh`` or more
    (compared with the last published speed, so slow drifts add up), or its ``imputed`` or
    ``closed`` flag flipped. Confidence, sources and free-flow speed alone never trigger a message;
    they ride along with the next one. ``ts`` in a retained message is therefore the tick at which
    that state was last published — it holds until a newer message.

    The first tick publishes **every** segment, unknown ones included (``publish_initial_unknown``).
    Retained messages outlive the engine process: without this, a segment known in a previous run
    but unknown now would keep showing the old run's state as current. The one-off cost is one
    message per segment at start-up. ``full=True`` publishes every segment at any tick.

    The topic level is the segment id with ``%``, ``/``, ``+``, ``#`` and NUL percent-encoded
    (MQTT forbids the wildcards in topic names; SUMO ids such as ``-4711#2`` contain ``#``).

Snapshot — ``{prefix}snapshot``, not retained, one per tick, every segment
    ``{"ts":…,"columns":[…],"rows":[[…],…]}``; each row holds the values of ``columns`` for one
    segment, in network order, formatted as in the segment state::

        {"ts":1776729660,
         "columns":["segment_id","speed_kmh","free_flow_kmh","tti","level","confidence","imputed",
                    "detectors","cameras","closed"],
         "rows":[["A0A1",31.5,48.0,1.52,3,0.8,false,2,0,false], …]}

    Readers should look columns up by name: new columns may be appended.

Area indices — ``{prefix}index/city`` and ``{prefix}index/district/{name}``, retained, every tick
    ``{"ts","tpi","level","level_name","tti","severe_share","known_share"}``; ``tpi`` and ``tti``
    with 2 decimals, the shares with 3; NaN (no known segment in the area) is ``null``.
    Extension field: ``known_share``, the share of the area's length with a known state.

Rejections — ``{prefix}rejected``, not retained: ``Rejection.to_payload()`` as strict JSON.

All JSON is strict (no ``NaN``/``Infinity`` literals) and UTF-8 (non-ASCII is not escaped).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from congestion.types import LEVELS, AreaIndex, SegmentStates, TickResult

from ._encode import (
    dumps,
    fixed_fragments,
    gc_paused,
    grouped_fragments,
    json_number,
    json_strings,
    topic_level,
    topic_levels,
)
from .message import Message

if TYPE_CHECKING:
    from ingest.rejections import Rejection
    from roadgraph.network import RoadNetwork

#: Columns of the snapshot rows, in order.
SNAPSHOT_COLUMNS: tuple[str, ...] = (
    "segment_id",
    "speed_kmh",
    "free_flow_kmh",
    "tti",
    "confidence",
    "level",
    "imputed",
    "detectors",
    "cameras",
    "closed",
)

# Templates over the fragments of ``_Columns`` (``ts`` is substituted once per tick). Flags and
# counts are grouped into one fragment per distinct combination, so a row formats 6–7 values, not
# 11; bytes %-formatting is ~3x faster than str formatting followed by encoding, and far faster than
# json.dumps of a dict per segment.
_SEGMENT_TEMPLATE = (
    b'{"segment_id":%s,"ts":%s,"speed_kmh":%s,"free_flow_kmh":%s,"tti":%s,%s,"confidence":%s,%s'
)
_ROW_TEMPLATE = b"[%s,%s,%s,%s,%s,%s"


def _level_fragment(level: int) -> bytes:
    return b'"level":%d,"level_name":%s' % (level, dumps(LEVELS[level][0]))


def _segment_tail(imputed: int, detectors: int, cameras: int, closed: int) -> bytes:
    return b'"imputed":%s,"sources":{"detectors":%d,"cameras":%d},"closed":%s}' % (
        _JSON_BOOL[imputed],
        detectors,
        cameras,
        _JSON_BOOL[closed],
    )


def _snapshot_tail(level: int, imputed: int, detectors: int, cameras: int, closed: int) -> bytes:
    return b"%d,%s,%d,%d,%s]" % (level, _JSON_BOOL[imputed], detectors, cameras, _JSON_BOOL[closed])


_JSON_BOOL = (b"false", b"true")


class _Columns:
    """Segment states as JSON fragments (object arrays of bytes), one row per segment."""

    _FIELDS = ("segment_id", "speed", "free_flow", "tti", "level", "confidence", "flags")

    def __init__(
        self,
        states: SegmentStates,
        segment_id_json: np.ndarray,
        level_json: np.ndarray,
        index: np.ndarray | None = None,
    ) -> None:
        """Fragments for every segment, or only for those at ``index``."""
        sel = slice(None) if index is None else index

        def column(values: np.ndarray) -> np.ndarray:
            return np.asarray(values)[sel]

        level = column(states.level).astype(np.intp)
        if len(level) and (int(level.min()) < 0 or int(level.max()) >= len(level_json)):
            raise ValueError(f"SegmentStates.level outside 0..{len(level_json) - 1}")
        self.segment_id = segment_id_json[sel]
        self.speed = fixed_fragments(column(states.speed_kmh), 1)
        self.free_flow = fixed_fragments(column(states.free_flow_kmh), 1)
        self.tti = fixed_fragments(column(states.tti), 2)
        self.confidence = fixed_fragments(column(states.confidence), 2)
        self.level = level_json[level]
        self.flags = tuple(
            column(a)
            for a in (states.level, states.imputed, states.n_detectors, states.n_cameras, states.closed)
        )

    def take(self, index: np.ndarray) -> _Columns:
        """The rows at ``index``."""
        subset = object.__new__(_Columns)
        for name in self._FIELDS:
            value = getattr(self, name)
            setattr(subset, name, tuple(a[index] for a in value) if name == "flags" else value[index])
        return subset

    def segment_rows(self) -> zip[tuple[bytes, ...]]:
        """Fragments for ``_SEGMENT_TEMPLATE``."""
        tail = grouped_fragments(self.flags[1:], _segment_tail)
        cols = (self.segment_id, self.speed, self.free_flow, self.tti, self.level, self.confidence, tail)
        return zip(*(c.tolist() for c in cols), strict=True)

    def snapshot_rows(self) -> zip[tuple[bytes, ...]]:
        """Fragments for ``_ROW_TEMPLATE``."""
        tail = grouped_fragments(self.flags, _snapshot_tail)
        cols = (self.segment_id, self.speed, self.free_flow, self.tti, self.confidence, tail)
        return zip(*(c.tolist() for c in cols), strict=True)


class TickMessages:
    """Builds every message one tick publishes, and remembers what each segment last published.

    Stateful by design (change detection), so keep one instance per output stream: the live engine
    and a replay each own theirs.
    """

    def __init__(
        self,
        network: RoadNetwork,
        *,
        prefix: str = "traffic/",
        segment_states: bool = True,
        snapshot: bool = True,
        indices: bool = True,
        min_speed_change_kmh: float = 1.0,
        publish_initial_unknown: bool = True,
    ) -> None:
        """Precompute every segment's topic and JSON id (once per network, not per tick).

        ``segment_states``, ``snapshot`` and ``indices`` switch the three outputs on or off.
        ``min_speed_change_kmh`` is the speed move (against the last published speed) that
        republishes a segment whose level and flags are unchanged; 0 republishes every known
        segment each tick. ``publish_initial_unknown`` (see the module doc) makes the first tick
        overwrite every retained segment topic, unknown ones included.
        """
        if min_speed_change_kmh < 0:
            raise ValueError(f"min_speed_change_kmh must be >= 0, got {min_speed_change_kmh}")
        self.prefix = prefix
        self.segment_states = segment_states
        self.snapshot = snapshot
        self.indices = indices
        self.min_speed_change_kmh = float(min_speed_change_kmh)
        self.publish_initial_unknown = publish_initial_unknown
        ids = [str(sid) for sid in network.segments.segment_id]
        self._n = len(ids)
        # Built once: the same ids are formatted every tick.
        self._segment_id_json = np.array(json_strings(ids), dtype=object)
        self._topics = np.array([f"{prefix}segments/{level}" for level in topic_levels(ids)], dtype=object)
        self._level_json = np.array([_level_fragment(code) for code in range(max(LEVELS) + 1)], dtype=object)
        # What each segment last published; None until the first tick.
        self._last: _Published | None = None

    def for_tick(self, result: TickResult, *, full: bool = False) -> list[Message]:
        """Every message for ``result``: changed segment states, the snapshot, the indices.

        ``full`` publishes every segment's state, changed or not (``roadpulse replay --full``).
        Order: segment states, then the snapshot, then the city and district indices.
        """
        states = result.states
        if len(states) != self._n:
            raise ValueError(f"TickResult has {len(states)} segment states, the network {self._n} segments")
        messages: list[Message] = []
        ts = _ts_fragment(states.ts)
        with gc_paused():
            # The snapshot needs every row's fragments; without it, format only the changed rows.
            columns = self._columns(states) if self.snapshot else None
            if self.segment_states:
                messages.extend(self._segment_messages(states, columns, ts, full=full))
            if columns is not None:
                messages.append(self._snapshot_message(columns, ts))
        if self.indices:
            messages.append(self.index_message(result.city, topic=f"{self.prefix}index/city"))
            for name, area in result.districts.items():
                topic = f"{self.prefix}index/district/{topic_level(name)}"
                messages.append(self.index_message(area, topic=topic))
        return messages

    def changed(self, states: SegmentStates) -> np.ndarray:
        """Boolean mask of the segments whose state differs from what they last published."""
        if self._last is None:
            if self.publish_initial_unknown:
                return np.ones(len(states), dtype=bool)
            return np.isfinite(states.speed_kmh)
        return self._last.differs(states, self.min_speed_change_kmh)

    def _columns(self, states: SegmentStates, index: np.ndarray | None = None) -> _Columns:
        return _Columns(states, self._segment_id_json, self._level_json, index)

    def _segment_messages(
        self, states: SegmentStates, columns: _Columns | None, ts: bytes, *, full: bool
    ) -> list[Message]:
        index = None if full else np.flatnonzero(self.changed(states))
        if columns is None:
            columns = self._columns(states, index)
        elif index is not None:
            columns = columns.take(index)
        if self._last is None:
            self._last = _Published.from_states(states)
        else:
            self._last.update(states, index)
        topics = (self._topics if index is None else self._topics[index]).tolist()
        template = _SEGMENT_TEMPLATE.replace(b'"ts":%s', b'"ts":' + ts, 1)
        payloads = [template % row for row in columns.segment_rows()]
        return [Message(topic, payload, True) for topic, payload in zip(topics, payloads, strict=True)]

    def _snapshot_message(self, columns: _Columns, ts: bytes) -> Message:
        head = b'{"ts":%s,"columns":%s,"rows":[' % (ts, dumps(list(SNAPSHOT_COLUMNS)))
        rows = b",".join([_ROW_TEMPLATE % row for row in columns.snapshot_rows()])
        return Message(f"{self.prefix}snapshot", head + rows + b"]}", False)

    @staticmethod
    def index_message(area: AreaIndex, *, topic: str) -> Message:
        """The retained message of one area's traffic performance index."""
        payload = {
            "ts": json_number(area.ts),
            "tpi": json_number(area.tpi, 2),
            "level": int(area.level),
            "level_name": area.level_name,
            "tti": json_number(area.tti, 2),
            "severe_share": json_number(area.severe_share, 3),
            "known_share": json_number(area.known_share, 3),
        }
        return Message(topic, dumps(payload), True)


def _ts_fragment(ts: float) -> bytes:
    """The tick time as JSON: an integer when whole (``1776729660``, as in the spec)."""
    value = json_number(ts)
    if value is None:
        raise ValueError(f"tick time {ts!r} is not a finite number")
    return dumps(value)


class _Published:
    """The fields change detection compares, as last published per segment."""

    def __init__(
        self,
        speed_kmh: np.ndarray,
        level: np.ndarray,
        imputed: np.ndarray,
        closed: np.ndarray,
    ) -> None:
        self.speed_kmh = speed_kmh
        self.level = level
        self.imputed = imputed
        self.closed = closed

    @classmethod
    def from_states(cls, states: SegmentStates) -> _Published:
        return cls(
            np.array(states.speed_kmh, dtype=np.float32),
            np.array(states.level, dtype=np.int8),
            np.array(states.imputed, dtype=bool),
            np.array(states.closed, dtype=bool),
        )

    def differs(self, states: SegmentStates, min_speed_change_kmh: float) -> np.ndarray:
        speed = np.asarray(states.speed_kmh, dtype=np.float32)
        known = np.isfinite(speed)
        with np.errstate(invalid="ignore"):
            # NaN on either side compares False here; the known/unknown flip is caught below.
            moved = np.abs(speed - self.speed_kmh) >= min_speed_change_kmh
        changed = moved
        changed |= known != np.isfinite(self.speed_kmh)
        changed |= np.asarray(states.level) != self.level
        changed |= np.asarray(states.imputed, dtype=bool) != self.imputed
        changed |= np.asarray(states.closed, dtype=bool) != self.closed
        return changed

    def update(self, states: SegmentStates, index: np.ndarray | None) -> None:
        """Record what was just published (all segments, or those at ``index``)."""
        sel = slice(None) if index is None else index
        self.speed_kmh[sel] = np.asarray(states.speed_kmh)[sel]
        self.level[sel] = np.asarray(states.level)[sel]
        self.imputed[sel] = np.asarray(states.imputed)[sel]
        self.closed[sel] = np.asarray(states.closed)[sel]


def rejection_message(rej: Rejection, *, prefix: str = "traffic/") -> Message:
    """The (not retained) ``{prefix}rejected`` message for one refused reading."""
    payload = rej.to_payload()
    payload["ts"] = json_number(payload["ts"])
    return Message(f"{prefix}rejected", dumps(payload), False)
