"""Snapping points to segments: constructed cases with and without heading, and brute force."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely

from roadgraph import RoadNetwork, SegmentIndex, graph_from_geojson, snap_lonlat
from roadgraph.snapping import heading_difference_deg, segment_heading_deg


@pytest.fixture(scope="module")
def cross(tmp_path_factory: pytest.TempPathFactory) -> RoadNetwork:
    """A two-way east–west road "ew" (about 965 m) and a one-way northbound road "ns" crossing it."""
    features = [
        {
            "type": "Feature",
            "id": "ew",
            "geometry": {"type": "LineString", "coordinates": [[121.55, 29.87], [121.56, 29.87]]},
            "properties": {"oneway": False, "lanes": 2},
        },
        {
            "type": "Feature",
            "id": "ns",
            "geometry": {"type": "LineString", "coordinates": [[121.553, 29.869], [121.553, 29.871]]},
            "properties": {},
        },
    ]
    path = tmp_path_factory.mktemp("snap") / "cross.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return graph_from_geojson(path)


def lonlat_at(network: RoadNetwork, x_m: float, y_m: float) -> tuple[float, float]:
    assert network.projection is not None
    lon, lat = network.projection.to_lonlat(x_m, y_m)
    return float(lon), float(lat)


def ew_point(network: RoadNetwork, along_m: float, north_m: float) -> tuple[float, float]:
    """The lon/lat ``north_m`` north of the point ``along_m`` from the start of "ew"."""
    start = network.segments.geometry_m[network.segments.index_of["ew"]].coords[0]
    return lonlat_at(network, start[0] + along_m, start[1] + north_m)


def test_nearest_without_heading_takes_the_first_direction(cross: RoadNetwork) -> None:
    lon, lat = ew_point(cross, 100.0, 10.0)
    result = snap_lonlat(cross, [lon], [lat])
    assert cross.segments.segment_id[result.segment_index[0]] == "ew"  # ties with "ew-r": lower index
    assert result.distance_m[0] == pytest.approx(10.0, abs=1e-6)
    assert result.pos_m[0] == pytest.approx(100.0, rel=1e-3)  # length_m is haversine: tiny scale difference
    assert result.heading_deg[0] == pytest.approx(90.0, abs=0.01)


@pytest.mark.parametrize(
    ("heading", "segment", "distance"),
    [
        (90.0, "ew", 10.0),  # eastbound traffic
        (270.0, "ew-r", 10.0),  # westbound traffic: the reverse segment
        (300.0, "ew-r", 10.0),  # within 60° of west
        (0.0, "ns", None),  # northbound: the crossing road, farther away
        (180.0, None, None),  # southbound: nothing (ns is one-way north) within 50 m
    ],
)
def test_heading_selects_the_direction(
    cross: RoadNetwork, heading: float, segment: str | None, distance: float | None
) -> None:
    # 10 m north of "ew", 20 m west of "ns"
    ns_x = cross.segments.geometry_m[cross.segments.index_of["ns"]].coords[0][0]
    ew_y = cross.segments.geometry_m[cross.segments.index_of["ew"]].coords[0][1]
    lon, lat = lonlat_at(cross, ns_x - 20.0, ew_y + 10.0)
    result = snap_lonlat(cross, [lon], [lat], heading_deg=[heading])
    if segment is None:
        assert result.segment_index[0] == -1 and np.isnan(result.distance_m[0])
        return
    assert cross.segments.segment_id[result.segment_index[0]] == segment
    assert result.distance_m[0] == pytest.approx(distance if distance is not None else 20.0, abs=1e-6)


def test_heading_tolerance_is_configurable(cross: RoadNetwork) -> None:
    lon, lat = ew_point(cross, 100.0, 10.0)
    index = SegmentIndex(cross)
    assert index.snap_lonlat([lon], [lat], heading_deg=[140.0]).found[0]  # 50° off east
    assert not index.snap_lonlat([lon], [lat], heading_deg=[140.0], max_heading_diff_deg=30.0).found[0]


def test_max_distance(cross: RoadNetwork) -> None:
    lon, lat = ew_point(cross, 500.0, 60.0)
    index = SegmentIndex(cross)
    assert not index.snap_lonlat([lon], [lat]).found[0]
    result = index.snap_lonlat([lon], [lat], max_distance_m=70.0)
    assert result.distance_m[0] == pytest.approx(60.0, abs=1e-6)


def test_nan_heading_means_any(cross: RoadNetwork) -> None:
    lon, lat = ew_point(cross, 100.0, 10.0)
    result = snap_lonlat(cross, [lon, lon], [lat, lat], heading_deg=[np.nan, 270.0])
    assert [cross.segments.segment_id[i] for i in result.segment_index] == ["ew", "ew-r"]


def test_position_on_reverse_segment_counts_from_its_start(cross: RoadNetwork) -> None:
    lon, lat = ew_point(cross, 100.0, -5.0)
    result = snap_lonlat(cross, [lon], [lat], heading_deg=[270.0])
    length = cross.segments.length_m[result.segment_index[0]]
    assert result.pos_m[0] == pytest.approx(length - 100.0, rel=1e-3)


def test_empty_query(cross: RoadNetwork) -> None:
    result = snap_lonlat(cross, [], [])
    assert len(result.segment_index) == 0


def test_segment_heading_on_a_bend() -> None:
    line = shapely.LineString([(0, 0), (100, 0), (100, 100)])  # east, then north
    lines = np.array([line] * 4, dtype=object)
    headings = segment_heading_deg(lines, [10.0, 99.5, 150.0, 200.0])
    assert list(headings[[0, 2, 3]]) == pytest.approx([90.0, 0.0, 0.0])
    assert 0.0 < headings[1] < 90.0  # across the corner


def test_heading_difference_wraps() -> None:
    assert list(heading_difference_deg([350.0, 10.0, 90.0], [10.0, 350.0, 270.0])) == pytest.approx(
        [20.0, 20.0, 180.0]
    )


def test_matches_brute_force_on_a_real_city(aguascalientes: RoadNetwork) -> None:
    projection = aguascalientes.projection
    assert projection is not None
    bounds = shapely.total_bounds(aguascalientes.segments.geometry_m)
    rng = np.random.default_rng(11)
    x = rng.uniform(bounds[0], bounds[2], 400)
    y = rng.uniform(bounds[1], bounds[3], 400)
    lon, lat = projection.to_lonlat(x, y)
    result = snap_lonlat(aguascalientes, lon, lat, max_distance_m=50.0)
    geoms = aguascalientes.segments.geometry_m
    for k in range(len(x)):
        distances = shapely.distance(shapely.Point(x[k], y[k]), geoms)
        best = float(distances.min())
        if best <= 50.0 - 1e-6:
            assert result.found[k]
            assert result.distance_m[k] == pytest.approx(best, abs=1e-6)
            assert distances[result.segment_index[k]] == pytest.approx(best, abs=1e-6)
        elif best > 50.0 + 1e-6:
            assert not result.found[k]
    assert result.found.sum() > 100  # the test exercised real matches


def test_snapping_a_metric_network_needs_xy(sumo_grid: RoadNetwork) -> None:
    index = SegmentIndex(sumo_grid)
    with pytest.raises(ValueError, match="has no lon/lat projection"):
        index.snap_lonlat([0.0], [0.0])
    result = index.snap_xy([100.0], [3.0], heading_deg=[90.0])  # just south of the A0->B0 street
    assert sumo_grid.segments.segment_id[result.segment_index[0]] == "A0B0"


def test_snap_result_positions_stay_within_length(aguascalientes: RoadNetwork, data_dir: Path) -> None:
    del data_dir
    seg = aguascalientes.segments
    ends = shapely.get_point(seg.geometry, -1)
    result = snap_lonlat(aguascalientes, shapely.get_x(ends), shapely.get_y(ends))
    assert result.found.all()
    assert (result.pos_m <= seg.length_m[result.segment_index] + 1e-9).all()


def test_heading_table_matches_interpolated_headings(aguascalientes: RoadNetwork) -> None:
    """The index's precomputed per-step headings agree with the slow two-point reference."""
    index = SegmentIndex(aguascalientes)
    geoms = aguascalientes.segments.geometry_m
    coords, owner = shapely.get_coordinates(geoms, return_index=True)
    same = owner[1:] == owner[:-1]
    step = np.hypot(np.diff(coords[:, 0]), np.diff(coords[:, 1]))
    # midpoints of every step longer than 3 m, as distances along their segment
    start_along = np.concatenate(([0.0], np.cumsum(np.where(same, step, 0.0))))
    first_vertex = np.searchsorted(owner, np.arange(len(geoms)))
    along = start_along[:-1] - start_along[first_vertex[owner[:-1]]] + step / 2.0
    keep = same & (step > 3.0)
    seg_idx = owner[:-1][keep]
    reference = segment_heading_deg(geoms[seg_idx], along[keep])
    fast = index._heading_at(seg_idx, along[keep])
    assert len(seg_idx) > 1000
    assert np.max(heading_difference_deg(fast, reference)) < 1e-6
