"""Amap-shaped traffic-status reads: rectangle, circle, road; Amap's body and error codes."""

from __future__ import annotations

import numpy as np
import pytest

from publishers.amap_reads import answer
from publishers.geo import wgs84_to_gcj02
from roadgraph.synthetic import synthetic_grid


@pytest.fixture(scope="module")
def grid():
    # 3 x 3 junctions 200 m apart; row 0 is an arterial ("Row 0"), rows 1-2 branch roads.
    return synthetic_grid(3, 3, origin_lonlat=(121.55, 29.87), arterial_every=2)


def gcj(lon: float, lat: float) -> str:
    g = wgs84_to_gcj02(lon, lat)
    return f"{g[0]:.6f},{g[1]:.6f}"


def states_for(grid, build, *, slow_row0: bool = True):
    n = len(grid)
    level = np.ones(n, dtype=np.int8)
    if slow_row0:
        for sid in ("r0c0-r0c1", "r0c1-r0c2"):
            level[grid.segments.index_of[sid]] = 5
    return build.states(60.0, np.where(level == 5, 5.0, 45.0), level=level)


def test_rectangle_answers_in_amaps_shape(grid, build) -> None:
    lon0, lat0 = 121.55, 29.87
    q = {
        "rectangle": f"{gcj(lon0 - 0.001, lat0 - 0.001)};{gcj(lon0 + 0.005, lat0 + 0.0005)}",
        "extensions": "all",
        "level": "6",
    }
    status, body = answer("rectangle", q, grid, states_for(grid, build))
    assert status == 200 and (body["status"], body["info"], body["infocode"]) == ("1", "OK", "10000")
    info = body["trafficinfo"]
    ids = {r["id"] for r in info["roads"]}
    assert {"r0c0-r0c1", "r0c1-r0c2", "r0c1-r0c0"} <= ids and "r2c0-r2c1" not in ids
    ev = info["evaluation"]
    assert set(ev) == {"expedite", "congested", "blocked", "unknown", "status", "description"}
    assert all(ev[k].endswith("%") for k in ("expedite", "congested", "blocked", "unknown"))
    assert float(ev["blocked"][:-1]) > 0
    assert "从西到东严重拥堵" in info["description"]
    road = info["roads"][0]
    assert {"name", "status", "direction", "angle", "speed", "polyline"} <= set(road)


def test_base_extensions_leave_roads_out_and_level_filters_unnamed_and_minor_roads(grid, build) -> None:
    q = {"rectangle": f"{gcj(121.549, 29.869)};{gcj(121.556, 29.875)}"}
    _, body = answer("rectangle", q, grid, states_for(grid, build))
    assert "roads" not in body["trafficinfo"]
    _, all_levels = answer(
        "rectangle", {**q, "extensions": "all", "level": "6"}, grid, states_for(grid, build)
    )
    _, arterials = answer(
        "rectangle", {**q, "extensions": "all", "level": "4"}, grid, states_for(grid, build)
    )
    assert len(arterials["trafficinfo"]["roads"]) < len(all_levels["trafficinfo"]["roads"])


def test_circle_selects_by_metres_around_a_gcj02_point(grid, build) -> None:
    q = {"location": gcj(121.55, 29.87), "radius": "150", "extensions": "all", "level": "6"}
    _, body = answer("circle", q, grid, states_for(grid, build))
    ids = {r["id"] for r in body["trafficinfo"]["roads"]}
    assert "r0c0-r0c1" in ids and "r0c0-r1c0" in ids
    assert not any(i.startswith("r2") or i.endswith("c2") for i in ids)  # 400 m away


def test_road_by_name(grid, build) -> None:
    _, body = answer(
        "road", {"name": "Row 0", "extensions": "all", "level": "6"}, grid, states_for(grid, build)
    )
    assert {r["name"] for r in body["trafficinfo"]["roads"]} == {"Row 0"}
    assert body["trafficinfo"]["evaluation"]["status"] in {"2", "3", "4"}


def test_unknown_before_the_first_tick(grid) -> None:
    _, body = answer("road", {"name": "Row 0"}, grid, None)
    assert body["trafficinfo"]["evaluation"]["unknown"] == "100.00%"
    assert body["trafficinfo"]["evaluation"]["status"] == "0"


@pytest.mark.parametrize(
    ("kind", "query", "info", "code"),
    [
        ("rectangle", {}, "MISSING_REQUIRED_PARAMS", "20001"),
        ("rectangle", {"rectangle": "121.5,29.8"}, "INVALID_PARAMS", "20000"),
        ("rectangle", {"rectangle": "121.0,29.0;121.9,29.9"}, "INVALID_PARAMS", "20000"),  # > 10 km
        ("circle", {"location": "121.55,29.87", "radius": "9000"}, "INVALID_PARAMS", "20000"),
        ("circle", {"location": "abc"}, "INVALID_PARAMS", "20000"),
        ("road", {}, "MISSING_REQUIRED_PARAMS", "20001"),
        ("road", {"name": "Row 0", "level": "9"}, "INVALID_PARAMS", "20000"),
        ("road", {"name": "Row 0", "output": "XML"}, "INVALID_PARAMS", "20000"),
    ],
)
def test_parameter_errors_answer_like_amap(grid, kind, query, info, code) -> None:
    status, body = answer(kind, query, grid, None)
    assert status == 200 and body["status"] == "0" and (body["info"], body["infocode"]) == (info, code)
    assert body["detail"]


def test_unknown_kind_is_404(grid) -> None:
    status, body = answer("polygon", {}, grid, None)
    assert status == 404 and body["status"] == "0"
