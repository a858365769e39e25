"""Numba kernels behind ``roadgraph.routing``: shortest paths over plain CSR arrays.

The public API (``Router``) validates inputs and never exposes numba types; everything here is a
small loop over arrays, tested against networkx in ``tests/roadgraph/test_roadgraph_routing*.py``.

The search graph (``roadgraph.turns.SearchGraph``) is edge-based where it has to be: its arcs
each drive one segment (cost ``tt[segment]``), its states are junctions where every turn is
allowed and, at junctions with a restricted turn, the segments arriving there. A path ``s, …, t``
therefore costs exactly the sum of its segments' travel times (``tt[s]`` is charged at the
start), and turn restrictions are simply missing arcs.

``bidirectional_alt`` is bidirectional A* with ALT landmark potentials (Goldberg & Harrelson 2005)
in the symmetric "average potential" form (Ikeda et al. 1994): ``p_f = (π_t − π_s) / 2`` for the
forward search and ``p_r = −p_f`` for the backward one. Both reduced-cost graphs then have
non-negative arcs, and the search may stop as soon as ``top_f + top_r ≥ μ`` (the keys include the
potentials), exactly as bidirectional Dijkstra on the reduced graph — so the result is exact.
The two searches take turns by the number of states each has settled, not by the smaller key:
on the 100,000-junction grid of ``benchmarks/bench_route.py`` that settles 40 % fewer states
(the keys of the two directions are offset by the potentials, so comparing them favoured one
side); the stopping rule does not depend on the order.

Landmark distances are *junction*-level distances on lower-bound travel times (``lb``), ignoring
turn restrictions and closures. A state's potential uses its junction (``state_node``): the cost
from there to the end of ``t`` is at least the lower-bound distance between the junctions. These
bounds stay valid for every live weighting with ``tt ≥ lb`` (restrictions and closures only make
paths longer), which ``Router`` enforces by clamping; that is why landmarks are computed once and
never again.

Per-query arrays are reused between queries and invalidated by a query serial ("stamp") instead
of being cleared: clearing 100,000-row arrays would cost more than the search itself.
"""

from __future__ import annotations

import numpy as np
from numba import njit

INF = np.inf


# --------------------------------------------------------------------------------------------
# A lazy binary min-heap over (key, tie, item) kept in flat arrays; stale entries are skipped on
# pop. Entries order by key, then by *larger* ``tie`` (the search passes the distance travelled):
# among equally promising states the one deeper into the search goes first, which on grid-like
# networks — where many paths tie — walks straight along one of them instead of widening a front.


@njit(cache=True, nogil=True, inline="always")
def _before(ka: float, ta: float, kb: float, tb: float) -> bool:
    return ka < kb or (ka == kb and ta > tb)


@njit(cache=True, nogil=True, inline="always")
def _heap_push(
    keys: np.ndarray, ties: np.ndarray, items: np.ndarray, size: int, key: float, tie: float, item: int
) -> int:
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        if not _before(key, tie, keys[parent], ties[parent]):
            break
        keys[i] = keys[parent]
        ties[i] = ties[parent]
        items[i] = items[parent]
        i = parent
    keys[i] = key
    ties[i] = tie
    items[i] = item
    return size + 1


