"""The road network as roadpulse sees it: directed segments between junctions.

Two views of the same network, built once by a loader and never mutated afterwards:

* ``RoadNetwork.graph`` — a plain ``networkx.MultiDiGraph`` (osmnx-style: nodes are junction ids
  with ``x``/``y`` attributes, lon/lat when the network has them; one edge per segment, keyed by
  its ``segment_id``, carrying the attributes ``index`` into the table below and ``length_m``;
  the full list is in ``roadgraph._build``, checked by ``roadgraph.validate_network``);
* ``RoadNetwork.segments`` — a ``SegmentTable`` of equal-length numpy arrays, row ``i`` being
  segment ``i``: what the numba core and the sinks use.

Road classes follow GB/T 33171 and are stored as small integer codes into ``ROAD_CLASSES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from .projection import Projection

#: GB/T 33171 road classes; the code stored in ``SegmentTable.road_class`` indexes this tuple.
ROAD_CLASSES: tuple[str, ...] = ("expressway", "arterial", "secondary", "branch")
ROAD_CLASS_CODE: dict[str, int] = {name: code for code, name in enumerate(ROAD_CLASSES)}

#: Speed limit assumed when the source says nothing, by road class (km/h). Typical Chinese urban
#: design speeds (CJJ 37): 快速路 60–100, 主干路 40–60, 次干路 30–50, 支路 20–40.
DEFAULT_SPEED_LIMIT_KMH: dict[str, float] = {
    "expressway": 80.0,
    "arterial": 60.0,
    "secondary": 50.0,
    "branch": 40.0,
}

#: Lanes per direction assumed when the source says nothing, by road class.
DEFAULT_LANES: dict[str, int] = {"expressway": 3, "arterial": 2, "secondary": 2, "branch": 1}


@dataclass(frozen=True, eq=False)
class SegmentTable:
    """Directed segments as parallel arrays (row ``i`` is segment ``i``).

    ``geometry`` holds shapely LineStrings in lon/lat when ``RoadNetwork.has_lonlat`` is true,
    else in the network's own metric x/y. ``geometry_m`` always holds the same lines in a local
    metric frame (metres), which is what snapping and headings use.
    ``junction_signalised[i]`` tells whether the junction at the downstream end of segment ``i``
    is controlled by traffic signals (delay at the stop line is part of its travel time).
    """

    segment_id: np.ndarray  # object (str)
    from_node: np.ndarray  # object (str): upstream junction id
    to_node: np.ndarray  # object (str): downstream junction id
    length_m: np.ndarray  # float64, > 0
    lanes: np.ndarray  # int16, >= 1
    road_class: np.ndarray  # int8, code into ROAD_CLASSES
    speed_limit_kmh: np.ndarray  # float32, > 0
    name: np.ndarray  # object (str, "" when unnamed)
    geometry: np.ndarray  # object (shapely LineString)
    geometry_m: np.ndarray  # object (shapely LineString, metres)
    junction_signalised: np.ndarray  # bool
    index_of: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.segment_id)
        for name in (
            "from_node",
            "to_node",
            "length_m",
            "lanes",
            "road_class",
            "speed_limit_kmh",
            "name",
            "geometry",
            "geometry_m",
            "junction_signalised",
        ):
            if len(getattr(self, name)) != n:
                raise ValueError(f"SegmentTable.{name} has {len(getattr(self, name))} rows, expected {n}")
        index_of = {str(sid): i for i, sid in enumerate(self.segment_id)}
        if len(index_of) != n:
            raise ValueError("SegmentTable.segment_id contains duplicate ids")
        object.__setattr__(self, "index_of", index_of)

    def __len__(self) -> int:
        return len(self.segment_id)

    def road_class_name(self, i: int) -> str:
        return ROAD_CLASSES[int(self.road_class[i])]


@dataclass(frozen=True, eq=False)
class RoadNetwork:
    """A loaded road network: the graph, the segment table and where it came from.

    ``projection`` maps lon/lat to the frame of ``SegmentTable.geometry_m`` and back: a
    ``LocalProjection`` for OSM/GeoJSON/synthetic networks, the network's own Transverse Mercator
    (with SUMO's ``netOffset``) for projected SUMO networks, and ``None`` when the network has no
    lon/lat (``has_lonlat`` false; ``geometry`` and ``geometry_m`` are then the same metric lines).
    """

    graph: nx.MultiDiGraph
    segments: SegmentTable
    source: str
    has_lonlat: bool
    #: Free-form facts about the source (projection, counts of skipped elements, ...).
    meta: dict[str, Any] = field(default_factory=dict)
    projection: Projection | None = None
    #: Adjacencies already built, by (direction, with reverse): the engine, the incident
    #: detector and detector health each ask for them at start-up, and building one walks every
    #: segment in Python (seconds at a million segments).
    _csr_cache: dict[tuple[str, bool], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False
    )

    def __len__(self) -> int:
        return len(self.segments)

    def successors_csr(self, *, reverse: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Segment adjacency as CSR arrays: the segments that may follow segment ``i`` are
        ``indices[indptr[i]:indptr[i+1]]`` (those leaving ``to_node[i]``). ``reverse=False``
        leaves out each segment's own reverse (the other direction of the same road: a U-turn),
        for whoever reads a neighbour's traffic as this segment's: it runs the other way.
        Built once per network and shared, so the arrays are read-only."""
        return self._csr("succ", reverse)

    def predecessors_csr(self, *, reverse: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Segments that lead into segment ``i`` (those arriving at ``from_node[i]``), as CSR;
        ``reverse`` as for ``successors_csr`` (read-only, shared)."""
        return self._csr("pred", reverse)

    def dead_ends(self) -> np.ndarray:
        """Per segment: nothing leaves its downstream end but its own reverse (a cul-de-sac, or a
        road leaving the network's edge). ``dead_ends_of`` on ``successors_csr(reverse=False)``."""
        return dead_ends_of(*self.successors_csr(reverse=False))

    def _csr(self, direction: str, reverse: bool) -> tuple[np.ndarray, np.ndarray]:
        key = (direction, reverse)
        if key not in self._csr_cache:
            segs = self.segments
            if not reverse:
                csr = _without_reverse(segs, *self._csr(direction, True))
            elif direction == "succ":
                csr = _csr_from_pairs(segs.to_node, segs.from_node)
            else:
                csr = _csr_from_pairs(segs.from_node, segs.to_node)
            for arr in csr:
                arr.setflags(write=False)
            self._csr_cache[key] = csr
        return self._csr_cache[key]


def dead_ends_of(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Per segment of a successor adjacency (CSR), whether it has no successor but itself."""
    n = len(indptr) - 1
    owner = np.repeat(np.arange(n), np.diff(indptr))
    return np.bincount(owner[indices != owner], minlength=n) == 0


def _without_reverse(
    segs: SegmentTable, indptr: np.ndarray, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The adjacency ``indptr, indices`` without each segment's own reverse: the neighbours j
    of i with from_node[j] == to_node[i] and to_node[j] == from_node[i]."""
    n = len(segs)
    _, codes = np.unique(np.concatenate([segs.from_node, segs.to_node]).astype(str), return_inverse=True)
    from_c, to_c = codes[:n], codes[n:]
    owner = np.repeat(np.arange(n), np.diff(indptr))
    reverse = (from_c[indices] == to_c[owner]) & (to_c[indices] == from_c[owner])
    keep = ~reverse
    new_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner[keep], minlength=n), out=new_indptr[1:])
    return new_indptr, np.ascontiguousarray(indices[keep], dtype=np.int32)


def _csr_from_pairs(own_end: np.ndarray, other_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each segment i, list the segments j with other_end[j] == own_end[i]."""
    by_node: dict[str, list[int]] = {}
    for j, node in enumerate(other_end):
        by_node.setdefault(node, []).append(j)
    indptr = np.zeros(len(own_end) + 1, dtype=np.int64)
    chunks: list[list[int]] = []
    for i, node in enumerate(own_end):
        neighbours = by_node.get(node, [])
        chunks.append(neighbours)
        indptr[i + 1] = indptr[i] + len(neighbours)
    indices = np.fromiter((j for chunk in chunks for j in chunk), dtype=np.int32, count=int(indptr[-1]))
    return indptr, indices
