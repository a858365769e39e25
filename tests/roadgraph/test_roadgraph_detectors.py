"""Detector registries from CSV and SUMO additional files: good files and every error path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from roadgraph import (
    NetworkFileError,
    RoadNetwork,
    detectors_from_csv,
    detectors_from_sumo,
    graph_from_geojson,
    load_detectors,
    synthetic_grid,
)


@pytest.fixture(scope="module")
def grid() -> RoadNetwork:
    """3 × 3 junctions, 200 m apart: row/column 0 arterial (3 lanes), 1 branch (1), 2 secondary (2)."""
    return synthetic_grid(3, 3, spacing_m=200.0, arterial_every=5)


def lonlat(network: RoadNetwork, x_m: float, y_m: float) -> tuple[float, float]:
    assert network.projection is not None
    lon, lat = network.projection.to_lonlat(x_m, y_m)
    return round(float(lon), 8), round(float(lat), 8)


# --------------------------------------------------------------------------------------------
# CSV: good files
# --------------------------------------------------------------------------------------------


def test_csv_with_segment_ids_and_coordinates(
    grid: RoadNetwork, write_file: Callable[[str, str], Path]
) -> None:
    # D3: 5 m south of the row-1 street at x = 50 m heading west -> r1c1-r1c0, position 150 m
    lon3, lat3 = lonlat(grid, 50.0, 195.0)
    # D4: 8 m east of column 2 at y = 300 m, no heading -> r1c2-r2c2 (listed before its reverse)
    lon4, lat4 = lonlat(grid, 408.0, 300.0)
    path = write_file(
        "det.csv",
        "\ufeffDetector_ID,segment_id,lon,lat,heading_deg,lane,pos_m,kind,note\n"
        "D1,r0c0-r0c1,,,,2,120.5,Radar,arterial\n"
        "D2,r0c1-r0c0,,,,,,,\n"
        "\n"
        f"D3,,{lon3},{lat3},270,0,,camera,\n"
        f"D4,,{lon4},{lat4},,,,,\n"
        f"D5,,{lon4},{lat4},-180,,12.5,loop,south as -180\n",
    )
    registry = detectors_from_csv(path, grid)
    seg = grid.segments
    assert list(registry.detector_id) == ["D1", "D2", "D3", "D4", "D5"]
    assert [seg.segment_id[i] for i in registry.segment_index] == [
        "r0c0-r0c1",
        "r0c1-r0c0",
        "r1c1-r1c0",
        "r1c2-r2c2",
        "r2c2-r1c2",
    ]
    assert list(registry.lane) == [2, -1, 0, -1, -1]
    assert registry.pos_m[0] == pytest.approx(120.5)
    assert np.isnan(registry.pos_m[1])  # given by segment and no pos_m: unknown
    assert registry.pos_m[2] == pytest.approx(150.0, abs=0.01)  # snapped position
    assert registry.pos_m[3] == pytest.approx(100.0, abs=0.01)
    assert registry.pos_m[4] == pytest.approx(12.5)  # given pos_m wins over the snapped one
    assert list(registry.kind) == ["radar", "loop", "camera", "loop", "loop"]
    assert registry.index_of["D3"] == 2


def test_csv_xy_on_a_metric_network(sumo_grid: RoadNetwork, write_file: Callable[[str, str], Path]) -> None:
    path = write_file("det.csv", "detector_id,x,y,heading_deg\nL1,100,3,90\nL2,100,3,270\n")
    registry = detectors_from_csv(path, sumo_grid)
    assert [sumo_grid.segments.segment_id[i] for i in registry.segment_index] == ["A0B0", "B0A0"]


def test_max_distance_is_configurable(grid: RoadNetwork, write_file: Callable[[str, str], Path]) -> None:
    lon, lat = lonlat(grid, 100.0, 70.0)  # 70 m from the row-0 street, 100 m from everything else
    path = write_file("det.csv", f"detector_id,lon,lat\nD1,{lon},{lat}\n")
    with pytest.raises(NetworkFileError):
        detectors_from_csv(path, grid)
    registry = detectors_from_csv(path, grid, max_distance_m=80.0)
    assert grid.segments.segment_id[registry.segment_index[0]] == "r0c0-r0c1"


# --------------------------------------------------------------------------------------------
# CSV: errors name file, line and column
# --------------------------------------------------------------------------------------------

HEADER = "detector_id,segment_id,lon,lat,heading_deg,lane,pos_m,kind\n"


def far_point(grid: RoadNetwork) -> str:
    lon, lat = lonlat(grid, 100.0, 100.0 - 1000.0)  # a kilometre south of the grid
    return f"{lon},{lat}"


CSV_ERRORS: list[tuple[str, str | Callable[[RoadNetwork], str], int, str]] = [
    (
        "bad header",
        "id,segment_id\nD1,r0c0-r0c1\n",
        1,
        "header has no 'detector_id' column (found: id, segment_id)",
    ),
    (
        "no location columns",
        "detector_id,lane\nD1,0\n",
        1,
        "header needs a 'segment_id' column or 'lon','lat'",
    ),
    ("lon without lat", "detector_id,lon\nD1,121.5\n", 1, "header has 'lon' but no 'lat'"),
    ("repeated column", "detector_id,lane,lane\nD1,0,1\n", 1, "header repeats column(s) lane"),
    ("empty file", "", 1, "empty file; expected a CSV header with detector_id"),
    (
        "unknown segment",
        HEADER + "D1,r0c0-r0c1,,,,,,\nD2,nope,,,,,,\n",
        3,
        "column 'segment_id': unknown segment 'nope'",
    ),
    (
        "lane out of range",
        HEADER + "D1,r1c0-r1c1,,,,1,,\n",
        2,
        "column 'lane': lane 1 does not exist on segment 'r1c0-r1c1', which has 1 lane(s)",
    ),
    (
        "lane not a number",
        HEADER + "D1,r0c0-r0c1,,,,x,,\n",
        2,
        "column 'lane': expected an integer >= 0, got 'x'",
    ),
    (
        "negative lane",
        HEADER + "D1,r0c0-r0c1,,,,-1,,\n",
        2,
        "column 'lane': expected an integer >= 0, got '-1'",
    ),
    ("bad pos_m", HEADER + "D1,r0c0-r0c1,,,,,abc,\n", 2, "column 'pos_m': expected a number, got 'abc'"),
    (
        "negative pos_m",
        HEADER + "D1,r0c0-r0c1,,,,,-3,\n",
        2,
        "column 'pos_m': expected a finite number >= 0.0",
    ),
    ("pos_m beyond end", HEADER + "D1,r0c0-r0c1,,,,,250,\n", 2, "column 'pos_m': 250.0 is beyond the end"),
    ("bad lon", HEADER + "D1,,east,29.87,,,,\n", 2, "column 'lon': expected a number, got 'east'"),
    (
        "lon out of range",
        HEADER + "D1,,200,29.87,,,,\n",
        2,
        "column 'lon': expected a finite number in -180.0..180.0",
    ),
    (
        "lat missing",
        HEADER + "D1,,121.55,,,,,\n",
        2,
        "column 'lat': empty while the other coordinate is given",
    ),
    ("bad heading", HEADER + "D1,,121.55,29.87,north,,,\n", 2, "column 'heading_deg': expected a number"),
    ("no location", HEADER + "D1,,,,,,,\n", 2, "column 'segment_id': no location"),
    (
        "bad kind",
        HEADER + "D1,r0c0-r0c1,,,,,,lidar\n",
        2,
        "column 'kind': expected one of loop, radar, camera",
    ),
    ("empty id", HEADER + ",r0c0-r0c1,,,,,,\n", 2, "column 'detector_id': empty"),
    (
        "duplicate id",
        HEADER + "D1,r0c0-r0c1,,,,,,\nD2,r0c0-r0c1,,,,,,\n\nD1,r0c1-r0c0,,,,,,\n",
        5,
        "column 'detector_id': 'D1' is already used on line 2",
    ),
    ("field count", HEADER + "D1,r0c0-r0c1\n", 2, "expected 8 fields as in the header, got 2"),
    (
        "point too far",
        lambda g: HEADER + "D1,r0c0-r0c1,,,,,,\n" + f"D2,,{far_point(g)},,,,\n",
        3,
        "column 'lon': no segment within 50 m of",
    ),
    (
        "heading matches nothing near",
        lambda g: HEADER + "D1,,{},{},0,,,\n".format(*lonlat(g, 100.0, 5.0)),
        2,
        "column 'lon': no segment heading 0° ± 60° within 50 m",
    ),
]


@pytest.mark.parametrize(("case", "text", "line", "message"), CSV_ERRORS, ids=[c[0] for c in CSV_ERRORS])
def test_csv_errors(
    grid: RoadNetwork,
    write_file: Callable[[str, str], Path],
    case: str,
    text: str | Callable[[RoadNetwork], str],
    line: int,
    message: str,
) -> None:
    del case
    path = write_file("det.csv", text(grid) if callable(text) else text)
    with pytest.raises(NetworkFileError) as err:
        load_detectors(path, grid)
    assert err.value.line == line
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert message in str(err.value)


def test_csv_lonlat_on_network_without_lonlat(
    sumo_grid: RoadNetwork, write_file: Callable[[str, str], Path]
) -> None:
    path = write_file("det.csv", "detector_id,segment_id,lon,lat\nD1,A0B0,,\nD2,,1.0,2.0\n")
    with pytest.raises(NetworkFileError) as err:
        detectors_from_csv(path, sumo_grid)
    assert str(err.value).startswith(f"{path}:3: column 'lon': the network")
    assert "has no lon/lat" in str(err.value)


def test_csv_missing_file(grid: RoadNetwork, tmp_path: Path) -> None:
    with pytest.raises(NetworkFileError, match="no such file"):
        load_detectors(tmp_path / "nope.csv", grid)
    with pytest.raises(NetworkFileError, match="no such file"):
        detectors_from_csv(tmp_path / "nope.csv", grid)


def test_csv_not_utf8(grid: RoadNetwork, tmp_path: Path) -> None:
    path = tmp_path / "det.csv"
    path.write_bytes(b"detector_id,segment_id\nD\xff,r0c0-r0c1\n")
    with pytest.raises(NetworkFileError, match="cannot read file as UTF-8"):
        detectors_from_csv(path, grid)


# --------------------------------------------------------------------------------------------
# SUMO additional files
# --------------------------------------------------------------------------------------------


def test_sumo_additional_fixture(sumo_grid: RoadNetwork, data_dir: Path) -> None:
    registry = load_detectors(data_dir / "sumo" / "grid3.det.add.xml", sumo_grid)
    seg = sumo_grid.segments
    assert list(registry.detector_id) == ["e1_A0A1", "e1_B1C1", "e1_C1B1"]
    assert [seg.segment_id[i] for i in registry.segment_index] == ["A0A1", "B1C1", "C1B1"]
    # SUMO lane 1 is the only car lane (lane 0 is the sidewalk): segment lane 0
    assert list(registry.lane) == [0, 0, 0]
    length = float(seg.length_m[seg.index_of["B1C1"]])
    assert registry.pos_m[0] == pytest.approx(100.0)
    assert registry.pos_m[1] == pytest.approx(length - 20.0)  # negative: from the lane's end
    assert registry.pos_m[2] == pytest.approx(float(seg.length_m[seg.index_of["C1B1"]]))  # friendlyPos clamps
    assert set(registry.kind) == {"loop"}


def additional(*loops: str) -> str:
    body = "\n".join(f"    {loop}" for loop in loops)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<additional>\n{body}\n</additional>\n'


SUMO_ERRORS = [
    (
        "internal edge",
        additional(
            '<inductionLoop id="a" lane="A0A1_1" pos="5"/>', '<inductionLoop id="b" lane=":B1_0_0" pos="1"/>'
        ),
        4,
        "<inductionLoop> attribute 'lane': ':B1_0_0' lies on an internal edge",
    ),
    (
        "unknown edge",
        additional('<inductionLoop id="a" lane="Z9Z8_0" pos="5"/>'),
        3,
        "edge 'Z9Z8' of lane 'Z9Z8_0' is not a segment",
    ),
    (
        "walking area",
        additional('<inductionLoop id="a" lane=":B1_w0_0" pos="1"/>'),
        3,
        "':B1_w0_0' lies on an internal edge",
    ),
    (
        "no such lane",
        additional('<inductionLoop id="a" lane="A0A1_7" pos="5"/>'),
        3,
        "edge 'A0A1' has no lane 7",
    ),
    (
        "malformed lane id",
        additional('<inductionLoop id="a" lane="A0A1" pos="5"/>'),
        3,
        "expected a SUMO lane id '<edge>_<index>'",
    ),
    (
        "pos outside lane",
        additional('<inductionLoop id="a" lane="A0A1_1" pos="500"/>'),
        3,
        "attribute 'pos': 500 is outside lane 'A0A1_1'",
    ),
    (
        "pos too negative",
        additional('<inductionLoop id="a" lane="A0A1_1" pos="-500"/>'),
        3,
        "attribute 'pos': -500 is outside lane",
    ),
    (
        "pos not a number",
        additional('<inductionLoop id="a" lane="A0A1_1" pos="end"/>'),
        3,
        "attribute 'pos': expected a number, got 'end'",
    ),
    (
        "missing id",
        additional('<inductionLoop lane="A0A1_1" pos="5"/>'),
        3,
        "attribute 'id': missing or empty",
    ),
    (
        "duplicate id",
        additional(
            '<inductionLoop id="a" lane="A0A1_1" pos="5"/>', '<e1Detector id="a" lane="A1A0_1" pos="5"/>'
        ),
        4,
        "<e1Detector> attribute 'id': 'a' is already used on line 3",
    ),
    ("bad xml", additional('<inductionLoop id="a" lane="A0A1_1" pos="5">'), 4, "not well-formed XML"),
]


@pytest.mark.parametrize(("case", "text", "line", "message"), SUMO_ERRORS, ids=[c[0] for c in SUMO_ERRORS])
def test_sumo_additional_errors(
    sumo_grid: RoadNetwork,
    write_file: Callable[[str, str], Path],
    case: str,
    text: str,
    line: int,
    message: str,
) -> None:
    del case
    path = write_file("loops.add.xml", text)
    with pytest.raises(NetworkFileError) as err:
        load_detectors(path, sumo_grid)
    assert err.value.line == line
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert message in str(err.value)


def test_sumo_loop_on_an_edge_without_car_lanes_is_ignored_with_reason(
    sumo_oakland: RoadNetwork, write_file: Callable[[str, str], Path]
) -> None:
    """Valid SUMO, but it sees no cars: not registered, and the registry says why."""
    car_edge = str(sumo_oakland.segments.segment_id[0])
    path = write_file(
        "loops.add.xml",
        additional(
            '<inductionLoop id="a" lane="-11185523_0" pos="1"/>',
            f'<inductionLoop id="b" lane="{car_edge}_0" pos="1"/>',
        ),
    )
    registry = detectors_from_sumo(path, sumo_oakland)
    assert list(registry.detector_id) == ["b"]
    assert registry.ignored["a"] == (
        "lane '-11185523_0' is on edge '-11185523', "
        "an edge without lanes for passenger cars (loops.add.xml:3)"
    )


def test_sumo_loop_on_a_sidewalk_lane_is_ignored_with_reason(
    sumo_grid: RoadNetwork, write_file: Callable[[str, str], Path]
) -> None:
    path = write_file(
        "loops.add.xml",
        additional(
            '<inductionLoop id="a" lane="A0A1_0" pos="5"/>', '<inductionLoop id="b" lane="A0A1_1" pos="5"/>'
        ),
    )
    registry = detectors_from_sumo(path, sumo_grid)
    assert list(registry.detector_id) == ["b"]
    assert "lane 'A0A1_0' does not admit passenger cars" in registry.ignored["a"]


def test_sumo_file_with_only_sidewalk_loops_is_an_error(
    sumo_grid: RoadNetwork, write_file: Callable[[str, str], Path]
) -> None:
    path = write_file("loops.add.xml", additional('<inductionLoop id="a" lane="A0A1_0" pos="5"/>'))
    with pytest.raises(NetworkFileError, match="1 on lanes closed to passenger cars"):
        detectors_from_sumo(path, sumo_grid)


def test_sumo_additional_without_loops(
    sumo_grid: RoadNetwork, write_file: Callable[[str, str], Path]
) -> None:
    path = write_file("empty.add.xml", additional('<edgeData id="x" period="60" file="x.xml"/>'))
    with pytest.raises(NetworkFileError, match="no usable <inductionLoop> elements found"):
        detectors_from_sumo(path, sumo_grid)


def test_sumo_loops_on_a_non_sumo_network(data_dir: Path, write_file: Callable[[str, str], Path]) -> None:
    network = graph_from_geojson(data_dir / "geojson" / "small.geojson")
    path = write_file("loops.xml", additional('<inductionLoop id="a" lane="main-1_2" pos="-10"/>'))
    registry = detectors_from_sumo(path, network)
    assert network.segments.segment_id[registry.segment_index[0]] == "main-1"
    assert registry.lane[0] == 2
    assert registry.pos_m[0] == pytest.approx(network.segments.length_m[0] - 10.0, rel=1e-6)
    bad = write_file("bad.xml", additional('<inductionLoop id="a" lane="main-1_3" pos="1"/>'))
    with pytest.raises(NetworkFileError, match="segment 'main-1' has 3 lane"):
        detectors_from_sumo(bad, network)


def test_load_detectors_dispatch_and_directory(sumo_grid: RoadNetwork, tmp_path: Path) -> None:
    with pytest.raises(NetworkFileError, match="is a directory"):
        load_detectors(tmp_path, sumo_grid)
