"""Router exactness against networkx, on live weights with closures, on several kinds of network.

Two references: on networks where every turn is allowed, networkx's ``bidirectional_dijkstra`` on
the junction graph (the route's first and last segments are driven whole, so the cost is
``tt[s] + d(end of s, start of t) + tt[t]``); on networks with turn data, Dijkstra on the
segment graph whose arcs are the allowed turns (``networkx`` again), which is what a route with
turn restrictions has to equal.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from roadgraph import RoadNetwork, synthetic_grid
from roadgraph.routing import RouteError, Router

REL = 1e-9
ABS = 1e-5  # s: heap keys are bucketed to 1e-7 s (see _routing_kernels.KEY_BUCKET_S)


def live_weights(router: Router, rng: np.random.Generator, *, closed_share: float = 0.03) -> np.ndarray:
    """Congested speeds on a random third of the segments, unknown elsewhere, a few closures."""
    seg = router.network.segments
    n = len(seg)
    free_flow = seg.speed_limit_kmh.astype(np.float64) * 0.9
    speed = np.where(rng.random(n) < 0.35, free_flow * rng.uniform(0.15, 1.2, n), np.nan)
    closed = rng.random(n) < closed_share
    router.update_from_speeds(speed, free_flow, closed)
    return closed


def junction_graph(router: Router) -> nx.DiGraph:
    seg = router.network.segments
    tt = router.travel_time_s
    g = nx.DiGraph()
    for i in range(len(seg)):
        if np.isfinite(tt[i]):
            u, v = seg.from_node[i], seg.to_node[i]
            if not g.has_edge(u, v) or g[u][v]["weight"] > tt[i]:
                g.add_edge(u, v, weight=float(tt[i]))
    return g


def turn_graph(router: Router) -> nx.DiGraph:
    """Segments as nodes, allowed turns as arcs costing the next segment's travel time."""
    tt = router.travel_time_s
    turns = router.turns
    g = nx.DiGraph()
    g.add_nodes_from(range(len(tt)))
    for a in range(len(tt)):
        for b in turns.succ_idx[turns.succ_indptr[a] : turns.succ_indptr[a + 1]].tolist():
            if np.isfinite(tt[b]):
                g.add_edge(a, b, weight=float(tt[b]))
    return g


def reference_junction(router: Router, g: nx.DiGraph, s: int, t: int) -> float:
    seg, tt = router.network.segments, router.travel_time_s
    if s == t:
        return float(tt[s])
    try:
        middle = nx.bidirectional_dijkstra(g, seg.to_node[s], seg.from_node[t], weight="weight")[0]
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return np.inf
    return float(tt[s] + middle + tt[t])


def reference_turns(router: Router, g: nx.DiGraph, s: int, t: int) -> float:
    tt = router.travel_time_s
    if s == t:
        return float(tt[s])
    try:
        return float(tt[s] + nx.bidirectional_dijkstra(g, s, t, weight="weight")[0])
    except nx.NetworkXNoPath:
        return np.inf


def check_pairs(router: Router, pairs: np.ndarray, reference) -> int:  # type: ignore[no-untyped-def]
    """Compare every pair; returns how many had a route (so a test can insist there were many)."""
    tt = router.travel_time_s
    routed = 0
    for s, t in pairs.tolist():
        expected = reference(s, t)
        if not np.isfinite(tt[s]) or not np.isfinite(tt[t]):
            with pytest.raises(RouteError) as err:
                router.route(s, t)
            assert err.value.reason == "closed"
            continue
        if not np.isfinite(expected):
            with pytest.raises(RouteError) as err:
                router.route(s, t)
            assert err.value.reason == "unreachable"
            continue
        route = router.route(s, t)
        routed += 1
        rows = route.segments
        assert rows[0] == s and rows[-1] == t
        # the path is drivable: every step an allowed turn, nothing closed
        for a, b in zip(rows[:-1].tolist(), rows[1:].tolist(), strict=True):
            assert router.turns.allows(a, b), (a, b)
        assert np.isfinite(tt[rows]).all()
        assert route.duration_s == pytest.approx(tt[rows].sum(), rel=REL, abs=ABS)
        assert route.duration_s == pytest.approx(expected, rel=REL, abs=ABS), (s, t)
    return routed


