"""One-pass numba scanner for the canonical shape of a JSON array of readings.

``[{"detector_id": "D0042", "ts": 1776729630, "interval_s": 30, ...}, ...]``: a top-level array of
flat objects whose keys are among the reading's seven, with values that are numbers, ``null``,
``true``/``false`` or strings without escapes and non-ASCII bytes. It fills float64 columns, a kind
code per field per row and the byte offsets of each ``detector_id`` string, without creating a
Python object per reading. Anything else (an unknown or repeated key, a nested value, an escape,
a number the fast path below cannot convert exactly, invalid JSON of any kind) makes it give up on
the WHOLE payload (`scan_array` returns None): the caller then decodes it as before. Giving up is
always safe; accepting is only allowed where the value is exactly what ``json``/orjson would give.

Numbers: an integer literal of at most 18 digits is exact in int64 and converted to float64 once
(correctly rounded, as ``float(int)``); a literal with a fraction or exponent is converted by
Clinger's fast path only: at most 15 significant digits (the mantissa is then exact in float64)
and a decimal exponent within ±22 (10**22 is exact in float64), so ``mantissa * 10**e`` or
``mantissa / 10**-e`` is one correctly rounded IEEE operation, equal to Python's ``float()``.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

#: Field order of the columns and of the kind codes.
FIELDS = ("detector_id", "ts", "interval_s", "count", "occupancy_pct", "speed_kmh", "lane")
MISSING, INT, DEC, NULL, BOOL, STRING = 0, 1, 2, 3, 4, 5

_KEY_LEN = np.array([len(f) for f in FIELDS], dtype=np.int64)
_KEYS = np.zeros((len(FIELDS), max(len(f) for f in FIELDS)), dtype=np.uint8)
for _f, _name in enumerate(FIELDS):
    _KEYS[_f, : len(_name)] = np.frombuffer(_name.encode(), dtype=np.uint8)
_POW10 = np.array([10.0**e for e in range(23)], dtype=np.float64)  # all exact in float64

_QUOTE, _BACKSLASH, _COMMA, _COLON = 34, 92, 44, 58
_LBRACKET, _RBRACKET, _LBRACE, _RBRACE = 91, 93, 123, 125


class Scan(NamedTuple):
    """Columns of an accepted payload; ``values[f - 1]`` holds field ``f`` (NaN unless a number)."""

    n: int
    values: np.ndarray  # (6, n) float64: ts, interval_s, count, occupancy_pct, speed_kmh, lane
    kinds: np.ndarray  # (7, n) int8: kind code of each field (MISSING, INT, DEC, NULL, BOOL, STRING)
    id_start: np.ndarray  # (n,) int64 byte offsets of the detector_id string (when STRING)
    id_end: np.ndarray


@numba.njit(cache=True, nogil=True)
def _ws(buf: np.ndarray, i: int) -> int:
    n = len(buf)
    while i < n:
        c = buf[i]
        if c != 32 and c != 10 and c != 13 and c != 9:  # JSON whitespace only
            break
        i += 1
    return i


@numba.njit(cache=True, nogil=True)
def _string_end(buf: np.ndarray, i: int) -> int:
    """Index of the closing quote of the string whose body starts at ``i``; -1 to give up
    (escape, control character, non-ASCII byte or no closing quote)."""
    n = len(buf)
    while i < n:
        c = buf[i]
        if c == _QUOTE:
            return i
        if c == _BACKSLASH or c < 32 or c >= 128:
            return -1
        i += 1
    return -1


@numba.njit(cache=True, nogil=True)
def _key_index(buf: np.ndarray, s: int, e: int, keys: np.ndarray, key_len: np.ndarray) -> int:
    length = e - s
    for f in range(len(key_len)):
        if key_len[f] == length:
            same = True
            for j in range(length):
                if buf[s + j] != keys[f, j]:
                    same = False
                    break
            if same:
                return f
    return -1


@numba.njit(cache=True, nogil=True)
def parse_number(buf: np.ndarray, i: int, pow10: np.ndarray) -> tuple[int, float, int]:
    """(index after the number, value, INT or DEC) for the JSON number at ``i``; index -1 to give
    up (invalid, or not convertible exactly by the rules in the module docstring)."""
    n = len(buf)
    neg = False
    if i < n and buf[i] == 45:  # '-'
        neg = True
        i += 1
    if i >= n:
        return -1, 0.0, 0
    mant = np.int64(0)
    sig = 0  # significant digits in mant (leading zeros not counted)
    c = buf[i]
    if c == 48:  # '0': no further integer digits allowed (JSON)
        i += 1
    elif 49 <= c <= 57:
        while i < n and 48 <= buf[i] <= 57:
            if sig >= 18:
                return -1, 0.0, 0
            mant = mant * 10 + (buf[i] - 48)
            sig += 1
            i += 1
    else:
        return -1, 0.0, 0
    kind = INT
    exp10 = 0
    if i < n and buf[i] == 46:  # '.'
        kind = DEC
        i += 1
        if i >= n or not (48 <= buf[i] <= 57):
            return -1, 0.0, 0
        while i < n and 48 <= buf[i] <= 57:
            d = buf[i] - 48
            if mant != 0 or d != 0:
                if sig >= 18:
                    return -1, 0.0, 0
                mant = mant * 10 + d
                sig += 1
            exp10 -= 1
            i += 1
    if i < n and (buf[i] == 101 or buf[i] == 69):  # 'e' / 'E'
        kind = DEC
        i += 1
        eneg = False
        if i < n and (buf[i] == 43 or buf[i] == 45):
            eneg = buf[i] == 45
            i += 1
        if i >= n or not (48 <= buf[i] <= 57):
            return -1, 0.0, 0
        e = 0
        ndig = 0
        while i < n and 48 <= buf[i] <= 57:
            if ndig >= 5:  # far outside ±22 anyway (or a zero mantissa with a silly exponent)
                return -1, 0.0, 0
            e = e * 10 + (buf[i] - 48)
            ndig += 1
            i += 1
        exp10 += -e if eneg else e
    if kind == INT:
        # Sign on the integer: -0 is the integer 0, so +0.0, as float(int("-0")).
        return i, float(-mant if neg else mant), INT
    if mant == 0:
        value = 0.0
    else:
        if sig > 15 or exp10 < -22 or exp10 > 22:
            return -1, 0.0, 0
        m = float(mant)  # exact: below 10**15 < 2**53
        value = m * pow10[exp10] if exp10 >= 0 else m / pow10[-exp10]
    return i, -value if neg else value, DEC


@numba.njit(cache=True, nogil=True)
def _literal(buf: np.ndarray, i: int, text: tuple[int, ...]) -> int:
    if i + len(text) > len(buf):
        return -1
    for j in range(len(text)):
        if buf[i + j] != text[j]:
            return -1
    return i + len(text)


@numba.njit(cache=True, nogil=True)
def _scan(
    buf: np.ndarray,
    values: np.ndarray,
    kinds: np.ndarray,
    id_start: np.ndarray,
    id_end: np.ndarray,
    keys: np.ndarray,
    key_len: np.ndarray,
    pow10: np.ndarray,
) -> int:
    """Number of readings, or -1 to give up on the whole payload."""
    n = len(buf)
    cap = kinds.shape[1]
    i = _ws(buf, 0)
    if i >= n or buf[i] != _LBRACKET:
        return -1
    i = _ws(buf, i + 1)
    if i < n and buf[i] == _RBRACKET:
        return 0 if _ws(buf, i + 1) == n else -1
    row = 0
    while True:
        if i >= n or buf[i] != _LBRACE or row >= cap:
            return -1
        for f in range(6):
            values[f, row] = np.nan
        for f in range(7):
            kinds[f, row] = MISSING
        id_start[row] = 0
        id_end[row] = 0
        i = _ws(buf, i + 1)
        if i < n and buf[i] == _RBRACE:
            i += 1
        else:
            seen = 0
            while True:
                if i >= n or buf[i] != _QUOTE:
                    return -1
                end = _string_end(buf, i + 1)
                if end < 0:
                    return -1
                f = _key_index(buf, i + 1, end, keys, key_len)
                if f < 0 or (seen >> f) & 1:  # unknown or repeated key: give up
                    return -1
                seen |= 1 << f
                i = _ws(buf, end + 1)
                if i >= n or buf[i] != _COLON:
                    return -1
                i = _ws(buf, i + 1)
                if i >= n:
                    return -1
                c = buf[i]
                if c == _QUOTE:
                    end = _string_end(buf, i + 1)
                    if end < 0:
                        return -1
                    kinds[f, row] = STRING
                    if f == 0:
                        id_start[row] = i + 1
                        id_end[row] = end
                    i = end + 1
                elif c == 110:  # n
                    i = _literal(buf, i, (110, 117, 108, 108))
                    kinds[f, row] = NULL
                elif c == 116:  # t
                    i = _literal(buf, i, (116, 114, 117, 101))
                    kinds[f, row] = BOOL
                elif c == 102:  # f
                    i = _literal(buf, i, (102, 97, 108, 115, 101))
                    kinds[f, row] = BOOL
                elif c == 45 or 48 <= c <= 57:
                    i, value, kind = parse_number(buf, i, pow10)
                    kinds[f, row] = kind
                    if f > 0:
                        values[f - 1, row] = value
                else:  # object, array or invalid
                    return -1
                if i < 0:
                    return -1
                i = _ws(buf, i)
                if i < n and buf[i] == _COMMA:
                    i = _ws(buf, i + 1)
                elif i < n and buf[i] == _RBRACE:
                    i += 1
                    break
                else:
                    return -1
        row += 1
        i = _ws(buf, i)
        if i < n and buf[i] == _COMMA:
            i = _ws(buf, i + 1)
        elif i < n and buf[i] == _RBRACKET:
            i += 1
            break
        else:
            return -1
    if _ws(buf, i) != n:
        return -1
    return row


def scan_array(payload: bytes) -> Scan | None:
    """The payload's columns, or None when it is not in the canonical shape (decode it as before)."""
    if type(payload) is not bytes:  # bytearray, memoryview: rare, left to the decoders
        return None
    cap = payload.count(b"{")  # every reading opens one object: an upper bound on the rows
    buf = np.frombuffer(payload, dtype=np.uint8)
    values = np.empty((6, cap), dtype=np.float64)
    kinds = np.empty((7, cap), dtype=np.int8)
    id_start = np.empty(cap, dtype=np.int64)
    id_end = np.empty(cap, dtype=np.int64)
    n = _scan(buf, values, kinds, id_start, id_end, _KEYS, _KEY_LEN, _POW10)
    if n < 0:
        return None
    return Scan(n, values[:, :n], kinds[:, :n], id_start[:n], id_end[:n])


