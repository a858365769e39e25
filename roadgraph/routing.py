"""Fastest routes on live travel times: ``Router``.

Model
    A route is a sequence of whole segments ``s, …, t`` in which each step is an allowed turn
    (``roadgraph.turns``: SUMO connections, OSM ``restriction`` relations, U-turns). Its duration is
    the sum of the segments' travel times, ``s`` and ``t`` included — no turn costs are modelled.
    A point given as lon/lat snaps to its nearest segment (within ``max_snap_m``); the route then
    covers that segment whole, so ``duration_s`` is exactly the sum over ``segment_ids`` as the
    interface requires (the snapped position is reported beside it). On a two-way road both
    directions are tried at each end, and the faster route wins.

Weights
    ``travel_time_s`` holds one travel time per segment and is updated *in place*
    (``update_from_speeds`` each tick, or ``set_travel_times``); the search structures are built
    once. Travel times are clamped from below to ``lower_bound_s`` = length / (speed limit ×
    ``max_speed_factor``). The default factor is the engine's default free-flow share of the limit
    (0.9): a route is never planned faster than free flow, so a speed measured above free flow
    counts as free flow. That bound is what keeps the landmark potentials valid — and the search
    exact — under any live weights, and the closer it is to the real travel times the less the
    search explores (a bound at 1.5 × the limit made queries about twice as slow). Closed segments
    have an infinite travel time and are never entered.

Search
    Bidirectional A* with ALT landmarks (see ``roadgraph._routing_kernels``) over the search graph
    of ``roadgraph.turns.SearchGraph`` — junctions where every turn is allowed, segments where
    turns are restricted: ``n_landmarks`` landmarks chosen farthest-first on the lower-bound
    junction graph, of which the ``active_landmarks`` best for each origin–destination pair are
    used. Exact: path costs equal Dijkstra's on the same weights (tested against networkx),
    within the 1e-7 s key rounding of the kernels.

Live landmarks
    Landmark distances on the lower bounds are always valid but loose in congestion. With
    ``live_landmarks`` (the default) a background thread rebuilds them on the current travel
    times after each weight change (``roadgraph.landmarks``); they are used while no segment's
    travel time has dropped below the value they were built on — checked at every update, with
    the lower-bound tables as the fallback in between — so every query stays exact.
    ``wait_for_landmarks`` blocks until the rebuild has caught up (tests, benchmarks).

U-turns
    Allowed at any junction unless the network forbids them (SUMO without a turnaround
    connection, OSM ``no_u_turn``) or ``u_turns=False`` (then only at dead ends).

Alternatives
    Penalty method: after the best route, the travel times of the segments of every route found so
    far are multiplied by ``alternative_penalty`` (in a scratch copy) and the search runs again. A
    candidate is kept when, on the real travel times, it is at most ``max_stretch`` × the best
    duration and shares at most ``max_overlap`` of its length with each route already kept.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from . import _routing_kernels as k
from .landmarks import LandmarkRefresher, LandmarkTables, snapshot_weights
from .network import RoadNetwork
from .polyline import encode_polyline
from .snapping import SegmentIndex
from .turns import SearchGraph, TurnTable, search_graph, turn_table

#: Free-flow speed as a share of the speed limit when no engine supplies one (the engine default).
DEFAULT_FREE_FLOW_FRACTION = 0.9


class RouteError(ValueError):
    """A route request that cannot be answered; ``reason`` is one of ``bad_request``,
    ``off_network``, ``unknown_segment``, ``closed`` or ``unreachable``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RouteEnd:
    """Where a route end lies: its segment row, and for a snapped point the position on it."""

    segment: int
    pos_m: float | None = None
    distance_m: float | None = None
    lonlat: tuple[float, float] | None = None


@dataclass(frozen=True, eq=False)
class Route:
    """A path of segment rows with its cost on the travel times it was searched on."""

    segments: np.ndarray  # int64 segment rows, in driving order
    duration_s: float
    distance_m: float
    settled: int = 0  # search states settled (a measure of the work done)


