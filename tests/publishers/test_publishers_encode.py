"""The vectorised JSON fragment builders, against slow obvious references."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from publishers._encode import (
    dumps,
    fixed_fragments,
    grouped_fragments,
    json_strings,
    topic_level,
    topic_levels,
)


def reference_fixed(values: np.ndarray, decimals: int) -> list[bytes]:
    return [json.dumps(round(float(v), decimals) if math.isfinite(v) else None).encode() for v in values]


@pytest.mark.parametrize("decimals", [0, 1, 2, 3])
@pytest.mark.parametrize(
    "values",
    [
        pytest.param(np.random.default_rng(1).uniform(0, 150, 5000).astype(np.float32), id="dense"),
        pytest.param(np.random.default_rng(2).lognormal(0, 6, 5000).astype(np.float32), id="sparse"),
        pytest.param(
            np.array([np.nan, np.inf, -np.inf, 0.0, 1e-7, 3e20, 2.5, 0.125], dtype=np.float32), id="edges"
        ),
        pytest.param(np.full(3, np.nan, dtype=np.float32), id="all-nan"),
        pytest.param(np.empty(0, dtype=np.float32), id="empty"),
    ],
)
def test_fixed_fragments_match_json_dumps_of_rounded_floats(values: np.ndarray, decimals: int) -> None:
    assert fixed_fragments(values, decimals).tolist() == reference_fixed(values, decimals)


@pytest.mark.parametrize(
    "columns",
    [
        pytest.param([np.array([0, 1, 1, 0]), np.array([3, 3, 0, 3])], id="dense"),
        pytest.param([np.array([-5, 7, -5]), np.array([2**40, 0, 2**40])], id="wide-unique"),
        pytest.param([np.array([2**40, 0]), np.array([2**30, 1]), np.array([2**10, 2])], id="overflow-rows"),
    ],
)
def test_grouped_fragments_render_each_row(columns: list[np.ndarray]) -> None:
    calls: list[tuple[int, ...]] = []

    def render(*values: int) -> bytes:
        calls.append(values)
        return repr(values).encode()

    out = grouped_fragments(columns, render).tolist()
    rows = list(zip(*(c.tolist() for c in columns), strict=True))
    assert out == [repr(row).encode() for row in rows]
    assert sorted(calls) == sorted(set(rows))  # once per distinct combination


@pytest.mark.parametrize(
    "names",
    [
        ["A0A1", "-4711#2", "中山路"],
        ['q"uote', "back\\slash", "new\nline", "plain"],
        [],
    ],
)
def test_json_strings(names: list[str]) -> None:
    assert json_strings(names) == [dumps(n) for n in names]


@pytest.mark.parametrize(
    "names",
    [["plain", "中山路"], ["-4711#2", "a/b", "+", "100%"], ["new\nline#", "x"], []],
)
def test_topic_levels(names: list[str]) -> None:
    levels = topic_levels(names)
    assert levels == [topic_level(n) for n in names]
    assert not any(c in level for level in levels for c in "/+#\0")


def test_topic_level_round_trips_with_percent_decoding() -> None:
    from urllib.parse import unquote

    for name in ["-4711#2", "a/b+c", "50%", "%23"]:
        assert unquote(topic_level(name)) == name
