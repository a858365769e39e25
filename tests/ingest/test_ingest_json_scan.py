"""The byte scanner for canonical JSON arrays (ingest/_json_scan.py) against the decoders.

- The number parser against ``json.loads`` and ``float()`` on generated literals: every literal it
  converts has exactly Python's value (bit for bit, sign of zero included) and type (int/float);
  every literal within its rules (≤ 18-digit integers, ≤ 15 significant digits and exponent within
  ±22 otherwise) is converted; every invalid literal makes it give up.
- The scan of a payload against ``json.loads`` of the same bytes: kinds, values and id slices.
- Messages: the scanner path, the orjson columnar path (scanner off) and the per-reading reference
  give the same accepted batch, rejections and parser state, on canonical and near-canonical
  payloads written with random spacing, key order, number spellings and odd values.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import json_batch
from ingest._json_scan import (
    BOOL,
    DEC,
    FIELDS,
    INT,
    MISSING,
    NULL,
    STRING,
    id_indices,
    id_table,
    number_of,
    scan_array,
)
from tests.ingest.test_ingest_json_batch import (
    BATCH,
    REGISTRY,
    SETTINGS,
    TS,
    WIDE_REGISTRY,
    _parser,
    _reference,
    _same_batch,
    _same_rejections,
    _same_state,
)

# ------------------------------------------------------------------ numbers

number_literals = st.from_regex(
    r"-?(0|[1-9][0-9]{0,19})(\.[0-9]{1,19})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)
edge_literals = st.sampled_from(
    [
        "-0", "-0.0", "0.0", "0e0", "-0e5", "1e22", "1e23", "-1e22", "1E-22", "1e-23", "0.1", "8.5",
        "123456789012345", "1234567890123456", "12345678901234567", "123456789012345678",
        "1234567890123456789", "9007199254740993", "9007199254740993.0", "0.123456789012345",
        "0.1234567890123456", "1.7976931348623157e308", "5e-324", "1776729630", "1776729630.5",
        "1.77672963e9", "177672963e1", "999999999999999e22", "0.0000000000000000000001",
    ]
)  # fmt: skip
INVALID_LITERALS = [
    "01",
    "-01",
    "1.",
    ".5",
    "-",
    "+1",
    "1e",
    "1e+",
    "1.e5",
    "--1",
    "NaN",
    "-Infinity",
    "0x1",
    "1_0",
]


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _fast_path_applies(text: str) -> bool:
    """The scanner's rules, spelled with Python's Decimal-free string arithmetic."""
    body = text.lstrip("-")
    if "." not in body and "e" not in body.lower():
        return len(body) <= 18
    mant, _, exp = body.lower().partition("e")
    whole, _, frac = mant.partition(".")
    digits = (whole + frac).lstrip("0")
    if not digits:  # zero: any exponent of up to 5 digits
        return len(exp.lstrip("+-")) <= 5
    if len(whole.lstrip("0") + frac) > 18 or len(digits) > 15:
        return False
    e = int(exp or 0) - len(frac)
    return -22 <= e <= 22


@given(text=number_literals | edge_literals)
@SETTINGS
def test_number_parser_equals_json_and_float(text: str) -> None:
    got = number_of(text.encode())
    want = json.loads(text)
    if got is None:
        assert not _fast_path_applies(text), text
        return
    value, kind = got
    assert kind == (INT if type(want) is int else DEC), text
    assert _bits(value) == _bits(float(want)), text
    if kind == DEC:
        assert _bits(value) == _bits(float(text)), text


@pytest.mark.parametrize("text", ["1e22", "-0", "-0.0", "0.1", "123456789012345", "8.5", "1E-22"])
def test_number_parser_converts_the_fast_path(text: str) -> None:
    got = number_of(text.encode())
    assert got is not None and _bits(got[0]) == _bits(float(json.loads(text)))


@pytest.mark.parametrize("text", ["1e23", "1234567890123456.0", "1234567890123456789", "1e-23", "0e123456"])
def test_number_parser_gives_up_beyond_the_fast_path(text: str) -> None:
    assert number_of(text.encode()) is None


@pytest.mark.parametrize("text", INVALID_LITERALS)
def test_number_parser_gives_up_on_invalid_literals(text: str) -> None:
    with pytest.raises(orjson.JSONDecodeError):  # not JSON (json.loads takes NaN: the parser refuses it)
        orjson.loads(text)
    assert number_of(text.encode()) is None


# ------------------------------------------------------------------ payloads

spaces = st.sampled_from(["", "", " ", "  ", "\n", "\t", "\r\n "])


def _mostly(good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Good values four times in five: rows that pass every check are common, so a column check
    that let one odd value through would show."""
    # Not one_of(good, good, ..., bad): Hypothesis picks among its branches far from evenly.
    return st.tuples(st.integers(0, 9), good, bad).map(lambda t: t[2] if t[0] in (4, 7) else t[1])


