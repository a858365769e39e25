"""Load OpenStreetMap XML (``.osm``, ``.osm.bz2``, ``.osm.gz``) as a RoadNetwork.

Which ways are roads
    Ways tagged with a drivable ``highway`` value (the table below) become segments, unless tagged
    ``area=yes`` or closed to cars: the most specific of ``motorcar``, ``motor_vehicle``,
    ``vehicle``, ``access`` that is present is ``no`` or ``private``.

Road classes (GB/T 33171; the same table serves SUMO edge types and GeoJSON ``road_class``):

================================================  ==============
OSM ``highway``                                   road class
================================================  ==============
motorway, motorway_link, trunk, trunk_link        expressway 快速路
primary, primary_link                             arterial 主干路
secondary, secondary_link, tertiary               secondary 次干路
tertiary_link, unclassified, residential,         branch 支路
living_street
================================================  ==============

Everything else (service, track, footway, path, pedestrian, cycleway, steps, bridleway, busway,
construction, proposed, …) is not a segment. See ``roadgraph.classes`` for the speed-based fallback
that SUMO uses.

Segments
    A way is cut at junctions: nodes used by two or more drivable ways (or twice by one way), and
    the way's ends. A way whose nodes are not all in the file (an extract clipped at its boundary)
    is cut where nodes are missing; each part's ends count as way ends. Piece ``k`` (0-based along
    the way's node order, counting across such gaps) yields segment ``"{way_id}-{k}"`` in the way's
    direction and ``"{way_id}-{k}-r"`` against it. Ids are therefore stable for the same file.
    Node ids are the OSM node ids as strings; ``x``/``y`` are lon/lat.

Direction (``oneway``)
    ``yes``/``true``/``1``: forward only; ``-1``/``reverse``: only the ``-r`` segment;
    ``no``/``false``/``0``: both. ``reversible`` and ``alternating`` (direction changes over the
    day) are treated as two-way: both directions exist at some time, and closures carry the rest.
    Without a ``oneway`` tag, ``highway=motorway``/``motorway_link`` and
    ``junction=roundabout``/``circular`` are one-way; everything else is two-way.

Lanes (per direction)
    One-way: ``lanes``, else ``lanes:forward``/``lanes:backward`` of the travelled direction.
    Two-way: ``lanes:forward``/``lanes:backward``; else ``lanes`` minus the other direction's count
    when that one is tagged; else ``max(1, lanes // 2)``. Without any usable tag, or with a value
    that is not a positive number, ``DEFAULT_LANES`` of the class. ``"2;3"`` reads as the first
    value.

Speed limit
    ``maxspeed:forward``/``maxspeed:backward``, else ``maxspeed``: a number in km/h, or with a unit
    (``km/h``, ``kmh``, ``kph``, ``mph``, ``knots``). Implicit or symbolic values (``RU:urban``,
    ``DE:zone30``, ``none``, ``signals``, ``walk``, …) and unparsable ones give
    ``DEFAULT_SPEED_LIMIT_KMH`` of the class: roadpulse measures free flow, so the limit only seeds it.

Signals
    ``junction_signalised`` is true when the segment's downstream junction, or a node on the
    segment within ``signal_lookback_m`` (30 m) before it, is tagged ``highway=traffic_signals``
    (OSM maps signals either on the junction node or on each approach's stop line).

Length
    Geodesic metres on the WGS84 ellipsoid, summed over the segment's consecutive nodes
    (``roadgraph.projection.geodesic_distance_m``). A plain haversine sum was the first idea, but the
    sphere is off by up to 0.56 % — it skews travel times and the positions detectors are placed at —
    while the ellipsoidal short-step formula is exact to 1e-6 for steps up to 10 km.
"""

from __future__ import annotations

import bz2
import gzip
import io
import re
import xml.etree.ElementTree as ET
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from ._build import build_network
from .classes import OSM_HIGHWAY_CLASS
from .errors import NetworkFileError
from .network import DEFAULT_LANES, DEFAULT_SPEED_LIMIT_KMH, ROAD_CLASS_CODE, RoadNetwork
from .projection import LocalProjection, geodesic_distance_m

#: Drivable ``highway`` values (the keys of the road-class table).
DRIVABLE_HIGHWAYS: frozenset[str] = frozenset(OSM_HIGHWAY_CLASS)

