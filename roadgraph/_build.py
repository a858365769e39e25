"""Assemble a RoadNetwork from loader columns, and the one validator of its invariants.

Graph attributes (documented once, here; every loader goes through ``build_network``):

* ``graph.graph``: ``crs`` (``"EPSG:4326"`` for lon/lat networks, ``"local-metric"`` otherwise) and
  ``source`` (the path or name the network came from);
* nodes: junction ids (str) with ``x``/``y`` floats (lon/lat in degrees, or metres);
* edges: one per segment, keyed by ``segment_id``, with ``index`` (row in ``RoadNetwork.segments``)
  and ``length_m``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import networkx as nx
import numpy as np
import shapely

from .errors import NetworkFileError
from .network import ROAD_CLASSES, RoadNetwork, SegmentTable
from .projection import Projection

#: Segments shorter than this (duplicate coordinates in the source) get this length, so that travel
#: times stay positive without cutting the graph apart where the source has a degenerate piece.
MIN_SEGMENT_LENGTH_M = 0.1


def build_network(
    *,
    segment_id: Sequence[str] | np.ndarray,
    from_node: Sequence[str] | np.ndarray,
    to_node: Sequence[str] | np.ndarray,
    length_m: Sequence[float] | np.ndarray,
    lanes: Sequence[int] | np.ndarray,
    road_class: Sequence[int] | np.ndarray,
    speed_limit_kmh: Sequence[float] | np.ndarray,
    name: Sequence[str] | np.ndarray,
    geometry: np.ndarray,
    geometry_m: np.ndarray,
    junction_signalised: Sequence[bool] | np.ndarray,
    node_id: Sequence[str] | np.ndarray,
    node_x: Sequence[float] | np.ndarray,
    node_y: Sequence[float] | np.ndarray,
    source: str,
    has_lonlat: bool,
    projection: Projection | None,
    meta: dict[str, Any] | None = None,
) -> RoadNetwork:
    """Build the segment table and graph; ``NetworkFileError`` (naming ``source``) when empty or invalid.

    ``road_class`` holds codes into ``ROAD_CLASSES``. Lengths below ``MIN_SEGMENT_LENGTH_M`` are
    raised to it (and counted in ``meta["short_segments_padded"]``).
    """
    n = len(segment_id)
    if n == 0:
        raise NetworkFileError(source, "no drivable road segments found")
    ids = np.asarray(segment_id, dtype=object)
    seen: set[str] = set()
    for sid in ids:
        if sid in seen:
            raise NetworkFileError(source, f"segment id {sid!r} occurs more than once")
        seen.add(sid)
    length = np.asarray(length_m, dtype=np.float64)
    short = ~(length >= MIN_SEGMENT_LENGTH_M)  # also catches NaN
    meta = dict(meta or {})
    meta["short_segments_padded"] = int(short.sum())
    length = np.where(short, MIN_SEGMENT_LENGTH_M, length)

    segments = SegmentTable(
        segment_id=ids,
        from_node=np.asarray(from_node, dtype=object),
        to_node=np.asarray(to_node, dtype=object),
        length_m=length,
        lanes=np.asarray(lanes, dtype=np.int16),
        road_class=np.asarray(road_class, dtype=np.int8),
        speed_limit_kmh=np.asarray(speed_limit_kmh, dtype=np.float32),
        name=np.asarray(name, dtype=object),
        geometry=np.asarray(geometry, dtype=object),
        geometry_m=np.asarray(geometry_m, dtype=object),
        junction_signalised=np.asarray(junction_signalised, dtype=bool),
    )

    graph = nx.MultiDiGraph(crs="EPSG:4326" if has_lonlat else "local-metric", source=source)
    node_x_list = np.asarray(node_x, dtype=np.float64).tolist()
    node_y_list = np.asarray(node_y, dtype=np.float64).tolist()
    graph.add_nodes_from(
        (nid, {"x": x, "y": y}) for nid, x, y in zip(node_id, node_x_list, node_y_list, strict=True)
    )
    graph.add_edges_from(
        (u, v, sid, {"index": i, "length_m": ln})
        for i, (u, v, sid, ln) in enumerate(
            zip(segments.from_node, segments.to_node, ids, length.tolist(), strict=True)
        )
    )
    network = RoadNetwork(
        graph=graph,
        segments=segments,
        source=source,
        has_lonlat=has_lonlat,
        meta=meta,
        projection=projection,
    )
    problems = network_problems(network)
    if problems:
        raise NetworkFileError(source, "invalid network: " + "; ".join(problems[:5]))
    return network


def network_problems(network: RoadNetwork) -> list[str]:
    """Every violated invariant of ``network``, as readable sentences (empty when valid).

    Checked: positive finite lengths and speed limits, at least one lane, known road-class codes,
    one non-empty LineString per segment in both geometry columns, every endpoint a graph node
    with ``x``/``y``, and exactly one graph edge per segment pointing back at its row.
    """
    seg = network.segments
    problems: list[str] = []

    def first_bad(mask: np.ndarray, what: str) -> None:
        bad = np.flatnonzero(mask)
        if bad.size:
            problems.append(f"{bad.size} segment(s) with {what}, e.g. {seg.segment_id[bad[0]]!r}")

    first_bad(~(np.isfinite(seg.length_m) & (seg.length_m > 0)), "length_m not > 0")
    first_bad(~(np.isfinite(seg.speed_limit_kmh) & (seg.speed_limit_kmh > 0)), "speed_limit_kmh not > 0")
    first_bad(seg.lanes < 1, "lanes < 1")
    first_bad((seg.road_class < 0) | (seg.road_class >= len(ROAD_CLASSES)), "an unknown road_class code")
    for column in ("geometry", "geometry_m"):
        geoms = getattr(seg, column)
        ok = shapely.get_type_id(geoms) == shapely.GeometryType.LINESTRING
        ok &= shapely.get_num_points(geoms) >= 2
        first_bad(~ok, f"{column} not a LineString of >= 2 points")
    graph = network.graph
    if graph.number_of_edges() != len(seg):
        problems.append(f"graph has {graph.number_of_edges()} edges for {len(seg)} segments")
    for end in ("from_node", "to_node"):
        missing = [node for node in set(getattr(seg, end)) if node not in graph.nodes]
        if missing:
            problems.append(f"{len(missing)} {end} junction(s) missing from the graph, e.g. {missing[0]!r}")
    if any("x" not in data or "y" not in data for _, data in graph.nodes(data=True)):
        problems.append("graph nodes without x/y")
    for u, v, key, index in graph.edges(keys=True, data="index"):
        if (
            index is None
            or seg.segment_id[index] != key
            or seg.from_node[index] != u
            or seg.to_node[index] != v
        ):
            problems.append(f"graph edge {u!r}->{v!r} key {key!r} does not match its segment row {index}")
            break
    return problems


def validate_network(network: RoadNetwork) -> None:
    """Raise ``ValueError`` listing every violated invariant of ``network`` (see ``network_problems``)."""
    problems = network_problems(network)
    if problems:
        raise ValueError("invalid RoadNetwork: " + "; ".join(problems))
