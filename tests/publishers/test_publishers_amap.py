"""Amap conventions: the signature, road items (status, direction, angle, GCJ-02 polyline)."""

from __future__ import annotations

import hashlib
import json
import urllib.parse

import numpy as np
import pytest

from publishers import amap
from publishers.geo import gcj02_to_wgs84
from publishers.outbox import OutboxItem
from roadgraph.synthetic import synthetic_grid


def test_sign_reproduces_amaps_documented_example() -> None:
    params = {"a": "23", "b": "12", "d": "48", "f": "8", "c": "67"}
    expected = hashlib.md5(b"a=23&b=12&c=67&d=48&f=8bbbbb").hexdigest()
    assert amap.sign(params, "bbbbb") == expected
    assert amap.verify({**params, "sig": expected}, "bbbbb")
    assert not amap.verify({**params, "sig": expected}, "bbbbc")
    assert not amap.verify({**params, "c": "68", "sig": expected}, "bbbbb")


def test_sign_ignores_an_existing_sig_and_uses_raw_utf8_values() -> None:
    params = {"name": "中山路", "sig": "whatever", "key": "k"}
    assert amap.sign(params, "p") == hashlib.md5("key=k&name=中山路p".encode()).hexdigest()


@pytest.fixture(scope="module")
def grid():
    return synthetic_grid(2, 3, origin_lonlat=(121.55, 29.87))


def test_road_items_follow_the_spec_status_table(grid, build) -> None:
    n = len(grid)
    roads = amap.AmapRoads(grid)
    levels = np.array([0, 1, 2, 3, 4, 5] + [1] * (n - 6), dtype=np.int8)
    closed = np.zeros(n, dtype=bool)
    closed[-1] = True
    states = build.states(60.0, np.full(n, 30.0), level=levels, closed=closed)
    items = roads.items(states)
    assert [i["status"] for i in items[:6]] == ["0", "1", "1", "2", "3", "4"]
    assert items[-1]["status"] == "4" and items[-1]["closed"] is True and items[-1]["speed"] == "0"
    assert items[1]["speed"] == "30" and items[0]["name"].startswith(("Row", "Column"))
    assert all(isinstance(v, str) for k, v in items[1].items() if k != "closed")


def test_angle_is_counter_clockwise_from_east_with_direction_words(grid) -> None:
    roads = amap.AmapRoads(grid)
    seg = grid.segments
    by_id = {roads.static(i)["id"]: roads.static(i) for i in range(len(seg))}
    assert (by_id["r0c0-r0c1"]["angle"], by_id["r0c0-r0c1"]["direction"]) == ("0", "从西到东")
    assert (by_id["r0c1-r0c0"]["angle"], by_id["r0c1-r0c0"]["direction"]) == ("180", "从东到西")
    assert (by_id["r0c0-r1c0"]["angle"], by_id["r0c0-r1c0"]["direction"]) == ("90", "从南到北")  # north
    assert (by_id["r1c0-r0c0"]["angle"], by_id["r1c0-r0c0"]["direction"]) == ("270", "从北到南")


def test_polyline_is_gcj02_lng_lat_pairs_in_travel_direction(grid) -> None:
    roads = amap.AmapRoads(grid)
    i = grid.segments.index_of["r0c0-r0c1"]
    pts = [tuple(map(float, p.split(","))) for p in roads.static(i)["polyline"].split(";")]
    wgs = grid.segments.geometry[i].coords
    assert len(pts) == len(wgs)
    for (glon, glat), (lon, lat) in zip(pts, wgs, strict=True):
        back = gcj02_to_wgs84(glon, glat)
        assert back == pytest.approx((lon, lat), abs=2e-6)  # six decimals ≈ 0.1 m
        assert abs(glon - lon) > 1e-3  # really shifted: GCJ-02, not WGS84
    assert pts[0][0] < pts[-1][0]  # eastbound: west end first


def test_form_encoder_signs_every_field_it_sends() -> None:
    encode = amap.form_encoder(api_key="key-1", private_key="priv")
    payload = json.dumps({"type": "closure", "id": "C1", "version": 3, "data": {"closure_id": "C1"}}).encode()
    body, headers = encode(OutboxItem(1, "closure:C1", "closure", "closure:C1:v3", payload, 0, 0.0, False))
    form = dict(urllib.parse.parse_qsl(body.decode()))
    assert headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert set(form) == {"key", "timestamp", "type", "id", "version", "data", "sig"}
    assert (
        amap.verify(form, "priv")
        and form["version"] == "3"
        and json.loads(form["data"]) == {"closure_id": "C1"}
    )


def test_closure_and_incident_payloads_carry_gcj02_geometry(grid) -> None:
    roads = amap.AmapRoads(grid)
    record = {"closure_id": "C1", "segment_ids": ["r0c0-r0c1"], "version": 2, "status": "active"}
    payload = amap.closure_payload(roads, record)
    assert payload["version"] == 2 and payload["roads"][0]["id"] == "r0c0-r0c1"
    assert payload["roads"][0]["polyline"] == roads.static(grid.segments.index_of["r0c0-r0c1"])["polyline"]
    inc = amap.incident_payload(
        roads, {"incident_id": "I1", "lon": 121.55, "lat": 29.87, "segment_id": "r0c0-r0c1"}
    )
    glon, glat = map(float, inc["location"].split(","))
    assert gcj02_to_wgs84(glon, glat) == pytest.approx((121.55, 29.87), abs=2e-6)
    assert inc["road"]["name"] == "Row 0"