def number_of(text: bytes) -> tuple[float, int] | None:
    """(value, INT or DEC) of a whole JSON number, None when the scanner gives up (for tests)."""
    buf = np.frombuffer(text, dtype=np.uint8)
    end, value, kind = parse_number(buf, 0, _POW10)
    if end != len(buf):
        return None
    return value, kind


# ------------------------------------------------------------------ detector ids


class IdTable(NamedTuple):
    """A registry's ASCII ids for `id_indices`: sorted by FNV-1a hash, their bytes end to end."""

    hashes: np.ndarray  # (m,) uint64, ascending
    k: np.ndarray  # (m,) int64 registry index of each
    start: np.ndarray  # (m + 1,) int64 offsets into blob
    blob: np.ndarray  # uint8


@numba.njit(cache=True, nogil=True)
def _fnv1a(buf: np.ndarray, s: int, e: int) -> np.uint64:
    h = np.uint64(14695981039346656037)
    for j in range(s, e):
        h = (h ^ np.uint64(buf[j])) * np.uint64(1099511628211)
    return h


def id_table(index_of: dict[str, int]) -> IdTable:
    """The table of the ids of ``index_of`` that are ASCII (the scanner reads no other strings)."""
    ids = [(d.encode(), k) for d, k in index_of.items() if d.isascii()]
    raw = [np.frombuffer(b, dtype=np.uint8) for b, _ in ids]
    hashes = np.array([_fnv1a(r, 0, len(r)) for r in raw], dtype=np.uint64)
    order = np.argsort(hashes, kind="stable")
    lengths = np.array([len(raw[i]) for i in order], dtype=np.int64)
    start = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=start[1:])
    blob = np.concatenate([raw[i] for i in order]) if ids else np.zeros(0, dtype=np.uint8)
    index = np.array([ids[i][1] for i in order], dtype=np.int64)
    return IdTable(hashes[order], index, start, blob.astype(np.uint8))


