"""Signal timings per segment from a SUMO network file, for the travel-speed model's delay.

The model's junction delay at a signal (``congestion.travel_speed``, Webster's uniform delay) needs
the cycle C and the effective green share λ of the approach. A SUMO ``.net.xml`` states both: each
``<tlLogic>`` lists its phases (``duration`` and a ``state`` string with one character per
controlled link), and each ``<connection>`` of an edge names its ``tl`` and ``linkIndex``. So per
edge (= segment of a SUMO network):

* ``cycle_s``  = the sum of the phase durations of the signal its connections belong to;
* ``green_ratio`` = the mean over its controlled links of (time the link shows green, ``G``/``g``)
  ÷ cycle.

Segments without a controlled connection, and networks from other sources (OSM, GeoJSON, which
state no timings), get NaN: the engine then uses the ``[engine]`` defaults ``signal_cycle_s`` /
``signal_green_ratio``. Actuated programs are read by their nominal ``duration``.
"""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from roadgraph.network import RoadNetwork


def _open(path: Path):  # type: ignore[no-untyped-def]
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def sumo_signal_timing(network: RoadNetwork) -> tuple[np.ndarray, np.ndarray] | None:
    """(cycle_s, green_ratio) per segment, NaN where unknown; None unless the network came from
    a readable SUMO ``.net.xml`` (``network.source``) with at least one signal program."""
    path = Path(network.source)
    if not (path.name.endswith(".net.xml") or path.name.endswith(".net.xml.gz")) or not path.is_file():
        return None
    phases: dict[str, list[tuple[float, str]]] = {}
    links: dict[str, list[tuple[str, int]]] = {}  # edge -> [(tl, linkIndex)]
    with _open(path) as fh:
        for _, elem in ET.iterparse(fh, events=("end",)):
            if elem.tag == "tlLogic":
                tl = elem.get("id", "")
                phases[tl] = [
                    (float(p.get("duration", "0")), p.get("state", "")) for p in elem.iter("phase")
                ]
                elem.clear()
            elif elem.tag == "connection":
                tl = elem.get("tl")
                index = elem.get("linkIndex")
                if tl is not None and index is not None:
                    links.setdefault(elem.get("from", ""), []).append((tl, int(index)))
                elem.clear()
            elif elem.tag in ("edge", "junction"):
                elem.clear()
    if not phases:
        return None
    n = len(network)
    cycle = np.full(n, np.nan)
    green = np.full(n, np.nan)
    for i, seg_id in enumerate(network.segments.segment_id):
        own = links.get(str(seg_id))
        if not own:
            continue
        tl = own[0][0]
        plan = phases.get(tl)
        if not plan:
            continue
        c = sum(d for d, _ in plan)
        if c <= 0:
            continue
        shares = []
        for link_tl, k in own:
            if link_tl != tl:
                continue
            g = sum(d for d, state in plan if k < len(state) and state[k] in "Gg")
            shares.append(g / c)
        if shares:
            cycle[i] = c
            green[i] = float(np.clip(np.mean(shares), 0.05, 0.95))
    return cycle, green