class Router:
    """Fastest paths on one network with live, in-place travel times (see the module docstring).

    Thread-safe: queries and weight updates take one lock (a query takes milliseconds).
    """

    def __init__(
        self,
        network: RoadNetwork,
        *,
        turns: TurnTable | None = None,
        u_turns: bool = True,
        max_speed_factor: float = DEFAULT_FREE_FLOW_FRACTION,
        free_flow_fraction: float = DEFAULT_FREE_FLOW_FRACTION,
        n_landmarks: int = 16,
        active_landmarks: int = 8,
        live_landmarks: bool = True,
        max_snap_m: float = 100.0,
        alternative_penalty: float = 1.5,
        max_overlap: float = 0.7,
        max_stretch: float = 1.4,
        seed: int = 0,
    ) -> None:
        if max_speed_factor <= 0 or free_flow_fraction <= 0:
            raise ValueError("max_speed_factor and free_flow_fraction must be > 0")
        self.network = network
        self.turns = turns if turns is not None else turn_table(network, u_turns=u_turns)
        seg = network.segments
        n = len(seg)
        self.length_m = np.ascontiguousarray(seg.length_m, dtype=np.float64)
        limit_ms = seg.speed_limit_kmh.astype(np.float64) / 3.6
        self.lower_bound_s = self.length_m / (limit_ms * max_speed_factor)
        self.free_flow_s = np.maximum(self.length_m / (limit_ms * free_flow_fraction), self.lower_bound_s)
        #: live travel time per segment (s); inf = closed. Updated in place, never replaced.
        self.travel_time_s = self.free_flow_s.copy()
        #: congestion level per segment (GB/T 33171, 0 = unknown), as last supplied
        self.levels = np.zeros(n, dtype=np.int8)
        #: the engine tick the weights come from (None: free flow or a weights file)
        self.weights_ts: float | None = None
        self.max_snap_m = max_snap_m
        self.alternative_penalty = alternative_penalty
        self.max_overlap = max_overlap
        self.max_stretch = max_stretch
        self._lock = threading.Lock()

        nodes, inverse = np.unique(
            np.concatenate((seg.from_node, seg.to_node)).astype(str), return_inverse=True
        )
        self._from_node = inverse[:n].astype(np.int64)
        self._end_node = inverse[n:].astype(np.int64)
        self._n_nodes = len(nodes)
        self._twin = self._twins()
        self.graph: SearchGraph = search_graph(self.turns, self._from_node, self._end_node, self._n_nodes)
        self._landmark_tables = LandmarkTables(
            self._from_node, self._end_node, self._n_nodes, self.lower_bound_s, n_landmarks, seed
        )
        #: the landmark tables queries use now, and the weights they were built on (None: the
        #: lower bounds, always valid)
        self._lm = self._landmark_tables.floor
        self._lm_base: np.ndarray | None = None
        self._refresher = (
            LandmarkRefresher(self._landmark_tables, self._install_landmarks) if live_landmarks else None
        )
        self.active_landmarks = max(1, min(active_landmarks, self._lm.shape[1]))

        # per-query work arrays, reused (see the kernel's stamps); a heap never holds more than
        # one entry per arc relaxation plus the backward search's starting arcs
        states = self.graph.n_states
        heap = 2 * len(self.graph.succ_seg) + 2
        self._work = np.zeros((states, k.WORK_COLUMNS))
        self._serial = 0
        self._heap_keys_f = np.empty(heap)
        self._heap_ties_f = np.empty(heap)
        self._heap_items_f = np.empty(heap, dtype=np.int32)
        self._heap_keys_r = np.empty(heap)
        self._heap_ties_r = np.empty(heap)
        self._heap_items_r = np.empty(heap, dtype=np.int32)
        self._path = np.empty(max(states, n) + 2, dtype=np.int32)
        self._scratch_tt = np.empty(n)
        self._index: SegmentIndex | None = None
        #: typical speed / free-flow ratio by hour of day (UTC), (n, 24), NaN = none; see set_profile
        self._profile: np.ndarray | None = None
        self._profile_free_flow_kmh: np.ndarray | None = None

    # ------------------------------------------------------------------ preprocessing

    def _twins(self) -> np.ndarray:
        """Row of the segment going the other way between the same junctions (-1 if none)."""
        by_pair = {
            (int(a), int(b)): i for i, (a, b) in enumerate(zip(self._from_node, self._end_node, strict=True))
        }
        return np.array(
            [by_pair.get((int(b), int(a)), -1) for a, b in zip(self._from_node, self._end_node, strict=True)],
            dtype=np.int64,
        )

    # ------------------------------------------------------------------ weights

    def set_travel_times(self, travel_time_s: np.ndarray) -> None:
        """Replace every segment's travel time (s; inf = closed), clamped to ``lower_bound_s``."""
        tt = np.asarray(travel_time_s, dtype=np.float64)
        if tt.shape != self.travel_time_s.shape:
            raise ValueError(f"travel times have shape {tt.shape}, expected {self.travel_time_s.shape}")
        if np.isnan(tt).any() or (tt <= 0).any():
            raise ValueError("travel times must be positive numbers (inf = closed)")
        with self._lock:
            np.maximum(tt, self.lower_bound_s, out=self.travel_time_s)
            self._weights_changed()

    def update_from_speeds(
        self,
        speed_kmh: np.ndarray,
        free_flow_kmh: np.ndarray,
        closed: np.ndarray,
        *,
        levels: np.ndarray | None = None,
        ts: float | None = None,
    ) -> None:
        """Set travel times from live speeds in place: length / speed, free-flow where the speed is
        unknown (NaN), clamped to the lower bound, inf where ``closed``. No allocation on the hot
        path (about a millisecond for 400,000 segments)."""
        with self._lock:
            k.travel_times_from_speeds(
                self.length_m,
                np.asarray(speed_kmh),
                np.asarray(free_flow_kmh),
                np.asarray(closed, dtype=np.bool_),
                self.lower_bound_s,
                self.travel_time_s,
            )
            if levels is not None:
                self.levels[:] = levels
            self.weights_ts = ts
            self._weights_changed()

    # ------------------------------------------------------------------ live landmarks

    @property
    def landmarks_live(self) -> bool:
        """True while queries use landmark tables built on live travel times (not the floor)."""
        return self._lm_base is not None

    def _weights_changed(self) -> None:
        """After an update (lock held): drop live tables a travel-time drop has invalidated, and
        ask for a rebuild unless the tables in use are still exact for these weights."""
        if self._lm_base is not None:
            valid, same = k.compare_weights(self.travel_time_s, self.lower_bound_s, self._lm_base)
            if not valid:
                self._lm, self._lm_base = self._landmark_tables.floor, None
            if same:
                return
        if self._refresher is not None:
            self._refresher.request(snapshot_weights(self.travel_time_s, self.lower_bound_s))

    def _install_landmarks(self, tables: np.ndarray, base: np.ndarray) -> None:
        """A finished rebuild (refresher thread): use it if the weights still respect it."""
        with self._lock:
            valid, _ = k.compare_weights(self.travel_time_s, self.lower_bound_s, base)
            if valid:
                self._lm, self._lm_base = tables, base

    def wait_for_landmarks(self, timeout: float | None = None) -> bool:
        """Block until live landmark tables are built for the current weights (False on
        timeout, or when live landmarks are off)."""
        if self._refresher is None:
            return False
        return self._refresher.wait_idle(timeout)

    def set_profile(self, ratio_by_hour: np.ndarray | None, free_flow_kmh: np.ndarray | None = None) -> None:
        """Typical speed / free-flow ratio per segment and hour of day (UTC), shape (n, H), NaN
        where unknown, with the free-flow speeds it refers to; ``None`` switches predictions off."""
        if ratio_by_hour is None:
            self._profile = self._profile_free_flow_kmh = None
            return
        ratio = np.asarray(ratio_by_hour, dtype=np.float64)
        if ratio.ndim != 2 or ratio.shape[0] != len(self.length_m) or free_flow_kmh is None:
            raise ValueError(
                f"profile has shape {ratio.shape}, expected ({len(self.length_m)}, hours) with free flow"
            )
        self._profile = ratio
        self._profile_free_flow_kmh = np.asarray(free_flow_kmh, dtype=np.float64).copy()

    def predicted_duration_s(self, route: Route, depart_ts: float) -> float | None:
        """Duration along ``route`` departing at ``depart_ts`` when each segment takes its typical
        travel time for the hour at which it is entered (the live one where no profile is known);
        None without a profile."""
        profile, free_flow = self._profile, self._profile_free_flow_kmh
        if profile is None or free_flow is None:
            return None
        hours = profile.shape[1]
        t = depart_ts
        for row in route.segments.tolist():
            ratio = profile[row, int((t % 86400.0) // 3600.0) % hours]
            live = self.travel_time_s[row]
            if np.isfinite(ratio) and ratio > 0 and np.isfinite(live):
                typical = self.length_m[row] * 3.6 / (free_flow[row] * ratio)
                t += max(typical, self.lower_bound_s[row])
            else:
                t += live
        return float(t - depart_ts)

    # ------------------------------------------------------------------ queries

    def segment_row(self, segment: int | str) -> int:
        """The row of a segment given by id (str) or row (int); ``RouteError`` if unknown."""
        if isinstance(segment, str):
            row = self.network.segments.index_of.get(segment)
            if row is None:
                raise RouteError("unknown_segment", f"unknown segment id {segment!r}")
            return row
        if not 0 <= int(segment) < len(self.network):
            raise RouteError("unknown_segment", f"segment row {segment} out of range")
        return int(segment)

    def _search(self, source: int, target: int, tt: np.ndarray) -> Route | None:
        """One exact query on travel times ``tt`` (the caller holds the lock)."""
        if source == target:
            if not np.isfinite(tt[source]):
                return None
            path = np.array([source], dtype=np.int64)
            return Route(path, float(tt[source]), float(self.length_m[source]))
        self._serial += 1
        active = k.best_landmarks(
            self._lm, self._end_node[source], self._end_node[target], self.active_landmarks
        )
        g = self.graph
        cost, length, settled = k.bidirectional_alt(
            g.succ_ptr,
            g.succ_head,
            g.succ_seg,
            g.succ_owner,
            g.pred_ptr,
            g.pred_tail,
            g.pred_seg,
            g.pred_owner,
            tt,
            g.seg_state,
            g.state_node,
            self._lm,
            active,
            source,
            target,
            self._work,
            float(self._serial),
            self._heap_keys_f,
            self._heap_ties_f,
            self._heap_items_f,
            self._heap_keys_r,
            self._heap_ties_r,
            self._heap_items_r,
            self._path,
        )
        if length == 0:
            return None
        path = self._path[:length].astype(np.int64)
        return Route(path, float(cost), float(self.length_m[path].sum()), int(settled))

    def _loop(self, row: int, tt: np.ndarray) -> Route | None:
        """From a point on ``row`` back to an earlier point on it: leave it, come round, re-enter."""
        best: Route | None = None
        for nxt in self.turns.succ_idx[self.turns.succ_indptr[row] : self.turns.succ_indptr[row + 1]]:
            rest = self._search(int(nxt), row, tt)
            if rest is not None and (best is None or tt[row] + rest.duration_s < best.duration_s):
                path = np.concatenate(([row], rest.segments))
                best = Route(path, float(tt[row] + rest.duration_s), float(self.length_m[path].sum()))
        return best

    def route(self, source: int | str, target: int | str) -> Route:
        """The fastest route from segment ``source`` to segment ``target`` (ids or rows), both
        driven whole. ``RouteError`` for unknown or closed segments and unreachable targets."""
        s, t = self.segment_row(source), self.segment_row(target)
        with self._lock:
            self._check_open(s, t)
            found = self._search(s, t, self.travel_time_s)
        if found is None:
            raise self._unreachable(s, t)
        return found

    def _check_open(self, *rows: int) -> None:
        for row in rows:
            if not np.isfinite(self.travel_time_s[row]):
                sid = self.network.segments.segment_id[row]
                raise RouteError("closed", f"segment {sid} is closed")

    def _unreachable(self, s: int, t: int) -> RouteError:
        ids = self.network.segments.segment_id
        return RouteError("unreachable", f"no route from segment {ids[s]} to segment {ids[t]}")

    def snap(self, lon: float, lat: float, *, max_snap_m: float | None = None) -> RouteEnd:
        """The segment nearest to a lon/lat point (``RouteError`` when none within the distance)."""
        if not (np.isfinite(lon) and np.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
            raise RouteError("bad_request", f"coordinates ({lon}, {lat}) are not a WGS84 lon,lat pair")
        if not self.network.has_lonlat:
            raise RouteError(
                "bad_request", f"network {self.network.source} has no lon/lat; give segment ids instead"
            )
        if self._index is None:
            self._index = SegmentIndex(self.network)
        limit = self.max_snap_m if max_snap_m is None else max_snap_m
        hit = self._index.snap_lonlat([lon], [lat], max_distance_m=limit)
        if not hit.found[0]:
            raise RouteError("off_network", f"point {lon},{lat} is more than {limit:g} m from any road")
        return RouteEnd(
            segment=int(hit.segment_index[0]),
            pos_m=float(hit.pos_m[0]),
            distance_m=float(hit.distance_m[0]),
            lonlat=(float(lon), float(lat)),
        )

    def route_points(self, origin: RouteEnd, destination: RouteEnd) -> Route:
        """The fastest route between two snapped ends, trying both directions of two-way roads."""
        starts = [origin.segment] + (
            [int(self._twin[origin.segment])] if self._twin[origin.segment] >= 0 else []
        )
        ends = [destination.segment] + (
            [int(self._twin[destination.segment])] if self._twin[destination.segment] >= 0 else []
        )
        best: Route | None = None
        with self._lock:
            tt = self.travel_time_s
            if not any(np.isfinite(tt[s]) for s in starts) or not any(np.isfinite(tt[t]) for t in ends):
                closed = (
                    origin.segment if not any(np.isfinite(tt[s]) for s in starts) else destination.segment
                )
                self._check_open(closed)
            for s in starts:
                for t in ends:
                    if s == t and origin.pos_m is not None and destination.pos_m is not None:
                        behind = self.position_on(destination, s) < self.position_on(origin, s)
                        found = self._loop(s, tt) if behind else self._search(s, t, tt)
                    else:
                        found = self._search(s, t, tt)
                    if found is not None and (best is None or found.duration_s < best.duration_s):
                        best = found
        if best is None:
            raise self._unreachable(origin.segment, destination.segment)
        return best

    def position_on(self, end: RouteEnd, row: int) -> float:
        """``end``'s position measured along segment ``row`` (its own segment or that one's twin)."""
        pos = end.pos_m or 0.0
        return pos if end.segment == row else float(self.length_m[row]) - pos

    def alternatives(self, best: Route, count: int) -> list[Route]:
        """Up to ``count`` routes from ``best``'s first to its last segment that differ from it
        and from each other (penalty method; see the module docstring)."""
        if count <= 0 or len(best.segments) < 2:
            return []
        kept = [best]
        s, t = int(best.segments[0]), int(best.segments[-1])
        with self._lock:
            tt = self.travel_time_s
            penalised = self._scratch_tt
            np.copyto(penalised, tt)
            penalised[best.segments] *= self.alternative_penalty
            for _ in range(3 * count + 2):
                found = self._search(s, t, penalised)
                if found is None:
                    break
                real = float(tt[found.segments].sum())
                if real > self.max_stretch * best.duration_s:
                    break  # penalties only push further candidates to longer routes
                penalised[found.segments] *= self.alternative_penalty
                if all(self._overlap(found.segments, r.segments) <= self.max_overlap for r in kept):
                    kept.append(Route(found.segments, real, found.distance_m, found.settled))
                    if len(kept) > count:
                        break
        return kept[1:]

    def _overlap(self, a: np.ndarray, b: np.ndarray) -> float:
        """Share of route ``a``'s length that it shares with route ``b``."""
        shared = np.intersect1d(a, b)
        return float(self.length_m[shared].sum() / max(self.length_m[np.unique(a)].sum(), 1e-9))

    def path_cost(self, segments: np.ndarray) -> float:
        """Sum of the current travel times over ``segments`` (rows)."""
        return float(self.travel_time_s[np.asarray(segments, dtype=np.int64)].sum())

    # ------------------------------------------------------------------ output

    def route_json(self, route: Route, *, alternatives: list[Route] | None = None) -> dict[str, Any]:
        """The route as the interface JSON (docs/interfaces.md §3), plus ``polyline`` (Google
        encoded, precision 5, lon/lat networks only), per-road ``legs`` and, when a typical
        profile is set and the weights have a tick time, ``predicted_duration_s`` (departing at
        that tick; see ``predicted_duration_s``)."""
        seg = self.network.segments
        rows = route.segments
        coords = self._coordinates(rows)
        roads: list[str] = []
        legs: list[dict[str, Any]] = []
        for row in rows.tolist():
            name = str(seg.name[row])
            if legs and legs[-1]["road"] == name:
                legs[-1]["distance_m"] += float(self.length_m[row])
                legs[-1]["duration_s"] += float(self.travel_time_s[row])
                legs[-1]["segments"] += 1
            else:
                legs.append(
                    {
                        "road": name,
                        "distance_m": float(self.length_m[row]),
                        "duration_s": float(self.travel_time_s[row]),
                        "segments": 1,
                    }
                )
            if name and (not roads or roads[-1] != name):
                roads.append(name)
        for leg in legs:
            leg["distance_m"] = round(leg["distance_m"], 1)
            leg["duration_s"] = round(leg["duration_s"], 2)
        out: dict[str, Any] = {
            "duration_s": round(route.duration_s, 3),
            "distance_m": round(route.distance_m, 1),
            "segment_ids": [str(seg.segment_id[r]) for r in rows.tolist()],
            "roads": roads,
            "levels": [int(v) for v in self.levels[rows].tolist()],
            "geometry": {"type": "LineString", "coordinates": coords},
            "polyline": encode_polyline([(c[0], c[1]) for c in coords]) if self.network.has_lonlat else None,
            "legs": legs,
        }
        if self._profile is not None and self.weights_ts is not None:
            predicted = self.predicted_duration_s(route, self.weights_ts)
            out["predicted_duration_s"] = None if predicted is None else round(predicted, 3)
        if alternatives is not None:
            out["alternatives"] = [self.route_json(alt) for alt in alternatives]
        return out

    def _coordinates(self, rows: np.ndarray) -> list[list[float]]:
        """The segments' lines joined end to end, without repeating the shared junction points."""
        digits = 7 if self.network.has_lonlat else 2
        parts = shapely.get_coordinates(self.network.segments.geometry[rows])
        keep = np.ones(len(parts), dtype=bool)
        keep[1:] = np.any(parts[1:] != parts[:-1], axis=1)
        return np.round(parts[keep], digits).tolist()