@numba.njit(cache=True, nogil=True)
def _lookup(
    buf: np.ndarray,
    id_start: np.ndarray,
    id_end: np.ndarray,
    is_string: np.ndarray,
    hashes: np.ndarray,
    index: np.ndarray,
    start: np.ndarray,
    blob: np.ndarray,
    out: np.ndarray,
) -> None:
    m = len(hashes)
    for r in range(len(id_start)):
        out[r] = -1
        if not is_string[r]:
            continue
        s, e = id_start[r], id_end[r]
        h = _fnv1a(buf, s, e)
        j = np.searchsorted(hashes, h)
        while j < m and hashes[j] == h:  # equal hashes: compare the bytes
            a, b = start[j], start[j + 1]
            if b - a == e - s:
                same = True
                for t in range(e - s):
                    if blob[a + t] != buf[s + t]:
                        same = False
                        break
                if same:
                    out[r] = index[j]
                    break
            j += 1


def id_indices(payload: bytes, scan: Scan, table: IdTable) -> np.ndarray:
    """Registry index of each scanned ``detector_id`` string (-1: unknown, or not a string)."""
    out = np.empty(scan.n, dtype=np.int64)
    buf = np.frombuffer(payload, dtype=np.uint8)
    is_string = scan.kinds[0] == STRING
    _lookup(buf, scan.id_start, scan.id_end, is_string, table.hashes, table.k, table.start, table.blob, out)
    return out
