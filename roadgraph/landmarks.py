"""ALT landmark tables for ``roadgraph.routing``: the floor tables and live ones kept fresh.

A landmark table holds, for every junction ``v`` and landmark ``l``, the distances d(l, v) and
d(v, l) on some per-segment weights ``w``. By the triangle inequality they give a lower bound on
d(a, b) under ``w`` — and under any weights ``tt ≥ w`` segment by segment, because raising a
segment's weight only lengthens paths. That is the whole validity rule used here:

* the **floor** tables are computed once on ``lower_bound_s`` (length / the fastest speed a
  route is planned at). Every live weighting is clamped to it, so they are always valid; but in
  congestion they are loose (a segment at 20 % of free flow still looks fast) and the search
  explores much more;
* the **live** tables are recomputed in a background thread on a snapshot of the live travel
  times. They are exact where the traffic is, and they stay valid for as long as no segment's
  travel time drops below its snapshot value. Closed segments enter the snapshot at their lower
  bound, so a closure reopening does not invalidate them.

``Router`` checks that rule after every weight update (one pass over the segments) and falls
back to the floor tables the moment it fails, so a query is exact at every instant; the
refresher then rebuilds the live tables on the new weights. On the 100,000-junction grid of
``benchmarks/bench_route.py`` a rebuild takes about a second of one core (32 Dijkstra runs)
and cuts the median query several times over.

Landmarks are chosen once, farthest-first on the lower bounds (each new landmark is the junction
farthest from those chosen so far, in either direction), which spreads them around the edge of
the network where ALT bounds are tightest; only the distances are recomputed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from . import _routing_kernels as k


class LandmarkTables:
    """Landmark choice and distance tables over the junction graph of one network."""

    def __init__(
        self,
        from_node: np.ndarray,
        end_node: np.ndarray,
        n_nodes: int,
        lower_bound_s: np.ndarray,
        count: int,
        seed: int = 0,
    ) -> None:
        self.n_nodes = n_nodes
        # junction graph in both directions as CSR; one arc per segment, in these orders
        self._fwd_order = np.argsort(from_node, kind="stable")
        self._fwd_ptr = np.zeros(n_nodes + 1, dtype=np.int64)
        np.cumsum(np.bincount(from_node, minlength=n_nodes), out=self._fwd_ptr[1:])
        self._fwd_head = end_node[self._fwd_order].astype(np.int32)
        self._bwd_order = np.argsort(end_node, kind="stable")
        self._bwd_ptr = np.zeros(n_nodes + 1, dtype=np.int64)
        np.cumsum(np.bincount(end_node, minlength=n_nodes), out=self._bwd_ptr[1:])
        self._bwd_head = from_node[self._bwd_order].astype(np.int32)
        self.nodes, self.floor = self._choose(lower_bound_s, max(1, min(count, n_nodes)), seed)

    def _choose(self, weights: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Farthest-first landmarks on ``weights`` and their tables (computed along the way)."""
        fwd, bwd = self._arc_weights(weights)
        lm = np.empty((self.n_nodes, count, 2))
        nodes = np.empty(count, dtype=np.int64)
        start = int(np.random.default_rng(seed).integers(self.n_nodes))
        d0 = k.node_dijkstra(self._fwd_ptr, self._fwd_head, fwd, start)
        nearest = np.where(np.isfinite(d0), d0, -1.0)
        for j in range(count):
            nodes[j] = int(np.argmax(nearest))
            self._fill(lm, j, int(nodes[j]), fwd, bwd)
            reach = np.fmin(lm[:, j, 0], lm[:, j, 1])
            reach = np.where(np.isfinite(reach), reach, -1.0)
            nearest = reach if j == 0 else np.minimum(nearest, reach)
        return nodes, lm

    def tables(self, weights: np.ndarray) -> np.ndarray:
        """``lm[v, l]`` = (d(l, v), d(v, l)) on per-segment ``weights``, node-major so that one
        junction's bounds sit together in memory. The kernels release the GIL while they run."""
        fwd, bwd = self._arc_weights(weights)
        lm = np.empty((self.n_nodes, len(self.nodes), 2))
        for j, node in enumerate(self.nodes.tolist()):
            self._fill(lm, j, node, fwd, bwd)
        return lm

    def _arc_weights(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return weights[self._fwd_order], weights[self._bwd_order]

    def _fill(self, lm: np.ndarray, j: int, node: int, fwd: np.ndarray, bwd: np.ndarray) -> None:
        lm[:, j, 0] = k.node_dijkstra(self._fwd_ptr, self._fwd_head, fwd, node)
        lm[:, j, 1] = k.node_dijkstra(self._bwd_ptr, self._bwd_head, bwd, node)


def snapshot_weights(travel_time_s: np.ndarray, lower_bound_s: np.ndarray) -> np.ndarray:
    """The weights live tables are built on: the travel times, closed (infinite) segments at
    their lower bound so that reopening them keeps the tables valid."""
    return np.where(np.isfinite(travel_time_s), travel_time_s, lower_bound_s)


class LandmarkRefresher:
    """Rebuilds live tables in one background thread, always on the latest requested weights.

    ``request(weights)`` hands over a snapshot and returns at once; requests made while a build
    runs coalesce into one more build on the newest snapshot. Each finished build goes to
    ``install(tables, weights)``, which decides (under the router's lock) whether it still holds.
    """

    def __init__(self, tables: LandmarkTables, install: Callable[[np.ndarray, np.ndarray], None]) -> None:
        self._tables = tables
        self._install = install
        self._cond = threading.Condition()
        self._pending: np.ndarray | None = None
        self._busy = False
        self._thread: threading.Thread | None = None
        #: builds finished, and seconds spent in the last one (for metrics and benchmarks)
        self.builds = 0
        self.last_build_s = float("nan")

    def request(self, weights: np.ndarray) -> None:
        with self._cond:
            self._pending = weights
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="landmark-refresh", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no build is pending or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                weights = self._pending
                self._pending = None
                if weights is None:
                    self._thread = None
                    self._cond.notify_all()
                    return
                self._busy = True
            try:
                t0 = time.perf_counter()
                tables = self._tables.tables(weights)
                self.last_build_s = time.perf_counter() - t0
                self._install(tables, weights)
                self.builds += 1
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
