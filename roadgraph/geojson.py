"""Load a GeoJSON FeatureCollection of LineStrings (``.geojson``, ``.json``) as a RoadNetwork.

Features
    Every feature must be a ``LineString`` of at least two positions. ``MultiLineString`` and
    other geometry types are rejected (naming the feature) rather than silently truncated: split
    them into LineString features with their own ids.

Segment ids and direction
    The segment id is the feature's ``id``, else ``properties.id`` (numbers are turned into
    strings); a feature with neither is an error naming its index. ``oneway`` defaults to true;
    ``oneway: false`` adds the reverse segment ``"{id}-r"``.

Junctions
    Features connect where their endpoints coincide after rounding to 1e-7 degrees (about 1 cm);
    the node id is ``"lon,lat"`` with 7 decimals. Optional ``from_node``/``to_node`` properties
    name the junctions explicitly instead.

Properties (all optional)
    ``name`` (string), ``lanes`` (int ≥ 1, per direction; default ``DEFAULT_LANES`` of the class),
    ``road_class`` (one of ``expressway``/``arterial``/``secondary``/``branch``, or an OSM highway
    value mapped with the table in ``roadgraph.osm``; ``highway`` is read when ``road_class`` is
    absent; without either, the class follows ``speed_limit_kmh`` as for SUMO, else ``branch``),
    ``speed_limit_kmh`` (number > 0; default by class), ``oneway`` (bool), ``signalised`` (bool:
    the junction at the feature's last position has traffic signals, so every segment entering it
    has ``junction_signalised``).

Coordinates
    Taken as WGS84 lon/lat when every position has |x| ≤ 180 and |y| ≤ 90; otherwise the file is
    read as metric x/y (``has_lonlat`` false, node ids rounded to the millimetre). Lengths are
    geodesic metres on the WGS84 ellipsoid for lon/lat and planar metres otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from ._build import build_network
from .classes import OSM_HIGHWAY_CLASS, road_class_from_speed
from .errors import NetworkFileError
from .network import DEFAULT_LANES, DEFAULT_SPEED_LIMIT_KMH, ROAD_CLASS_CODE, ROAD_CLASSES, RoadNetwork
from .projection import LocalProjection, geodesic_distance_m

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


class _FeatureReader:
    """Validates one feature's properties, raising errors that name the file and the feature."""

    def __init__(self, path: Path, index: int, feature_id: str | None, props: dict[str, Any]) -> None:
        self.path = path
        self.where = f"feature #{index}" + (f" (id {feature_id!r})" if feature_id is not None else "")
        self.props = props

    def fail(self, problem: str) -> NetworkFileError:
        return NetworkFileError(str(self.path), f"{self.where}: {problem}")

    def string(self, key: str) -> str | None:
        value = self.props.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(f"property {key!r}: expected a string, got {value!r}")
        return str(value)

    def positive_number(self, key: str) -> float | None:
        value = self.props.get(key)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not np.isfinite(value)
            or value <= 0
        ):
            raise self.fail(f"property {key!r}: expected a number > 0, got {value!r}")
        return float(value)

    def lanes(self) -> int | None:
        value = self.props.get("lanes")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 1:
            raise self.fail(f"property 'lanes': expected an integer >= 1, got {value!r}")
        return int(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.props.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str | int) and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
        raise self.fail(f"property {key!r}: expected true or false, got {value!r}")

    def road_class(self, speed_kmh: float | None) -> str:
        for key in ("road_class", "highway"):
            value = self.string(key)
            if value is None:
                continue
            if value in ROAD_CLASS_CODE:
                return value
            if value in OSM_HIGHWAY_CLASS:
                return OSM_HIGHWAY_CLASS[value]
            raise self.fail(
                f"property {key!r}: {value!r} is neither a road class ({', '.join(ROAD_CLASSES)}) "
                "nor a drivable OSM highway value"
            )
        return road_class_from_speed(speed_kmh) if speed_kmh is not None else "branch"


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NetworkFileError(str(path), f"cannot read file as UTF-8 text: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise NetworkFileError(
            str(path), f"not valid JSON (column {exc.colno}): {exc.msg}", line=exc.lineno
        ) from None


def _coordinates(reader: _FeatureReader, geometry: Any) -> np.ndarray:
    if not isinstance(geometry, dict):
        raise reader.fail("expected a 'geometry' object with a LineString")
    kind = geometry.get("type")
    if kind == "MultiLineString":
        raise reader.fail(
            "MultiLineString is not supported; split it into LineString features with their own ids"
        )
    if kind != "LineString":
        raise reader.fail(f"geometry type {kind!r} is not supported, expected 'LineString'")
    coords = geometry.get("coordinates")
    if not isinstance(coords, list):
        raise reader.fail("LineString coordinates must be a list of [x, y] numbers")
    try:
        array = np.asarray([(float(p[0]), float(p[1])) for p in coords], dtype=np.float64)
    except (TypeError, ValueError, IndexError, KeyError):
        raise reader.fail("LineString coordinates must be a list of [x, y] numbers") from None
    if len(array) < 2 or not np.isfinite(array).all():
        raise reader.fail("LineString needs at least two finite positions")
    return array


def _node_key(x: float, y: float, lonlat: bool) -> tuple[str, float, float]:
    """Node id and rounded position of an endpoint (1e-7 degrees, or 1 mm in metric files)."""
    digits = 7 if lonlat else 3
    rx, ry = round(x, digits), round(y, digits)
    # `+ 0.0` turns a rounded -0.0 into 0.0 so the same point always gets the same id
    rx, ry = rx + 0.0, ry + 0.0
    return f"{rx:.{digits}f},{ry:.{digits}f}", rx, ry


