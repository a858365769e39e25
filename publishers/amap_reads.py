"""Reads in the shape of Amap's traffic-status queries, so a client written for Amap can point here.

``answer(kind, query, network, states)`` serves ``/v3/traffic/status/{kind}`` (the HTTP service
mounts it) for the three kinds Amap has:

* ``rectangle`` — ``rectangle=lng,lat;lng,lat`` (two opposite corners, GCJ-02; diagonal ≤ 10 km);
* ``circle`` — ``location=lng,lat`` (GCJ-02) and ``radius`` in metres (default 1000, ≤ 5000);
* ``road`` — ``name`` (the road's name, exact); Amap also wants ``city``/``adcode``: accepted and
  ignored, roadpulse serves one city.

Common parameters as Amap: ``level`` (1–6, default 5; Amap's road levels are inclusive: 2 城市快速路
← expressway, 4 主要道路 ← arterial, 5 一般道路 ← secondary and branch, 6 无名道路 ← unnamed
roads), ``extensions`` (``base``: description and evaluation; ``all``: plus ``roads[]``),
``output`` (JSON only), ``key``/``sig`` (accepted; authentication is the HTTP service's job).

The body is Amap's: ``status`` ("1" ok / "0" error), ``info``, ``infocode`` ("10000" ok, "20000"
INVALID_PARAMS, "20001" MISSING_REQUIRED_PARAMS), and ``trafficinfo`` with ``description`` (per
road and direction, e.g. ``中山路：从西到东畅通；从东到西缓行。``), ``evaluation`` (length shares
``expedite`` 畅通 / ``congested`` 缓行 / ``blocked`` 拥堵 and 严重拥堵 / ``unknown`` as ``"33.33%"``,
plus an overall ``status`` and its ``description``) and ``roads[]`` (``publishers.amap`` road
items). As Amap does, parameter errors answer HTTP 200 with ``status`` "0"; an unknown kind is 404.
The overall status is the length-weighted mean of the known segments' statuses, rounded
(1 畅通, 2 缓行, 3 拥堵; 4 is kept for a mean ≥ 3.5), "0" when nothing is known.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np
import shapely

from roadgraph.network import RoadNetwork
from roadgraph.projection import haversine_m

from .amap import STATUS_OF_LEVEL, STATUS_TEXT, UNNAMED, AmapRoads
from .geo import gcj02_to_wgs84

KINDS = ("rectangle", "circle", "road")
MAX_DIAGONAL_M = 10_000.0
MAX_RADIUS_M = 5_000.0
DEFAULT_RADIUS_M = 1_000.0
#: Amap road level of each GB/T class (``ROAD_CLASSES`` order); unnamed roads are level 6.
AMAP_LEVEL_OF_CLASS = (2, 4, 5, 5)

_cache: weakref.WeakKeyDictionary[RoadNetwork, _Index] = weakref.WeakKeyDictionary()


class _Index:
    """What the reads need per network, built on first use: road items, a spatial index."""

    def __init__(self, network: RoadNetwork) -> None:
        self.roads = AmapRoads(network)
        seg = network.segments
        self.tree = shapely.STRtree(list(seg.geometry))
        self.geometry = seg.geometry
        unnamed = np.array([not str(n) for n in seg.name], dtype=bool)
        self.amap_level = np.where(unnamed, 6, np.asarray(AMAP_LEVEL_OF_CLASS)[seg.road_class.astype(int)])
        self.length_m = np.asarray(seg.length_m, dtype=float)
        self.names = np.array([str(n) for n in seg.name], dtype=object)


class _ParamError(ValueError):
    def __init__(self, info: str, infocode: str, detail: str) -> None:
        super().__init__(detail)
        self.info, self.infocode = info, infocode


def _missing(name: str) -> _ParamError:
    return _ParamError("MISSING_REQUIRED_PARAMS", "20001", f"missing required parameter {name!r}")


def _invalid(detail: str) -> _ParamError:
    return _ParamError("INVALID_PARAMS", "20000", detail)


def _lnglat(text: str, name: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        lng, lat = (float(p) for p in parts)
    except ValueError:
        raise _invalid(f"{name}: expected 'lng,lat', got {text!r}") from None
    if not (math.isfinite(lng) and math.isfinite(lat) and -180 <= lng <= 180 and -90 <= lat <= 90):
        raise _invalid(f"{name}: {text!r} is not a longitude,latitude pair")
    return gcj02_to_wgs84(lng, lat)


def _select(kind: str, query: dict[str, str], network: RoadNetwork, index: _Index) -> np.ndarray:
    if kind == "rectangle":
        text = query.get("rectangle", "")
        if not text:
            raise _missing("rectangle")
        corners = text.split(";")
        if len(corners) != 2:
            raise _invalid(f"rectangle: expected 'lng,lat;lng,lat', got {text!r}")
        a, b = (_lnglat(c, "rectangle") for c in corners)
        if float(haversine_m(a[0], a[1], b[0], b[1])) > MAX_DIAGONAL_M:
            raise _invalid(f"rectangle: the diagonal is longer than {MAX_DIAGONAL_M / 1000:g} km")
        box = shapely.box(min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1]))
        return np.sort(index.tree.query(box, predicate="intersects"))
    if kind == "circle":
        text = query.get("location", "")
        if not text:
            raise _missing("location")
        center = _lnglat(text, "location")
        radius_text = query.get("radius", "") or str(DEFAULT_RADIUS_M)
        try:
            radius = float(radius_text)
        except ValueError:
            raise _invalid(f"radius: expected metres, got {radius_text!r}") from None
        if not 0 < radius <= MAX_RADIUS_M:
            raise _invalid(f"radius: {radius_text} outside 0..{MAX_RADIUS_M:g} m")
        if network.projection is None:
            raise _invalid("circle: this network has no projection to measure metres")
        x, y = network.projection.to_m(center[0], center[1])
        disc = shapely.Point(float(np.asarray(x)), float(np.asarray(y))).buffer(radius, quad_segs=16)
        seg_m = network.segments.geometry_m
        near = index.tree.query(
            shapely.box(*_degree_box(center, radius)), predicate="intersects"
        )  # coarse pass in lon/lat, exact test in metres
        return np.sort(near[shapely.intersects(seg_m[near], disc)]) if len(near) else near
    name = query.get("name", "").strip()
    if not name:
        raise _missing("name")
    return np.flatnonzero(index.names == name)


def _degree_box(center: tuple[float, float], radius_m: float) -> tuple[float, float, float, float]:
    dlat = radius_m / 111_000.0 * 1.05
    dlon = dlat / max(math.cos(math.radians(center[1])), 0.01)
    return center[0] - dlon, center[1] - dlat, center[0] + dlon, center[1] + dlat


def _pct(share: float) -> str:
    return f"{100.0 * share:.2f}%"


def _description(items: list[dict[str, Any]]) -> str:
    """``道路：从西到东畅通；从东到西缓行。`` per named road, worst roads first (at most 20)."""
    by_road: dict[str, dict[str, int]] = {}
    for item in items:
        if item["name"] == UNNAMED or item["status"] in ("0", ""):
            continue
        dirs = by_road.setdefault(item["name"], {})
        dirs[item["direction"]] = max(dirs.get(item["direction"], 0), int(item["status"]))
    ranked = sorted(by_road.items(), key=lambda kv: (-max(kv[1].values()), kv[0]))[:20]
    parts = [
        f"{name}：" + "；".join(f"{d}{STATUS_TEXT[s]}" for d, s in sorted(dirs.items())) + "。"
        for name, dirs in ranked
    ]
    return "".join(parts)


def _evaluation(status: np.ndarray, length_m: np.ndarray) -> dict[str, str]:
    total = float(length_m.sum())
    if total <= 0:
        return {
            "expedite": "0.00%",
            "congested": "0.00%",
            "blocked": "0.00%",
            "unknown": "100.00%",
            "status": "0",
            "description": STATUS_TEXT[0],
        }
    share = {s: float(length_m[status == s].sum()) / total for s in range(5)}
    known = length_m[status > 0]
    if known.sum() > 0:
        mean = float((status[status > 0] * known).sum() / known.sum())
        overall = min(4, max(1, math.floor(mean + 0.5)))
    else:
        overall = 0
    return {
        "expedite": _pct(share[1]),
        "congested": _pct(share[2]),
        "blocked": _pct(share[3] + share[4]),
        "unknown": _pct(share[0]),
        "status": str(overall),
        "description": STATUS_TEXT[overall],
    }


def _error(info: str, infocode: str, detail: str) -> dict[str, Any]:
    return {"status": "0", "info": info, "infocode": infocode, "detail": detail}


def answer(kind: str, query: dict[str, str], network: RoadNetwork, states: Any) -> tuple[int, dict[str, Any]]:
    """HTTP status and Amap-shaped JSON body for ``/v3/traffic/status/{kind}?{query}``.

    ``states`` is the latest ``SegmentStates`` (or a ``TickResult``; None before the first tick:
    everything unknown).
    """
    if kind not in KINDS:
        return 404, _error("INVALID_REQUEST", "20003", f"unknown kind {kind!r}; expected {', '.join(KINDS)}")
    if not network.has_lonlat:
        return 200, _error("INVALID_PARAMS", "20000", "this network has no geographic coordinates")
    states = getattr(states, "states", states)
    try:
        output = query.get("output", "JSON").upper()
        if output != "JSON":
            raise _invalid(f"output: only JSON is served, got {query.get('output')!r}")
        level_text = query.get("level", "") or "5"
        if level_text not in {"1", "2", "3", "4", "5", "6"}:
            raise _invalid(f"level: expected 1..6, got {level_text!r}")
        extensions = query.get("extensions", "base") or "base"
        if extensions not in ("base", "all"):
            raise _invalid(f"extensions: expected base or all, got {extensions!r}")
        index = _cache.get(network)
        if index is None:
            index = _cache[network] = _Index(network)
        rows = _select(kind, query, network, index)
    except _ParamError as exc:
        return 200, _error(exc.info, exc.infocode, str(exc))
    rows = rows[index.amap_level[rows] <= int(level_text)]
    if states is not None and len(states) == len(network):
        items = index.roads.items(states, rows)
        status = np.array([int(i["status"]) for i in items], dtype=int)
    else:
        items = [dict(index.roads.static(int(i)), status="0", speed="", closed=False) for i in rows]
        status = np.zeros(len(rows), dtype=int)
    trafficinfo: dict[str, Any] = {
        "description": _description(items),
        "evaluation": _evaluation(status, index.length_m[rows]),
    }
    if extensions == "all":
        trafficinfo["roads"] = items
    return 200, {"status": "1", "info": "OK", "infocode": "10000", "trafficinfo": trafficinfo}


__all__ = ["KINDS", "STATUS_OF_LEVEL", "answer"]
