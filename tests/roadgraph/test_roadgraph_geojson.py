"""GeoJSON loader and the ``load_network`` dispatcher."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from roadgraph import NetworkFileError, RoadNetwork, graph_from_geojson, load_network, validate_network


def feature(fid: Any, coords: list[list[float]], **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Feature", "geometry": {"type": "LineString", "coordinates": coords}}
    if fid is not None:
        out["id"] = fid
    out["properties"] = props
    return out


def collection(*features: dict[str, Any]) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


def test_small_fixture(data_dir: Path) -> None:
    network = graph_from_geojson(data_dir / "geojson" / "small.geojson")
    validate_network(network)
    seg = network.segments
    assert list(seg.segment_id) == ["main-1", "main-1-r", "side-1", "7"]
    assert network.has_lonlat and network.projection is not None
    main, main_r, side, seven = range(4)
    assert seg.name[main] == seg.name[main_r] == "Zhongshan Rd"
    assert seg.lanes[main] == seg.lanes[main_r] == 3  # lanes are per direction
    assert seg.road_class_name(main) == "arterial"
    assert seg.speed_limit_kmh[main] == 60.0
    assert seg.road_class_name(side) == "branch"  # "residential" mapped through the OSM table
    assert seg.road_class_name(seven) == "expressway"  # no class: 80 km/h implies expressway
    assert seg.lanes[seven] == 3  # default lanes of an expressway
    # features sharing an end position share a junction; the reverse segment runs the other way
    assert seg.to_node[main] == seg.from_node[side] == "121.5540000,29.8700000"
    assert seg.from_node[main_r] == seg.to_node[main]
    assert seg.to_node[side] == seg.from_node[seven]
    # "signalised" marks the junction at the feature's end: every segment entering it is signalised
    assert list(seg.junction_signalised) == [True, False, False, False]
    # 0.004° of longitude at 29.87° N; PROJ's geodesic gives 966.1179 m for 0.01°
    assert seg.length_m[main] == pytest.approx(966.1179 * 0.4, rel=1e-5)


def test_metric_coordinates(write_file: Callable[[str, str], Path]) -> None:
    path = write_file(
        "m.geojson",
        collection(feature("a", [[500000.0, 3300000.0], [500100.0, 3300000.0]], oneway=False)),
    )
    network = graph_from_geojson(path)
    assert not network.has_lonlat and network.projection is None
    assert list(network.segments.length_m) == [100.0, 100.0]
    assert network.segments.from_node[0] == "500000.000,3300000.000"


def test_explicit_junction_ids(write_file: Callable[[str, str], Path]) -> None:
    path = write_file(
        "n.geojson",
        collection(
            feature("a", [[0.0, 0.0], [0.001, 0.0]], from_node="J1", to_node="J2"),
            feature("b", [[0.001, 0.00001], [0.002, 0.0]], from_node="J2", to_node="J3"),
        ),
    )
    network = graph_from_geojson(path)
    assert list(network.segments.to_node) == ["J2", "J3"]
    assert sorted(network.graph.nodes) == ["J1", "J2", "J3"]


@pytest.mark.parametrize("oneway", [False, "no", "false", 0])
def test_oneway_false_spellings(write_file: Callable[[str, str], Path], oneway: Any) -> None:
    path = write_file("o.geojson", collection(feature("a", [[0.0, 0.0], [0.001, 0.0]], oneway=oneway)))
    assert list(graph_from_geojson(path).segments.segment_id) == ["a", "a-r"]


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (
            [feature(None, [[0, 0], [1, 1]])],
            "feature #0: no segment id (expected the feature 'id' or properties.id)",
        ),
        (
            [
                feature("a", [[0, 0], [1, 1]]),
                {
                    "type": "Feature",
                    "id": "m",
                    "geometry": {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]]]},
                },
            ],
            "feature #1 (id 'm'): MultiLineString is not supported",
        ),
        (
            [{"type": "Feature", "id": "p", "geometry": {"type": "Point", "coordinates": [0, 0]}}],
            "feature #0 (id 'p'): geometry type 'Point' is not supported",
        ),
        ([feature("a", [[0, 0]])], "feature #0 (id 'a'): LineString needs at least two finite positions"),
        ([feature("a", [[0, "x"], [1, 1]])], "coordinates must be a list of [x, y] numbers"),  # type: ignore[list-item]
        (
            [feature("a", [[0, 0], [1, 1]], lanes="two")],
            "property 'lanes': expected an integer >= 1, got 'two'",
        ),
        ([feature("a", [[0, 0], [1, 1]], lanes=0)], "property 'lanes': expected an integer >= 1, got 0"),
        (
            [feature("a", [[0, 0], [1, 1]], road_class="highway")],
            "property 'road_class': 'highway' is neither",
        ),
        (
            [feature("a", [[0, 0], [1, 1]], road_class="service")],
            "property 'road_class': 'service' is neither",
        ),
        (
            [feature("a", [[0, 0], [1, 1]], speed_limit_kmh=-5)],
            "property 'speed_limit_kmh': expected a number > 0",
        ),
        ([feature("a", [[0, 0], [1, 1]], oneway="maybe")], "property 'oneway': expected true or false"),
        (
            [feature("a", [[0, 0], [1, 1]]), feature("a", [[1, 1], [2, 2]])],
            "feature #1: id 'a' is already used by feature #0",
        ),
        (
            [feature("a-r", [[0, 0], [1, 1]]), feature("a", [[1, 1], [0, 0]], oneway=False)],
            "'a-r' occurs more than once",
        ),
        ([], "no drivable road segments found"),
    ],
)
def test_bad_features(
    write_file: Callable[[str, str], Path], features: list[dict[str, Any]], message: str
) -> None:
    path = write_file("bad.geojson", collection(*features))
    with pytest.raises(NetworkFileError) as err:
        graph_from_geojson(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"type": "Feature"}', 'expected a GeoJSON object with "type": "FeatureCollection"'),
        ('{"type": "FeatureCollection"}', "FeatureCollection has no 'features' array"),
        (
            '{"type": "FeatureCollection", "features": [42]}',
            'feature #0: expected an object with "type": "Feature"',
        ),
    ],
)
def test_bad_documents(write_file: Callable[[str, str], Path], text: str, message: str) -> None:
    path = write_file("bad.json", text)
    with pytest.raises(NetworkFileError, match="^" + str(path).replace(".", r"\.")) as err:
        graph_from_geojson(path)
    assert message in str(err.value)


def test_invalid_json_names_the_line(write_file: Callable[[str, str], Path]) -> None:
    path = write_file("bad.geojson", '{\n  "type": "FeatureCollection",\n  "features": [,]\n}\n')
    with pytest.raises(NetworkFileError) as err:
        graph_from_geojson(path)
    assert err.value.line == 3
    assert str(err.value).startswith(f"{path}:3: not valid JSON")


# --------------------------------------------------------------------------------------------
# load_network
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "fmt"),
    [
        ("osm/West-Oakland.osm.bz2", "osm"),
        ("sumo/grid3.net.xml", "sumo"),
        ("sumo/west_oakland.net.xml.gz", "sumo"),
        ("geojson/small.geojson", "geojson"),
    ],
)
def test_load_network_dispatches_by_suffix(data_dir: Path, relative: str, fmt: str) -> None:
    network: RoadNetwork = load_network(data_dir / relative)
    assert network.meta["format"] == fmt
    assert network.source == str(data_dir / relative)


def test_load_network_json_suffix(tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "net.json"
    path.write_text((data_dir / "geojson" / "small.geojson").read_text())
    assert len(load_network(str(path))) == 4


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.osm", None, "no such file"),
        ("roads.shp", "x", "unknown network file type; expected a name ending in .net.xml.gz, .net.xml"),
        ("roads.osm.pbf", "x", "OSM PBF is not supported"),
        ("empty.osm", "", "not well-formed XML"),
        ("broken.net.xml", "<net><edge id='E'></net>", "not well-formed XML"),
        ("broken.geojson", "{", "not valid JSON"),
    ],
)
def test_load_network_errors(tmp_path: Path, name: str, content: str | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(NetworkFileError) as err:
        load_network(path)
    assert str(err.value).startswith(str(path))
    assert message in str(err.value)


def test_load_network_directory(tmp_path: Path) -> None:
    with pytest.raises(NetworkFileError, match="is a directory"):
        load_network(tmp_path)