def graph_from_geojson(path: str | Path) -> RoadNetwork:
    """Load a GeoJSON FeatureCollection of LineStrings as a RoadNetwork.

    See the module docstring for ids, direction, junctions, properties and coordinates. Raises
    ``NetworkFileError`` naming the file and the feature (index and id) for anything unusable.
    """
    path = Path(path)
    doc = _read_json(path)
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise NetworkFileError(str(path), 'expected a GeoJSON object with "type": "FeatureCollection"')
    features = doc.get("features")
    if not isinstance(features, list):
        raise NetworkFileError(str(path), "FeatureCollection has no 'features' array")

    rows: list[tuple[_FeatureReader, str, np.ndarray]] = []
    first_index: dict[str, int] = {}
    for index, feature in enumerate(features):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise NetworkFileError(str(path), f'feature #{index}: expected an object with "type": "Feature"')
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            raise NetworkFileError(str(path), f"feature #{index}: 'properties' must be an object")
        raw_id = feature.get("id")
        if raw_id is None:
            raw_id = props.get("id")
        if (
            raw_id is None
            or isinstance(raw_id, bool)
            or not isinstance(raw_id, str | int | float)
            or raw_id == ""
        ):
            raise NetworkFileError(
                str(path), f"feature #{index}: no segment id (expected the feature 'id' or properties.id)"
            )
        feature_id = str(raw_id)
        if feature_id in first_index:
            raise NetworkFileError(
                str(path),
                f"feature #{index}: id {feature_id!r} is already used by feature #{first_index[feature_id]}",
            )
        first_index[feature_id] = index
        reader = _FeatureReader(path, index, feature_id, props)
        rows.append((reader, feature_id, _coordinates(reader, feature.get("geometry"))))
    if not rows:
        raise NetworkFileError(str(path), "no drivable road segments found (the FeatureCollection is empty)")

    all_coords = np.concatenate([coords for _, _, coords in rows])
    lonlat = bool((np.abs(all_coords[:, 0]) <= 180.0).all() and (np.abs(all_coords[:, 1]) <= 90.0).all())

    seg_id: list[str] = []
    from_node: list[str] = []
    to_node: list[str] = []
    lanes: list[int] = []
    speed: list[float] = []
    road_class: list[int] = []
    name: list[str] = []
    lines: list[np.ndarray] = []
    nodes: dict[str, tuple[float, float]] = {}
    signal_nodes: set[str] = set()
    for reader, feature_id, coords in rows:
        ends = []
        for end, position in (("from_node", coords[0]), ("to_node", coords[-1])):
            key, x, y = _node_key(float(position[0]), float(position[1]), lonlat)
            explicit = reader.string(end)
            node = explicit if explicit is not None else key
            nodes.setdefault(node, (x, y))
            ends.append(node)
        speed_kmh = reader.positive_number("speed_limit_kmh")
        cls = reader.road_class(speed_kmh)
        n_lanes = reader.lanes() or DEFAULT_LANES[cls]
        speed_kmh = speed_kmh or DEFAULT_SPEED_LIMIT_KMH[cls]
        label = reader.string("name") or ""
        if reader.flag("signalised", False):
            signal_nodes.add(ends[1])
        directions = [(feature_id, ends[0], ends[1], coords)]
        if not reader.flag("oneway", True):
            directions.append((f"{feature_id}-r", ends[1], ends[0], coords[::-1]))
        for sid, u, v, line in directions:
            seg_id.append(sid)
            from_node.append(u)
            to_node.append(v)
            lanes.append(n_lanes)
            speed.append(speed_kmh)
            road_class.append(ROAD_CLASS_CODE[cls])
            name.append(label)
            lines.append(line)

    counts = np.fromiter((len(line) for line in lines), dtype=np.int64, count=len(lines))
    flat = np.concatenate(lines)
    part = np.repeat(np.arange(len(lines)), counts)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    geometry = shapely.linestrings(flat, indices=part)
    projection: LocalProjection | None = None
    if lonlat:
        step = geodesic_distance_m(flat[:-1, 0], flat[:-1, 1], flat[1:, 0], flat[1:, 1])
        cum = np.concatenate(([0.0], np.cumsum(step)))
        length = cum[starts + counts - 1] - cum[starts]
        projection = LocalProjection.around(flat[:, 0], flat[:, 1])
        x_m, y_m = projection.to_m(flat[:, 0], flat[:, 1])
        geometry_m = shapely.linestrings(np.column_stack((x_m, y_m)), indices=part)
    else:
        geometry_m = geometry
        length = shapely.length(geometry)
    node_ids = list(nodes)
    return build_network(
        segment_id=seg_id,
        from_node=from_node,
        to_node=to_node,
        length_m=length,
        lanes=lanes,
        road_class=road_class,
        speed_limit_kmh=speed,
        name=name,
        geometry=geometry,
        geometry_m=geometry_m,
        junction_signalised=[v in signal_nodes for v in to_node],
        node_id=node_ids,
        node_x=[nodes[n][0] for n in node_ids],
        node_y=[nodes[n][1] for n in node_ids],
        source=str(path),
        has_lonlat=lonlat,
        projection=projection,
        meta={"format": "geojson", "features": len(rows)},
    )