@njit(cache=True, nogil=True, inline="always")
def _heap_pop(keys: np.ndarray, ties: np.ndarray, items: np.ndarray, size: int) -> int:
    """Remove the root (read it from keys[0]/items[0] first); returns the new size."""
    size -= 1
    if size == 0:
        return 0
    key = keys[size]
    tie = ties[size]
    item = items[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _before(keys[child + 1], ties[child + 1], keys[child], ties[child]):
            child += 1
        if not _before(keys[child], ties[child], key, tie):
            break
        keys[i] = keys[child]
        ties[i] = ties[child]
        items[i] = items[child]
        i = child
    keys[i] = key
    ties[i] = tie
    items[i] = item
    return size


#: Heap keys are rounded *down* to this many seconds so that float noise does not hide ties (two
#: sums of the same travel times in another order differ in the last bits), and the search stops
#: once nothing left can beat the best path by more than two buckets. Without that slack, on a
#: network with many equally fast paths every tied state would be settled before stopping. The
#: price: a returned path may be up to a few times 1e-7 s slower than the optimum.
KEY_BUCKET_S = 1e-7


@njit(cache=True, nogil=True, inline="always")
def _bucket(key: float) -> float:
    return np.floor(key / KEY_BUCKET_S) * KEY_BUCKET_S


# --------------------------------------------------------------------------------------------
# Plain Dijkstra on the node graph (landmark preprocessing).


@njit(cache=True, nogil=True)
def node_dijkstra(indptr: np.ndarray, head: np.ndarray, weight: np.ndarray, source: int) -> np.ndarray:
    """Distances from ``source`` to every node of a CSR graph (arc k: ``weight[k]`` to ``head[k]``)."""
    n = len(indptr) - 1
    dist = np.full(n, INF)
    done = np.zeros(n, dtype=np.bool_)
    keys = np.empty(len(head) + 1)
    ties = np.zeros(len(head) + 1)
    items = np.empty(len(head) + 1, dtype=np.int32)
    dist[source] = 0.0
    size = _heap_push(keys, ties, items, 0, 0.0, 0.0, source)
    while size > 0:
        u = items[0]
        size = _heap_pop(keys, ties, items, size)
        if done[u]:
            continue
        done[u] = True
        du = dist[u]
        for k in range(indptr[u], indptr[u + 1]):
            v = head[k]
            nd = du + weight[k]
            if nd < dist[v]:
                dist[v] = nd
                size = _heap_push(keys, ties, items, size, nd, 0.0, v)
    return dist


# --------------------------------------------------------------------------------------------
# Bidirectional ALT on the segment (edge-based) graph.


#: Columns of the per-state work array (one 64-byte row per state, so that touching a state costs
#: one cache line rather than one per field): distances, potential, query stamp, parent arcs, flags.
WF, WR, POT, STAMP, PF, PR, FLAGS = 0, 1, 2, 3, 4, 5, 6
WORK_COLUMNS = 8


@njit(cache=True, nogil=True, inline="always")
def _bound(lm: np.ndarray, active: np.ndarray, a: int, b: int) -> float:
    """Lower bound on the node distance a -> b from the active landmarks (0 when none helps).

    ``lm[v, l, 0]`` = d(l, v) and ``lm[v, l, 1]`` = d(v, l). d(L,b) ≤ d(L,a) + d(a,b) and
    d(a,L) ≤ d(a,b) + d(b,L). Infinite landmark distances (a node the landmark cannot reach, or
    that cannot reach it) carry no usable bound and are skipped.
    """
    best = 0.0
    for j in range(len(active)):
        li = active[j]
        fa = lm[a, li, 0]
        fb = lm[b, li, 0]
        if fa < INF and fb < INF:
            v = fb - fa
            if v > best:
                best = v
        ta = lm[a, li, 1]
        tb = lm[b, li, 1]
        if ta < INF and tb < INF:
            v = ta - tb
            if v > best:
                best = v
    return best


@njit(cache=True, nogil=True, inline="always")
def _touch(
    ws: np.ndarray,
    v: int,
    serial: float,
    state_node: np.ndarray,
    lm: np.ndarray,
    active: np.ndarray,
    s_node: int,
    t_node: int,
) -> None:
    """Initialise state ``v``'s row the first time this query meets it."""
    if ws[v, STAMP] != serial:
        ws[v, STAMP] = serial
        ws[v, WF] = INF
        ws[v, WR] = INF
        ws[v, PF] = -1.0
        ws[v, PR] = -1.0
        ws[v, FLAGS] = 0.0
        nv = state_node[v]
        # p_f(v) = (π_t(v) − π_s(v)) / 2
        ws[v, POT] = 0.5 * (_bound(lm, active, nv, t_node) - _bound(lm, active, s_node, nv))


@njit(cache=True, nogil=True)
def bidirectional_alt(
    succ_ptr: np.ndarray,
    succ_head: np.ndarray,
    succ_seg: np.ndarray,
    succ_owner: np.ndarray,
    pred_ptr: np.ndarray,
    pred_tail: np.ndarray,
    pred_seg: np.ndarray,
    pred_owner: np.ndarray,
    tt: np.ndarray,
    seg_state: np.ndarray,
    state_node: np.ndarray,
    lm: np.ndarray,
    active: np.ndarray,
    source: int,
    target: int,
    ws: np.ndarray,
    serial: float,
    heap_keys_f: np.ndarray,
    heap_ties_f: np.ndarray,
    heap_items_f: np.ndarray,
    heap_keys_r: np.ndarray,
    heap_ties_r: np.ndarray,
    heap_items_r: np.ndarray,
    path_out: np.ndarray,
) -> tuple[float, int, int]:
    """Fastest segment sequence from segment ``source`` to segment ``target``.

    Returns (cost, path length, states settled); ``cost`` is the sum of ``tt`` over the path
    written to ``path_out[:length]`` (``inf`` and length 0 when unreachable).

    The search graph has *states* (see ``roadgraph.turns.SearchGraph``: a junction where every
    turn is allowed, or a segment ending at a junction with restricted turns) and *arcs* that each
    drive one segment: arc ``k`` from a state drives ``succ_seg[k]`` (cost ``tt[succ_seg[k]]``,
    skipped when infinite = closed) into ``succ_head[k]``; ``pred_*`` is the same list by head.
    ``*_owner[k]`` is the state arc ``k`` is listed under. ``seg_state[e]`` is the state at the end
    of segment ``e``; ``state_node[x]`` its junction.

    The forward search starts in the state at the end of ``source`` with cost ``tt[source]``; the
    backward search starts in every state with an arc driving ``target`` (cost ``tt[target]``
    from there), so only arrivals over ``target`` itself count. Parents are arc indices.
    ``ws[v, STAMP] == serial`` marks rows written by this query (``FLAGS`` bit 1: settled forward,
    bit 2: settled backward); the caller passes a fresh ``serial`` per query. Assumes
    ``source != target``.
    """
    settled = 0
    if not (tt[source] < INF) or not (tt[target] < INF):
        return INF, 0, 0
    start = seg_state[source]
    goal = seg_state[target]
    s_node = state_node[start]
    t_node = state_node[goal]
    wt = tt[target]
    size_f = 0
    size_r = 0
    _touch(ws, start, serial, state_node, lm, active, s_node, t_node)
    ws[start, WF] = tt[source]
    size_f = _heap_push(
        heap_keys_f,
        heap_ties_f,
        heap_items_f,
        size_f,
        _bucket(tt[source] + ws[start, POT]),
        tt[source],
        start,
    )
    best = INF
    meet = -1
    n_f = 0
    n_r = 0
    for k in range(pred_ptr[goal], pred_ptr[goal + 1]):
        if pred_seg[k] != target:
            continue
        v = pred_tail[k]
        _touch(ws, v, serial, state_node, lm, active, s_node, t_node)
        ws[v, WR] = wt
        ws[v, PR] = k
        size_r = _heap_push(heap_keys_r, heap_ties_r, heap_items_r, size_r, _bucket(wt - ws[v, POT]), wt, v)
        total = wt + ws[v, WF]
        if total < best:
            best = total
            meet = v
    while size_f > 0 and size_r > 0:
        if heap_keys_f[0] + heap_keys_r[0] >= best - 2.0 * KEY_BUCKET_S:
            break  # nothing left can improve `best` by more than the key rounding
        if n_f <= n_r:
            u = heap_items_f[0]
            key = heap_keys_f[0]
            size_f = _heap_pop(heap_keys_f, heap_ties_f, heap_items_f, size_f)
            du = ws[u, WF]
            fl = int(ws[u, FLAGS])
            if key > _bucket(du + ws[u, POT]) or fl & 1:
                continue  # stale entry, or settled already (float ties)
            ws[u, FLAGS] = fl | 1
            settled += 1
            n_f += 1
            for k in range(succ_ptr[u], succ_ptr[u + 1]):
                w = tt[succ_seg[k]]
                if not (w < INF):
                    continue  # closed
                v = succ_head[k]
                _touch(ws, v, serial, state_node, lm, active, s_node, t_node)
                nd = du + w
                if nd < ws[v, WF] and not int(ws[v, FLAGS]) & 1:
                    ws[v, WF] = nd
                    ws[v, PF] = k
                    size_f = _heap_push(
                        heap_keys_f, heap_ties_f, heap_items_f, size_f, _bucket(nd + ws[v, POT]), nd, v
                    )
                    total = nd + ws[v, WR]
                    if total < best:
                        best = total
                        meet = v
        else:
            u = heap_items_r[0]
            key = heap_keys_r[0]
            size_r = _heap_pop(heap_keys_r, heap_ties_r, heap_items_r, size_r)
            du = ws[u, WR]
            fl = int(ws[u, FLAGS])
            if key > _bucket(du - ws[u, POT]) or fl & 2:
                continue
            ws[u, FLAGS] = fl | 2
            settled += 1
            n_r += 1
            for k in range(pred_ptr[u], pred_ptr[u + 1]):
                w = tt[pred_seg[k]]
                if not (w < INF):
                    continue
                v = pred_tail[k]
                _touch(ws, v, serial, state_node, lm, active, s_node, t_node)
                nd = du + w
                if nd < ws[v, WR] and not int(ws[v, FLAGS]) & 2:
                    ws[v, WR] = nd
                    ws[v, PR] = k
                    size_r = _heap_push(
                        heap_keys_r, heap_ties_r, heap_items_r, size_r, _bucket(nd - ws[v, POT]), nd, v
                    )
                    total = nd + ws[v, WF]
                    if total < best:
                        best = total
                        meet = v
    if meet < 0:
        return INF, 0, settled
    # forward half: segments of the arcs from `start` to `meet`, collected backwards, then reversed
    length = 0
    v = meet
    while ws[v, PF] >= 0:
        k = int(ws[v, PF])
        path_out[length] = succ_seg[k]
        length += 1
        v = succ_owner[k]
    path_out[length] = source
    length += 1
    path_out[:length] = path_out[:length][::-1].copy()
    # backward half: each state's parent arc drives the next segment; the arcs driving `target`
    # are exactly the ones the backward search started from (tt > 0, so none improves on them)
    v = meet
    while True:
        k = int(ws[v, PR])
        path_out[length] = pred_seg[k]
        length += 1
        if pred_seg[k] == target:
            break
        v = pred_owner[k]
    return best, length, settled


@njit(cache=True, nogil=True)
def best_landmarks(lm: np.ndarray, a: int, b: int, count: int) -> np.ndarray:
    """The ``count`` landmarks giving the largest lower bound on d(a, b) ("active landmarks")."""
    n_lm = lm.shape[1]
    score = np.zeros(n_lm)
    for li in range(n_lm):
        s = 0.0
        fa = lm[a, li, 0]
        fb = lm[b, li, 0]
        if fa < INF and fb < INF:
            s = max(s, fb - fa)
        ta = lm[a, li, 1]
        tb = lm[b, li, 1]
        if ta < INF and tb < INF:
            s = max(s, ta - tb)
        score[li] = s
    order = np.argsort(-score)
    return order[: min(count, n_lm)].astype(np.int64)


@njit(cache=True, nogil=True)
def travel_times_from_speeds(
    length_m: np.ndarray,
    speed_kmh: np.ndarray,
    free_flow_kmh: np.ndarray,
    closed: np.ndarray,
    lower_bound_s: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[i]`` = length / speed (free-flow speed where the speed is unknown or not positive),
    clamped to ``lower_bound_s[i]``; ``inf`` where closed. Written in place, no allocation."""
    for i in range(len(out)):
        if closed[i]:
            out[i] = INF
            continue
        v = speed_kmh[i]
        if not (v > 0.0):  # NaN (unknown) or zero
            v = free_flow_kmh[i]
        tt = length_m[i] * 3.6 / v if v > 0.0 else INF
        out[i] = tt if tt > lower_bound_s[i] else lower_bound_s[i]


@njit(cache=True, nogil=True)
def compare_weights(tt: np.ndarray, lower_bound: np.ndarray, base: np.ndarray) -> tuple[bool, bool]:
    """Whether landmark tables built on ``base`` still hold for the travel times ``tt``: (every
    ``tt[i] ≥ base[i]``, and the snapshot of ``tt`` — closed segments at ``lower_bound`` — equals
    ``base``, i.e. the tables are still exact). Stops at the first drop."""
    same = True
    for i in range(len(tt)):
        t = tt[i]
        if t < base[i]:
            return False, False
        if same and (t if t < INF else lower_bound[i]) != base[i]:
            same = False
    return True, same
