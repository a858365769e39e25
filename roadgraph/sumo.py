"""Load SUMO networks (``.net.xml``, ``.net.xml.gz``) as a RoadNetwork.

Segments
    **The segment id is the SUMO edge id.** Edges with ``function`` ``internal`` (the ``:...``
    edges inside junctions), ``walkingarea``, ``crossing`` or ``connector`` (zone connectors) are
    not segments, and neither are edges none of whose lanes admits ``passenger`` vehicles (per the
    lane's ``allow``/``disallow``; a lane with neither admits everything). ``from_node``/``to_node``
    are the edge's ``from``/``to`` junction ids.

Attributes
    ``lanes``: the lanes that admit passenger cars (lane 0 = the rightmost such lane; SUMO's own lane
    indices, which count sidewalks and bus lanes too, are kept in ``meta["sumo_lanes"]``).
    ``length_m``: the mean ``length`` of those lanes. ``speed_limit_kmh``: their highest ``speed``
    × 3.6. ``name``: the edge's ``name`` (``""`` when absent). ``junction_signalised``: the ``to``
    junction's type is ``traffic_light``, ``traffic_light_unregulated`` or
    ``traffic_light_right_on_red``.

Road class
    From the edge ``type`` when it is an OSM type (``highway.primary`` → arterial, using the table
    in ``roadgraph.osm``; in a compound type ``a|b`` the first mapped part wins), else from the speed
    limit: ≥ 70 km/h expressway, ≥ 55 arterial, ≥ 40 secondary, else branch.

Geometry and projection
    ``geometry_m`` is the network's own x/y: the edge's ``shape`` when it has one, else the shape of
    its middle passenger lane. This is the frame SUMO positions (detector ``pos``) refer to. When
    ``<location projParameter>`` is a ``+proj=utm`` (or ``+proj=tmerc``) string, ``geometry`` and the
    junction ``x``/``y`` are lon/lat, computed from ``(x - netOffsetX, y - netOffsetY)`` with the
    Transverse Mercator inverse in ``roadgraph.projection``; ``RoadNetwork.projection`` maps lon/lat
    back to network x/y (offset included). With ``projParameter="!"`` the network has no lon/lat:
    ``geometry`` is the metric shape and ``has_lonlat`` is false. Other projections are rejected.
"""

from __future__ import annotations

import gzip
import xml.parsers.expat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from ._build import build_network
from .classes import OSM_HIGHWAY_CLASS, road_class_from_speed
from .errors import NetworkFileError
from .network import ROAD_CLASS_CODE, RoadNetwork
from .projection import TransverseMercator, parse_proj_string

#: Edge functions that are not road segments.
SKIPPED_EDGE_FUNCTIONS: frozenset[str] = frozenset({"internal", "walkingarea", "crossing", "connector"})
#: Junction types whose approaches are controlled by traffic signals.
SIGNAL_JUNCTION_TYPES: frozenset[str] = frozenset(
    {"traffic_light", "traffic_light_unregulated", "traffic_light_right_on_red"}
)


@dataclass
class _Lane:
    sumo_index: int
    admits_cars: bool
    speed_mps: float
    length_m: float
    shape: str


@dataclass
class _Edge:
    attrs: dict[str, str]
    line: int
    lanes: list[_Lane] = field(default_factory=list)


