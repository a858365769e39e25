"""Detector readings in (MQTT payloads, decoded objects, JSONL lines), ``ReadingBatch`` rows out.

Every reading is either accepted exactly once (a row of the returned batch) or refused with a
`Rejection` whose reason names the field, the value and what was expected. The parser never raises
on bad input; counters on it feed the ``roadpulse_readings_*_total`` metrics.

Rejection codes (the metric label): ``unknown_topic``, ``too_large``, ``bad_json``, ``bad_shape``,
``missing_field``, ``bad_type``, ``out_of_range``, ``bad_timestamp``, ``topic_mismatch``,
``unknown_detector``, ``lane_mismatch``, ``duplicate``.

Speed matters here (every reading of a city passes through), so validation is one plain function
over the decoded dict: exact ``type(...) is`` checks (which also keep ``true`` from passing as 1) and
range tests written so that NaN fails them. Rows are collected as tuples and turned into columns once
per message or chunk.
"""

from __future__ import annotations

import json
import math
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from congestion.types import ReadingBatch
from ingest._values import (
    NonFiniteJsonError,
    RefusalError,
    describe,
    excerpt_source,
    parse_iso_ts,
    refuse_constant,
    show,
)
from ingest.limits import IngestLimits
from ingest.rejections import Rejection, excerpt
from roadgraph.detectors import DetectorRegistry

#: One validated reading: (detector_index, ts, interval_s, count, occupancy_pct, speed_kmh, lane).
Row = tuple[int, float, float, float, float, float, int]

_DEFAULT_LIMITS = IngestLimits()

