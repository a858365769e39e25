"""OSM XML loader: real extracts, hand-made cases for cutting, direction, tags and errors."""

from __future__ import annotations

import bz2
import gzip
import itertools
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from roadgraph import (
    DEFAULT_LANES,
    DEFAULT_SPEED_LIMIT_KMH,
    ROAD_CLASSES,
    NetworkFileError,
    RoadNetwork,
    graph_from_osm,
    validate_network,
)
from roadgraph.osm import direction_lanes, is_drivable, oneway_directions, parse_lanes, parse_maxspeed_kmh

# --------------------------------------------------------------------------------------------
# Building small OSM files
# --------------------------------------------------------------------------------------------

#: ~0.001° of longitude at the equator is 111 m: nodes on a line along the equator, 111 m apart.
STEP_DEG = 0.001


def osm_xml(
    nodes: dict[int, tuple[float, float] | tuple[float, float, dict[str, str]]],
    ways: list[tuple[int, list[int], dict[str, str]]],
) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6">']
    for node_id, spec in nodes.items():
        lon, lat = spec[0], spec[1]
        tags = spec[2] if len(spec) == 3 else {}  # type: ignore[misc]
        if tags:
            lines.append(f'  <node id="{node_id}" lat="{lat}" lon="{lon}">')
            lines += [f'    <tag k="{k}" v="{v}"/>' for k, v in tags.items()]
            lines.append("  </node>")
        else:
            lines.append(f'  <node id="{node_id}" lat="{lat}" lon="{lon}"/>')
    for way_id, refs, tags in ways:
        lines.append(f'  <way id="{way_id}">')
        lines += [f'    <nd ref="{r}"/>' for r in refs]
        lines += [f'    <tag k="{k}" v="{v}"/>' for k, v in tags.items()]
        lines.append("  </way>")
    lines.append("</osm>")
    return "\n".join(lines) + "\n"


def line_nodes(n: int, *, start_id: int = 1, lat: float = 0.0) -> dict[int, tuple[float, float]]:
    return {start_id + i: (i * STEP_DEG, lat) for i in range(n)}


def load(write_file: Callable[[str, str], Path], nodes, ways) -> RoadNetwork:  # type: ignore[no-untyped-def]
    return graph_from_osm(write_file("t.osm", osm_xml(nodes, ways)))


def ids(network: RoadNetwork) -> list[str]:
    return [str(s) for s in network.segments.segment_id]


# --------------------------------------------------------------------------------------------
# Real extracts
# --------------------------------------------------------------------------------------------