@pytest.mark.parametrize("seed", [0, 1])
def test_grid_matches_networkx_junction_graph(seed: int) -> None:
    net = synthetic_grid(14, 17, arterial_every=4)
    router = Router(net, n_landmarks=8, active_landmarks=4, seed=seed)
    rng = np.random.default_rng(seed)
    live_weights(router, rng)
    g = junction_graph(router)
    pairs = rng.integers(len(net), size=(300, 2))
    routed = check_pairs(router, pairs, lambda s, t: reference_junction(router, g, s, t))
    assert routed > 250


def test_medium_grid_200_pairs() -> None:
    """The acceptance check: 200 random pairs on a medium graph, live weights and closures."""
    net = synthetic_grid(60, 60)
    router = Router(net)
    rng = np.random.default_rng(7)
    live_weights(router, rng, closed_share=0.01)
    g = junction_graph(router)
    pairs = rng.integers(len(net), size=(200, 2))
    assert check_pairs(router, pairs, lambda s, t: reference_junction(router, g, s, t)) > 180


def test_weights_refresh_in_place_keeps_exactness() -> None:
    """Many refreshes on one router (the live case): still exact, and the array is the same one."""
    net = synthetic_grid(10, 10)
    router = Router(net, n_landmarks=6)
    array = router.travel_time_s
    rng = np.random.default_rng(3)
    for _ in range(5):
        live_weights(router, rng)
        assert router.travel_time_s is array
        g = junction_graph(router)
        check_pairs(
            router,
            rng.integers(len(net), size=(40, 2)),
            lambda s, t, g=g: reference_junction(router, g, s, t),
        )


@pytest.mark.parametrize("network_name", ["aguascalientes", "west_oakland"])
def test_osm_cities_match_networkx(network_name: str, request: pytest.FixtureRequest) -> None:
    net: RoadNetwork = request.getfixturevalue(network_name)
    router = Router(net)
    rng = np.random.default_rng(11)
    live_weights(router, rng)
    g = turn_graph(router)
    pairs = rng.integers(len(net), size=(200, 2))
    routed = check_pairs(router, pairs, lambda s, t: reference_turns(router, g, s, t))
    assert routed > 50


def test_osm_without_restrictions_equals_junction_graph(west_oakland: RoadNetwork) -> None:
    # West Oakland has no restriction relations: the turn-aware and the junction reference agree
    router = Router(west_oakland)
    assert router.turns.source == "all turns"
    rng = np.random.default_rng(5)
    live_weights(router, rng)
    g = junction_graph(router)
    assert (
        check_pairs(
            router,
            rng.integers(len(west_oakland), size=(200, 2)),
            lambda s, t: reference_junction(router, g, s, t),
        )
        > 50
    )


@pytest.mark.parametrize("network_name", ["sumo_grid", "sumo_oakland"])
def test_sumo_networks_match_networkx_on_connections(
    network_name: str, request: pytest.FixtureRequest
) -> None:
    net: RoadNetwork = request.getfixturevalue(network_name)
    router = Router(net)
    assert router.turns.source == "sumo connections"
    rng = np.random.default_rng(2)
    live_weights(router, rng, closed_share=0.02)
    g = turn_graph(router)
    n = len(net)
    pairs = (
        np.array([(s, t) for s in range(n) for t in range(n)]) if n <= 30 else rng.integers(n, size=(300, 2))
    )
    assert check_pairs(router, pairs, lambda s, t: reference_turns(router, g, s, t)) > 0.5 * len(pairs)


def test_no_u_turns_matches_reference() -> None:
    net = synthetic_grid(6, 7)
    router = Router(net, u_turns=False)
    seg = net.segments
    for a in range(len(seg)):
        for b in router.turns.succ_idx[router.turns.succ_indptr[a] : router.turns.succ_indptr[a + 1]]:
            assert not (seg.to_node[b] == seg.from_node[a] and seg.from_node[b] == seg.to_node[a])
    rng = np.random.default_rng(9)
    live_weights(router, rng, closed_share=0.0)
    g = turn_graph(router)
    check_pairs(router, rng.integers(len(net), size=(200, 2)), lambda s, t: reference_turns(router, g, s, t))
