"""Live landmark tables: exact routes on them, and the validity rule that keeps routes exact.

Tables built on weights ``w`` bound every weighting ``tt ≥ w``; the router must drop them the
moment a travel time falls below its table value and use the lower-bound tables until a rebuild
lands (``roadgraph.landmarks``).
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from roadgraph import _routing_kernels as k
from roadgraph import synthetic_grid
from roadgraph.landmarks import LandmarkTables, snapshot_weights
from roadgraph.routing import Router
from tests.roadgraph.test_roadgraph_routing import (
    check_pairs,
    junction_graph,
    live_weights,
    reference_junction,
)


def test_tables_match_networkx_distances() -> None:
    """Every table entry is the Dijkstra distance to / from its landmark on the given weights."""
    net = synthetic_grid(9, 7)
    router = Router(net, n_landmarks=3, live_landmarks=False)
    rng = np.random.default_rng(1)
    weights = router.lower_bound_s * rng.uniform(1.0, 4.0, len(net))
    tables = router._landmark_tables
    lm = tables.tables(weights)
    g = nx.DiGraph()
    for i in range(len(net)):
        g.add_edge(int(router._from_node[i]), int(router._end_node[i]), weight=float(weights[i]))
    for j, landmark in enumerate(tables.nodes.tolist()):
        out = nx.single_source_dijkstra_path_length(g, landmark, weight="weight")
        back = nx.single_source_dijkstra_path_length(g.reverse(), landmark, weight="weight")
        for v in range(tables.n_nodes):
            assert np.isclose(lm[v, j, 0], out.get(v, np.inf)), (landmark, v)
            assert np.isclose(lm[v, j, 1], back.get(v, np.inf)), (landmark, v)


def test_compare_weights_rule() -> None:
    lb = np.array([1.0, 1.0, 1.0])
    base = np.array([2.0, 1.0, 3.0])
    assert k.compare_weights(np.array([2.0, 1.0, 3.0]), lb, base) == (True, True)
    assert k.compare_weights(np.array([2.5, 1.0, 3.0]), lb, base) == (True, False)  # slower: still valid
    assert k.compare_weights(np.array([2.0, 1.0, 2.9]), lb, base) == (False, False)  # faster: invalid
    # a closed segment (inf) is snapshotted at its lower bound: closing one keeps tables valid
    closed = np.array([2.0, np.inf, 3.0])
    assert k.compare_weights(closed, lb, snapshot_weights(closed, lb)) == (True, True)


def test_routes_exact_on_live_tables() -> None:
    """After the rebuild caught up, queries use the live tables and still equal networkx."""
    net = synthetic_grid(30, 30)
    router = Router(net)
    rng = np.random.default_rng(5)
    live_weights(router, rng, closed_share=0.01)
    assert router.wait_for_landmarks(timeout=60)
    assert router.landmarks_live
    g = junction_graph(router)
    pairs = rng.integers(len(net), size=(200, 2))
    assert check_pairs(router, pairs, lambda s, t: reference_junction(router, g, s, t)) > 180


def test_live_tables_settle_fewer_states_in_congestion() -> None:
    """The point of rebuilding: on congested weights live tables explore less than the floor."""
    net = synthetic_grid(40, 40)
    live = Router(net)
    floor = Router(net, live_landmarks=False)
    rng = np.random.default_rng(2)
    n = len(net)
    free_flow = net.segments.speed_limit_kmh.astype(np.float64) * 0.9
    speed = free_flow * rng.uniform(0.15, 0.6, n)
    for router in (live, floor):
        router.update_from_speeds(speed, free_flow, np.zeros(n, dtype=bool))
    assert live.wait_for_landmarks(timeout=60) and live.landmarks_live
    assert not floor.landmarks_live
    pairs = rng.integers(n, size=(60, 2))
    settled_live = [live.route(int(s), int(t)).settled for s, t in pairs]
    settled_floor = [floor.route(int(s), int(t)).settled for s, t in pairs]
    costs = [
        (live.route(int(s), int(t)).duration_s, floor.route(int(s), int(t)).duration_s) for s, t in pairs
    ]
    assert all(np.isclose(a, b, rtol=1e-9, atol=1e-5) for a, b in costs)
    assert np.median(settled_live) < 0.5 * np.median(settled_floor)


class _Recorder:
    """Stands in for the background refresher: records requests, builds only when told."""

    def __init__(self, tables: LandmarkTables, install) -> None:  # type: ignore[no-untyped-def]
        self.tables, self.install, self.requests = tables, install, []

    def request(self, weights: np.ndarray) -> None:
        self.requests.append(weights)

    def build_last(self) -> None:
        weights = self.requests[-1]
        self.install(self.tables.tables(weights), weights)


def test_faster_segment_drops_live_tables_at_once() -> None:
    """A drop below the tables' weights switches to the floor in the same update; a rise keeps
    them (still valid) and asks for a rebuild; a rebuild made stale by a later drop is refused."""
    net = synthetic_grid(12, 12)
    router = Router(net)
    recorder = _Recorder(router._landmark_tables, router._install_landmarks)
    router._refresher = recorder  # type: ignore[assignment]
    n = len(net)
    free_flow = net.segments.speed_limit_kmh.astype(np.float64) * 0.9
    slow = free_flow * 0.3
    open_ = np.zeros(n, dtype=bool)
    router.update_from_speeds(slow, free_flow, open_)
    assert len(recorder.requests) == 1 and not router.landmarks_live
    recorder.build_last()
    assert router.landmarks_live

    # the same weights again: nothing to rebuild
    router.update_from_speeds(slow, free_flow, open_)
    assert len(recorder.requests) == 1 and router.landmarks_live

    # slower and a closure: still a valid bound, kept while a rebuild is requested
    closed = open_.copy()
    closed[5] = True
    router.update_from_speeds(slow * 0.8, free_flow, closed)
    assert router.landmarks_live and len(recorder.requests) == 2

    # one segment faster than its table value: the tables go at once
    faster = slow * 0.8
    faster[17] = free_flow[17]
    router.update_from_speeds(faster, free_flow, closed)
    assert not router.landmarks_live
    assert len(recorder.requests) == 3

    # a rebuild on the earlier (slower) weights lands late: refused, the floor stays
    stale = recorder.requests[1]
    router._install_landmarks(router._landmark_tables.tables(stale), stale)
    assert not router.landmarks_live
    recorder.build_last()
    assert router.landmarks_live
    g = junction_graph(router)
    pairs = np.random.default_rng(0).integers(n, size=(80, 2))
    assert check_pairs(router, pairs, lambda s, t: reference_junction(router, g, s, t)) > 60