plausible_values: dict[str, st.SearchStrategy[str]] = {
    "detector_id": _mostly(
        st.sampled_from(["D1", "D2", "D3", "-47#1"]), st.sampled_from(["NOPE", "", "OLD", "P7"])
    ).map(json.dumps),
    "ts": _mostly(
        st.sampled_from([str(TS), str(TS - 30), f"{TS}.0", "1.77672963e9", "177672963e1", f"{TS + 30}.5"])
        | st.integers(TS - 900, TS + 60).map(str),
        st.sampled_from([str(TS - 600), "0", "-1776729630", "1e22", "17767296300"]),
    ),
    "interval_s": _mostly(
        st.sampled_from(["30", "60", "20.0", "3e1", "30.000"]), st.sampled_from(["0", "-30", "1e5"])
    ),
    "count": _mostly(
        st.sampled_from(["12", "0", "-0", "12.0", "1.2e1", "-0.0"]) | st.integers(0, 30).map(str),
        st.sampled_from(["12.5", "-1", "1e22"]),
    ),
    "occupancy_pct": _mostly(
        st.sampled_from(["8.5", "0", "100", "1e2", "-0.0", "0.1"])
        | st.from_regex(r"(0|[1-9][0-9]?)\.[0-9]{1,13}", fullmatch=True),
        st.sampled_from(["100.000000000001", "-0.5", "1e3"]),
    ),
    "speed_kmh": _mostly(
        st.sampled_from(["42.1", "null", "0", "250", "-0"])
        | st.from_regex(r"(0|[1-9][0-9]?)\.[0-9]{1,13}", fullmatch=True),
        st.sampled_from(["1e22", "-1", "250.0000000001"]),
    ),
    "lane": _mostly(st.sampled_from(["null", "1", "0", "2"]), st.sampled_from(["1.0", "-1", "1e0", "99"])),
}
# Values of another type that the scanner reads (the column checks must refuse them)...
odd_values = st.sampled_from(['"2026-04-21T00:00:30Z"', '"12"', '"D1"', "true", "false", "null", '""'])
# ... and values it gives up on (the whole payload then takes the orjson path).
# Numbers: 16 and 17 significant digits, exponents beyond ±22 (1e23 is not exactly 10**23).
spoilers = st.sampled_from(
    [
        "[1]",
        "{}",
        "NaN",
        "1e400",
        "01",
        '"D\\u0031"',
        '"é"',
        "1.5e-400",
        "1e23",
        "5.000000000000001",
        "250.00000000000003",
    ]
) | st.from_regex(r"[1-9][0-9]\.[0-9]{14,15}", fullmatch=True)


@st.composite
def objects(draw: st.DrawFn, *, canonical: bool, spoil: bool = False) -> str:
    names = draw(st.permutations(FIELDS))
    missing = draw(st.one_of(st.none(), st.none(), st.none(), st.sampled_from(FIELDS)))
    present = [f for f in names if f != missing]  # a key is sometimes missing
    # Near-canonical: one field (each column check must single it out among good rows) holds a
    # value of another type or shape, now and then a second one too.
    odd = set() if canonical else {draw(st.sampled_from(FIELDS)) for _ in range(draw(st.integers(0, 2)))}
    pairs = []
    for name in present:
        value = draw(odd_values if name in odd else plausible_values[name])
        pairs.append((json.dumps(name), value))
    if spoil:  # an unknown or repeated key, or a value the scanner does not take
        where = draw(st.integers(0, len(pairs)))
        if draw(st.booleans()) or not pairs:
            pairs.insert(where, (draw(st.sampled_from(['"extra"', '"ts"', '"Lane"'])), "1"))
        else:
            pairs[min(where, len(pairs) - 1)] = (pairs[min(where, len(pairs) - 1)][0], draw(spoilers))
    sp = lambda: draw(spaces)  # noqa: E731
    body = ",".join(f"{sp()}{key}{sp()}:{sp()}{value}{sp()}" for key, value in pairs)
    return "{" + body + sp() + "}"