def reference_step_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Ellipsoidal short-step distance written out in plain math (radii of curvature at mid-latitude)."""
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    phi = math.radians((lat1 + lat2) / 2)
    w = math.sqrt(1 - e2 * math.sin(phi) ** 2)
    east = a / w * math.cos(phi) * math.radians(lon2 - lon1)
    north = a * (1 - e2) / w**3 * math.radians(lat2 - lat1)
    return math.hypot(east, north)


def reference_drivable_length_m(path: Path) -> float:
    """Independent check: sum over drivable ways of (way length × directions), pure Python."""
    root = ET.fromstring(bz2.decompress(path.read_bytes()))
    coords = {n.get("id"): (float(n.get("lon", "")), float(n.get("lat", ""))) for n in root.iter("node")}
    total = 0.0
    for way in root.iter("way"):
        tags = {t.get("k", ""): t.get("v", "") for t in way.iter("tag")}
        if not is_drivable(tags):
            continue
        pts = [coords[nd.get("ref")] for nd in way.iter("nd") if nd.get("ref") in coords]
        length = sum(reference_step_m(*p, *q) for p, q in itertools.pairwise(pts))
        total += length * sum(oneway_directions(tags))
    return total


@pytest.mark.parametrize(
    ("fixture", "file", "segments", "signalised_min"),
    [
        ("aguascalientes", "aguascalientes.osm.bz2", (1000, 3000), 10),
        ("west_oakland", "West-Oakland.osm.bz2", (30, 150), 1),
    ],
)
def test_real_extracts_load_plausibly(
    request: pytest.FixtureRequest,
    data_dir: Path,
    fixture: str,
    file: str,
    segments: tuple[int, int],
    signalised_min: int,
) -> None:
    network: RoadNetwork = request.getfixturevalue(fixture)
    seg = network.segments
    assert segments[0] <= len(network) <= segments[1]
    validate_network(network)
    assert network.has_lonlat and network.projection is not None
    assert (seg.length_m > 0).all()
    assert int(seg.junction_signalised.sum()) >= signalised_min
    # every segment end is an OSM node id and the graph knows its lon/lat
    assert all(str(node).lstrip("-").isdigit() for node in network.graph.nodes)
    lon = [d["x"] for _, d in network.graph.nodes(data=True)]
    assert min(lon) >= -180 and max(lon) <= 180
    # no double counting or dropped pieces: total length equals an independent per-way sum
    assert seg.length_m.sum() == pytest.approx(reference_drivable_length_m(data_dir / "osm" / file), rel=1e-9)


def test_ids_are_stable_across_loads(data_dir: Path, aguascalientes: RoadNetwork) -> None:
    again = graph_from_osm(data_dir / "osm" / "aguascalientes.osm.bz2")
    assert list(again.segments.segment_id) == list(aguascalientes.segments.segment_id)
    assert list(again.segments.to_node) == list(aguascalientes.segments.to_node)
    assert np.array_equal(again.segments.length_m, aguascalientes.segments.length_m)


def test_west_oakland_known_street(west_oakland: RoadNetwork) -> None:
    seg = west_oakland.segments
    goss = [i for i in range(len(seg)) if seg.name[i] == "Goss Street"]
    assert goss, "Goss Street (way 6329561) should be in the extract"
    assert {str(seg.segment_id[i]) for i in goss} >= {"6329561-0", "6329561-0-r"}
    assert all(seg.road_class_name(i) == "branch" for i in goss)  # residential


def test_compressed_and_plain_files_give_the_same_network(tmp_path: Path, data_dir: Path) -> None:
    raw = bz2.decompress((data_dir / "osm" / "West-Oakland.osm.bz2").read_bytes())
    (tmp_path / "wo.osm").write_bytes(raw)
    (tmp_path / "wo.osm.gz").write_bytes(gzip.compress(raw))
    plain = graph_from_osm(tmp_path / "wo.osm")
    gz = graph_from_osm(tmp_path / "wo.osm.gz")
    bz = graph_from_osm(data_dir / "osm" / "West-Oakland.osm.bz2")
    assert list(plain.segments.segment_id) == list(gz.segments.segment_id) == list(bz.segments.segment_id)


# --------------------------------------------------------------------------------------------
# Cutting ways into segments
# --------------------------------------------------------------------------------------------


def test_way_is_cut_at_junctions_only(write_file: Callable[[str, str], Path]) -> None:
    # way 10: 1-2-3-4-5 along the equator; way 20 crosses it at node 3 going north (3-6);
    # node 2 and 4 are shape points only.
    nodes: dict = line_nodes(5)
    nodes[6] = (2 * STEP_DEG, STEP_DEG)
    network = load(
        write_file,
        nodes,
        [
            (10, [1, 2, 3, 4, 5], {"highway": "residential", "oneway": "yes"}),
            (20, [3, 6], {"highway": "residential", "oneway": "yes"}),
        ],
    )
    assert ids(network) == ["10-0", "10-1", "20-0"]
    seg = network.segments
    assert list(seg.from_node) == ["1", "3", "3"] and list(seg.to_node) == ["3", "5", "6"]
    assert seg.length_m[0] == pytest.approx(2 * 111.319491, rel=1e-6)  # two 0.001° steps on the equator
    assert len(seg.geometry[0].coords) == 3  # shape point 2 kept
    assert sorted(network.graph.nodes) == ["1", "3", "5", "6"]


def test_node_used_twice_by_one_way_is_a_junction(write_file: Callable[[str, str], Path]) -> None:
    # a "lollipop": 1-2-3-4-2, node 2 is visited twice
    nodes = {1: (0.0, 0.0), 2: (STEP_DEG, 0.0), 3: (2 * STEP_DEG, 0.0), 4: (1.5 * STEP_DEG, STEP_DEG)}
    network = load(write_file, nodes, [(10, [1, 2, 3, 4, 2], {"highway": "residential", "oneway": "yes"})])
    assert ids(network) == ["10-0", "10-1"]
    assert list(network.segments.from_node) == ["1", "2"] and list(network.segments.to_node) == ["2", "2"]


def test_closed_roundabout_is_one_way_loop(write_file: Callable[[str, str], Path]) -> None:
    nodes = {1: (0.0, 0.0), 2: (STEP_DEG, 0.0), 3: (STEP_DEG, STEP_DEG)}
    network = load(write_file, nodes, [(10, [1, 2, 3, 1], {"highway": "primary", "junction": "roundabout"})])
    assert ids(network) == ["10-0"]
    assert network.segments.from_node[0] == network.segments.to_node[0] == "1"


def test_clipped_way_is_cut_at_missing_nodes(write_file: Callable[[str, str], Path]) -> None:
    nodes: dict = line_nodes(6)
    del nodes[3]  # way passes outside the extract between 2 and 4
    network = load(write_file, nodes, [(10, [1, 2, 3, 4, 5, 6], {"highway": "secondary", "oneway": "yes"})])
    assert ids(network) == ["10-0", "10-1"]
    assert list(network.segments.to_node) == ["2", "6"]
    assert network.meta["missing_node_refs"] == 1


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"highway": "residential"}, ["10-0", "10-0-r"]),
        ({"highway": "residential", "oneway": "yes"}, ["10-0"]),
        ({"highway": "residential", "oneway": "true"}, ["10-0"]),
        ({"highway": "residential", "oneway": "1"}, ["10-0"]),
        ({"highway": "residential", "oneway": "-1"}, ["10-0-r"]),
        ({"highway": "residential", "oneway": "no"}, ["10-0", "10-0-r"]),
        ({"highway": "residential", "oneway": "reversible"}, ["10-0", "10-0-r"]),
        ({"highway": "motorway"}, ["10-0"]),
        ({"highway": "motorway_link"}, ["10-0"]),
        ({"highway": "motorway", "oneway": "no"}, ["10-0", "10-0-r"]),
        ({"highway": "tertiary", "junction": "roundabout"}, ["10-0"]),
        ({"highway": "trunk"}, ["10-0", "10-0-r"]),
    ],
)
def test_oneway(write_file: Callable[[str, str], Path], tags: dict[str, str], expected: list[str]) -> None:
    network = load(write_file, line_nodes(3), [(10, [1, 2, 3], tags)])
    assert ids(network) == expected
    seg = network.segments
    for i, sid in enumerate(expected):
        forward = not sid.endswith("-r")
        assert (seg.from_node[i], seg.to_node[i]) == (("1", "3") if forward else ("3", "1"))
        assert seg.geometry[i].coords[0] == ((0.0, 0.0) if forward else (2 * STEP_DEG, 0.0))


# --------------------------------------------------------------------------------------------
# Which ways, and their tags
# --------------------------------------------------------------------------------------------

ROAD_CLASS_TABLE = [
    ("motorway", "expressway"),
    ("motorway_link", "expressway"),
    ("trunk", "expressway"),
    ("trunk_link", "expressway"),
    ("primary", "arterial"),
    ("primary_link", "arterial"),
    ("secondary", "secondary"),
    ("secondary_link", "secondary"),
    ("tertiary", "secondary"),
    ("tertiary_link", "branch"),
    ("unclassified", "branch"),
    ("residential", "branch"),
    ("living_street", "branch"),
]


@pytest.mark.parametrize(("highway", "road_class"), ROAD_CLASS_TABLE)
def test_road_class_mapping(write_file: Callable[[str, str], Path], highway: str, road_class: str) -> None:
    network = load(write_file, line_nodes(2), [(10, [1, 2], {"highway": highway, "oneway": "yes"})])
    assert network.segments.road_class_name(0) == road_class
    assert network.segments.speed_limit_kmh[0] == DEFAULT_SPEED_LIMIT_KMH[road_class]
    assert network.segments.lanes[0] == DEFAULT_LANES[road_class]


@pytest.mark.parametrize(
    "tags",
    [
        {"highway": h}
        for h in (
            "service",
            "track",
            "footway",
            "path",
            "pedestrian",
            "cycleway",
            "steps",
            "construction",
            "proposed",
        )
    ]
    + [
        {"highway": "residential", "access": "private"},
        {"highway": "residential", "access": "no"},
        {"highway": "residential", "motor_vehicle": "no"},
        {"highway": "residential", "area": "yes"},
        {"building": "yes"},
    ],
)
def test_non_drivable_ways_are_not_segments(
    write_file: Callable[[str, str], Path], tags: dict[str, str]
) -> None:
    assert not is_drivable(tags)
    with pytest.raises(NetworkFileError, match="no drivable road segments"):
        load(write_file, line_nodes(2), [(10, [1, 2], tags)])


def test_specific_access_tag_wins() -> None:
    assert is_drivable({"highway": "residential", "access": "no", "motor_vehicle": "yes"})
    assert is_drivable({"highway": "residential", "access": "destination"})


@pytest.mark.parametrize(
    ("value", "kmh"),
    [
        ("50", 50.0),
        ("30 mph", 30 * 1.609344),
        ("30mph", 30 * 1.609344),
        ("60 km/h", 60.0),
        ("45 kph", 45.0),
        ("10 knots", 18.52),
        ("50;30", 50.0),
        ("RU:urban", None),
        ("DE:zone30", None),
        ("none", None),
        ("signals", None),
        ("walk", None),
        ("0", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_maxspeed(value: str | None, kmh: float | None) -> None:
    result = parse_maxspeed_kmh(value)
    assert result == (pytest.approx(kmh) if kmh is not None else None)


@pytest.mark.parametrize(
    ("value", "lanes"),
    [("2", 2), ("2;3", 2), ("1.5", 1), ("0", None), ("-1", None), ("two", None), ("", None), (None, None)],
)
def test_parse_lanes(value: str | None, lanes: int | None) -> None:
    assert parse_lanes(value) == lanes


@pytest.mark.parametrize(
    ("tags", "one_way", "forward", "backward"),
    [
        ({"highway": "primary", "lanes": "4"}, False, 2, 2),
        ({"highway": "primary", "lanes": "3"}, False, 1, 1),
        ({"highway": "primary", "lanes": "1"}, False, 1, 1),
        ({"highway": "primary", "lanes": "3", "lanes:forward": "2"}, False, 2, 1),
        ({"highway": "primary", "lanes:forward": "3", "lanes:backward": "1"}, False, 3, 1),
        ({"highway": "primary", "lanes": "3"}, True, 3, 3),
        ({"highway": "primary"}, False, DEFAULT_LANES["arterial"], DEFAULT_LANES["arterial"]),
        ({"highway": "residential", "lanes": "x"}, False, DEFAULT_LANES["branch"], DEFAULT_LANES["branch"]),
    ],
)
def test_direction_lanes(tags: dict[str, str], one_way: bool, forward: int, backward: int) -> None:
    assert direction_lanes(tags, forward=True, one_way=one_way) == forward
    assert direction_lanes(tags, forward=False, one_way=one_way) == backward


def test_tags_reach_the_segments(write_file: Callable[[str, str], Path]) -> None:
    tags = {
        "highway": "primary",
        "lanes": "5",
        "lanes:backward": "2",
        "maxspeed": "50",
        "maxspeed:backward": "30 mph",
        "ref": "MEX 45",
    }
    network = load(write_file, line_nodes(2), [(10, [1, 2], tags)])
    seg = network.segments
    assert list(seg.lanes) == [3, 2]
    assert list(seg.speed_limit_kmh) == pytest.approx([50.0, 30 * 1.609344])
    assert list(seg.name) == ["MEX 45", "MEX 45"]  # no name: ref


# --------------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal_node", "forward", "backward"),
    [
        (5, True, False),  # at the forward segment's downstream junction
        (1, False, True),  # at the reverse segment's downstream junction
        (4, False, False),  # 111 m before the end: too far
    ],
)
def test_signalised_junctions(
    write_file: Callable[[str, str], Path], signal_node: int, forward: bool, backward: bool
) -> None:
    nodes: dict = line_nodes(5)
    nodes[signal_node] = (*nodes[signal_node], {"highway": "traffic_signals"})
    network = load(write_file, nodes, [(10, [1, 2, 3, 4, 5], {"highway": "primary"})])
    assert list(network.segments.junction_signalised) == [forward, backward]


def test_signal_on_stop_line_near_the_junction_counts(write_file: Callable[[str, str], Path]) -> None:
    # node 4 sits 20 m before node 5 (0.00018° ≈ 20 m on the equator)
    nodes = {1: (0.0, 0.0), 4: (0.00382, 0.0, {"highway": "traffic_signals"}), 5: (0.004, 0.0)}
    network = load(write_file, nodes, [(10, [1, 4, 5], {"highway": "primary"})])
    assert list(network.segments.junction_signalised) == [True, False]
    tighter = graph_from_osm(network.source, signal_lookback_m=10.0)
    assert list(tighter.segments.junction_signalised) == [False, False]


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_bad_xml_names_file_and_line(write_file: Callable[[str, str], Path]) -> None:
    path = write_file("bad.osm", '<?xml version="1.0"?>\n<osm>\n  <node id="1" lat="0" lon="0">\n</osm>\n')
    with pytest.raises(NetworkFileError) as err:
        graph_from_osm(path)
    assert str(err.value).startswith(f"{path}:4: not well-formed XML")
    assert err.value.line == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<notosm/>", "root element is <notosm>, expected <osm>"),
        (
            '<osm><node id="1" lat="north" lon="0"/></osm>',
            "<node id='1'>: expected an integer id and numeric lat/lon",
        ),
        ('<osm><node id="1" lat="95" lon="0"/></osm>', "<node id='1'>: lat/lon (95.0, 0.0) out of range"),
        (
            '<osm><way id="w1"><nd ref="1"/><tag k="highway" v="primary"/></way></osm>',
            "<way id='w1'>: expected an integer id",
        ),
        ("", "not well-formed XML"),
    ],
)
def test_malformed_osm(write_file: Callable[[str, str], Path], text: str, message: str) -> None:
    path = write_file("bad.osm", text)
    with pytest.raises(NetworkFileError) as err:
        graph_from_osm(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_truncated_bz2_is_reported(tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "cut.osm.bz2"
    path.write_bytes((data_dir / "osm" / "West-Oakland.osm.bz2").read_bytes()[:5000])
    with pytest.raises(NetworkFileError, match=str(path)):
        graph_from_osm(path)


def test_road_classes_constant_is_the_gbt_order() -> None:
    assert ROAD_CLASSES == ("expressway", "arterial", "secondary", "branch")
