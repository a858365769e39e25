"""Vectorised JSON fragments for columns of numbers.

The tick encoder formats a million segments per tick, so it never calls ``json.dumps`` per value:
each column is rounded with numpy, every *distinct* rounded value is formatted once with Python's
own ``float.__repr__`` (exactly what ``json.dumps`` writes for a float), and the fragments are
gathered back with one fancy-indexing step. Speeds, travel-time indices and confidences take a few
thousand distinct values at 1–2 decimals, so this costs milliseconds per column.
"""

from __future__ import annotations

import gc
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

NULL = b"null"

#: Above this magnitude ``k / 10**decimals`` no longer round-trips through a float64 integer.
_MAX_EXACT = float(2**53)


def fixed_fragments(values: np.ndarray, decimals: int) -> np.ndarray:
    """JSON numbers for ``values`` rounded to ``decimals`` places, as an object array of bytes.

    A fragment is ``repr(round(v, decimals))`` — byte-identical to what ``json.dumps`` writes for
    the rounded float — and ``null`` where the value is NaN or infinite (strict JSON has no NaN).
    """
    scale = 10.0**decimals
    with np.errstate(invalid="ignore", over="ignore"):
        # + 0.0 folds -0.0 into 0.0 so that no "-0.0" appears for values that round to zero.
        scaled = np.rint(np.asarray(values, dtype=np.float64) * scale) + 0.0
    usable = np.isfinite(scaled) & (np.abs(scaled) < _MAX_EXACT)
    out = np.full(len(scaled), NULL, dtype=object)
    huge = np.flatnonzero(np.isfinite(scaled) & ~usable)
    if len(huge):
        # Too large for the integer trick (and never seen in practice): format one by one.
        raw = np.asarray(values, dtype=np.float64)[huge]
        out[huge] = [repr(round(v, decimals)).encode() for v in raw.tolist()]
    if not usable.any():
        return out
    keys = scaled[usable]
    lo, hi = float(keys.min()), float(keys.max())
    span = int(hi - lo) + 1
    if span <= 4 * len(keys) + 1024:
        # Dense range (the usual case): a lookup table over every possible key.
        table = np.array([repr(k / scale).encode() for k in range(int(lo), int(hi) + 1)], dtype=object)
        out[usable] = table[(keys - lo).astype(np.intp)]
    else:
        # Sparse outliers (e.g. a travel-time index of 4,000 on a stopped segment): format only the
        # distinct values.
        distinct, inverse = np.unique(keys, return_inverse=True)
        table = np.array([repr(float(k) / scale).encode() for k in distinct], dtype=object)
        out[usable] = table[inverse]
    return out


def grouped_fragments(columns: Sequence[np.ndarray], render: Callable[..., bytes]) -> np.ndarray:
    """``render(*row)`` for every row of integer ``columns``, as an object array of bytes.

    ``render`` is called once per distinct combination of values, not once per row: flags and
    small counts combine into a few hundred distinct fragments however many segments there are.
    """
    n = len(columns[0]) if columns else 0
    if n == 0:
        return np.empty(0, dtype=object)
    cols = [np.asarray(c, dtype=np.int64) for c in columns]
    lows = [int(c.min()) for c in cols]
    radices = [int(c.max()) - lo + 1 for c, lo in zip(cols, lows, strict=True)]
    if math.prod(radices) >= 2**62:
        # Too many combinations for one int64 key (never for flags and int16 counts): group rows.
        distinct_rows, inverse = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)
        table = np.array([render(*map(int, row)) for row in distinct_rows], dtype=object)
        return table[inverse.reshape(-1)]
    key = np.zeros(n, dtype=np.int64)
    for col, lo, radix in zip(cols, lows, radices, strict=True):
        key = key * radix + (col - lo)

    def decode(k: int) -> list[int]:
        values = []
        for lo, radix in zip(reversed(lows), reversed(radices), strict=True):
            k, digit = divmod(k, radix)
            values.append(digit + lo)
        return values[::-1]

    total = math.prod(radices)
    if total <= 4 * n + 65_536:
        # Dense keys (flags and small counts): find the present ones without sorting.
        table = np.empty(total, dtype=object)
        for k in np.flatnonzero(np.bincount(key, minlength=total)).tolist():
            table[k] = render(*decode(k))
        return table[key]
    distinct, inverse = np.unique(key, return_inverse=True)
    table = np.array([render(*decode(int(k))) for k in distinct], dtype=object)
    return table[inverse]


def json_number(value: float, decimals: int | None = None) -> int | float | None:
    """A scalar ready for strict ``json.dumps``: NaN/inf → None, integral floats → int when
    ``decimals`` is None (epoch seconds read better as ``1776729660`` than ``1776729660.0``)."""
    value = float(value)
    if not math.isfinite(value):
        return None
    if decimals is not None:
        return round(value, decimals)
    return int(value) if value.is_integer() else value


def dumps(obj: Any) -> bytes:
    """Compact strict UTF-8 JSON: raises on NaN instead of writing a non-standard literal."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


#: Characters ``json.dumps(..., ensure_ascii=False)`` escapes inside a string.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')
_TOPIC_UNSAFE = "%/+#\0"
_TOPIC_ESCAPES = str.maketrans({c: f"%{ord(c):02X}" for c in _TOPIC_UNSAFE})
_TOPIC_UNSAFE_RE = re.compile("[" + re.escape(_TOPIC_UNSAFE) + "]")


def json_strings(names: Sequence[str]) -> list[bytes]:
    """``dumps(name)`` for many strings at once (a million segment ids in a fraction of a second).

    When no name needs escaping — the usual case — all are quoted and encoded in one pass.
    """
    if not names:
        return []
    if _JSON_ESCAPED.search("".join(names)):
        return [dumps(name) for name in names]
    # No name holds a newline (it would need escaping), so newlines split them apart again.
    return ('"' + '"\n"'.join(names) + '"').encode().split(b"\n")


def topic_levels(names: Sequence[str]) -> list[str]:
    """``topic_level(name)`` for many names at once."""
    if not names:
        return []
    joined = "".join(names)
    if not _TOPIC_UNSAFE_RE.search(joined):
        return list(names)
    if "\n" in joined:
        return [topic_level(name) for name in names]
    # str.replace over all names at once (then a split on the newline none of them holds) is
    # ~15x faster than str.translate, which looks every character up in a dict.
    escaped = "\n".join(names)
    for char in _TOPIC_UNSAFE:  # "%" first, so the escapes themselves are not escaped again
        escaped = escaped.replace(char, f"%{ord(char):02X}")
    return escaped.split("\n")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of acyclic objects.

    Each ``Message`` is a GC-tracked object; allocating a million of them triggers repeated
    collections that re-scan the growing young generations and roughly double the build time
    (measured: 1.5 s → 0.7 s per million). The objects hold no reference cycles, so nothing is
    lost by not scanning them; the previous state is restored on exit.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def topic_level(name: str) -> str:
    """``name`` made safe as one MQTT topic level.

    MQTT forbids ``+`` and ``#`` in topic names and ``/`` separates levels, yet SUMO edge ids such
    as ``-4711#2`` are common segment ids; these (and ``%`` itself, plus NUL) are percent-encoded,
    so ``-4711#2`` is published on ``…/segments/-4711%232``. The payload keeps the id unchanged.
    """
    return name.translate(_TOPIC_ESCAPES)
