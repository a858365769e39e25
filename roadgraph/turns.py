"""Allowed turns: which segment may follow which, from the network's turn data.

The starting point is ``RoadNetwork.successors_csr`` — every segment leaving the junction where a
segment ends — narrowed by what the source says:

SUMO (``meta["sumo_connections"]``, kept by ``graph_from_sumo``)
    A turn ``e -> e'`` exists only where the net has a ``<connection from="e" to="e'">`` between a
    lane of ``e`` and a lane of ``e'`` that both admit passenger cars. SUMO's own turnaround
    connections (``dir="t"``) decide U-turns.

OSM (``meta["turn_restrictions"]``, kept by ``graph_from_osm``)
    ``type=restriction`` relations (``restriction`` or ``restriction:motorcar``) with a ``from`` way,
    a ``via`` *node* and a ``to`` way: ``no_*`` removes the turns from the ``from`` way's segments
    that end at the via node onto the ``to`` way's segments that start there; ``only_*`` keeps only
    those. Relations whose ``except`` tag names ``motorcar``/``motor_vehicle``, conditional ones
    (``restriction:conditional``), and via-*way* restrictions are not applied (the last would need
    a search state of more than one segment); ``TurnTable.ignored`` counts them by reason. OSM
    segment ids are ``"{way_id}-{k}"``/``"{way_id}-{k}-r"``, so a segment's way is the part before
    the first ``-``.

Everything else (GeoJSON, synthetic grids, OSM without relations)
    Every turn at a junction is allowed.

U-turns (``e -> e'`` with ``e'`` going back to where ``e`` came from) are allowed unless the
source forbids them (SUMO without a turnaround connection, OSM ``no_u_turn``) or the caller
passes ``u_turns=False``; even then a U-turn stays allowed at a dead end, where it is the only way
on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .network import RoadNetwork


@dataclass(frozen=True, eq=False)
class TurnTable:
    """Allowed transitions as CSR arrays in both directions (segment rows of the network).

    ``succ_idx[succ_indptr[i]:succ_indptr[i+1]]`` are the segments that may follow ``i``;
    ``pred_idx[pred_indptr[j]:pred_indptr[j+1]]`` those that may precede ``j``.
    """

    succ_indptr: np.ndarray  # int64
    succ_idx: np.ndarray  # int32
    pred_indptr: np.ndarray  # int64
    pred_idx: np.ndarray  # int32
    source: str  # "sumo connections", "osm restrictions", "all turns"
    removed: int  # transitions removed from "every turn at the junction"
    ignored: dict[str, int] = field(default_factory=dict)  # restrictions not applied, by reason

    def allows(self, a: int, b: int) -> bool:
        return bool(np.any(self.succ_idx[self.succ_indptr[a] : self.succ_indptr[a + 1]] == b))


def _csr(n: int, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of pairs (a[k] -> b[k]) grouped by ``a``, keeping the order within a group stable."""
    order = np.argsort(a, kind="stable")
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(a, minlength=n), out=indptr[1:])
    return indptr, b[order].astype(np.int32)


def _pairs(network: RoadNetwork) -> tuple[np.ndarray, np.ndarray]:
    indptr, idx = network.successors_csr()
    a = np.repeat(np.arange(len(network), dtype=np.int64), np.diff(indptr))
    return a, idx.astype(np.int64)