@dataclass
class _SumoData:
    location: dict[str, str] | None = None
    edges: list[_Edge] = field(default_factory=list)
    junctions: dict[str, tuple[str, float, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # edge id -> why it is not a segment
    #: (from edge, to edge, fromLane, toLane) of every connection between two non-internal edges
    connections: list[tuple[str, str, int, int]] = field(default_factory=list)


def admits_passenger(allow: str | None, disallow: str | None) -> bool:
    """Whether a SUMO lane with these ``allow``/``disallow`` attributes admits ``passenger`` cars."""
    if allow is not None:
        classes = allow.split()
        return "all" in classes or "passenger" in classes
    if disallow is not None:
        classes = disallow.split()
        return "all" not in classes and "passenger" not in classes
    return True


class _NetReader:
    """Streams a .net.xml through expat, keeping only locations, normal edges and junctions.

    expat calls ``start`` for each element without building a tree, which matters here: a
    100,000-edge network is a ~250 MB file with ~2.5 M elements, most of them internal lanes and
    connections that are skipped after one dictionary lookup. Lanes only occur inside edges, so an
    edge is complete when the next one starts, and no end-element handler is needed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = _SumoData()
        self.parser = xml.parsers.expat.ParserCreate()
        self.parser.StartElementHandler = self.start
        self.seen_root = False
        self.edge: _Edge | None = None  # the normal edge whose lanes are being read

    def fail(self, problem: str) -> NetworkFileError:
        return NetworkFileError(str(self.path), problem, line=self.parser.CurrentLineNumber)

    def number(self, what: str, value: str | None) -> float:
        try:
            return float(value or "")
        except ValueError:
            raise self.fail(f"{what}: expected a number, got {value!r}") from None

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "lane":
            if self.edge is not None:
                self.edge.lanes.append(self.lane(self.edge, attrs))
            return
        if not self.seen_root:
            if tag != "net":
                raise self.fail(f"root element is <{tag}>, expected <net>")
            self.seen_root = True
            return
        if tag == "edge":
            self.edge = None
            edge_id = attrs.get("id")
            if not edge_id:
                raise self.fail("<edge> without an id attribute")
            function = attrs.get("function", "normal")
            if function in SKIPPED_EDGE_FUNCTIONS:
                self.data.skipped[edge_id] = f"function={function}"
                return
            self.edge = _Edge(attrs=attrs, line=self.parser.CurrentLineNumber)
            self.data.edges.append(self.edge)
        elif tag == "junction":
            self.edge = None
            if attrs.get("type") != "internal":
                jid = attrs.get("id", "")
                x = self.number(f"<junction id={jid!r}> x", attrs.get("x"))
                y = self.number(f"<junction id={jid!r}> y", attrs.get("y"))
                self.data.junctions[jid] = (attrs.get("type", ""), x, y)
        elif tag == "location":
            self.data.location = attrs
        elif tag == "connection":
            self.edge = None
            src, dst = attrs.get("from", ""), attrs.get("to", "")
            if src and dst and not src.startswith(":") and not dst.startswith(":"):
                where = f"<connection from={src!r} to={dst!r}>"
                self.data.connections.append(
                    (
                        src,
                        dst,
                        int(self.number(f"{where} fromLane", attrs.get("fromLane"))),
                        int(self.number(f"{where} toLane", attrs.get("toLane"))),
                    )
                )

    def lane(self, edge: _Edge, attrs: dict[str, str]) -> _Lane:
        where = f"<lane id={attrs.get('id')!r}> of edge {edge.attrs['id']!r}"
        return _Lane(
            sumo_index=int(self.number(f"{where} index", attrs.get("index"))),
            admits_cars=admits_passenger(attrs.get("allow"), attrs.get("disallow")),
            speed_mps=self.number(f"{where} speed", attrs.get("speed")),
            length_m=self.number(f"{where} length", attrs.get("length")),
            shape=attrs.get("shape", ""),
        )

    def read(self) -> _SumoData:
        opener = gzip.open if self.path.name.lower().endswith(".gz") else open
        try:
            with opener(self.path, "rb") as stream:
                self.parser.ParseFile(stream)
        except xml.parsers.expat.ExpatError as exc:
            problem = xml.parsers.expat.ErrorString(exc.code)
            raise NetworkFileError(
                str(self.path), f"not well-formed XML (column {exc.offset}): {problem}", line=exc.lineno
            ) from None
        except (OSError, EOFError) as exc:
            raise NetworkFileError(str(self.path), f"cannot read file: {exc}") from None
        for edge in self.data.edges:
            if not edge.lanes:
                raise NetworkFileError(
                    str(self.path), f"<edge id={edge.attrs['id']!r}> has no <lane> children", line=edge.line
                )
            edge.lanes.sort(key=lambda lane: lane.sumo_index)
        return self.data


def _parse_shape(path: Path, line: int, what: str, shape: str) -> np.ndarray:
    """``"x,y x,y ..."`` (optionally ``x,y,z``) as an (n, 2) float array of at least two points."""
    try:
        points = [tuple(float(v) for v in point.split(",")[:2]) for point in shape.split()]
        coords = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    except ValueError:
        raise NetworkFileError(
            str(path), f"{what}: shape {shape[:60]!r} is not 'x,y x,y ...'", line=line
        ) from None
    if len(coords) < 2:
        raise NetworkFileError(
            str(path), f"{what}: shape needs at least two points, got {shape!r}", line=line
        )
    return coords


def _road_class(edge_type: str, speed_kmh: float) -> str:
    for part in edge_type.split("|"):
        kind, _, value = part.partition(".")
        if kind == "highway" and value in OSM_HIGHWAY_CLASS:
            return OSM_HIGHWAY_CLASS[value]
    return road_class_from_speed(speed_kmh)


def _projection(path: Path, location: dict[str, str] | None) -> TransverseMercator | None:
    if location is None:
        return None
    proj = location.get("projParameter", "!").strip()
    if proj in ("!", ""):
        return None
    offset_text = location.get("netOffset", "0,0")
    try:
        dx, dy = (float(v) for v in offset_text.split(","))
    except ValueError:
        raise NetworkFileError(str(path), f"<location netOffset={offset_text!r}>: expected 'x,y'") from None
    try:
        return parse_proj_string(proj).with_offset(dx, dy)
    except ValueError as exc:
        raise NetworkFileError(
            str(path),
            f"<location projParameter={proj!r}>: {exc}; re-export with netconvert --proj.utm",
        ) from None


def graph_from_sumo(path: str | Path) -> RoadNetwork:
    """Load a SUMO ``.net.xml`` (or ``.net.xml.gz``) as a RoadNetwork; segment ids are edge ids.

    See the module docstring for what becomes a segment and how attributes, road classes and the
    projection are read. ``meta`` records ``skipped_edges`` (edge id → reason) and ``sumo_lanes``
    (edge id → ``{sumo_lane_index: (car_lane_index or -1, lane_length_m)}``), which the detector
    loader uses to turn SUMO lane ids into segment lanes, and ``sumo_connections``: the sorted
    ``(from_edge, to_edge)`` pairs of ``<connection>`` elements joining a car lane of one segment to
    a car lane of another — the turns a car may make (``roadgraph.turns``). Raises
    ``NetworkFileError`` for unreadable or malformed files, unsupported projections and networks
    without a car-usable edge.
    """
    path = Path(path)
    data = _NetReader(path).read()
    projection = _projection(path, data.location)

    seg_id: list[str] = []
    from_node: list[str] = []
    to_node: list[str] = []
    length: list[float] = []
    lanes: list[int] = []
    speed: list[float] = []
    road_class: list[int] = []
    name: list[str] = []
    coords: list[np.ndarray] = []
    signalised: list[bool] = []
    sumo_lanes: dict[str, dict[int, tuple[int, float]]] = {}
    for edge in data.edges:
        attrs, edge_lanes = edge.attrs, edge.lanes
        edge_id = attrs["id"]
        car_lanes = [lane for lane in edge_lanes if lane.admits_cars]
        car_index = {lane.sumo_index: k for k, lane in enumerate(car_lanes)}
        sumo_lanes[edge_id] = {
            lane.sumo_index: (car_index.get(lane.sumo_index, -1), lane.length_m) for lane in edge_lanes
        }
        if not car_lanes:
            data.skipped[edge_id] = "an edge without lanes for passenger cars"
            continue
        ends = []
        for end in ("from", "to"):
            junction = attrs.get(end)
            if junction is None or junction not in data.junctions:
                raise NetworkFileError(
                    str(path),
                    f"<edge id={edge_id!r}> {end}={junction!r} is not a <junction> in the file",
                    line=edge.line,
                )
            ends.append(junction)
        speed_kmh = max(lane.speed_mps for lane in car_lanes) * 3.6
        shape = attrs.get("shape") or car_lanes[len(car_lanes) // 2].shape
        seg_id.append(edge_id)
        from_node.append(ends[0])
        to_node.append(ends[1])
        length.append(sum(lane.length_m for lane in car_lanes) / len(car_lanes))
        lanes.append(len(car_lanes))
        speed.append(speed_kmh)
        road_class.append(ROAD_CLASS_CODE[_road_class(attrs.get("type", ""), speed_kmh)])
        name.append(attrs.get("name", ""))
        coords.append(_parse_shape(path, edge.line, f"<edge id={edge_id!r}>", shape))
        signalised.append(data.junctions[ends[1]][0] in SIGNAL_JUNCTION_TYPES)
    # turns a car can make: a connection from a car lane of a segment to a car lane of a segment
    kept = set(seg_id)
    car_connections = sorted(
        {
            (src, dst)
            for src, dst, from_lane, to_lane in data.connections
            if src in kept
            and dst in kept
            and sumo_lanes[src].get(from_lane, (-1, 0.0))[0] >= 0
            and sumo_lanes[dst].get(to_lane, (-1, 0.0))[0] >= 0
        }
    )
    if not seg_id:
        raise NetworkFileError(
            str(path),
            f"no drivable road segments found ({len(data.edges) + len(data.skipped)} edges, none a normal "
            "edge with a lane admitting passenger cars)",
        )

    counts = np.fromiter((len(c) for c in coords), dtype=np.int64, count=len(coords))
    flat = np.concatenate(coords)
    part = np.repeat(np.arange(len(coords)), counts)
    geometry_m = shapely.linestrings(flat, indices=part)
    node_ids = sorted(set(from_node) | set(to_node))
    node_xy = np.asarray([data.junctions[j][1:] for j in node_ids], dtype=np.float64)
    if projection is not None:
        lon, lat = projection.to_lonlat(flat[:, 0], flat[:, 1])
        geometry = shapely.linestrings(np.column_stack((lon, lat)), indices=part)
        node_x, node_y = projection.to_lonlat(node_xy[:, 0], node_xy[:, 1])
    else:
        geometry = geometry_m
        node_x, node_y = node_xy[:, 0], node_xy[:, 1]
    location = data.location or {}
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
        junction_signalised=signalised,
        node_id=node_ids,
        node_x=node_x,
        node_y=node_y,
        source=str(path),
        has_lonlat=projection is not None,
        projection=projection,
        meta={
            "format": "sumo",
            "proj_parameter": location.get("projParameter", "!"),
            "net_offset": location.get("netOffset", "0,0"),
            "skipped_edges": data.skipped,
            "sumo_lanes": sumo_lanes,
            "sumo_connections": car_connections,
        },
    )
