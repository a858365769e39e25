"""The road network as the HTTP service serves it: fixed per-segment arrays and map geometry.

Built once at start-up from the ``RoadNetwork`` (never mutated afterwards), so that requests and
the per-tick update only index arrays.

Map geometry for the dashboard is a compact binary blob (``geometry_blob``), because 100,000
segments as GeoJSON would be tens of megabytes: every polyline is cut into straight pieces
(``gl.LINES`` pairs), their end points given as little-endian float32 x, y in metres relative to
the network's centre, followed by one uint32 per piece naming its segment (row in the network).
For lon/lat networks x, y are Web Mercator (EPSG:3857) metres, so that map tiles line up; for
networks without lon/lat they are the network's own metric frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from roadgraph.network import ROAD_CLASSES, RoadNetwork

#: Earth radius of Web Mercator (EPSG:3857), metres.
_MERCATOR_R_M = 6378137.0


def _mercator(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat_c = np.clip(lat, -85.0511, 85.0511)
    x = _MERCATOR_R_M * np.radians(lon)
    y = _MERCATOR_R_M * np.log(np.tan(np.pi / 4.0 + np.radians(lat_c) / 2.0))
    return x, y


@dataclass(frozen=True, eq=False)
class NetworkView:
    """Per-segment arrays the API filters on, plus the dashboard's geometry."""

    n_segments: int
    segment_id: list[str]
    name: list[str]
    road_class: np.ndarray  # int8 codes into ROAD_CLASSES
    length_m: np.ndarray  # float64
    weight: np.ndarray  # float64: lane-metres, as the area indices weigh segments
    bounds: np.ndarray  # (n, 4) float64: minx, miny, maxx, maxy of each geometry
    midpoint: np.ndarray  # (n, 2) float64: a point on each segment (lon/lat or x/y)
    has_lonlat: bool
    #: Road each segment belongs to for "top congested roads": the name, or the id when unnamed.
    road_key: np.ndarray  # int32 codes into road_names
    road_names: list[str]
    geometry_blob: bytes
    geometry_meta: dict[str, Any]

    @classmethod
    def from_network(cls, network: RoadNetwork) -> NetworkView:
        seg = network.segments
        n = len(seg)
        geoms = list(seg.geometry)
        bounds = shapely.bounds(geoms) if n else np.zeros((0, 4))
        mid = (
            shapely.get_coordinates(shapely.line_interpolate_point(geoms, 0.5, normalized=True))
            if n
            else (np.zeros((0, 2)))
        )
        ids = [str(s) for s in seg.segment_id]
        names = [str(s) if s else "" for s in seg.name]
        keys = [name or sid for name, sid in zip(names, ids, strict=True)]
        road_names, road_key = (
            np.unique(np.array(keys, dtype=object), return_inverse=True)
            if n
            else (
                np.array([], dtype=object),
                np.zeros(0, dtype=np.int64),
            )
        )
        blob, meta = _geometry_blob(geoms, has_lonlat=network.has_lonlat)
        meta["road_classes"] = list(ROAD_CLASSES)
        return cls(
            n_segments=n,
            segment_id=ids,
            name=names,
            road_class=np.asarray(seg.road_class, dtype=np.int8),
            length_m=np.asarray(seg.length_m, dtype=np.float64),
            weight=np.asarray(seg.length_m, dtype=np.float64) * np.maximum(np.asarray(seg.lanes, float), 1.0),
            bounds=np.asarray(bounds, dtype=np.float64).reshape(n, 4),
            midpoint=np.asarray(mid, dtype=np.float64).reshape(n, 2),
            has_lonlat=network.has_lonlat,
            road_key=np.asarray(road_key, dtype=np.int32),
            road_names=[str(r) for r in road_names],
            geometry_blob=blob,
            geometry_meta=meta,
        )

    def geojson_geometry(self, geometry: Any) -> dict[str, Any]:
        coords = shapely.get_coordinates(geometry)
        return {"type": "LineString", "coordinates": [[round(x, 7), round(y, 7)] for x, y in coords.tolist()]}


def _geometry_blob(geoms: list[Any], *, has_lonlat: bool) -> tuple[bytes, dict[str, Any]]:
    """Straight pieces of every segment as float32 end points + uint32 segment rows (module doc)."""
    if not geoms:
        meta = {"n_pieces": 0, "origin": [0.0, 0.0], "extent_m": [0.0, 0.0, 0.0, 0.0], "crs": "none"}
        return b"", meta
    coords, owner = shapely.get_coordinates(geoms, return_index=True)
    if has_lonlat:
        x, y = _mercator(coords[:, 0], coords[:, 1])
        crs = "EPSG:3857"
    else:
        x, y = coords[:, 0].astype(np.float64), coords[:, 1].astype(np.float64)
        crs = "local-metric"
    same = owner[:-1] == owner[1:]
    x0 = float((x.min() + x.max()) / 2.0)
    y0 = float((y.min() + y.max()) / 2.0)
    ends = np.empty((int(same.sum()), 4), dtype=np.float32)
    ends[:, 0] = x[:-1][same] - x0
    ends[:, 1] = y[:-1][same] - y0
    ends[:, 2] = x[1:][same] - x0
    ends[:, 3] = y[1:][same] - y0
    piece_owner = owner[:-1][same].astype("<u4")
    meta = {
        "n_pieces": len(piece_owner),
        "origin": [x0, y0],
        "extent_m": [float(x.min() - x0), float(y.min() - y0), float(x.max() - x0), float(y.max() - y0)],
        "crs": crs,
    }
    return ends.astype("<f4").tobytes() + piece_owner.tobytes(), meta


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """'minx,miny,maxx,maxy' -> floats; ValueError with the reason otherwise."""
    parts = text.split(",")
    if len(parts) != 4:
        raise ValueError(f"bbox: expected minlon,minlat,maxlon,maxlat (4 numbers), got {len(parts)} values")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"bbox: {text!r} is not four numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError("bbox: values must be finite numbers")
    minx, miny, maxx, maxy = values
    if minx > maxx or miny > maxy:
        raise ValueError("bbox: min must not exceed max (minlon,minlat,maxlon,maxlat)")
    return minx, miny, maxx, maxy