def _sumo_keep(network: RoadNetwork, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ids = network.segments.segment_id
    allowed = {(str(f), str(t)) for f, t in network.meta["sumo_connections"]}
    return np.fromiter(((ids[i], ids[j]) in allowed for i, j in zip(a, b, strict=True)), bool, len(a))


def _osm_way(segment_id: str) -> str:
    return segment_id.split("-", 1)[0]


def _osm_keep(network: RoadNetwork, a: np.ndarray, b: np.ndarray, ignored: Counter[str]) -> np.ndarray:
    seg = network.segments
    ways = np.array([_osm_way(str(s)) for s in seg.segment_id], dtype=object)
    keep = np.ones(len(a), dtype=bool)
    # transitions grouped by the junction they pass through (to_node of the first segment)
    by_from: dict[int, list[int]] = {}
    for k, i in enumerate(a.tolist()):
        by_from.setdefault(i, []).append(k)
    ends_at: dict[tuple[str, str], list[int]] = {}  # (way, node) -> segments of way ending at node
    for i in range(len(seg)):
        ends_at.setdefault((ways[i], str(seg.to_node[i])), []).append(i)
    for rel in network.meta.get("turn_restrictions", []):
        kind = str(rel.get("restriction", ""))
        excepted = set(str(rel.get("except", "")).split(";")) & {"motorcar", "motor_vehicle", "vehicle"}
        if excepted:
            ignored["except motorcar"] += 1
            continue
        if rel.get("via_ways"):
            ignored["via way"] += 1
            continue
        if (
            len(rel.get("from_ways", [])) != 1
            or len(rel.get("to_ways", [])) != 1
            or len(rel.get("via_nodes", [])) != 1
        ):
            ignored["incomplete or ambiguous members"] += 1
            continue
        if not (kind.startswith("no_") or kind.startswith("only_")):
            ignored[f"unknown kind {kind!r}"] += 1
            continue
        via = str(rel["via_nodes"][0])
        from_way, to_way = str(rel["from_ways"][0]), str(rel["to_ways"][0])
        from_segments = ends_at.get((from_way, via), [])
        if not from_segments:
            ignored["members not in the network"] += 1
            continue
        for i in from_segments:
            turns = by_from.get(i, [])
            onto = [ways[b[k]] == to_way for k in turns]
            if kind.startswith("only_") and not any(onto):
                # the mandated way is not in the network (clipped extract): keep the junction open
                ignored["members not in the network"] += 1
                continue
            for k, onto_to_way in zip(turns, onto, strict=True):
                if onto_to_way == kind.startswith("no_"):
                    keep[k] = False
    return keep


def turn_table(network: RoadNetwork, *, u_turns: bool = True) -> TurnTable:
    """The allowed transitions of ``network`` (see the module docstring for the rules)."""
    n = len(network)
    a, b = _pairs(network)
    ignored: Counter[str] = Counter()
    if "sumo_connections" in network.meta:
        keep = _sumo_keep(network, a, b)
        source = "sumo connections"
    elif network.meta.get("turn_restrictions"):
        keep = _osm_keep(network, a, b, ignored)
        source = "osm restrictions"
    else:
        keep = np.ones(len(a), dtype=bool)
        source = "all turns"
    if not u_turns:
        seg = network.segments
        u_turn = seg.to_node[b] == seg.from_node[a]
        u_turn &= seg.from_node[b] == seg.to_node[a]
        # a U-turn stays allowed where it is the segment's only way on (a dead end)
        others = np.bincount(a[keep & ~u_turn], minlength=n)
        keep &= ~(u_turn & (others[a] > 0))
    a, b = a[keep], b[keep]
    succ_indptr, succ_idx = _csr(n, a, b)
    pred_indptr, pred_idx = _csr(n, b, a)
    return TurnTable(
        succ_indptr=succ_indptr,
        succ_idx=succ_idx,
        pred_indptr=pred_indptr,
        pred_idx=pred_idx,
        source=source,
        removed=int((~keep).sum()),
        ignored=dict(ignored),
    )


@dataclass(frozen=True, eq=False)
class SearchGraph:
    """The graph the router searches: states joined by arcs that each drive one segment.

    An edge-based graph (one state per segment) handles turn restrictions exactly but has about
    four times as many states as junctions. Where every turn at a junction is allowed, *how* one
    arrived there does not matter, so all segments ending at such a junction share one state (the
    junction); only segments ending at a junction with a restricted turn keep a state of their
    own. Shortest paths are the same as on the edge-based graph; on networks without restrictions
    this is the plain junction graph.

    Arc ``k`` of state ``x`` (``succ_ptr[x] <= k < succ_ptr[x+1]``) drives segment ``succ_seg[k]``
    into state ``succ_head[k]``; ``pred_*`` lists the same arcs by head (``pred_tail`` = the
    state the arc leaves). ``*_owner[k]`` is the state arc ``k`` is listed under.
    """

    seg_state: np.ndarray  # int64 per segment: the state at its end
    state_node: np.ndarray  # int64 per state: its junction (index into the router's node list)
    succ_ptr: np.ndarray
    succ_head: np.ndarray
    succ_seg: np.ndarray
    succ_owner: np.ndarray
    pred_ptr: np.ndarray
    pred_tail: np.ndarray
    pred_seg: np.ndarray
    pred_owner: np.ndarray
    restricted_junctions: int

    @property
    def n_states(self) -> int:
        return len(self.state_node)


def search_graph(table: TurnTable, from_node: np.ndarray, to_node: np.ndarray, n_nodes: int) -> SearchGraph:
    """Build the ``SearchGraph`` of a turn table; ``from_node``/``to_node`` are junction indices."""
    n = len(from_node)
    out_degree = np.bincount(from_node, minlength=n_nodes)
    allowed = np.diff(table.succ_indptr)
    restricted_seg = allowed < out_degree[to_node]
    restricted_node = np.zeros(n_nodes, dtype=bool)
    restricted_node[to_node[restricted_seg]] = True

    open_nodes = np.flatnonzero(~restricted_node)
    node_state = np.full(n_nodes, -1, dtype=np.int64)
    node_state[open_nodes] = np.arange(len(open_nodes))
    own = restricted_node[to_node]  # segments that keep a state of their own
    own_rows = np.flatnonzero(own)
    seg_state = node_state[to_node]
    seg_state[own_rows] = len(open_nodes) + np.arange(len(own_rows))
    state_node = np.concatenate((open_nodes, to_node[own_rows])).astype(np.int64)

    # arcs leaving open junctions: every segment that starts there
    leave = np.flatnonzero(~restricted_node[from_node])
    owner_a, seg_a = node_state[from_node[leave]], leave
    # arcs leaving segment states: the allowed turns
    first = np.repeat(np.arange(n), allowed)
    turn = own[first]
    owner_b, seg_b = seg_state[first[turn]], table.succ_idx[turn].astype(np.int64)
    owner = np.concatenate((owner_a, owner_b))
    seg = np.concatenate((seg_a, seg_b))
    head = seg_state[seg]
    n_states = len(state_node)

    def by(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(key, kind="stable")
        ptr = np.zeros(n_states + 1, dtype=np.int64)
        np.cumsum(np.bincount(key, minlength=n_states), out=ptr[1:])
        return ptr, order

    succ_ptr, so = by(owner)
    pred_ptr, po = by(head)
    return SearchGraph(
        seg_state=seg_state,
        state_node=state_node,
        succ_ptr=succ_ptr,
        succ_head=head[so].astype(np.int32),
        succ_seg=seg[so].astype(np.int32),
        succ_owner=owner[so].astype(np.int32),
        pred_ptr=pred_ptr,
        pred_tail=owner[po].astype(np.int32),
        pred_seg=seg[po].astype(np.int32),
        pred_owner=head[po].astype(np.int32),
        restricted_junctions=int(restricted_node.sum()),
    )
