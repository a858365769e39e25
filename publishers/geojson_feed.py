"""GeoJSON FeatureCollection of every segment with its live state (dashboards, QGIS, Kepler).

One ``Feature`` per directed segment: ``LineString`` geometry in WGS84 lon/lat (RFC 7946; the
network's metric x/y when it has no lon/lat, with ``"crs_note"`` saying so), ``id`` = segment id,
and properties ``segment_id``, ``name``, ``road_class``, ``lanes``, ``length_m``,
``speed_limit_kmh``, ``ts``, ``speed_kmh``, ``free_flow_kmh``, ``tti``, ``level``, ``level_name``,
``confidence``, ``imputed``, ``closed`` (null where unknown).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from congestion.types import level_name
from roadgraph.network import ROAD_CLASSES

if TYPE_CHECKING:
    from congestion.types import SegmentStates
    from roadgraph.network import RoadNetwork


def _num(v: float, digits: int) -> float | None:
    return round(v, digits) if math.isfinite(v) else None


def feature_collection(network: RoadNetwork, states: SegmentStates | None) -> dict[str, Any]:
    seg = network.segments
    coords, owner = shapely.get_coordinates(list(seg.geometry), return_index=True)
    bounds = np.searchsorted(owner, np.arange(len(seg) + 1))
    known = states is not None and len(states) == len(seg)
    features = []
    for i in range(len(seg)):
        line = [[round(x, 7), round(y, 7)] for x, y in coords[bounds[i] : bounds[i + 1]].tolist()]
        props: dict[str, Any] = {
            "segment_id": str(seg.segment_id[i]),
            "name": str(seg.name[i]),
            "road_class": ROAD_CLASSES[int(seg.road_class[i])],
            "lanes": int(seg.lanes[i]),
            "length_m": round(float(seg.length_m[i]), 1),
            "speed_limit_kmh": float(seg.speed_limit_kmh[i]),
        }
        if known:
            assert states is not None
            closed = bool(states.closed[i])
            level = 5 if closed else int(states.level[i])
            props.update(
                ts=float(states.ts),
                speed_kmh=_num(float(states.speed_kmh[i]), 1),
                free_flow_kmh=_num(float(states.free_flow_kmh[i]), 1),
                tti=_num(float(states.tti[i]), 2),
                level=level,
                level_name=level_name(level),
                confidence=_num(float(states.confidence[i]), 2),
                imputed=bool(states.imputed[i]),
                closed=closed,
            )
        else:
            props.update(
                ts=None,
                speed_kmh=None,
                free_flow_kmh=None,
                tti=None,
                level=0,
                level_name=level_name(0),
                confidence=None,
                imputed=False,
                closed=False,
            )
        features.append(
            {
                "type": "Feature",
                "id": props["segment_id"],
                "geometry": {"type": "LineString", "coordinates": line},
                "properties": props,
            }
        )
    doc: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if not network.has_lonlat:
        doc["crs_note"] = "coordinates are the network's own metric x/y (it has no lon/lat)"
    return doc


def to_bytes(network: RoadNetwork, states: SegmentStates | None) -> bytes:
    return json.dumps(feature_collection(network, states), ensure_ascii=False, separators=(",", ":")).encode()
