"""OSRM traffic update CSV: ``from_osm_node,to_osm_node,speed_kmh``, one line per OSM node pair.

OSRM (``osrm-customize --segment-speed-file``, or ``osrm-contract``) takes speeds per *directed
pair of adjacent OSM nodes*, so every node pair along a roadpulse segment gets the segment's
speed, in travel direction. This needs the OSM node ids of each segment's vertices, which the OSM
loader keeps in ``network.meta["osm_nodes"]``; networks from SUMO or GeoJSON have no OSM node ids
and are refused with that reason.

Speeds are whole km/h (OSRM's examples use integers), at least 1 for a moving segment; a
*closed* segment is written with speed 0, which OSRM treats as impassable. Segments with no known
speed are left out, so OSRM keeps its profile speed for them.
"""

from __future__ import annotations

import io
import itertools
import math
from typing import TYPE_CHECKING

import numpy as np

from ._geometry import FeedError

if TYPE_CHECKING:
    from congestion.types import SegmentStates
    from roadgraph.network import RoadNetwork


def segment_node_pairs(network: RoadNetwork, i: int) -> list[tuple[int, int]]:
    """The directed OSM node pairs of segment ``i`` in travel direction."""
    meta = network.meta.get("osm_nodes")
    if meta is None:
        raise FeedError(
            f"network {network.source!r} has no OSM node ids (format {network.meta.get('format', '?')!r}); "
            "the OSRM traffic CSV needs a network loaded from OSM XML"
        )
    p = int(meta["segment_piece"][i])
    ids = meta["node_ids"][int(meta["piece_start"][p]) : int(meta["piece_end"][p])]
    if not bool(meta["segment_forward"][i]):
        ids = ids[::-1]
    ids_list = [int(x) for x in ids.tolist()]
    return list(itertools.pairwise(ids_list))


def traffic_csv(network: RoadNetwork, states: SegmentStates) -> bytes:
    """The CSV (no header, as OSRM expects) for the segments whose speed is known or that are closed."""
    if network.meta.get("osm_nodes") is None:
        segment_node_pairs(network, 0)  # raises the FeedError with the reason
    out = io.StringIO()
    speeds = np.asarray(states.speed_kmh, dtype=float).tolist()
    closed = np.asarray(states.closed, dtype=bool).tolist()
    for i, (v, is_closed) in enumerate(zip(speeds, closed, strict=True)):
        if is_closed:
            speed = 0
        elif math.isfinite(v):
            speed = max(1, round(v))
        else:
            continue
        for a, b in segment_node_pairs(network, i):
            out.write(f"{a},{b},{speed}\n")
    return out.getvalue().encode("ascii")