#: Topic suffix (after ``{prefix}detectors/``) that carries an array; no detector may be named so.
BATCH_TOPIC_SUFFIX = "batch"


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What one message, object or chunk of lines yielded: accepted rows and refused readings."""

    batch: ReadingBatch
    rejections: list[Rejection] = field(default_factory=list)


class ReadingParser:
    """Validates detector readings against the spec and a `DetectorRegistry`.

    ``clock`` gives the wall-clock time used for the "not in the future" check and for the
    ``ts`` of rejections; replays may pass a clock far in the future to disable the check.

    Not thread-safe: one parser per source (it holds the duplicate memory and the counters).
    """

    def __init__(
        self,
        detectors: DetectorRegistry,
        *,
        prefix: str = "traffic/",
        limits: IngestLimits = _DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._detectors = detectors
        self._prefix = prefix
        self._limits = limits
        self._clock = clock
        self._topic_head = f"{prefix}detectors/"
        self._batch_topic = self._topic_head + BATCH_TOPIC_SUFFIX
        # Plain Python containers: dict/list lookups are several times faster than numpy indexing
        # for one value at a time.
        self._index_of = detectors.index_of
        self._registry_lane: list[int] = [int(x) for x in detectors.lane.tolist()]
        self._decoder = json.JSONDecoder(parse_constant=refuse_constant)
        # Limits the per-reading checks use, as plain attributes (one lookup instead of two).
        self._min_ts = limits.min_ts
        self._max_interval_s = limits.max_interval_s
        self._max_veh_per_s = limits.max_veh_per_s_per_lane
        self._max_speed_kmh = limits.max_speed_kmh
        self._max_lane = limits.max_lane
        # Duplicate memory, per detector: the newest accepted ts, plus a ring of the last N
        # accepted ts (allocated on a detector's first reading). A ts newer than the newest cannot
        # be a duplicate, so the ring is only searched for late or repeated readings.
        self._newest_ts: list[float] = [-math.inf] * len(detectors)
        self._recent_ts: list[array[float] | None] = [None] * len(detectors)
        self._recent_pos: list[int] = [0] * len(detectors)
        self._empty = ReadingBatch.empty()

        #: Readings accepted so far (each counted once, however often delivered).
        self.accepted_total = 0
        #: Readings (or messages, when the whole message is refused) refused so far, by code.
        self.rejected_total: Counter[str] = Counter()

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def detectors(self) -> DetectorRegistry:
        return self._detectors

    @property
    def limits(self) -> IngestLimits:
        return self._limits

    # ------------------------------------------------------------------ public entry points

    def parse_message(self, topic: str, payload: bytes) -> ParseResult:
        """One MQTT message: ``{prefix}detectors/{detector_id}`` or ``{prefix}detectors/batch``."""
        if len(payload) > self._limits.max_payload_bytes:
            return self._refuse_message(
                topic,
                "too_large",
                f"payload of {len(payload)} bytes exceeds the limit of {self._limits.max_payload_bytes}",
                payload,
            )
        head = self._topic_head
        if not topic.startswith(head):
            return self._refuse_message(topic, "unknown_topic", self._unknown_topic_reason(topic), payload)
        topic_id = topic[len(head) :]
        if topic_id == BATCH_TOPIC_SUFFIX:
            return self._parse_batch_message(topic, payload)
        if not topic_id or "/" in topic_id:
            return self._refuse_message(topic, "unknown_topic", self._unknown_topic_reason(topic), payload)

        # The single-reading hot path: decode, validate, remember, one-row batch.
        try:
            row = self._validate(self._decode(payload), topic_id, self._clock() + self._limits.max_future_s)
        except RefusalError as exc:
            return self._refuse_message(topic, exc.code, exc.reason, payload)
        if not self._remember(row[0], row[1]):
            return self._refuse_message(topic, "duplicate", _duplicate_reason(row[1], topic_id), payload)
        self.accepted_total += 1
        return ParseResult(_batch_of_one(row), [])

    def parse_object(self, obj: object, *, topic: str, line: int | None = None) -> ParseResult:
        """An already decoded reading (dict) or array of readings (list), e.g. from a file.

        ``topic`` names where it came from (an MQTT topic or a file path) and is echoed in
        rejections; when it is a per-detector topic, the reading's ``detector_id`` must match it.
        ``line``, when given, prefixes every reason as ``topic:line:``.
        """
        where = f"{topic}:{line}: " if line is not None else ""
        max_ts = self._clock() + self._limits.max_future_s
        rejections: list[Rejection] = []
        if isinstance(obj, list):
            if len(obj) > self._limits.max_batch_readings:
                reason = where + self._batch_too_large_reason(len(obj))
                self._refuse(rejections, topic, "too_large", reason, "")
                return ParseResult(self._empty, rejections)
            rows = self._collect(obj, topic, where, max_ts, rejections)
            return ParseResult(_batch_of_rows(rows) if rows else self._empty, rejections)
        topic_id = self._topic_id(topic)
        try:
            row = self._validate(obj, topic_id, max_ts)
        except RefusalError as exc:
            self._refuse(rejections, topic, exc.code, where + exc.reason, excerpt_source(obj))
            return ParseResult(self._empty, rejections)
        if not self._remember(row[0], row[1]):
            reason = where + _duplicate_reason(row[1], self._id_of(row[0]))
            self._refuse(rejections, topic, "duplicate", reason, excerpt_source(obj))
            return ParseResult(self._empty, rejections)
        self.accepted_total += 1
        return ParseResult(_batch_of_one(row), rejections)

    def parse_lines(self, lines: Iterable[bytes], *, source: str, first_line: int = 1) -> ParseResult:
        """Lines of a JSONL file, one reading per line (blank lines skipped), as one batch.

        Reasons start with ``source:line:``; ``first_line`` is the number of the first line given,
        so a file can be fed in chunks.
        """
        max_payload = self._limits.max_payload_bytes
        max_ts = self._clock() + self._limits.max_future_s
        decode, validate, remember = self._decode, self._validate, self._remember
        rows: list[Row] = []
        rejections: list[Rejection] = []
        for number, raw in enumerate(lines, first_line):
            try:
                if len(raw) > max_payload:
                    reason = f"line of {len(raw)} bytes exceeds the limit of {max_payload}"
                    raise RefusalError("too_large", reason)
                try:
                    obj = decode(raw)
                except RefusalError:
                    if not raw.strip():  # blank line: checked only after decoding fails, off the hot path
                        continue
                    raise
                row = validate(obj, None, max_ts)
            except RefusalError as exc:
                self._refuse(rejections, source, exc.code, f"{source}:{number}: {exc.reason}", raw)
                continue
            if remember(row[0], row[1]):
                rows.append(row)
            else:
                reason = f"{source}:{number}: " + _duplicate_reason(row[1], self._id_of(row[0]))
                self._refuse(rejections, source, "duplicate", reason, raw)
        self.accepted_total += len(rows)
        return ParseResult(_batch_of_rows(rows) if rows else self._empty, rejections)

    # ------------------------------------------------------------------ messages and arrays

    def _parse_batch_message(self, topic: str, payload: bytes) -> ParseResult:
        try:
            obj = self._decode(payload)
        except RefusalError as exc:
            return self._refuse_message(topic, exc.code, exc.reason, payload)
        if not isinstance(obj, list):
            reason = f"expected a JSON array of readings on {self._batch_topic}, got {describe(obj)}"
            return self._refuse_message(topic, "bad_shape", reason, payload)
        if len(obj) > self._limits.max_batch_readings:
            return self._refuse_message(topic, "too_large", self._batch_too_large_reason(len(obj)), payload)
        rejections: list[Rejection] = []
        rows = self._collect(obj, topic, "", self._clock() + self._limits.max_future_s, rejections)
        return ParseResult(_batch_of_rows(rows) if rows else self._empty, rejections)

    def _collect(
        self, items: list[object], topic: str, where: str, max_ts: float, rejections: list[Rejection]
    ) -> list[Row]:
        """Validate the elements of an array; a bad element refuses only itself, named by index."""
        validate, remember = self._validate, self._remember
        rows: list[Row] = []
        for i, item in enumerate(items):
            try:
                row = validate(item, None, max_ts)
            except RefusalError as exc:
                reason = f"{where}readings[{i}]: {exc.reason}"
                self._refuse(rejections, topic, exc.code, reason, excerpt_source(item))
                continue
            if remember(row[0], row[1]):
                rows.append(row)
            else:
                reason = f"{where}readings[{i}]: " + _duplicate_reason(row[1], self._id_of(row[0]))
                self._refuse(rejections, topic, "duplicate", reason, excerpt_source(item))
        self.accepted_total += len(rows)
        return rows

    def _decode(self, payload: bytes) -> object:
        """UTF-8 JSON to Python objects; `RefusalError` (``bad_json``) for anything else."""
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RefusalError(
                "bad_json", f"payload is not UTF-8 (byte 0x{payload[exc.start]:02x} at offset {exc.start})"
            ) from None
        try:
            return self._decoder.decode(text)
        except json.JSONDecodeError as exc:
            where = f"column {exc.colno}" if exc.lineno == 1 else f"line {exc.lineno} column {exc.colno}"
            raise RefusalError("bad_json", f"invalid JSON at {where}: {exc.msg}") from None
        except NonFiniteJsonError as exc:
            raise RefusalError("bad_json", f"invalid JSON: {exc}") from None
        except ValueError:  # the only other: an integer past Python's 4300-digit limit
            raise RefusalError("bad_json", "invalid JSON: a number with too many digits") from None
        except RecursionError:
            raise RefusalError("bad_json", "invalid JSON: nested too deeply") from None

    # ------------------------------------------------------------------ one reading

    def _validate(self, obj: object, topic_id: str | None, max_ts: float) -> Row:
        """Check one decoded reading; return its row or raise `RefusalError` naming the first problem."""
        if type(obj) is not dict:
            raise RefusalError("bad_shape", f"expected a reading (JSON object), got {describe(obj)}")
        # Values are Any from here on: the checks below are what gives them types.
        get: Callable[[str], Any] = obj.get

        detector_id = get("detector_id")
        if type(detector_id) is not str:
            raise _wrong_type(obj, "detector_id", detector_id, "a string")
        if topic_id is not None and detector_id != topic_id:
            raise RefusalError(
                "topic_mismatch",
                f"detector_id {show(detector_id)} does not match the topic's detector {show(topic_id)}",
            )
        k = self._index_of.get(detector_id)
        if k is None:
            why = self._detectors.ignored.get(detector_id)
            if why is not None:
                raise RefusalError("unknown_detector", f"detector_id {show(detector_id)} is not used: {why}")
            raise RefusalError("unknown_detector", f"unknown detector_id {show(detector_id)}")

        ts = get("ts")
        kind = type(ts)
        if kind is int or kind is float:
            # Compare before converting: an int beyond float range must fail, not overflow.
            if not self._min_ts <= ts <= max_ts:
                raise _implausible_ts(ts, _clamped_float(ts), max_ts, self._limits)
            ts_s = float(ts)
        elif kind is str:
            ts_s = parse_iso_ts(ts)
            if not self._min_ts <= ts_s <= max_ts:
                raise _implausible_ts(ts, ts_s, max_ts, self._limits)
        else:
            raise _wrong_type(obj, "ts", ts, "epoch seconds or an ISO 8601 string with offset")

        interval_s = get("interval_s")
        kind = type(interval_s)
        if kind is not int and kind is not float:
            raise _wrong_type(obj, "interval_s", interval_s, "a number of seconds")
        if not 0 < interval_s <= self._max_interval_s:
            reason = f"interval_s {show(interval_s)} outside 0..{self._max_interval_s:g} (must be > 0)"
            raise RefusalError("out_of_range", reason)

        count = get("count")
        kind = type(count)
        if kind is not int and kind is not float:
            raise _wrong_type(obj, "count", count, "a whole number of vehicles")
        max_count = interval_s * self._max_veh_per_s
        if not 0 <= count <= max_count:
            raise RefusalError(
                "out_of_range",
                f"count {show(count)} outside 0..{max_count:g} (at most {self._max_veh_per_s:g} "
                f"vehicle/s per lane over interval_s {show(interval_s)})",
            )
        if kind is float and not count.is_integer():
            raise RefusalError("bad_type", f"count {show(count)} is not a whole number of vehicles")

        occupancy_pct = get("occupancy_pct")
        kind = type(occupancy_pct)
        if kind is not int and kind is not float:
            raise _wrong_type(obj, "occupancy_pct", occupancy_pct, "a percentage 0..100")
        if not 0 <= occupancy_pct <= 100:
            raise RefusalError("out_of_range", f"occupancy_pct {show(occupancy_pct)} outside 0..100")

        speed_kmh = get("speed_kmh")
        if speed_kmh is None:  # null or absent: no vehicle passed, or a single loop
            speed = math.nan
        else:
            kind = type(speed_kmh)
            if kind is not int and kind is not float:
                raise RefusalError("bad_type", f"speed_kmh must be a number or null, got {show(speed_kmh)}")
            if not 0 <= speed_kmh <= self._max_speed_kmh:
                reason = f"speed_kmh {show(speed_kmh)} outside 0..{self._max_speed_kmh:g}"
                raise RefusalError("out_of_range", reason)
            speed = float(speed_kmh)

        lane = get("lane")
        fixed_lane = self._registry_lane[k]
        if lane is None:
            lane_index = fixed_lane
        elif type(lane) is int:
            if not 0 <= lane <= self._max_lane:
                reason = f"lane {show(lane)} outside 0..{self._max_lane} (0 = rightmost)"
                raise RefusalError("out_of_range", reason)
            if fixed_lane >= 0 and lane != fixed_lane:
                raise RefusalError(
                    "lane_mismatch",
                    f"lane {lane} disagrees with the registry, which puts {show(detector_id)} "
                    f"on lane {fixed_lane}",
                )
            lane_index = lane
        else:
            reason = f"lane must be a whole number ≥ 0 (0 = rightmost) or absent, got {show(lane)}"
            raise RefusalError("bad_type", reason)

        return (k, ts_s, float(interval_s), float(count), float(occupancy_pct), speed, lane_index)

    def _remember(self, k: int, ts: float) -> bool:
        """Record an accepted (detector, ts); False when it was already accepted (a duplicate)."""
        if ts > self._newest_ts[k]:
            self._newest_ts[k] = ts
        else:
            recent = self._recent_ts[k]
            if recent is not None and ts in recent:
                return False
        recent = self._recent_ts[k]
        if recent is None:
            recent = self._recent_ts[k] = array("d", [math.nan]) * self._limits.duplicate_memory
        pos = self._recent_pos[k]
        recent[pos] = ts
        pos += 1
        self._recent_pos[k] = pos if pos < len(recent) else 0
        return True

    # ------------------------------------------------------------------ refusals

    def _refuse(self, out: list[Rejection], topic: str, code: str, reason: str, source: bytes | str) -> None:
        self.rejected_total[code] += 1
        out.append(Rejection(topic, code, reason, excerpt(source), self._clock()))

    def _refuse_message(self, topic: str, code: str, reason: str, payload: bytes) -> ParseResult:
        rejections: list[Rejection] = []
        self._refuse(rejections, topic, code, reason, payload)
        return ParseResult(self._empty, rejections)

    def _id_of(self, k: int) -> str:
        return str(self._detectors.detector_id[k])

    def _topic_id(self, topic: str) -> str | None:
        """The detector id of a per-detector topic, or None for any other origin."""
        if topic.startswith(self._topic_head):
            rest = topic[len(self._topic_head) :]
            if rest and rest != BATCH_TOPIC_SUFFIX and "/" not in rest:
                return rest
        return None

    def _unknown_topic_reason(self, topic: str) -> str:
        return f"topic {show(topic)} is not {self._topic_head}{{detector_id}} or {self._batch_topic}"

    def _batch_too_large_reason(self, n: int) -> str:
        return (
            f"batch of {n} readings exceeds the limit of {self._limits.max_batch_readings}; "
            "split it into several messages"
        )


# ---------------------------------------------------------------------- module helpers


def _wrong_type(obj: dict[str, object], name: str, value: object, expected: str) -> RefusalError:
    if value is None:
        if name not in obj:
            return RefusalError("missing_field", f"missing required field {name!r} ({expected})")
        return RefusalError("missing_field", f"{name} is null; expected {expected}")
    return RefusalError("bad_type", f"{name} must be {expected}, got {show(value)}")


def _implausible_ts(raw: object, ts_s: float, max_ts: float, limits: IngestLimits) -> RefusalError:
    """Why a well-formed ``ts`` (``raw`` as sent, ``ts_s`` in epoch seconds) is not a plausible time."""
    if ts_s != ts_s:  # NaN: only reachable through parse_object, JSON cannot carry it
        return RefusalError("bad_timestamp", f"ts {show(raw)} is not a time")
    if ts_s < limits.min_ts:
        earliest = datetime.fromtimestamp(limits.min_ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        reason = f"ts {show(raw)} is before {earliest} (expected epoch seconds, UTC)"
        return RefusalError("bad_timestamp", reason)
    max_future_s = limits.max_future_s
    hint = "; epoch milliseconds? expected seconds" if ts_s > 1e11 and not isinstance(raw, str) else ""
    return RefusalError(
        "bad_timestamp",
        f"ts {show(raw)} is more than {max_future_s:g} s ahead of the clock "
        f"({max_ts - max_future_s:.0f}){hint}",
    )


def _clamped_float(value: float) -> float:
    """``float(value)`` that saturates instead of raising for ints beyond float range."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _duplicate_reason(ts: float, detector_id: str) -> str:
    shown = str(int(ts)) if ts.is_integer() else repr(ts)
    return f"duplicate: a reading of detector_id {show(detector_id)} with ts {shown} was already accepted"