_ONEWAY_FORWARD = {"yes", "true", "1"}
_ONEWAY_BACKWARD = {"-1", "reverse"}
_TWO_WAY = {"no", "false", "0", "reversible", "alternating"}
_IMPLIED_ONEWAY_HIGHWAYS = {"motorway", "motorway_link"}
_ROUNDABOUT_JUNCTIONS = {"roundabout", "circular"}
_CLOSED_ACCESS = {"no", "private"}
_ACCESS_KEYS = ("motorcar", "motor_vehicle", "vehicle", "access")

_SPEED_UNITS = {"": 1.0, "km/h": 1.0, "kmh": 1.0, "kph": 1.0, "mph": 1.609344, "knots": 1.852}
_SPEED_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(km/h|kmh|kph|mph|knots)?\s*$", re.IGNORECASE)


def parse_maxspeed_kmh(value: str | None) -> float | None:
    """A ``maxspeed`` tag in km/h, or ``None`` when it is absent, symbolic or not plausible.

    ``"50"`` → 50, ``"30 mph"`` → 48.28, ``"50;30"`` → 50 (first value), ``"RU:urban"`` → None,
    ``"none"`` → None. Values outside (0, 300] km/h are treated as errors in the map (None).
    """
    if value is None:
        return None
    first = value.split(";")[0]
    m = _SPEED_RE.match(first)
    if m is None:
        return None
    speed = float(m.group(1)) * _SPEED_UNITS[(m.group(2) or "").lower()]
    return speed if 0.0 < speed <= 300.0 else None


def parse_lanes(value: str | None) -> int | None:
    """A lane count tag as a positive int, or ``None`` (absent, ``0``, or not a number).

    ``"2"`` → 2, ``"2;3"`` → 2 (first value), ``"1.5"`` → 1.
    """
    if value is None:
        return None
    first = value.split(";")[0].strip()
    try:
        lanes = int(float(first))
    except ValueError:
        return None
    return lanes if lanes >= 1 else None


def oneway_directions(tags: dict[str, str]) -> tuple[bool, bool]:
    """``(forward, backward)``: which directions a way with these tags can be driven in."""
    value = tags.get("oneway", "").strip().lower()
    if value in _ONEWAY_FORWARD:
        return True, False
    if value in _ONEWAY_BACKWARD:
        return False, True
    if value in _TWO_WAY:
        return True, True
    if tags.get("highway") in _IMPLIED_ONEWAY_HIGHWAYS or tags.get("junction") in _ROUNDABOUT_JUNCTIONS:
        return True, False
    return True, True


