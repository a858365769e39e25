"""Columnar fast path for JSON arrays of readings (``{prefix}detectors/batch``, ``parse_object``).

The per-reading validator (`ReadingParser._validate`) costs several times ``json.loads`` per
reading. Here the array is decoded once (orjson when installed, about 3× ``json.loads`` on reading
arrays: benchmarks/bench_ingest.py), each field is pulled out as a column, converted to numpy and
checked column-wise with the validator's rules. Every row that fails a column check or has an
unusual shape (not an object, a string ``ts``, a field of another type, a missing field) goes
through the per-reading validator itself, which accepts it or refuses it with exactly the reason
of the per-reading path. Late readings are decided with the watermark as it stood at their index
(the running maximum of the ``ts`` accepted before them), so the outcome is the same as
validating the elements one after another: the same rows in the same order with the same values,
the same rejections in the same order, the same duplicate memory, watermark, counters and skew
estimates afterwards (tests/ingest/test_ingest_json_batch.py checks this on generated arrays).

orjson and ``json`` agree on every document both accept, except integers beyond 64 bits (orjson
gives floats) and nesting between Python's recursion limit and orjson's 1024 levels. Such values
never pass the column checks (they are out of every range), and whenever any row falls back to the
validator after an orjson decode, the payload is decoded again with ``json`` so that the
validator sees, quotes and excerpts exactly what it sees today.

Before any of that, `collect_scanned` tries the numba byte scanner (`ingest._json_scan`): for a
payload in the canonical shape it fills the same columns without Python objects (about twice the
throughput, benchmarks/bench_ingest.py), and the same checks (`_Columns._check`) decide; the
elements are decoded with ``json`` only when a row needs the validator or an excerpt. On anything
else the scanner gives up and the payload takes the path above (tests/ingest/test_ingest_json_scan.py).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from congestion.types import ReadingBatch
from ingest._json_scan import BOOL, DEC, INT, STRING, IdTable, Scan, id_indices, id_table, scan_array
from ingest._values import RefusalError, excerpt_source

if TYPE_CHECKING:
    from ingest.parse import ReadingParser

try:  # optional at import time: without it every array is decoded by the standard library
    import orjson

    _fast_loads: Callable[[bytes], Any] | None = orjson.loads
    _FastDecodeError: type[Exception] = orjson.JSONDecodeError
except ImportError:  # pragma: no cover - orjson is a declared dependency
    _fast_loads = None
    _FastDecodeError = ValueError

_NUMBER: frozenset[type] = frozenset({int, float})
_NUMBER_OR_NULL: frozenset[type] = frozenset({int, float, type(None)})
_INT_OR_NULL: frozenset[type] = frozenset({int, type(None)})
_REQUIRED_NAMES = ("detector_id", "ts", "interval_s", "count", "occupancy_pct")
#: C-level lookups of the required fields; a missing one raises KeyError, a non-object TypeError.
_REQUIRED = tuple(itemgetter(name) for name in _REQUIRED_NAMES)
_NOT_A_READING: dict[str, Any] = {}


def decode_array(payload: bytes, exact_decode: Callable[[bytes], object]) -> tuple[object, bool]:
    """The payload's value and whether it came from ``exact_decode`` (the parser's ``json`` path).

    orjson first; when it refuses (invalid JSON, NaN, huge numbers, lone surrogates...),
    ``exact_decode`` decides, so a refused payload gets today's reason (`RefusalError`).
    """
    if _fast_loads is not None:
        try:
            return _fast_loads(payload), False
        except _FastDecodeError:
            pass
    return exact_decode(payload), True


def collect_scanned(
    parser: ReadingParser, topic: str, payload: bytes, rejections: list[Any]
) -> tuple[bool, ReadingBatch | None]:
    """A batch message through the byte scanner (`ingest._json_scan`): (True, batch) when the
    payload has the canonical shape, with the outcome of the decoding path; (False, None) when the
    scanner gave up and the payload must be decoded as before. Nothing changes in that case."""
    scan = scan_array(payload) if SCANNER else None
    if scan is None:
        return False, None
    limits = parser._limits
    if scan.n > limits.max_batch_readings:
        parser._refuse(rejections, topic, "too_large", parser._batch_too_large_reason(scan.n), payload)
        return True, None
    now = parser._clock()
    max_ts = now + limits.max_future_s
    columns = _Columns.of_scan(parser, scan, _detector_indices(parser, payload, scan), max_ts)
    try:
        batch = collect_array(
            parser,
            None,
            topic,
            "",
            max_ts,
            rejections,
            now=now,
            exact_items=lambda: parser._decode(payload),
            from_json=True,
            columns=columns,
        )
    except RefusalError as exc:  # pragma: no cover - json accepts every payload the scanner accepts
        parser._refuse(rejections, topic, exc.code, exc.reason, payload)
        return True, None
    return True, batch


#: Whether batch messages go through the byte scanner first (tests and benchmarks compare both).
SCANNER = True

#: Per registry (its ``index_of``, kept alive so that its id() is not reused): the table of its ids
#: for the numba lookup. Built once per registry (10 ms for 10,000 ids), not once per parser.
_ID_TABLES: dict[int, tuple[dict[str, int], IdTable]] = {}


def _detector_indices(parser: ReadingParser, payload: bytes, scan: Scan) -> np.ndarray:
    """Registry index of each scanned ``detector_id`` (-1: unknown, or not a string). The scanner
    takes ASCII strings only, whose bytes match exactly the ASCII ids of the registry. A hash
    lookup in numba: about 10× faster than slicing bytes and a dict lookup per reading."""
    index_of = parser._index_of
    cached = _ID_TABLES.get(id(index_of))
    if cached is None or cached[0] is not index_of:
        if len(_ID_TABLES) >= 8:  # registries replaced over a long run: keep the memory bounded
            _ID_TABLES.clear()
        cached = _ID_TABLES[id(index_of)] = (index_of, id_table(index_of))
    return id_indices(payload, scan, cached[1])


def collect_array(
    parser: ReadingParser,
    items: list[Any] | None,
    topic: str,
    where: str,
    max_ts: float,
    rejections: list[Any],
    *,
    now: float,
    exact_items: Callable[[], object] | None = None,
    from_json: bool = False,
    columns: _Columns | None = None,
) -> ReadingBatch | None:
    """Validate the elements of a decoded array; accepted rows as one batch (None if none).

    ``exact_items`` re-decodes the payload with ``json`` when ``items`` came from orjson; it is
    called only when some row needs the per-reading validator, and may raise `RefusalError`
    (the whole message is then refused, before any state changed). ``from_json``: ``items`` was
    just decoded from JSON, so an element is a dict exactly when it has fields. ``columns``: the
    array already as columns (`_scan_columns`); ``items`` is then None and ``exact_items`` gives
    the elements when a row needs them (the validator, a rejection's excerpt).
    """
    if columns is None:
        assert items is not None
        n = len(items)
        if n == 0:
            return None
        cols = _Columns(parser, items, max_ts, from_json=from_json)
    else:
        n = len(columns.k)
        if n == 0:
            return None
        cols = columns
    good = cols.good
    fallback = np.flatnonzero(~good).tolist()
    if fallback and exact_items is not None:
        exact = exact_items()
        if type(exact) is not list or len(exact) != n:
            # Not seen: both decoders accepted the same bytes. Should it happen, the per-reading
            # path on json's value is the reference.
            exact_list = exact if type(exact) is list else [exact]
            return _rows_batch(parser._collect(exact_list, topic, where, max_ts, rejections, now=now))
        items = exact
    if items is None:
        if fallback:  # pragma: no cover - the scanned path always passes exact_items
            raise AssertionError("scanned columns without a way to decode the elements")
        items = []  # decoded below if a duplicate needs an excerpt

    validate = parser._validate
    outcome: dict[int, tuple[Any, ...] | RefusalError] = {}
    for i in fallback:
        outcome[i] = _try(validate, items[i], max_ts)

    ts = cols.ts
    late: list[int] = []
    ticked = parser._ticked_through
    if ticked > -math.inf:
        # Late is the one check that depends on the readings before: the watermark at row i is the
        # newest ts accepted before it. Late and duplicate rows never raise that maximum (their ts
        # is behind it), so the maximum over rows that pass every other check is the same.
        newest_before, saved_watermark = parser._newest_seen, parser._watermark
        passing = np.where(good, ts, -math.inf)
        for i in fallback:
            row = outcome[i]
            if not isinstance(row, RefusalError):
                passing[i] = row[1]
        newest_at = np.empty(n, dtype=np.float64)
        newest_at[0] = newest_before
        np.maximum(np.maximum.accumulate(passing[:-1]), newest_before, out=newest_at[1:])
        watermark_at = newest_at - parser._lateness_s
        late = np.flatnonzero(good & (ts < watermark_at) & (ts <= ticked)).tolist()
        recheck = sorted(set(fallback) | set(late)) if late else fallback
        if late and len(items) != n:  # scanned columns: the validator needs the late elements
            items = _exact_elements(exact_items, n)
        try:
            for i in recheck:
                parser._newest_seen = float(newest_at[i])
                parser._watermark = float(watermark_at[i])
                outcome[i] = _try(validate, items[i], max_ts)
        finally:
            parser._newest_seen, parser._watermark = newest_before, saved_watermark
        fallback = recheck

    accepted = good.copy()
    if late:
        accepted[late] = False
    refused: list[tuple[int, str, str, object]] = []
    for i in fallback:
        row = outcome[i]
        if isinstance(row, RefusalError):
            refused.append((i, row.code, f"{where}readings[{i}]: {row.reason}", items[i]))
        else:
            cols.put(i, row)
            accepted[i] = True

    idx = np.flatnonzero(accepted)
    k, ts_acc = cols.k[idx], ts[idx]
    if len(idx):
        fresh = parser._duplicates.remember_many(k, ts_acc)
        if not fresh.all():
            from ingest.parse import _duplicate_reason  # cycle: parse imports this module

            if len(items) != n:  # scanned columns: the elements are needed for the excerpts
                items = _exact_elements(exact_items, n)

            for j in np.flatnonzero(~fresh).tolist():
                i = int(idx[j])
                reason = f"{where}readings[{i}]: " + _duplicate_reason(float(ts[i]), parser._id_of(int(k[j])))
                refused.append((i, "duplicate", reason, items[i]))
            idx, k, ts_acc = idx[fresh], k[fresh], ts_acc[fresh]
    if refused:
        refused.sort(key=itemgetter(0))  # rejections in array order, as the per-reading path gives them
        for _i, code, reason, item in refused:
            parser._refuse(rejections, topic, code, reason, excerpt_source(item))
    if len(idx) == 0:
        return None
    _note_accepted(parser, k, ts_acc, now)
    parser.accepted_total += len(idx)
    return ReadingBatch(
        k.astype(np.int32),
        ts_acc,
        cols.interval_s[idx].astype(np.float32),
        cols.count[idx].astype(np.float32),
        cols.occupancy_pct[idx].astype(np.float32),
        cols.speed_kmh[idx].astype(np.float32),
        cols.lane[idx].astype(np.int16),
    )


def _exact_elements(exact_items: Callable[[], object] | None, n: int) -> list[Any]:
    exact = exact_items() if exact_items is not None else None
    if type(exact) is not list or len(exact) != n:  # pragma: no cover - the scanner accepted valid JSON
        raise AssertionError("the scanner and json disagree on the array")
    return exact


class _Columns:
    """The array as float64/int64 columns and ``good``: rows that pass every check but lateness
    and duplicates. Values of other rows are placeholders until `put` writes a validated row."""

    def __init__(self, parser: ReadingParser, items: list[Any], max_ts: float, *, from_json: bool) -> None:
        n = len(items)
        not_dict: np.ndarray | None = None
        # One list per field, never a tuple per reading: tuples are garbage-collected containers,
        # and allocating 10,000 of them sets off collections that rescan the decoded dicts.
        try:
            if not from_json and set(map(type, items)) != {dict}:
                raise TypeError("not all objects")
            ids, ts, iv, count, occ = (list(map(getter, items)) for getter in _REQUIRED)
        except (KeyError, TypeError):  # a missing field, or an element that is not an object
            if set(map(type, items)) != {dict}:
                shape = [type(x) is dict for x in items]
                not_dict = ~np.array(shape, dtype=bool)
                items = [x if ok else _NOT_A_READING for x, ok in zip(items, shape, strict=True)]
            ids, ts, iv, count, occ = (list(map(dict.get, items, repeat(name))) for name in _REQUIRED_NAMES)
        speed = list(map(dict.get, items, repeat("speed_kmh")))
        lane = list(map(dict.get, items, repeat("lane")))

        index_get = parser._index_of.get
        # Objects not from JSON may hold subclasses (a str subclass, numpy scalars) that the
        # validator refuses by exact type: there every column is checked by exact type.
        exact_ids = from_json or set(map(type, ids)) <= {str}
        try:
            if not exact_ids:
                raise TypeError("not all strings")
            k = np.fromiter(map(index_get, ids, repeat(-1)), dtype=np.int64, count=n)
        except TypeError:  # an unhashable id (array, object): unknown, the validator explains
            k = np.fromiter((index_get(x, -1) if type(x) is str else -1 for x in ids), np.int64, count=n)
        self.k = k
        numbers = _numbers if from_json else _floats
        self.ts, bad = numbers(ts)
        self.interval_s, bad_iv = numbers(iv)
        self.count, bad_count = numbers(count)
        self.occupancy_pct, bad_occ = numbers(occ)
        # JSON cannot carry NaN (both decoders refuse it), so there NaN speed means null.
        self.speed_kmh, bad_speed = _floats(speed, _NUMBER_OR_NULL, float_nan=not from_json)
        lane_f, bad_lane = _floats(lane, _INT_OR_NULL)
        self._check(parser, max_ts, lane_f, (not_dict, bad, bad_iv, bad_count, bad_occ, bad_speed, bad_lane))

    @classmethod
    def of_scan(cls, parser: ReadingParser, scan: Scan, k: np.ndarray, max_ts: float) -> _Columns:
        """The columns of a scanned payload (`ingest._json_scan`), with the detector indices ``k``:
        the same values and masks as ``__init__`` on the decoded array. Values are NaN except for
        numbers, as `_floats` leaves a field that is null, missing or of a refused type."""
        self = cls.__new__(cls)
        kinds, values = scan.kinds, scan.values
        self.k = np.where(kinds[0] == STRING, k, -1)  # ids of other types are unknown, as in __init__
        self.ts, self.interval_s, self.count, self.occupancy_pct, self.speed_kmh = values[:5]
        masks: list[np.ndarray | None] = []
        for f in range(1, 5):  # ts, interval_s, count, occupancy_pct: numbers only
            masks.append(_any_or_none((kinds[f] != INT) & (kinds[f] != DEC)))
        masks.append(_any_or_none(kinds[5] >= BOOL))  # speed_kmh: a number or null
        bad_lane = _any_or_none((kinds[6] == DEC) | (kinds[6] >= BOOL))  # lane: an integer or null
        lane_f = values[5] if bad_lane is None else np.where(bad_lane, np.nan, values[5])
        masks.append(bad_lane)
        self._check(parser, max_ts, lane_f, masks)
        return self

    def _check(
        self, parser: ReadingParser, max_ts: float, lane_f: np.ndarray, masks: Sequence[np.ndarray | None]
    ) -> None:
        """``good`` and ``lane`` from the columns and the masks of rows of a refused shape."""
        k = self.k
        reg_lane = parser._registry_lane_array[np.maximum(k, 0)]
        no_lane = np.isnan(lane_f)
        # Written so that NaN fails every range test (comparisons with NaN are False).
        ts_f, iv_f, count_f, occ_f, speed_f = (
            self.ts,
            self.interval_s,
            self.count,
            self.occupancy_pct,
            self.speed_kmh,
        )
        good = (k >= 0) & (ts_f >= parser._min_ts) & (ts_f <= max_ts)
        good &= (iv_f > 0) & (iv_f <= parser._max_interval_s)
        good &= (count_f >= 0) & (count_f <= iv_f * parser._max_veh_per_s) & (count_f == np.floor(count_f))
        good &= (occ_f >= 0) & (occ_f <= 100)
        good &= np.isnan(speed_f) | ((speed_f >= 0) & (speed_f <= parser._max_speed_kmh))
        good &= no_lane | (
            (lane_f >= 0) & (lane_f <= parser._max_lane) & ((reg_lane < 0) | (reg_lane == lane_f))
        )
        for mask in masks:
            if mask is not None:
                good &= ~mask
        self.good = good
        self.lane = np.where(no_lane | ~good, reg_lane, np.nan_to_num(lane_f)).astype(np.int64)

    def put(self, i: int, row: tuple[Any, ...]) -> None:
        """Row ``i`` as the per-reading validator accepted it (e.g. an ISO 8601 ``ts``)."""
        self.k[i], self.ts[i], self.interval_s[i], self.count[i] = row[0], row[1], row[2], row[3]
        self.occupancy_pct[i], self.speed_kmh[i], self.lane[i] = row[4], row[5], row[6]


def _any_or_none(mask: np.ndarray) -> np.ndarray | None:
    return mask if mask.any() else None


def _numbers(col: list[Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """`_floats` for a column that must hold numbers, faster in the usual case: numpy infers one
    dtype for the whole list in C, and an integer or float dtype means numbers only, except that
    ``true``/``false`` would have become 1/0; only the rows holding 0 or 1 are checked for that."""
    try:
        inferred = np.array(col)
    except (ValueError, OverflowError):  # nested arrays of unequal length, and the like
        return _floats(col, _NUMBER)
    if inferred.ndim != 1 or inferred.dtype.kind not in "if":  # strings, null, objects, huge ints
        return _floats(col, _NUMBER)
    values = inferred.astype(np.float64, copy=False)
    zero_or_one = np.flatnonzero((values == 0) | (values == 1)).tolist()
    if zero_or_one and bool in set(map(type, map(col.__getitem__, zero_or_one))):
        return _floats(col, _NUMBER)
    return values, None


def _floats(
    col: Any, allowed: frozenset[type] = _NUMBER, *, float_nan: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """A column as float64 (null as NaN) and the mask of values whose type is not ``allowed``
    (None when all are). ``type(...)`` so that ``true`` is not 1, as in the validator.
    ``float_nan``: the column may hold float NaN, which must not pass as null."""
    kinds = set(map(type, col))
    if kinds <= allowed:
        bad = None
    else:
        ok = [type(x) in allowed for x in col]
        bad = ~np.array(ok, dtype=bool)
        col = [x if fine else None for x, fine in zip(col, ok, strict=True)]
    try:
        values = np.array(col, dtype=np.float64)
    except OverflowError:  # an integer beyond float range: infinite, so out of every range
        values = np.array([_clamped(x) for x in col], dtype=np.float64)
    if float_nan and float in kinds and type(None) in allowed:
        # NaN stands for null here; a float NaN (only from parse_object: JSON has none) is not null.
        nan = np.isnan(values)
        if int(np.count_nonzero(nan)) != col.count(None):
            real_nan = np.array([type(x) is float and x != x for x in col], dtype=bool)
            bad = real_nan if bad is None else bad | real_nan
    return values, bad


def _clamped(x: Any) -> float:
    if x is None:
        return math.nan
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def _try(
    validate: Callable[..., tuple[Any, ...]], item: object, max_ts: float
) -> tuple[Any, ...] | RefusalError:
    try:
        return validate(item, None, max_ts)
    except RefusalError as exc:
        return exc


def _note_accepted(parser: ReadingParser, k: np.ndarray, ts: np.ndarray, now: float) -> None:
    """Watermark and clock-skew estimates, as accepting the rows one after another would leave them."""
    if parser._track_skew and len(k) > 1 and np.bincount(k).max() > 1:
        # A detector twice in one array: its moving mean must see the readings one by one.
        note = parser._note_accepted
        for kk, tt in zip(k.tolist(), ts.tolist(), strict=True):
            note(kk, tt, now)
        return
    newest = float(ts.max())
    if newest > parser._newest_seen:
        parser._newest_seen = newest
        parser._watermark = newest - parser._lateness_s
    if parser._track_skew:
        _note_skew(parser, k.tolist(), ts - now)


def _note_skew(parser: ReadingParser, ks: list[int], ahead_s: np.ndarray) -> None:
    """One skew update per detector (each appears once): the same arithmetic as
    ``ReadingParser._note_accepted``, on the touched entries of its lists only. Measured faster
    than converting the whole per-detector lists (``_note_skew_columns``) for arrays of 1,000
    and of 10,000 readings on 10,000 detectors."""
    from ingest.parse import _SKEW_MIN_READINGS, _SKEW_WINDOW  # cycle: parse imports this module

    skew_s, skew_n = parser._skew_s, parser._skew_n
    old_s = np.fromiter(map(skew_s.__getitem__, ks), dtype=np.float64, count=len(ks))
    n = np.fromiter(map(skew_n.__getitem__, ks), dtype=np.int64, count=len(ks)) + 1
    new_s = old_s + (ahead_s - old_s) / np.minimum(n, _SKEW_WINDOW)
    deque(map(skew_s.__setitem__, ks, new_s.tolist()), maxlen=0)
    deque(map(skew_n.__setitem__, ks, n.tolist()), maxlen=0)
    flagged = (n >= _SKEW_MIN_READINGS) & (np.abs(new_s) > parser._max_skew_s)
    parser.skewed_readings += int(np.count_nonzero(flagged))


def _rows_batch(rows: list[Any]) -> ReadingBatch | None:
    from ingest.parse import _batch_of_rows  # cycle: parse imports this module

    return _batch_of_rows(rows) if rows else None