def _batch_of_one(row: Row) -> ReadingBatch:
    return ReadingBatch(
        np.array((row[0],), dtype=np.int32),
        np.array((row[1],), dtype=np.float64),
        np.array((row[2],), dtype=np.float32),
        np.array((row[3],), dtype=np.float32),
        np.array((row[4],), dtype=np.float32),
        np.array((row[5],), dtype=np.float32),
        np.array((row[6],), dtype=np.int16),
    )


def _batch_of_rows(rows: list[Row]) -> ReadingBatch:
    # Transposing the row tuples in C (zip) and filling each column with np.fromiter of known
    # length is several times faster than np.array(tuple, dtype=float32) or per-row writes.
    n = len(rows)
    detector_index, ts, interval_s, count, occupancy_pct, speed_kmh, lane = zip(*rows, strict=True)
    return ReadingBatch(
        np.fromiter(detector_index, dtype=np.int32, count=n),
        np.fromiter(ts, dtype=np.float64, count=n),
        np.fromiter(interval_s, dtype=np.float32, count=n),
        np.fromiter(count, dtype=np.float32, count=n),
        np.fromiter(occupancy_pct, dtype=np.float32, count=n),
        np.fromiter(speed_kmh, dtype=np.float32, count=n),
        np.fromiter(lane, dtype=np.int16, count=n),
    )
