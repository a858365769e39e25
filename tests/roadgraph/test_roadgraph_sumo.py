"""SUMO .net.xml loader: committed grid and projected networks, sumolib as reference, errors."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import shapely

from roadgraph import (
    NetworkFileError,
    RoadNetwork,
    graph_from_osm,
    graph_from_sumo,
    haversine_m,
    validate_network,
)
from roadgraph.sumo import admits_passenger

sumolib = pytest.importorskip("sumolib")


def test_grid_segments_are_the_normal_edges(sumo_grid: RoadNetwork, data_dir: Path) -> None:
    validate_network(sumo_grid)
    net = sumolib.net.readNet(str(data_dir / "sumo" / "grid3.net.xml"), withInternal=True)
    normal = sorted(e.getID() for e in net.getEdges() if e.getFunction() == "")
    assert sorted(sumo_grid.segments.segment_id) == normal
    assert len(normal) == 24  # 3 × 3 grid: 12 streets, both directions
    skipped = sumo_grid.meta["skipped_edges"]
    assert {why for why in skipped.values()} == {
        "function=internal",
        "function=walkingarea",
        "function=crossing",
    }
    assert not any(sid.startswith(":") for sid in sumo_grid.segments.segment_id)


def test_grid_attributes_match_sumolib(sumo_grid: RoadNetwork, data_dir: Path) -> None:
    net = sumolib.net.readNet(str(data_dir / "sumo" / "grid3.net.xml"))
    seg = sumo_grid.segments
    for i, sid in enumerate(seg.segment_id):
        edge = net.getEdge(sid)
        car_lanes = [lane for lane in edge.getLanes() if lane.allows("passenger")]
        assert seg.lanes[i] == len(car_lanes) == 1  # the sidewalk (lane 0) is not counted
        assert seg.from_node[i] == edge.getFromNode().getID()
        assert seg.to_node[i] == edge.getToNode().getID()
        assert seg.length_m[i] == pytest.approx(np.mean([lane.getLength() for lane in car_lanes]))
        assert seg.speed_limit_kmh[i] == pytest.approx(edge.getSpeed() * 3.6, rel=1e-6)
        assert seg.junction_signalised[i] == (edge.getToNode().getType() == "traffic_light")
        # no edge shape in a netgenerate grid: the car lane's shape
        assert np.allclose(np.asarray(seg.geometry_m[i].coords), np.asarray(car_lanes[0].getShape()))


def test_grid_without_projection_keeps_metric_xy(sumo_grid: RoadNetwork) -> None:
    assert not sumo_grid.has_lonlat
    assert sumo_grid.projection is None
    assert sumo_grid.graph.graph["crs"] == "local-metric"
    assert sumo_grid.graph.nodes["B1"]["x"] == 200.0 and sumo_grid.graph.nodes["B1"]["y"] == 200.0
    assert all(
        a.equals(b) for a, b in zip(sumo_grid.segments.geometry, sumo_grid.segments.geometry_m, strict=True)
    )
    signalised = {
        str(s)
        for s, sig in zip(sumo_grid.segments.segment_id, sumo_grid.segments.junction_signalised, strict=True)
        if sig
    }
    assert signalised == {"A1B1", "B0B1", "B2B1", "C1B1"}  # the approaches of B1, the one traffic light
    # speed 13.89 m/s = 50 km/h and no type: class from speed
    assert {sumo_grid.segments.road_class_name(i) for i in range(len(sumo_grid))} == {"secondary"}


def test_projected_network_is_converted_to_lonlat(
    sumo_oakland: RoadNetwork, west_oakland: RoadNetwork
) -> None:
    validate_network(sumo_oakland)
    assert sumo_oakland.has_lonlat and sumo_oakland.graph.graph["crs"] == "EPSG:4326"
    # SUMO junction ids are OSM node ids: their lon/lat must match the OSM file's within centimetres
    # (netconvert rounds coordinates to 1 cm)
    common = [n for n in sumo_oakland.graph.nodes if n in west_oakland.graph.nodes]
    assert len(common) >= 10
    a = np.array([(sumo_oakland.graph.nodes[n]["x"], sumo_oakland.graph.nodes[n]["y"]) for n in common])
    b = np.array([(west_oakland.graph.nodes[n]["x"], west_oakland.graph.nodes[n]["y"]) for n in common])
    # junction positions move by up to a lane width or so when netconvert joins/offsets them
    error_m = haversine_m(a[:, 0], a[:, 1], b[:, 0], b[:, 1])
    assert np.median(error_m) < 0.05
    # geometry (lon/lat) and geometry_m (network x/y) are the same lines through the projection
    projection = sumo_oakland.projection
    assert projection is not None
    for i in range(0, len(sumo_oakland), 7):
        lonlat = np.asarray(sumo_oakland.segments.geometry[i].coords)
        xy = np.asarray(sumo_oakland.segments.geometry_m[i].coords)
        x, y = projection.to_m(lonlat[:, 0], lonlat[:, 1])
        assert np.allclose(np.column_stack((x, y)), xy, atol=1e-6)


def test_projected_network_classes_and_lanes(sumo_oakland: RoadNetwork) -> None:
    seg = sumo_oakland.segments
    classes = {seg.road_class_name(i) for i in range(len(seg))}
    assert classes <= {"secondary", "branch"}  # the extract has secondary, residential, unclassified
    assert "secondary" in classes and "branch" in classes
    skipped = sumo_oakland.meta["skipped_edges"]
    assert "an edge without lanes for passenger cars" in skipped.values()  # footways, cycleways, subway
    assert seg.junction_signalised.any()
    assert sumo_oakland.meta["proj_parameter"].startswith("+proj=utm +zone=10")


def test_segment_id_is_the_edge_id_even_with_hash(sumo_oakland: RoadNetwork) -> None:
    assert any("#" in str(s) for s in sumo_oakland.segments.segment_id)
    assert all(
        sumo_oakland.segments.index_of[str(s)] == i for i, s in enumerate(sumo_oakland.segments.segment_id)
    )


@pytest.mark.parametrize(
    ("allow", "disallow", "admits"),
    [
        (None, None, True),
        ("pedestrian", None, False),
        ("pedestrian bicycle", None, False),
        ("passenger bus", None, True),
        ("all", None, True),
        (None, "pedestrian", True),
        (None, "passenger taxi", False),
        (None, "all", False),
    ],
)
def test_admits_passenger(allow: str | None, disallow: str | None, admits: bool) -> None:
    assert admits_passenger(allow, disallow) is admits


def _net(edges: str, *, location: str = '<location netOffset="0.00,0.00" projParameter="!"/>') -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<net version="1.20">\n'
        f"    {location}\n{edges}\n"
        '    <junction id="J0" type="priority" x="0.00" y="0.00"/>\n'
        '    <junction id="J1" type="traffic_light" x="100.00" y="0.00"/>\n'
        "</net>\n"
    )


def _edge(edge_id: str, *, attrs: str = "", lanes: list[str] | None = None) -> str:
    lanes = lanes or ['speed="13.89" length="100.00" shape="0,0 100,0"']
    body = "\n".join(f'        <lane id="{edge_id}_{k}" index="{k}" {spec}/>' for k, spec in enumerate(lanes))
    return f'    <edge id="{edge_id}" from="J0" to="J1" {attrs}>\n{body}\n    </edge>'


@pytest.mark.parametrize(
    ("edge_type", "speed_mps", "road_class"),
    [
        ("highway.motorway", "13.89", "expressway"),
        ("highway.primary", "27.78", "arterial"),
        ("highway.tertiary", "27.78", "secondary"),
        ("highway.residential|highway.service", "27.78", "branch"),
        ("highway.service", "5.56", "branch"),
        ("", "22.22", "expressway"),  # 80 km/h
        ("", "16.67", "arterial"),  # 60 km/h
        ("", "13.89", "secondary"),  # 50 km/h
        ("", "8.33", "branch"),  # 30 km/h
        ("railway.rail", "19.44", "arterial"),  # not a highway type; 69.98 km/h -> arterial
    ],
)
def test_sumo_road_class(
    write_file: Callable[[str, str], Path], edge_type: str, speed_mps: str, road_class: str
) -> None:
    attrs = f'type="{edge_type}"' if edge_type else ""
    lane = f'speed="{speed_mps}" length="100.00" shape="0,0 100,0"'
    network = graph_from_sumo(write_file("t.net.xml", _net(_edge("E", attrs=attrs, lanes=[lane]))))
    assert network.segments.road_class_name(0) == road_class


def test_lanes_length_speed_and_shape(write_file: Callable[[str, str], Path]) -> None:
    lanes = [
        'allow="pedestrian" speed="2.78" length="99.00" shape="0,-6 99,-6"',
        'disallow="pedestrian" speed="13.89" length="100.00" shape="0,-4.8 100,-4.8"',
        'speed="16.67" length="102.00" shape="0,-1.6 102,-1.6"',
        'allow="bus" speed="13.89" length="101.00" shape="0,1.6 101,1.6"',
    ]
    network = graph_from_sumo(
        write_file("t.net.xml", _net(_edge("E", attrs='name="Main St" shape="0,0 50,5 100,0"', lanes=lanes)))
    )
    seg = network.segments
    assert seg.lanes[0] == 2
    assert seg.length_m[0] == pytest.approx(101.0)
    assert seg.speed_limit_kmh[0] == pytest.approx(16.67 * 3.6)
    assert seg.name[0] == "Main St"
    assert list(seg.geometry_m[0].coords) == [(0, 0), (50, 5), (100, 0)]  # the edge shape wins
    assert seg.junction_signalised[0]
    assert network.meta["sumo_lanes"]["E"] == {0: (-1, 99.0), 1: (0, 100.0), 2: (1, 102.0), 3: (-1, 101.0)}


def test_middle_car_lane_shape_without_edge_shape(write_file: Callable[[str, str], Path]) -> None:
    lanes = [f'speed="13.89" length="100.00" shape="0,{y} 100,{y}"' for y in (-8, -4.8, -1.6)]
    network = graph_from_sumo(write_file("t.net.xml", _net(_edge("E", lanes=lanes))))
    assert list(network.segments.geometry_m[0].coords) == [(0, -4.8), (100, -4.8)]


def test_utm_location_converts_with_net_offset(write_file: Callable[[str, str], Path]) -> None:
    # UTM 51N: (121.55 E, 29.87 N) is x=359961.3504, y=3305263.0758 (pyproj); netOffset shifts it to 0,0
    location = (
        '<location netOffset="-359961.35,-3305263.08" '
        'projParameter="+proj=utm +zone=51 +ellps=WGS84 +datum=WGS84 +units=m +no_defs"/>'
    )
    network = graph_from_sumo(write_file("t.net.xml", _net(_edge("E"), location=location)))
    lon, lat = network.segments.geometry[0].coords[0]
    assert haversine_m(lon, lat, 121.55, 29.87) < 0.01
    assert network.graph.nodes["J0"]["x"] == pytest.approx(lon)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<network/>", "root element is <network>, expected <net>"),
        ("<net><edge id='E' from='J0' to='J1'></edge></net>", "<edge id='E'> has no <lane> children"),
        (
            _net(_edge("E", lanes=['speed="fast" length="100" shape="0,0 1,1"'])),
            "<lane id='E_0'> of edge 'E' speed: expected a number, got 'fast'",
        ),
        (
            _net(_edge("E", lanes=['speed="10" length="100" shape="0,0"'])),
            "<edge id='E'>: shape needs at least two points",
        ),
        (
            _net(_edge("E", lanes=['allow="pedestrian" speed="1" length="100" shape="0,0 1,1"'])),
            "no drivable road segments found",
        ),
        (
            _net(_edge("E").replace('to="J1"', 'to="J9"')),
            "<edge id='E'> to='J9' is not a <junction> in the file",
        ),
        (
            _net(
                _edge("E"),
                location='<location netOffset="0,0" projParameter="+proj=lcc +lat_1=30 +ellps=WGS84"/>',
            ),
            "projection +proj=lcc is not supported",
        ),
        (
            _net(
                _edge("E"),
                location='<location netOffset="0,0" projParameter="+proj=utm +zone=51 +ellps=intl"/>',
            ),
            "ellipsoid/datum 'intl' is not supported",
        ),
        ("<net>\n<edge id='E'>\n</net>", "not well-formed XML"),
    ],
)
def test_malformed_sumo(write_file: Callable[[str, str], Path], text: str, message: str) -> None:
    path = write_file("bad.net.xml", text)
    with pytest.raises(NetworkFileError) as err:
        graph_from_sumo(path)
    assert str(err.value).startswith(str(path))
    assert message in str(err.value)


def test_bad_xml_line_number(write_file: Callable[[str, str], Path]) -> None:
    path = write_file("bad.net.xml", "<net>\n  <edge id='E'>\n    <lane id='E_0'\n</net>\n")
    with pytest.raises(NetworkFileError) as err:
        graph_from_sumo(path)
    assert err.value.line == 4


def test_gzipped_and_plain_load_alike(tmp_path: Path, data_dir: Path, sumo_oakland: RoadNetwork) -> None:
    plain = tmp_path / "wo.net.xml"
    plain.write_bytes(gzip.decompress((data_dir / "sumo" / "west_oakland.net.xml.gz").read_bytes()))
    again = graph_from_sumo(plain)
    assert list(again.segments.segment_id) == list(sumo_oakland.segments.segment_id)
    assert shapely.equals_exact(again.segments.geometry, sumo_oakland.segments.geometry, tolerance=0).all()


# --------------------------------------------------------------------------------------------
# Against freshly generated networks (needs the SUMO binaries)
# --------------------------------------------------------------------------------------------


def _sumo_binary(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else shutil.which(name)


@pytest.mark.sumo
@pytest.mark.skipif(_sumo_binary("netgenerate") is None, reason="netgenerate (eclipse-sumo) not installed")
def test_netgenerate_grid(tmp_path: Path) -> None:
    out = tmp_path / "grid.net.xml"
    subprocess.run(
        [str(_sumo_binary("netgenerate")), "--grid", "--grid.number=4", "--grid.length=200", "-o", str(out)],
        check=True,
        capture_output=True,
    )
    network = graph_from_sumo(out)
    assert len(network) == 2 * (4 * 3 * 2)  # 24 streets, both directions
    assert (network.segments.length_m > 150).all()


@pytest.mark.sumo
@pytest.mark.skipif(_sumo_binary("netconvert") is None, reason="netconvert (eclipse-sumo) not installed")
def test_netconvert_from_osm_matches_osm_loader_geography(tmp_path: Path, data_dir: Path) -> None:
    import bz2

    osm = tmp_path / "wo.osm"
    osm.write_bytes(bz2.decompress((data_dir / "osm" / "West-Oakland.osm.bz2").read_bytes()))
    out = tmp_path / "wo.net.xml"
    subprocess.run(
        [str(_sumo_binary("netconvert")), "--osm-files", str(osm), "-o", str(out)],
        check=True,
        capture_output=True,
    )
    sumo_net = graph_from_sumo(out)
    osm_net = graph_from_osm(osm)
    assert sumo_net.has_lonlat
    # the same roads: every SUMO segment midpoint lies within 10 m of an OSM-loaded segment
    projection = osm_net.projection
    assert projection is not None
    mids = shapely.line_interpolate_point(sumo_net.segments.geometry, 0.5, normalized=True)
    x, y = projection.to_m(shapely.get_x(mids), shapely.get_y(mids))
    tree = shapely.STRtree(osm_net.segments.geometry_m)
    _, distance = tree.query_nearest(shapely.points(x, y), return_distance=True, all_matches=False)
    assert np.max(distance) < 10.0
