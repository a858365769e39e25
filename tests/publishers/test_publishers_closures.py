"""The closure book: validation, versions, expiry on an injected clock, the closed mask, SQLite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from publishers.closure_store import SqliteClosureStore
from publishers.closures import ClosureBook, ClosureError
from roadgraph.synthetic import synthetic_grid


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def grid():
    return synthetic_grid(2, 3, origin_lonlat=(121.55, 29.87))  # row 0 arterial: 3 lanes


def base(**overrides):
    record = {
        "closure_id": "C1",
        "segment_ids": ["r0c0-r0c1"],
        "lanes": "all",
        "type": "road_closed",
        "reason": "construction",
        "start": 1000,
        "end": 2000,
        "description": "water main",
    }
    record.update(overrides)
    return record


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"segment_ids": ["nope"]}, "segment_ids", "unknown segment 'nope'"),
        ({"segment_ids": []}, "segment_ids", "non-empty"),
        ({"end": 900}, "end", "not after start"),
        ({"lanes": [3]}, "lanes", "lane 3 does not exist"),
        ({"lanes": "some"}, "lanes", '"all" or a non-empty list'),
        ({"lanes": [True]}, "lanes", '"all" or a non-empty list'),
        ({"type": "closed"}, "type", "expected one of road_closed"),
        ({"start": "yesterday"}, "start", "not an ISO 8601 time"),
        ({"start": "2026-04-21T08:00:00"}, "start", "no UTC offset"),
        ({"closure_id": ""}, "closure_id", "non-empty"),
        ({"reason": 5}, "reason", "expected a string"),
        ({"colour": "red"}, "unknown field 'colour'", ""),
    ],
)
def test_bad_records_name_the_field(grid, overrides, field, words) -> None:
    book = ClosureBook(grid, clock=Clock(1500))
    with pytest.raises(ClosureError) as err:
        book.set(base(**overrides))
    assert str(err.value).startswith(field) and words in str(err.value)
    assert book.list(include_cleared=True) == []


def test_versions_status_and_idempotent_set(grid) -> None:
    clock = Clock(1500)
    book = ClosureBook(grid, clock=clock)
    seen: list[tuple[int, str]] = []
    book.add_listener(lambda r: seen.append((r["version"], r["status"])))
    first = book.set(base())
    assert (first["version"], first["status"]) == (1, "active")
    assert book.set(base()) == first  # the same content again: no new version
    second = book.set(base(description="water main, phase 2"))
    assert second["version"] == 2
    cleared = book.clear("C1")
    assert cleared is not None and (cleared["version"], cleared["status"], cleared["cleared_by"]) == (
        3,
        "cleared",
        "operator",
    )
    assert book.clear("C1") == cleared and book.clear("nope") is None
    assert book.list() == [] and [r["version"] for r in book.list(include_cleared=True)] == [3]
    again = book.set(base())  # setting a cleared closure again reopens it
    assert (again["version"], again["status"]) == (4, "active")
    assert seen == [(1, "active"), (2, "active"), (3, "cleared"), (4, "active")]


def test_iso_times_with_offset_are_accepted(grid) -> None:
    book = ClosureBook(grid, clock=Clock(1_776_729_000))
    rec = book.set(base(start="2026-04-21T08:00:00+08:00", end="2026-04-21T11:00:00+08:00"))
    assert rec["start"] == 1_776_729_600 and rec["end"] == 1_776_740_400 and rec["status"] == "scheduled"


def test_scheduled_then_active_then_expired_on_the_injected_clock(grid) -> None:
    clock = Clock(500)
    masks: list[np.ndarray] = []
    book = ClosureBook(grid, clock=clock, on_closed_mask=masks.append)
    assert book.set(base())["status"] == "scheduled"
    assert not book.closed_mask().any()
    clock.t = 999.9
    assert book.tick() == []
    clock.t = 1000
    [active] = book.tick()
    assert active["status"] == "active" and active["version"] == 2
    i = grid.segments.index_of["r0c0-r0c1"]
    assert book.closed_mask()[i] and book.closed_mask().sum() == 1
    clock.t = 2000  # end is exclusive: cleared exactly at end
    [gone] = book.tick()
    assert (gone["status"], gone["cleared_by"], gone["version"]) == ("cleared", "expired", 3)
    assert not book.closed_mask().any()
    assert [m.sum() for m in masks] == [1, 0]


def test_only_all_lane_closures_close_segments(grid) -> None:
    book = ClosureBook(grid, clock=Clock(1500))
    lanes = int(grid.segments.lanes[grid.segments.index_of["r0c0-r0c1"]])
    assert lanes == 3
    book.set(base(closure_id="partial", type="lane_closed", lanes=[0, 1]))
    assert not book.closed_mask().any()
    book.set(base(closure_id="every-lane", type="accident", lanes=[2, 1, 0], segment_ids=["r0c1-r0c2"]))
    assert book.closed_mask()[grid.segments.index_of["r0c1-r0c2"]]
    assert book.closes_all_lanes(book.get("every-lane")) and not book.closes_all_lanes(book.get("partial"))


def test_end_in_the_past_is_refused(grid) -> None:
    book = ClosureBook(grid, clock=Clock(5000))
    with pytest.raises(ClosureError, match=r"^end: .* has already passed"):
        book.set(base())


def test_sqlite_store_restores_after_a_restart_and_keeps_every_version(grid, tmp_path: Path) -> None:
    path = tmp_path / "closures.sqlite"
    clock = Clock(1500)
    book = ClosureBook(grid, SqliteClosureStore(path), clock=clock)
    book.set(base())
    book.set(base(closure_id="C2", end=1600))
    book.set(base(description="updated"))
    book.store.close()

    clock.t = 1700  # C2 ended while the engine was down
    masks: list[np.ndarray] = []
    store = SqliteClosureStore(path)
    restored = ClosureBook(grid, store, clock=clock, on_closed_mask=masks.append)
    assert restored.get("C1")["version"] == 2 and restored.get("C1")["description"] == "updated"
    changed = restored.start()
    assert [(r["closure_id"], r["status"]) for r in changed] == [("C2", "cleared")]
    assert masks and masks[-1][grid.segments.index_of["r0c0-r0c1"]]
    assert [v["version"] for v in store.versions("C1")] == [1, 2]
    assert [v["status"] for v in store.versions("C2")] == ["active", "cleared"]
