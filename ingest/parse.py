"""Detector readings in (MQTT payloads, decoded objects, JSONL lines), ``ReadingBatch`` rows out.

Every reading is either accepted exactly once (a row of the returned batch) or refused with a
`Rejection` whose reason names the field, the value and what was expected. The parser never raises
on bad input; counters on it feed the ``roadpulse_readings_*_total`` metrics.

Rejection codes (the metric label): ``unknown_topic``, ``too_large``, ``bad_json``, ``bad_shape``,
``missing_field``, ``bad_type``, ``out_of_range``, ``bad_timestamp``, ``topic_mismatch``,
``unknown_detector``, ``bad_id``, ``lane_mismatch``, ``duplicate``, ``late``.

Late, duplicated and out-of-order readings (the README's "Late and out-of-order readings"): a
reading is accepted once (``duplicate`` otherwise). Out-of-order readings are fine while they are
ahead of the *watermark* (the newest ``ts`` accepted so far minus ``limits.lateness_s``) or newer
than the last tick; a reading whose tick already ran *and* that is behind the watermark is refused
as ``late``. Clock skew: in live mode every reading's ``ts - now`` feeds a per-detector moving
estimate; detectors whose estimate exceeds ``limits.max_skew_s`` either way are reported by
`ReadingParser.clock_skew_records` and counted in ``skewed_readings``.

Speed matters here (every reading of a city passes through), so validation is one plain function
over the decoded dict: exact ``type(...) is`` checks (which also keep ``true`` from passing as 1) and
range tests written so that NaN fails them. Rows are collected as tuples and turned into columns once
per message or chunk.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

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
from ingest.binary_batch import BINARY_TOPIC_SUFFIX, VALIDATED_TOPIC_SUFFIX, decode_binary_batch
from ingest.dedupe import DuplicateMemory
from ingest.json_batch import collect_array, collect_scanned, decode_array
from ingest.limits import IngestLimits
from ingest.rejections import Rejection, excerpt
from roadgraph.detectors import DetectorRegistry

#: One validated reading: (detector_index, ts, interval_s, count, occupancy_pct, speed_kmh, lane).
Row = tuple[int, float, float, float, float, float, int]

_DEFAULT_LIMITS = IngestLimits()

#: Topic suffix (after ``{prefix}detectors/``) that carries an array; no detector may be named so.
BATCH_TOPIC_SUFFIX = "batch"
#: Characters refused in an unknown detector id (topic injection, terminal control characters).
_TOPIC_UNSAFE = re.compile(r"[\x00-\x1f\x7f/+#]")
#: Clock-skew estimate: readings before a verdict, and the moving mean's window.
_SKEW_MIN_READINGS = 3
_SKEW_WINDOW = 8


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
        self._raw_decode = self._decoder.raw_decode
        # Limits the per-reading checks use, as plain attributes (one lookup instead of two).
        self._min_ts = limits.min_ts
        self._max_interval_s = limits.max_interval_s
        self._max_veh_per_s = limits.max_veh_per_s_per_lane
        self._max_speed_kmh = limits.max_speed_kmh
        self._max_lane = limits.max_lane
        self._binary_topic = self._topic_head + BINARY_TOPIC_SUFFIX
        self._duplicates = DuplicateMemory(len(detectors), limits.duplicate_memory)
        self._remember: Callable[[int, float], bool] = self._duplicates.remember
        self._registry_lane_array = detectors.lane.astype(np.int16)
        # The watermark: newest accepted ts minus the lateness bound; and the last tick that ran.
        self._lateness_s = limits.lateness_s
        self._newest_seen = -math.inf
        self._watermark = -math.inf
        self._ticked_through = -math.inf
        # Clock skew, live only (a replay's timestamps are not comparable with the wall clock).
        self._track_skew = math.isfinite(limits.max_future_s)
        self._max_skew_s = limits.max_skew_s
        # Plain lists: the per-reading update is several times faster than numpy scalar access.
        self._skew_s: list[float] = [0.0] * len(detectors)
        self._skew_n: list[int] = [0] * len(detectors)
        self._empty = ReadingBatch.empty()
        self._dictionary_cache: dict[bytes, np.ndarray] = {}

        #: Readings accepted while their detector's clock was flagged as skewed.
        self.skewed_readings = 0

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

    @property
    def watermark(self) -> float:
        """Newest accepted ``ts`` minus the lateness bound (-inf before the first reading)."""
        return self._watermark

    def mark_ticked(self, tick_ts: float) -> None:
        """Tell the parser that the tick at ``tick_ts`` ran: readings at or before it that are
        also behind the watermark are refused as ``late`` from now on."""
        if tick_ts > self._ticked_through:
            self._ticked_through = tick_ts

    def clock_skew_records(self) -> list[dict[str, Any]]:
        """Detectors whose clock looks skewed: ``ts - arrival`` estimate beyond ``max_skew_s``.

        ``skew_s`` > 0: the detector's timestamps run ahead of the engine's clock; < 0: behind
        (a slow clock, or readings held back before sending). Needs 3 readings for a verdict.
        """
        limit = self._limits.max_skew_s
        skew_s, skew_n = np.asarray(self._skew_s), np.asarray(self._skew_n)
        flagged = np.flatnonzero((np.abs(skew_s) > limit) & (skew_n >= _SKEW_MIN_READINGS))
        ids = self._detectors.detector_id
        return [
            {
                "detector_id": str(ids[k]),
                "skew_s": round(float(self._skew_s[k]), 1),
                "readings": int(self._skew_n[k]),
                "direction": "ahead" if self._skew_s[k] > 0 else "behind",
            }
            for k in flagged.tolist()
        ]

    def skew_estimate_s(self, detector_id: str) -> float | None:
        """The clock-skew estimate of one detector (None before its first live reading)."""
        k = self._index_of.get(detector_id)
        if k is None or self._skew_n[k] == 0:
            return None
        return float(self._skew_s[k])

    def export_state(self) -> dict[str, Any]:
        """Duplicate memory, watermark and skew estimates (numpy arrays and floats), so that a
        restarted engine still refuses what the broker re-delivers."""
        return {
            **{f"dup_{k}": v for k, v in self._duplicates.export_state().items()},
            "newest_seen": self._newest_seen,
            "ticked_through": self._ticked_through,
            "skew_s": np.asarray(self._skew_s, dtype=np.float64),
            "skew_n": np.asarray(self._skew_n, dtype=np.int64),
            "detector_ids": np.asarray([str(d) for d in self._detectors.detector_id]),
        }

    def import_state(self, state: dict[str, Any]) -> None:
        ids = [str(d) for d in np.asarray(state["detector_ids"]).tolist()]
        if ids != [str(d) for d in self._detectors.detector_id]:
            raise ValueError("parser state is for another detector registry")
        self._duplicates.import_state({k[4:]: state[k] for k in ("dup_newest", "dup_recent", "dup_pos")})
        self._newest_seen = float(state["newest_seen"])
        self._watermark = self._newest_seen - self._lateness_s
        self._ticked_through = float(state["ticked_through"])
        skew_s, skew_n = np.asarray(state["skew_s"]), np.asarray(state["skew_n"])
        if skew_s.shape != (len(self._skew_s),) or skew_n.shape != (len(self._skew_n),):
            raise ValueError("parser state: skew estimates for another detector count")
        self._skew_s = skew_s.astype(np.float64).tolist()
        self._skew_n = skew_n.astype(np.int64).tolist()

    def parse_message(self, topic: str, payload: bytes) -> ParseResult:
        """One MQTT message: ``{prefix}detectors/{detector_id}``, ``{prefix}detectors/batch``
        (JSON array) or ``{prefix}detectors/batch/bin`` (binary batch)."""
        rows: list[Row] = []
        rejections: list[Rejection] = []
        batch = self.parse_into(topic, payload, rows, rejections)
        if batch is not None:
            return ParseResult(batch, rejections)
        if not rows:
            return ParseResult(self._empty, rejections)
        return ParseResult(_batch_of_one(rows[0]) if len(rows) == 1 else _batch_of_rows(rows), rejections)

    def parse_into(
        self, topic: str, payload: bytes, rows: list[Row], rejections: list[Rejection]
    ) -> ReadingBatch | None:
        """The hot path: append accepted rows to ``rows`` and refusals to ``rejections``.

        A binary batch or a JSON array is returned as a `ReadingBatch` of its own (both are
        validated as columns, `ingest.json_batch`); every other message returns None. Many
        messages can so be gathered into one batch.
        """
        if len(payload) > self._limits.max_payload_bytes:
            reason = f"payload of {len(payload)} bytes exceeds the limit of {self._limits.max_payload_bytes}"
            self._refuse(rejections, topic, "too_large", reason, payload)
            return None
        head = self._topic_head
        if not topic.startswith(head):
            self._refuse(rejections, topic, "unknown_topic", self._unknown_topic_reason(topic), payload)
            return None
        topic_id = topic[len(head) :]
        if topic_id == BATCH_TOPIC_SUFFIX:
            return self._parse_batch_message(topic, payload, rejections)
        if topic_id in (BINARY_TOPIC_SUFFIX, VALIDATED_TOPIC_SUFFIX):
            return self._parse_binary_message(topic, payload, rejections)
        if not topic_id or "/" in topic_id:
            self._refuse(rejections, topic, "unknown_topic", self._unknown_topic_reason(topic), payload)
            return None
        if "%" in topic_id:  # ids with '#', '+', '/' travel percent-encoded in topics
            topic_id = unquote(topic_id)

        # The single-reading hot path: decode, validate, remember, one row.
        now = self._clock()
        try:
            row = self._validate(self._decode(payload), topic_id, now + self._limits.max_future_s)
        except RefusalError as exc:
            self._refuse(rejections, topic, exc.code, exc.reason, payload)
            return None
        if not self._remember(row[0], row[1]):
            self._refuse(rejections, topic, "duplicate", _duplicate_reason(row[1], topic_id), payload)
            return None
        self._note_accepted(row[0], row[1], now)
        self.accepted_total += 1
        rows.append(row)
        return None

    def _note_accepted(self, k: int, ts: float, now: float) -> None:
        """Advance the watermark and the detector's clock-skew estimate."""
        if ts > self._newest_seen:
            self._newest_seen = ts
            self._watermark = ts - self._lateness_s
        if self._track_skew:
            skew = self._skew_s
            n = self._skew_n[k] + 1
            self._skew_n[k] = n
            # A moving mean that starts as a plain mean, then forgets with weight 1/8.
            skew[k] += (ts - now - skew[k]) / min(n, _SKEW_WINDOW)
            if n >= _SKEW_MIN_READINGS and abs(skew[k]) > self._max_skew_s:
                self.skewed_readings += 1

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
            batch = collect_array(
                self, obj, topic, where, max_ts, rejections, now=max_ts - self._limits.max_future_s
            )
            return ParseResult(batch or self._empty, rejections)
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
        self._note_accepted(row[0], row[1], max_ts - self._limits.max_future_s)
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
                if row[1] > self._newest_seen:
                    self._newest_seen = row[1]
                    self._watermark = row[1] - self._lateness_s
            else:
                reason = f"{source}:{number}: " + _duplicate_reason(row[1], self._id_of(row[0]))
                self._refuse(rejections, source, "duplicate", reason, raw)
        self.accepted_total += len(rows)
        return ParseResult(_batch_of_rows(rows) if rows else self._empty, rejections)

    # ------------------------------------------------------------------ messages and arrays

    def _parse_batch_message(
        self, topic: str, payload: bytes, rejections: list[Rejection]
    ) -> ReadingBatch | None:
        """A JSON array: decoded once, validated column-wise (`ingest.json_batch`); each element
        that fails a column check is explained by the per-reading validator, as before."""
        scanned, batch = collect_scanned(self, topic, payload, rejections)  # canonical arrays
        if scanned:
            return batch
        try:
            obj, exact = decode_array(payload, self._decode)
        except RefusalError as exc:
            self._refuse(rejections, topic, exc.code, exc.reason, payload)
            return None
        if not isinstance(obj, list):
            reason = f"expected a JSON array of readings on {self._batch_topic}, got {describe(obj)}"
            self._refuse(rejections, topic, "bad_shape", reason, payload)
            return None
        if len(obj) > self._limits.max_batch_readings:
            self._refuse(rejections, topic, "too_large", self._batch_too_large_reason(len(obj)), payload)
            return None
        now = self._clock()
        try:
            return collect_array(
                self,
                obj,
                topic,
                "",
                now + self._limits.max_future_s,
                rejections,
                now=now,
                # orjson's value: some elements need json's own (huge integers), see json_batch.
                exact_items=None if exact else (lambda: self._decode(payload)),
                from_json=True,
            )
        except RefusalError as exc:  # json refuses what orjson took (nesting depth): as before
            self._refuse(rejections, topic, exc.code, exc.reason, payload)
            return None

    def _parse_binary_message(
        self, topic: str, payload: bytes, rejections: list[Rejection]
    ) -> ReadingBatch | None:
        """A binary batch (see `ingest.binary_batch`): validated column-wise, explained row-wise."""
        try:
            raw_ids, ids, rec = decode_binary_batch(payload, max_records=self._limits.max_batch_readings)
        except RefusalError as exc:
            self._refuse(rejections, topic, exc.code, exc.reason, payload)
            return None
        n = len(rec)
        if n == 0:
            return None
        now = self._clock()
        max_ts = now + self._limits.max_future_s
        lim = self._limits
        k_of_ref = self._dictionary_indices(raw_ids, ids)
        ref = rec["id_ref"].astype(np.int64)
        bad_ref = ref >= len(ids)
        k = np.where(bad_ref, -1, k_of_ref[np.minimum(ref, max(len(ids) - 1, 0))] if len(ids) else -1)
        ts, iv, count = rec["ts"], rec["interval_s"], rec["count"]
        occ, speed, lane = rec["occupancy_pct"], rec["speed_kmh"], rec["lane"]
        reg_lane = self._registry_lane_array[np.maximum(k, 0)]
        # Written so that NaN fails every range test (comparisons with NaN are False).
        good = (k >= 0) & (ts >= lim.min_ts) & (ts <= max_ts)
        good &= ~((ts < self._watermark) & (ts <= self._ticked_through))
        good &= (iv > 0) & (iv <= lim.max_interval_s)
        good &= (
            (count >= 0) & (count <= iv * np.float32(lim.max_veh_per_s_per_lane)) & (count == np.floor(count))
        )
        good &= (occ >= 0) & (occ <= 100)
        good &= np.isnan(speed) | ((speed >= 0) & (speed <= lim.max_speed_kmh))
        good &= (lane == -1) | ((lane >= 0) & (lane <= lim.max_lane) & ((reg_lane < 0) | (reg_lane == lane)))
        if not good.all():
            for i in np.flatnonzero(~good).tolist():
                self._refuse_record(rejections, topic, ids, rec[i], i, max_ts)
        idx = np.flatnonzero(good)
        if len(idx) == 0:
            return None
        k_good, ts_good = k[idx], ts[idx]
        fresh = self._duplicates.remember_many(k_good, ts_good)
        if not fresh.all():
            for j in np.flatnonzero(~fresh).tolist():
                i = int(idx[j])
                reason = f"records[{i}]: " + _duplicate_reason(float(ts[i]), self._id_of(int(k[i])))
                self._refuse(rejections, topic, "duplicate", reason, "")
            idx, k_good, ts_good = idx[fresh], k_good[fresh], ts_good[fresh]
            if len(idx) == 0:
                return None
        newest = float(ts_good.max())
        if newest > self._newest_seen:
            self._newest_seen = newest
            self._watermark = newest - self._lateness_s
        if self._track_skew:
            self._note_skew_columns(k_good, ts_good - now)
        self.accepted_total += len(idx)
        lane_good = lane[idx]
        return ReadingBatch(
            k_good.astype(np.int32),
            ts_good.astype(np.float64),
            iv[idx].astype(np.float32),
            count[idx].astype(np.float32),
            occ[idx].astype(np.float32),
            speed[idx].astype(np.float32),
            np.where(lane_good < 0, reg_lane[idx], lane_good).astype(np.int16),
        )

    def _dictionary_indices(self, raw: bytes, ids: list[str]) -> np.ndarray:
        """Registry index of each dictionary id (-1: unknown). Publishers send the same
        dictionary message after message, so the mapping is cached by the dictionary's bytes."""
        cached = self._dictionary_cache.get(raw)
        if cached is not None and len(cached) == len(ids):  # b"" is no ids or one empty id
            return cached
        index_of = self._index_of
        mapping = np.fromiter((index_of.get(d, -1) for d in ids), dtype=np.int64, count=len(ids))
        if len(self._dictionary_cache) >= 8:
            self._dictionary_cache.pop(next(iter(self._dictionary_cache)))
        self._dictionary_cache[raw] = mapping
        return mapping

    def _refuse_record(
        self, rejections: list[Rejection], topic: str, ids: list[str], record: Any, i: int, max_ts: float
    ) -> None:
        """Why binary record ``i`` was refused: the JSON rules applied to it, so reasons match."""
        ref = int(record["id_ref"])
        if ref >= len(ids):
            reason = f"records[{i}]: id_ref {ref} outside the dictionary of {len(ids)} ids"
            self._refuse(rejections, topic, "bad_shape", reason, "")
            return
        speed = float(record["speed_kmh"])
        obj: dict[str, Any] = {
            "detector_id": ids[ref],
            "ts": float(record["ts"]),
            "interval_s": float(record["interval_s"]),
            "count": float(record["count"]),
            "occupancy_pct": float(record["occupancy_pct"]),
            "speed_kmh": None if speed != speed else speed,
        }
        if int(record["lane"]) != -1:
            obj["lane"] = int(record["lane"])
        try:
            self._validate(obj, None, max_ts)
        except RefusalError as exc:
            self._refuse(rejections, topic, exc.code, f"records[{i}]: {exc.reason}", excerpt_source(obj))
            return
        self._refuse(rejections, topic, "out_of_range", f"records[{i}]: refused by the column checks", "")

    def _note_skew_columns(self, k: np.ndarray, ahead_s: np.ndarray) -> None:
        """Skew estimates from a column of readings: one update per detector with its mean."""
        n_det = len(self._skew_s)
        skew_s, skew_n = np.asarray(self._skew_s), np.asarray(self._skew_n)
        counts = np.bincount(k, minlength=n_det)
        touched = np.flatnonzero(counts)
        means = np.bincount(k, weights=ahead_s, minlength=n_det)[touched] / counts[touched]
        n = skew_n[touched] + counts[touched]
        skew_n[touched] = n
        skew_s[touched] += (means - skew_s[touched]) / np.minimum(n, _SKEW_WINDOW)
        self._skew_s, self._skew_n = skew_s.tolist(), skew_n.tolist()
        flagged = (np.abs(skew_s[touched]) > self._limits.max_skew_s) & (n >= _SKEW_MIN_READINGS)
        if flagged.any():
            self.skewed_readings += int(counts[touched][flagged].sum())

    def _collect(
        self,
        items: list[object],
        topic: str,
        where: str,
        max_ts: float,
        rejections: list[Rejection],
        *,
        now: float,
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
                self._note_accepted(row[0], row[1], now)
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
            # The common case, one object and nothing around it, without decode()'s two
            # whitespace regex matches; anything else takes the full path below.
            obj, end = self._raw_decode(text)
            if end == len(text):
                return obj
        except (json.JSONDecodeError, NonFiniteJsonError, ValueError, RecursionError):
            pass
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
            if _TOPIC_UNSAFE.search(detector_id):
                raise RefusalError(
                    "bad_id",
                    f"detector_id {show(detector_id)} is unknown and contains a character that is not "
                    "allowed in an id (NUL or another control character, '/', '+' or '#')",
                )
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
        if ts_s < self._watermark and ts_s <= self._ticked_through:
            raise RefusalError("late", self._late_reason(ts_s))

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

    # ------------------------------------------------------------------ refusals

    def _refuse(self, out: list[Rejection], topic: str, code: str, reason: str, source: bytes | str) -> None:
        self.rejected_total[code] += 1
        out.append(Rejection(topic, code, reason, excerpt(source), self._clock()))

    def _refuse_message(self, topic: str, code: str, reason: str, payload: bytes) -> ParseResult:
        rejections: list[Rejection] = []
        self._refuse(rejections, topic, code, reason, payload)
        return ParseResult(self._empty, rejections)

    def _late_reason(self, ts_s: float) -> str:
        return (
            f"late: ts {_show_ts(ts_s)} is behind the watermark {_show_ts(self._watermark)} (newest ts "
            f"{_show_ts(self._newest_seen)} minus the lateness bound of {self._lateness_s:g} s) and "
            f"the tick at {_show_ts(self._ticked_through)} has already run"
        )

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


def _show_ts(ts: float) -> str:
    return str(int(ts)) if ts.is_integer() else f"{ts:.3f}"


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