@st.composite
def payloads(draw: st.DrawFn, *, canonical: bool) -> bytes:
    items = draw(st.lists(objects(canonical=canonical), max_size=10))
    if not canonical and items and draw(st.integers(0, 3)) == 0:
        items[draw(st.integers(0, len(items) - 1))] = draw(objects(canonical=False, spoil=True))
    sp = lambda: draw(spaces)  # noqa: E731
    text = sp() + "[" + ",".join(sp() + item + sp() for item in items) + sp() + "]" + sp()
    if not canonical and draw(st.integers(0, 9)) == 0:  # invalid JSON now and then
        text = draw(st.sampled_from([text[:-1] + ",]", text + "x", text[1:], "[" + text]))
    return text.encode()


def _column_reference(payload: bytes) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Kinds, values and ids as json.loads sees the payload."""
    items = json.loads(payload)
    kinds = np.zeros((7, len(items)), dtype=np.int8)
    values = np.full((6, len(items)), np.nan)
    ids = []
    for r, item in enumerate(items):
        for f, name in enumerate(FIELDS):
            if name not in item:
                continue
            v = item[name]
            kind = {int: INT, float: DEC, type(None): NULL, bool: BOOL, str: STRING}[type(v)]
            kinds[f, r] = kind
            if f and kind in (INT, DEC):
                values[f - 1, r] = float(v)
        ids.append(item.get("detector_id") if kinds[0, r] == STRING else None)
    return kinds, values, ids


@given(payload=payloads(canonical=True) | payloads(canonical=False))
@SETTINGS
def test_scan_equals_json_loads(payload: bytes) -> None:
    scan = scan_array(payload)
    if scan is None:
        return
    kinds, values, ids = _column_reference(payload)  # the scanner accepted: valid JSON
    np.testing.assert_array_equal(scan.kinds, kinds)
    assert [_bits(x) for x in scan.values.ravel()] == [_bits(x) for x in values.ravel()]
    got_ids = [payload[s:e].decode() for s, e in zip(scan.id_start, scan.id_end, strict=True)]
    assert [g if k == STRING else None for g, k in zip(got_ids, scan.kinds[0], strict=True)] == ids


@given(payload=payloads(canonical=True))
@SETTINGS
def test_scanner_takes_canonical_payloads_within_its_rules(payload: bytes) -> None:
    items = json.loads(payload)
    texts = [t for t in payload.replace(b",", b" ").replace(b":", b" ").split() if t[:1] in b"-0123456789"]
    within = all(number_of(t.strip(b"{}[]")) is not None for t in texts)
    assert (scan_array(payload) is not None) == within
    if within:
        assert scan_array(payload) is not None and scan_array(payload).n == len(items)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "payload",
    [
        b'[{"detector_id": "D1", "extra": 1}]',
        b'[{"ts": 1, "ts": 2}]',
        b'[{"ts": [1]}]',
        b'[{"detector_id": "D\\u0031"}]',
        b'[{"detector_id": "\xc3\xa9"}]',
        b'[{"ts": NaN}]',
        b"[1]",
        b"{}",
        b"[{}",
        b"[{},]",
        b'[{"ts": 1}] x',
        b'\xef\xbb\xbf[{"ts": 1}]',
        b"",
    ],
)
def test_scanner_gives_up_outside_the_canonical_shape(payload: bytes) -> None:
    assert scan_array(payload) is None


@contextmanager
def _scanner(on: bool) -> Iterator[None]:
    saved = json_batch.SCANNER
    json_batch.SCANNER = on
    try:
        yield
    finally:
        json_batch.SCANNER = saved


@given(
    messages=st.lists(payloads(canonical=True) | payloads(canonical=False), min_size=1, max_size=4),
    tick_after=st.integers(0, 3),
    registry=st.sampled_from([REGISTRY, WIDE_REGISTRY]),
)
@SETTINGS
def test_scanner_path_equals_the_orjson_path_and_the_reference(
    messages: list[bytes], tick_after: int, registry: Any
) -> None:
    scanned, columnar, ref = _parser(registry), _parser(registry), _parser(registry)
    for m, payload in enumerate(messages):
        with _scanner(True):
            got = scanned.parse_message(BATCH, payload)
        with _scanner(False):
            want = columnar.parse_message(BATCH, payload)
        try:
            json.loads(payload)
        except ValueError:
            old = want  # invalid JSON: _reference expects arrays; both paths refuse it the same way
        else:
            old = _reference(ref, payload)
        for other in (want, old):
            _same_batch(got.batch, other.batch)
            _same_rejections(got.rejections, other.rejections)
        _same_state(scanned, columnar)
        if m == tick_after:
            for p in (scanned, columnar, ref):
                p.mark_ticked(float(TS))


def test_scanner_path_refuses_too_large_arrays_as_before() -> None:
    payload = json.dumps([{"detector_id": "D1", "ts": TS}] * 61).encode()
    assert scan_array(payload) is not None
    with _scanner(True):
        got = _parser().parse_message(BATCH, payload)
    with _scanner(False):
        want = _parser().parse_message(BATCH, payload)
    assert [r.code for r in got.rejections] == ["too_large"]
    _same_rejections(got.rejections, want.rejections)


def test_scanner_path_accepts_and_refuses_rows() -> None:
    """Accepted rows come from the columns; a duplicate and a late row need the elements."""
    rows = [
        {"detector_id": "D1", "ts": TS, "interval_s": 30, "count": 12, "occupancy_pct": 8.5, "lane": 1},
        {"detector_id": "D1", "ts": TS, "interval_s": 30, "count": 12, "occupancy_pct": 8.5},
        {
            "detector_id": "D2",
            "ts": TS - 600,
            "interval_s": 30,
            "count": 3,
            "occupancy_pct": 1,
            "speed_kmh": None,
        },
    ]
    payload = json.dumps(rows).encode()
    assert scan_array(payload) is not None
    results = []
    for on in (True, False):
        parser = _parser()
        parser.mark_ticked(float(TS))
        parser.parse_message(BATCH, json.dumps([{**rows[0], "detector_id": "D3", "lane": 0}]).encode())
        with _scanner(on):
            results.append(parser.parse_message(BATCH, payload))
    got, want = results
    assert len(got.batch) == 1 and [r.code for r in got.rejections] == ["duplicate", "late"]
    _same_batch(got.batch, want.batch)
    _same_rejections(got.rejections, want.rejections)
    assert math.isclose(float(got.batch.occupancy_pct[0]), 8.5)
    assert MISSING == 0  # the kind of a field that is absent is the zero of a fresh column


@given(
    registry_ids=st.lists(st.text(max_size=4), unique=True, max_size=30),
    wanted=st.lists(st.text(max_size=4), max_size=20),
)
@SETTINGS
def test_id_lookup_equals_a_dict_lookup(registry_ids: list[str], wanted: list[str]) -> None:
    """The numba hash lookup against ``dict.get`` (non-ASCII ids are in no payload it scans)."""
    index_of = {d: k for k, d in enumerate(registry_ids)}
    asked = [d for d in wanted + registry_ids[::2] if d.isascii() and '"' not in d and "\\" not in d]
    asked = [d for d in asked if all(32 <= ord(c) < 127 for c in d)]  # json.dumps escapes the rest
    payload = json.dumps([{"detector_id": d} for d in asked] + [{"detector_id": 1}, {}]).encode()
    scan = scan_array(payload)
    assert scan is not None, payload
    got = id_indices(payload, scan, id_table(index_of))
    assert got.tolist() == [index_of.get(d, -1) for d in asked] + [-1, -1]
