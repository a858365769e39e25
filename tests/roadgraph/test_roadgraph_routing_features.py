"""Router behaviour beyond exactness: turn restrictions, closures, alternatives, output, errors."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import shapely

from roadgraph import graph_from_geojson, graph_from_osm, graph_from_sumo, synthetic_grid
from roadgraph.polyline import decode_polyline, encode_polyline
from roadgraph.routing import RouteEnd, RouteError, Router
from roadgraph.turns import turn_table

SUMO_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def ids(router: Router, rows: np.ndarray) -> list[str]:
    return [str(router.network.segments.segment_id[r]) for r in rows]


# ---------------------------------------------------------------- turn restrictions


def test_osm_no_left_turn_is_honoured(data_dir: Path) -> None:
    net = graph_from_osm(data_dir / "osm" / "turn_restrictions.osm")
    rels = {r["id"]: r for r in net.meta["turn_restrictions"]}
    assert rels["201"]["restriction"] == "no_left_turn" and rels["201"]["via_nodes"] == ["5"]
    router = Router(net)
    assert router.turns.source == "osm restrictions"
    assert router.turns.ignored == {"via way": 1, "except motorcar": 1}
    free = Router(net, turns=turn_table(dataclasses.replace(net, meta={})))
    # without the restriction the left turn West Arm -> North Arm is the whole route
    assert ids(free, free.route("101-0", "104-0").segments) == ["101-0", "104-0"]
    route = router.route("101-0", "104-0")
    path = ids(router, route.segments)
    assert path[0] == "101-0" and path[-1] == "104-0" and len(path) > 2
    assert ("101-0", "104-0") not in set(itertools.pairwise(path))
    assert route.duration_s > free.route("101-0", "104-0").duration_s


def test_osm_only_straight_on_keeps_one_turn(data_dir: Path) -> None:
    net = graph_from_osm(data_dir / "osm" / "turn_restrictions.osm")
    router = Router(net)
    row = net.segments.index_of["103-0"]
    allowed = router.turns.succ_idx[router.turns.succ_indptr[row] : router.turns.succ_indptr[row + 1]]
    assert ids(router, allowed) == ["104-0"]
    # coming up the South Arm, East Arm is reached by going straight on and round the block
    path = ids(router, router.route("103-0", "102-0").segments)
    assert path[1] == "104-0"
    # the except=motorcar restriction does not apply to cars: South Arm <- East Arm right turn stays
    east = net.segments.index_of["102-0-r"]
    assert router.turns.allows(east, net.segments.index_of["103-0-r"])


def test_demo_city_restrictions_are_applied(aguascalientes) -> None:  # type: ignore[no-untyped-def]
    router = Router(aguascalientes)
    assert router.turns.source == "osm restrictions"
    assert router.turns.removed >= 2
    rel = next(r for r in aguascalientes.meta["turn_restrictions"] if r["id"] == "11504633")
    seg = aguascalientes.segments
    way_of = np.array([str(s).split("-")[0] for s in seg.segment_id])
    frm = [i for i in np.flatnonzero(way_of == rel["from_ways"][0]) if seg.to_node[i] == rel["via_nodes"][0]]
    to = [j for j in np.flatnonzero(way_of == rel["to_ways"][0]) if seg.from_node[j] == rel["via_nodes"][0]]
    assert frm and to
    assert not any(router.turns.allows(i, j) for i in frm for j in to)
    # and no route ever makes that turn
    for i in frm:
        for j in to:
            path = router.route(int(i), int(j)).segments.tolist()
            assert len(path) > 2


def test_sumo_forbidden_turn_from_netconvert(tmp_path: Path, data_dir: Path) -> None:
    """A real SUMO network whose right turn A0A1 -> A1B1 is deleted by netconvert."""
    cons = tmp_path / "del.con.xml"
    cons.write_text('<connections>\n    <delete from="A0A1" to="A1B1"/>\n</connections>\n')
    out = tmp_path / "noturn.net.xml"
    subprocess.run(
        [str(SUMO_BIN / "netconvert"), "-s", str(data_dir / "sumo" / "grid3.net.xml"),
         "--connection-files", str(cons), "-o", str(out)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    full = Router(graph_from_sumo(data_dir / "sumo" / "grid3.net.xml"))
    assert ids(full, full.route("A0A1", "A1B1").segments) == ["A0A1", "A1B1"]
    net = graph_from_sumo(out)
    assert ["A0A1", "A1B1"] not in [list(c) for c in net.meta["sumo_connections"]]
    router = Router(net)
    path = ids(router, router.route("A0A1", "A1B1").segments)
    assert len(path) > 2 and ("A0A1", "A1B1") not in set(itertools.pairwise(path))


def test_sumo_connections_are_car_lanes_only(sumo_grid) -> None:  # type: ignore[no-untyped-def]
    pairs = {tuple(c) for c in sumo_grid.meta["sumo_connections"]}
    ids_ = set(sumo_grid.segments.segment_id)
    assert pairs and all(a in ids_ and b in ids_ for a, b in pairs)


# ---------------------------------------------------------------- closures and live weights


def test_closed_segment_on_best_path_is_avoided_after_one_refresh() -> None:
    net = synthetic_grid(8, 8)
    router = Router(net)
    n = len(net)
    free_flow = net.segments.speed_limit_kmh.astype(np.float64) * 0.9
    speed = np.full(n, np.nan)
    router.update_from_speeds(speed, free_flow, np.zeros(n, dtype=bool))
    best = router.route("r0c0-r0c1", "r0c6-r0c7")
    middle = int(best.segments[len(best.segments) // 2])
    closed = np.zeros(n, dtype=bool)
    closed[middle] = True
    router.update_from_speeds(speed, free_flow, closed)
    detour = router.route("r0c0-r0c1", "r0c6-r0c7")
    assert middle not in detour.segments.tolist()
    assert detour.duration_s > best.duration_s
    # reopening restores the original cost
    router.update_from_speeds(speed, free_flow, np.zeros(n, dtype=bool))
    assert router.route("r0c0-r0c1", "r0c6-r0c7").duration_s == pytest.approx(best.duration_s)


def test_travel_times_from_speeds() -> None:
    net = synthetic_grid(2, 3)
    router = Router(net)
    n = len(net)
    free_flow = np.full(n, 36.0)  # 10 m/s
    speed = np.full(n, np.nan)
    speed[0] = 18.0  # 5 m/s: 200 m in 40 s
    speed[1] = 500.0  # faster than the bound: clamped
    closed = np.zeros(n, dtype=bool)
    closed[2] = True
    router.update_from_speeds(speed, free_flow, closed, levels=np.full(n, 3, dtype=np.int8), ts=120.0)
    tt = router.travel_time_s
    assert tt[0] == pytest.approx(40.0)
    assert tt[1] == pytest.approx(router.lower_bound_s[1])
    assert np.isinf(tt[2])
    assert tt[3] == pytest.approx(max(20.0, router.lower_bound_s[3]))
    assert router.weights_ts == 120.0 and (router.levels == 3).all()
    with pytest.raises(ValueError, match="positive"):
        router.set_travel_times(np.full(n, np.nan))


# ---------------------------------------------------------------- alternatives


def test_alternatives_differ_and_are_bounded() -> None:
    net = synthetic_grid(12, 12, arterial_every=3)
    router = Router(net)
    rng = np.random.default_rng(4)
    free_flow = net.segments.speed_limit_kmh.astype(np.float64) * 0.9
    router.update_from_speeds(
        free_flow * rng.uniform(0.6, 1.0, len(net)), free_flow, np.zeros(len(net), bool)
    )
    best = router.route("r0c0-r0c1", "r10c10-r11c10")
    alts = router.alternatives(best, 3)
    assert len(alts) >= 1
    kept = [best, *alts]
    for k, alt in enumerate(alts, start=1):
        assert alt.segments[0] == best.segments[0] and alt.segments[-1] == best.segments[-1]
        assert alt.duration_s == pytest.approx(router.travel_time_s[alt.segments].sum())
        assert best.duration_s <= alt.duration_s <= router.max_stretch * best.duration_s
        for other in kept[:k]:
            shared = np.intersect1d(alt.segments, other.segments)
            assert (
                router.length_m[shared].sum()
                <= router.max_overlap * router.length_m[alt.segments].sum() + 1e-6
            )
    assert router.alternatives(best, 0) == []


# ---------------------------------------------------------------- output


def test_polyline_matches_googles_example() -> None:
    points = [(-120.2, 38.5), (-120.95, 40.7), (-126.453, 43.252)]
    assert encode_polyline(points) == "_p~iF~ps|U_ulLnnqC_mqNvxq`@"
    assert np.allclose(decode_polyline("_p~iF~ps|U_ulLnnqC_mqNvxq`@"), points)
    with pytest.raises(ValueError):
        decode_polyline("_p~iF~ps|U_")


def test_route_json(data_dir: Path) -> None:
    net = graph_from_geojson(data_dir / "geojson" / "small.geojson")
    router = Router(net)
    route = router.route("main-1", "7")
    body = router.route_json(route, alternatives=[])
    assert body["segment_ids"] == ["main-1", "side-1", "7"]
    assert body["duration_s"] == pytest.approx(router.travel_time_s[route.segments].sum(), abs=1e-3)
    assert body["distance_m"] == pytest.approx(net.segments.length_m[route.segments].sum(), abs=0.1)
    assert body["roads"] == ["Zhongshan Rd"]  # unnamed segments are left out of `roads`
    assert body["levels"] == [0, 0, 0]
    coords = body["geometry"]["coordinates"]
    assert body["geometry"]["type"] == "LineString"
    assert coords[0] == [121.55, 29.87] and coords[-1] == [121.556, 29.872]
    assert len(coords) == 5  # shared junction points are not repeated
    assert np.allclose(decode_polyline(body["polyline"]), coords, atol=1e-5)
    assert [leg["road"] for leg in body["legs"]] == ["Zhongshan Rd", ""]
    assert body["alternatives"] == []
    json.dumps(body)


def test_roads_merge_consecutive_names() -> None:
    net = synthetic_grid(3, 6)
    router = Router(net)
    body = router.route_json(router.route("r0c0-r0c1", "r0c4-r0c5"))
    assert body["roads"] == ["Row 0"]
    assert body["legs"][0]["segments"] == 5


def test_predicted_duration_uses_profile_of_arrival_hour() -> None:
    net = synthetic_grid(2, 4)
    router = Router(net)
    route = router.route("r0c0-r0c1", "r0c2-r0c3")
    assert router.predicted_duration_s(route, 0.0) is None
    n = len(net)
    ratio = np.full((n, 24), np.nan)
    ratio[:, 8] = 0.5  # 08:00–09:00 UTC: half the free-flow speed
    free_flow = np.full(n, 36.0)
    router.set_profile(ratio, free_flow)
    at_eight = router.predicted_duration_s(route, 8 * 3600.0)
    assert at_eight == pytest.approx(3 * 200.0 / 5.0)  # 200 m at 5 m/s, three segments
    # at 07:00 there is no profile: the live travel times
    assert router.predicted_duration_s(route, 7 * 3600.0) == pytest.approx(route.duration_s)
    router.update_from_speeds(np.full(n, np.nan), free_flow, np.zeros(n, bool), ts=8 * 3600.0)
    assert router.route_json(route)["predicted_duration_s"] == pytest.approx(120.0)


# ---------------------------------------------------------------- ends and errors


def test_snap_and_both_directions_of_a_two_way_road() -> None:
    net = synthetic_grid(3, 6)
    router = Router(net)
    lon, lat = net.projection.to_lonlat(np.array([250.0, 50.0]), np.array([0.0, 0.0]))  # type: ignore[union-attr]
    origin = router.snap(float(lon[0]), float(lat[0]))
    destination = router.snap(float(lon[1]), float(lat[1]))
    route = router.route_points(origin, destination)
    # the destination lies west of the origin on the same row: drive west, not round the block
    assert ids(router, route.segments) == ["r0c2-r0c1", "r0c1-r0c0"]
    with pytest.raises(RouteError) as err:
        router.snap(float(lon[0]), float(lat[0]) + 0.05)
    assert err.value.reason == "off_network"
    with pytest.raises(RouteError) as err:
        router.snap(200.0, 10.0)
    assert err.value.reason == "bad_request"


def test_same_segment_behind_the_origin_loops_round() -> None:
    net = synthetic_grid(3, 3)
    router = Router(net)
    row = net.segments.index_of["r0c0-r0c1"]
    ahead = router.route_points(RouteEnd(row, pos_m=20.0), RouteEnd(row, pos_m=150.0))
    assert ids(router, ahead.segments) == ["r0c0-r0c1"]
    one_way = Router(net, u_turns=False)
    twin = net.segments.index_of["r0c1-r0c0"]
    closed = np.zeros(len(net), dtype=bool)
    closed[twin] = True
    one_way.update_from_speeds(np.full(len(net), np.nan), net.segments.speed_limit_kmh * 0.9, closed)
    behind = one_way.route_points(RouteEnd(row, pos_m=150.0), RouteEnd(row, pos_m=20.0))
    path = ids(one_way, behind.segments)
    assert path[0] == path[-1] == "r0c0-r0c1" and len(path) >= 4


def test_errors(data_dir: Path) -> None:
    net = graph_from_geojson(data_dir / "geojson" / "small.geojson")
    router = Router(net)
    with pytest.raises(RouteError) as err:
        router.route("nope", "7")
    assert err.value.reason == "unknown_segment" and "nope" in str(err.value)
    with pytest.raises(RouteError) as err:
        router.route("7", "main-1")  # "7" is one-way into a dead end
    assert err.value.reason == "unreachable" and "7" in str(err.value)
    tt = router.travel_time_s.copy()
    tt[net.segments.index_of["7"]] = np.inf
    router.set_travel_times(tt)
    with pytest.raises(RouteError) as err:
        router.route("main-1", "7")
    assert err.value.reason == "closed"


def test_unreachable_between_disconnected_pieces() -> None:
    lines = [[(0.0, 0.0), (0.001, 0.0)], [(0.01, 0.0), (0.011, 0.0)]]
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "id": f"L{k}", "properties": {"oneway": True},
             "geometry": {"type": "LineString", "coordinates": line}}
            for k, line in enumerate(lines)
        ],
    }  # fmt: skip
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".geojson", delete=False) as fh:
        json.dump(fc, fh)
    router = Router(graph_from_geojson(fh.name))
    with pytest.raises(RouteError) as err:
        router.route("L0", "L1")
    assert err.value.reason == "unreachable"
    Path(fh.name).unlink()


def test_network_without_lonlat_refuses_points(sumo_grid) -> None:  # type: ignore[no-untyped-def]
    router = Router(sumo_grid)
    assert not sumo_grid.has_lonlat
    with pytest.raises(RouteError, match="no lon/lat"):
        router.snap(10.0, 10.0)
    body = router.route_json(router.route("A0A1", "B1B2"))
    assert body["polyline"] is None
    assert shapely.LineString(body["geometry"]["coordinates"]).length > 0
