"""Amap (高德) conventions: signatures, road items, and the push feed.

**Signature.** Amap signs a request with ``sig = md5(k1=v1&k2=v2&…&kn=vn + private_key)``: every
parameter except ``sig`` itself, sorted by name, raw (not URL-encoded) values, the private key
appended, lower-case hex (the documented example: a=23, b=12, d=48, f=8, c=67 with key ``bbbbb``
signs ``a=23&b=12&c=67&d=48&f=8bbbbb``).

**Road items** follow Amap's traffic-status answers: ``name`` (the road's name, ``无名道路`` when
unnamed), ``status`` (0 未知, 1 畅通, 2 缓行, 3 拥堵, 4 严重拥堵 — from the GB/T level by the spec
table; a closed segment is 4), ``direction`` (e.g. ``从西到东``), ``angle`` (heading, 0° = east,
counter-clockwise, 0–359), ``speed`` (km/h) and ``polyline`` (``lng,lat;lng,lat`` in GCJ-02, six
decimals, in travel direction). Values are strings, as Amap sends them. roadpulse adds ``id`` (the
segment id) and ``closed``.

**Push.** Each request is a form POST (``application/x-www-form-urlencoded``) with ``key`` (the
account's key), ``timestamp`` (epoch seconds at sending), ``type`` (``traffic_status``,
``closure`` or ``incident``), ``id``, ``version``, ``data`` (the JSON document) and ``sig`` over
all of them. ``traffic_status`` carries every segment's road item at one tick; ``closure`` one
closure version (the spec record plus its roads with GCJ-02 polylines); ``incident`` one incident
with its ``location`` in GCJ-02.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import numpy as np

from ._geometry import SegmentGeometry, direction_zh
from .geo import wgs84_to_gcj02, wgs84_to_gcj02_array
from .outbox import OutboxItem

if TYPE_CHECKING:
    from congestion.types import SegmentStates
    from roadgraph.network import RoadNetwork

#: Amap road status by GB/T level 0..5 (docs/interfaces.md level table).
STATUS_OF_LEVEL = (0, 1, 1, 2, 3, 4)
STATUS_TEXT = {0: "未知", 1: "畅通", 2: "缓行", 3: "拥堵", 4: "严重拥堵"}
UNNAMED = "无名道路"


def sign(params: dict[str, str], private_key: str) -> str:
    """Amap's ``sig``: md5 of the parameters sorted by name as ``k=v`` joined by ``&``, plus the key."""
    text = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sig") + private_key
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def verify(params: dict[str, str], private_key: str) -> bool:
    """Whether ``params['sig']`` is the signature of the other parameters (constant time)."""
    return hmac.compare_digest(str(params.get("sig", "")), sign(params, private_key))


def polyline(coords_lonlat: np.ndarray) -> str:
    """``lng,lat;lng,lat`` in GCJ-02 (six decimals, ~0.1 m) from WGS84 lon/lat vertices."""
    lon, lat = wgs84_to_gcj02_array(coords_lonlat[:, 0], coords_lonlat[:, 1])
    return ";".join(f"{x:.6f},{y:.6f}" for x, y in zip(lon.tolist(), lat.tolist(), strict=True))


class AmapRoads:
    """Amap road items for a network: names, directions, angles and GCJ-02 polylines computed
    once; ``items(states)`` adds each tick's status and speed."""

    def __init__(self, network: RoadNetwork, geometry: SegmentGeometry | None = None) -> None:
        self.network = network
        self.geometry = geometry or SegmentGeometry(network)
        seg = network.segments
        angles = self.geometry.angle_ccw_deg
        self._static = [
            {
                "id": str(seg.segment_id[i]),
                "name": str(seg.name[i]) or UNNAMED,
                "direction": direction_zh(float(angles[i])),
                "angle": str(round(float(angles[i])) % 360),
                "polyline": polyline(self.geometry.lonlat(i)),
            }
            for i in range(len(seg))
        ]

    def static(self, i: int) -> dict[str, str]:
        return dict(self._static[i])

    def items(self, states: SegmentStates, index: np.ndarray | None = None) -> list[dict[str, Any]]:
        rows = range(len(self._static)) if index is None else np.asarray(index).tolist()
        level = states.level
        speed = states.speed_kmh
        closed = states.closed
        out = []
        for i in rows:
            item: dict[str, Any] = dict(self._static[i])
            is_closed = bool(closed[i])
            lv = 5 if is_closed else int(level[i])
            item["status"] = str(STATUS_OF_LEVEL[lv] if 0 <= lv <= 5 else 0)
            v = float(speed[i])
            item["speed"] = "0" if is_closed else (str(round(v)) if math.isfinite(v) else "")
            item["closed"] = is_closed
            out.append(item)
        return out


def traffic_status_payload(roads: AmapRoads, states: SegmentStates) -> dict[str, Any]:
    return {"ts": float(states.ts), "roads": roads.items(states)}


def closure_payload(roads: AmapRoads, record: dict[str, Any]) -> dict[str, Any]:
    """A closure version for Amap: the spec record plus ``roads`` (name, direction, angle,
    GCJ-02 polyline of each closed segment) and ``status_text``."""
    index_of = roads.network.segments.index_of
    payload = dict(record)
    payload["roads"] = [
        {k: v for k, v in roads.static(index_of[sid]).items()}
        for sid in record.get("segment_ids", [])
        if sid in index_of
    ]
    return payload


def incident_payload(roads: AmapRoads | None, record: dict[str, Any]) -> dict[str, Any]:
    """An incident for Amap: the spec record with ``location`` as GCJ-02 ``lng,lat``."""
    payload = dict(record)
    lon, lat = record.get("lon"), record.get("lat")
    if isinstance(lon, int | float) and isinstance(lat, int | float):
        g_lon, g_lat = wgs84_to_gcj02(lon, lat)
        payload["location"] = f"{g_lon:.6f},{g_lat:.6f}"
    sid = record.get("segment_id")
    if roads is not None and isinstance(sid, str) and sid in roads.network.segments.index_of:
        payload["road"] = roads.static(roads.network.segments.index_of[sid])
    return payload


def signed_form(
    fields: dict[str, str], *, api_key: str, private_key: str, now: float | None = None
) -> dict[str, str]:
    """``fields`` plus ``key``, ``timestamp`` and ``sig`` (Amap's signature over all of them)."""
    params = {**fields, "key": api_key, "timestamp": str(int(time.time() if now is None else now))}
    params["sig"] = sign(params, private_key)
    return params


def form_encoder(*, api_key: str, private_key: str) -> Any:
    """An ``HttpPush`` encoder: outbox item (``data`` JSON in the payload) → signed form body."""

    def encode(item: OutboxItem) -> tuple[bytes, dict[str, str]]:
        meta = json.loads(item.payload)
        fields = {
            "type": str(meta["type"]),
            "id": str(meta["id"]),
            "version": str(meta["version"]),
            "data": json.dumps(meta["data"], ensure_ascii=False, separators=(",", ":")),
        }
        params = signed_form(fields, api_key=api_key, private_key=private_key)
        body = urllib.parse.urlencode(params).encode("ascii")
        return body, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}

    return encode