def direction_lanes(tags: dict[str, str], *, forward: bool, one_way: bool) -> int:
    """Lanes in one direction of a way (see the module docstring), defaulting by road class."""
    own_key, other_key = (
        ("lanes:forward", "lanes:backward") if forward else ("lanes:backward", "lanes:forward")
    )
    total = parse_lanes(tags.get("lanes"))
    own = parse_lanes(tags.get(own_key))
    if one_way:
        lanes = total if total is not None else own
    elif own is not None:
        lanes = own
    elif total is not None:
        other = parse_lanes(tags.get(other_key))
        lanes = total - other if other is not None and total - other >= 1 else max(1, total // 2)
    else:
        lanes = None
    if lanes is None:
        lanes = DEFAULT_LANES[OSM_HIGHWAY_CLASS[tags["highway"]]]
    return lanes


def direction_speed_kmh(tags: dict[str, str], *, forward: bool) -> float:
    """Speed limit in one direction of a way, defaulting by road class."""
    speed = parse_maxspeed_kmh(tags.get("maxspeed:forward" if forward else "maxspeed:backward"))
    if speed is None:
        speed = parse_maxspeed_kmh(tags.get("maxspeed"))
    if speed is None:
        speed = DEFAULT_SPEED_LIMIT_KMH[OSM_HIGHWAY_CLASS[tags["highway"]]]
    return speed


def is_drivable(tags: dict[str, str]) -> bool:
    """Whether a way with these tags is a road segment for roadpulse (see the module docstring)."""
    if tags.get("highway") not in DRIVABLE_HIGHWAYS or tags.get("area") == "yes":
        return False
    for key in _ACCESS_KEYS:
        if key in tags:
            return tags[key] not in _CLOSED_ACCESS
    return True


@dataclass
class _OsmData:
    """What the parser keeps: node coordinates, signal nodes and drivable ways."""

    node_row: dict[int, int]
    lon: array[float]
    lat: array[float]
    signals: set[int]
    ways: list[tuple[int, list[int], dict[str, str]]]
    ways_seen: int
    #: ``type=restriction`` relations, as kept in ``meta["turn_restrictions"]`` (see graph_from_osm)
    restrictions: list[dict[str, object]] = field(default_factory=list)


def _open_osm(path: Path) -> io.BufferedIOBase:
    name = path.name.lower()
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def _parse(path: Path) -> _OsmData:
    """Stream the file once; elements are cleared as soon as they are read to bound memory."""
    data = _OsmData(node_row={}, lon=array("d"), lat=array("d"), signals=set(), ways=[], ways_seen=0)
    root: ET.Element | None = None
    try:
        with _open_osm(path) as stream:
            for event, elem in ET.iterparse(stream, events=("start", "end")):
                if root is None:
                    root = elem
                    if root.tag != "osm":
                        raise NetworkFileError(str(path), f"root element is <{root.tag}>, expected <osm>")
                    continue
                if event != "end":
                    continue
                tag = elem.tag
                if tag == "node":
                    _read_node(path, elem, data)
                elif tag == "way":
                    _read_way(path, elem, data)
                elif tag == "relation":
                    _read_restriction(elem, data)
                if tag in ("node", "way", "relation"):
                    # drop the finished element (and its <tag>/<nd> children) from the tree
                    root.clear()
    except ET.ParseError as exc:
        line, column = exc.position
        raise NetworkFileError(
            str(path), f"not well-formed XML (column {column}): {exc.msg}", line=line
        ) from None
    except (OSError, EOFError) as exc:
        # bz2/gzip report truncated or corrupt archives as OSError/EOFError
        raise NetworkFileError(str(path), f"cannot read file: {exc}") from None
    if root is None:
        raise NetworkFileError(str(path), "empty file, expected OSM XML")
    return data


def _deleted(elem: ET.Element) -> bool:
    return elem.get("action") == "delete" or elem.get("visible") == "false"


def _read_node(path: Path, elem: ET.Element, data: _OsmData) -> None:
    if _deleted(elem):
        return
    raw_id = elem.get("id")
    try:
        node_id = int(raw_id or "")
        lat = float(elem.get("lat") or "")
        lon = float(elem.get("lon") or "")
    except ValueError:
        raise NetworkFileError(
            str(path), f"<node id={raw_id!r}>: expected an integer id and numeric lat/lon"
        ) from None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise NetworkFileError(str(path), f"<node id={raw_id!r}>: lat/lon ({lat}, {lon}) out of range")
    data.node_row[node_id] = len(data.lon)
    data.lon.append(lon)
    data.lat.append(lat)
    for child in elem:
        if child.tag == "tag" and child.get("k") == "highway" and child.get("v") == "traffic_signals":
            data.signals.add(node_id)


def _read_way(path: Path, elem: ET.Element, data: _OsmData) -> None:
    data.ways_seen += 1
    if _deleted(elem):
        return
    tags = {child.get("k", ""): child.get("v", "") for child in elem if child.tag == "tag"}
    if not is_drivable(tags):
        return
    raw_id = elem.get("id")
    try:
        way_id = int(raw_id or "")
        refs = [int(child.get("ref") or "") for child in elem if child.tag == "nd"]
    except ValueError:
        raise NetworkFileError(
            str(path), f"<way id={raw_id!r}>: expected an integer id and <nd ref> values"
        ) from None
    # a node repeated consecutively adds no geometry and would make a zero-length piece
    refs = [r for i, r in enumerate(refs) if i == 0 or r != refs[i - 1]]
    data.ways.append((way_id, refs, tags))


def _read_restriction(elem: ET.Element, data: _OsmData) -> None:
    """Keep a turn restriction relation's kind and members; ``roadgraph.turns`` applies it."""
    if _deleted(elem):
        return
    tags = {child.get("k", ""): child.get("v", "") for child in elem if child.tag == "tag"}
    if tags.get("type") != "restriction":
        return
    kind = tags.get("restriction:motorcar") or tags.get("restriction")
    if not kind:
        return  # only conditional or other vehicles' restrictions
    members: dict[str, list[str]] = {"from_ways": [], "via_nodes": [], "via_ways": [], "to_ways": []}
    for child in elem:
        if child.tag != "member":
            continue
        role, kind_of_member, ref = child.get("role"), child.get("type"), child.get("ref", "")
        if role in ("from", "to") and kind_of_member == "way":
            members[f"{role}_ways"].append(ref)
        elif role == "via":
            members["via_nodes" if kind_of_member == "node" else "via_ways"].append(ref)
    data.restrictions.append(
        {"id": elem.get("id", ""), "restriction": kind, "except": tags.get("except", ""), **members}
    )


def graph_from_osm(path: str | Path, *, signal_lookback_m: float = 30.0) -> RoadNetwork:
    """Load an OSM XML file (plain, ``.bz2`` or ``.gz``) as a RoadNetwork of directed segments.

    ``signal_lookback_m`` is how far before a segment's downstream junction a
    ``highway=traffic_signals`` node still marks the junction as signalised. See the module
    docstring for which ways are kept, how they are cut, and how tags are read. Raises
    ``NetworkFileError`` for unreadable or malformed files and for files with no drivable road.
    ``meta`` records ``ways``, ``drivable_ways``, ``missing_node_refs``, ``signal_nodes`` and
    ``turn_restrictions``: one dict per ``type=restriction`` relation (``id``, ``restriction`` — the
    ``restriction:motorcar`` value when tagged, else ``restriction`` —, ``except``, and the member
    refs as strings in ``from_ways``, ``via_nodes``, ``via_ways``, ``to_ways``), which
    ``roadgraph.turns`` turns into forbidden transitions.
    """
    path = Path(path)
    data = _parse(path)
    node_row = data.node_row
    lon_all = np.frombuffer(data.lon, dtype=np.float64) if len(data.lon) else np.zeros(0)
    lat_all = np.frombuffer(data.lat, dtype=np.float64) if len(data.lat) else np.zeros(0)

    uses: Counter[int] = Counter()
    for _, refs, _tags in data.ways:
        # a closed way lists its first node again at the end: that is one use, not two
        uses.update(refs[:-1] if len(refs) > 1 and refs[0] == refs[-1] else refs)

    # One piece per row; points of all pieces concatenated in `flat_rows` (rows into the node arrays).
    flat_rows: list[int] = []
    flat_ids: list[int] = []
    piece_start: list[int] = []
    piece_way: list[int] = []  # index into data.ways
    piece_k: list[int] = []
    missing_refs = 0

    def emit(run: list[int], w: int, k: int) -> int:
        """Record `run` as piece `k` of way `w` if it has two or more nodes; the next piece index."""
        if len(run) < 2:
            return k
        piece_start.append(len(flat_rows))
        piece_way.append(w)
        piece_k.append(k)
        flat_ids.extend(run)
        flat_rows.extend(node_row[r] for r in run)
        return k + 1

    for w, (_, refs, _tags) in enumerate(data.ways):
        k = 0
        run: list[int] = []
        for ref in refs:
            if ref not in node_row:
                # clipped extract: end the piece at the last node we have, resume after the gap
                missing_refs += 1
                k = emit(run, w, k)
                run = []
                continue
            run.append(ref)
            if len(run) > 1 and uses[ref] >= 2:
                k = emit(run, w, k)
                run = [ref]
        emit(run, w, k)
    n_pieces = len(piece_start)
    if n_pieces == 0:
        raise NetworkFileError(
            str(path),
            f"no drivable road segments found ({data.ways_seen} ways, {len(data.ways)} with a drivable "
            f"highway tag; expected highway={'/'.join(sorted(DRIVABLE_HIGHWAYS))} with their nodes)",
        )

    rows = np.asarray(flat_rows, dtype=np.int64)
    lon = lon_all[rows]
    lat = lat_all[rows]
    starts = np.asarray(piece_start, dtype=np.int64)
    ends = np.append(starts[1:], len(rows))  # exclusive
    step = geodesic_distance_m(lon[:-1], lat[:-1], lon[1:], lat[1:])
    cum = np.concatenate(([0.0], np.cumsum(step)))
    # cum includes bogus jumps between pieces, but they cancel in differences within a piece
    piece_of_point = np.repeat(np.arange(n_pieces), ends - starts)
    piece_length = cum[ends - 1] - cum[starts]
    is_signal = np.fromiter((i in data.signals for i in flat_ids), dtype=bool, count=len(flat_ids))
    to_end = cum[ends - 1][piece_of_point] - cum
    to_start = cum - cum[starts][piece_of_point]
    sig_forward = np.logical_or.reduceat(is_signal & (to_end <= signal_lookback_m), starts)
    sig_backward = np.logical_or.reduceat(is_signal & (to_start <= signal_lookback_m), starts)

    projection = LocalProjection.around(lon, lat)
    x, y = projection.to_m(lon, lat)
    geom_fwd = shapely.linestrings(np.column_stack((lon, lat)), indices=piece_of_point)
    geom_m_fwd = shapely.linestrings(np.column_stack((x, y)), indices=piece_of_point)

    seg_piece: list[int] = []
    seg_forward: list[bool] = []
    seg_id: list[str] = []
    lanes: list[int] = []
    speed: list[float] = []
    road_class: list[int] = []
    name: list[str] = []
    way_cache: dict[int, tuple[bool, bool, str, int]] = {}
    for p in range(n_pieces):
        w = piece_way[p]
        way_id, _, tags = data.ways[w]
        if w not in way_cache:
            fwd, bwd = oneway_directions(tags)
            label = tags.get("name") or tags.get("ref") or ""
            way_cache[w] = (fwd, bwd, label, ROAD_CLASS_CODE[OSM_HIGHWAY_CLASS[tags["highway"]]])
        fwd, bwd, label, cls = way_cache[w]
        for forward, present in ((True, fwd), (False, bwd)):
            if not present:
                continue
            seg_piece.append(p)
            seg_forward.append(forward)
            seg_id.append(f"{way_id}-{piece_k[p]}" if forward else f"{way_id}-{piece_k[p]}-r")
            lanes.append(direction_lanes(tags, forward=forward, one_way=not (fwd and bwd)))
            speed.append(direction_speed_kmh(tags, forward=forward))
            road_class.append(cls)
            name.append(label)

    sp = np.asarray(seg_piece, dtype=np.int64)
    fw = np.asarray(seg_forward, dtype=bool)
    first_id = np.asarray(flat_ids, dtype=np.int64)[starts]
    last_id = np.asarray(flat_ids, dtype=np.int64)[ends - 1]
    from_osm = np.where(fw, first_id[sp], last_id[sp])
    to_osm = np.where(fw, last_id[sp], first_id[sp])
    geometry = np.where(fw, geom_fwd[sp], shapely.reverse(geom_fwd[sp]))
    geometry_m = np.where(fw, geom_m_fwd[sp], shapely.reverse(geom_m_fwd[sp]))
    signalised = np.where(fw, sig_forward[sp], sig_backward[sp])

    junctions = np.unique(np.concatenate((from_osm, to_osm)))
    junction_rows = np.fromiter((node_row[int(j)] for j in junctions), dtype=np.int64, count=len(junctions))
    return build_network(
        segment_id=seg_id,
        from_node=from_osm.astype(str).astype(object),
        to_node=to_osm.astype(str).astype(object),
        length_m=piece_length[sp],
        lanes=lanes,
        road_class=road_class,
        speed_limit_kmh=speed,
        name=name,
        geometry=geometry,
        geometry_m=geometry_m,
        junction_signalised=signalised,
        node_id=junctions.astype(str).astype(object),
        node_x=lon_all[junction_rows],
        node_y=lat_all[junction_rows],
        source=str(path),
        has_lonlat=True,
        projection=projection,
        meta={
            "format": "osm",
            "ways": data.ways_seen,
            "drivable_ways": len(data.ways),
            "missing_node_refs": missing_refs,
            "signal_nodes": len(data.signals),
            "turn_restrictions": data.restrictions,
            # Every OSM node of every segment, for feeds keyed by OSM node pairs (the OSRM traffic
            # CSV): segment i runs over node_ids[piece_start[p]:piece_end[p]] with
            # p = segment_piece[i], reversed where segment_forward[i] is false.
            "osm_nodes": {
                "node_ids": np.asarray(flat_ids, dtype=np.int64),
                "piece_start": starts,
                "piece_end": ends,
                "segment_piece": sp,
                "segment_forward": fw,
            },
        },
    )
