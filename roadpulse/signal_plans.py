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
``signal_green_ratio``. Actuated programs are read by their nominal ``duration`` here;
``sumo_actuated_signals`` gives their minimum and maximum phase durations too, from which the
engine times them by demand (``congestion.actuated``).
"""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from congestion.actuated import ActuatedSignals
from congestion.travel_speed import MAX_GREEN_RATIO
from roadgraph.network import RoadNetwork


def _open(path: Path):  # type: ignore[no-untyped-def]
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


#: A phase as read: (duration, minDur, maxDur, state); minDur / maxDur default to the duration.
Phase = tuple[float, float, float, str]


Plans = tuple[dict[str, list[Phase]], dict[str, str], dict[str, list[tuple[str, int]]]]


def _read_plans(network: RoadNetwork) -> Plans | None:
    """(phases per signal, type per signal, [(tl, linkIndex)] per edge) of a SUMO ``.net.xml``.
    The last file read is kept (by path, size and modification time): ``sumo_signal_timing`` and
    ``sumo_actuated_signals`` both need it, and a city's network file takes seconds to parse."""
    path = Path(network.source)
    if not (path.name.endswith(".net.xml") or path.name.endswith(".net.xml.gz")) or not path.is_file():
        return None
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _last_read:
        _last_read.clear()
        _last_read[key] = _parse_plans(path)
    return _last_read[key]


#: The last network file read by ``_read_plans``: {(path, size, mtime): plans}, one entry.
_last_read: dict[tuple[str, int, int], Plans | None] = {}


def _parse_plans(path: Path) -> Plans | None:
    phases: dict[str, list[Phase]] = {}
    kinds: dict[str, str] = {}
    links: dict[str, list[tuple[str, int]]] = {}  # edge -> [(tl, linkIndex)]
    with _open(path) as fh:
        for _, elem in ET.iterparse(fh, events=("end",)):
            if elem.tag == "tlLogic":
                tl = elem.get("id", "")
                kinds[tl] = elem.get("type", "static")
                plan = []
                for p in elem.iter("phase"):
                    d = float(p.get("duration", "0"))
                    plan.append((d, float(p.get("minDur", d)), float(p.get("maxDur", d)), p.get("state", "")))
                phases[tl] = plan
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
    return phases, kinds, links


def sumo_signal_timing(network: RoadNetwork) -> tuple[np.ndarray, np.ndarray] | None:
    """(cycle_s, green_ratio) per segment, NaN where unknown; None unless the network came from
    a readable SUMO ``.net.xml`` (``network.source``) with at least one signal program."""
    read = _read_plans(network)
    if read is None:
        return None
    phases, _, links = read
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
        c = sum(d for d, _, _, _ in plan)
        if c <= 0:
            continue
        shares = []
        for link_tl, k in own:
            if link_tl != tl:
                continue
            g = sum(d for d, _, _, state in plan if k < len(state) and state[k] in "Gg")
            shares.append(g / c)
        if shares:
            cycle[i] = c
            green[i] = float(np.clip(np.mean(shares), 0.05, MAX_GREEN_RATIO))
    return cycle, green


#: SUMO program types whose phases run between ``minDur`` and ``maxDur`` by demand.
ACTUATED_TYPES = ("actuated", "delay_based")


def sumo_actuated_signals(network: RoadNetwork) -> ActuatedSignals | None:
    """The actuated programs of a SUMO network (``congestion.actuated``): per signal its phases'
    nominal, minimum and maximum durations, per segment controlled by one the share of its
    links green in each phase. None when the network states no actuated program (fixed-time
    programs keep the timing of ``sumo_signal_timing``)."""
    read = _read_plans(network)
    if read is None:
        return None
    phases, kinds, links = read
    tl_ids = [tl for tl, kind in kinds.items() if kind in ACTUATED_TYPES and phases.get(tl)]
    if not tl_ids:
        return None
    tl_index = {tl: j for j, tl in enumerate(tl_ids)}
    n_phases = max(len(phases[tl]) for tl in tl_ids)
    nominal = np.zeros((len(tl_ids), n_phases))
    minimum = np.zeros((len(tl_ids), n_phases))
    maximum = np.zeros((len(tl_ids), n_phases))
    for j, tl in enumerate(tl_ids):
        for p, (d, lo, hi, _) in enumerate(phases[tl]):
            nominal[j, p], minimum[j, p], maximum[j, p] = d, min(lo, d), max(hi, d)
    seg_rows: list[int] = []
    seg_tl: list[int] = []
    shares: list[np.ndarray] = []
    for i, seg_id in enumerate(network.segments.segment_id):
        own = links.get(str(seg_id))
        if not own or own[0][0] not in tl_index:
            continue
        tl = own[0][0]
        plan = phases[tl]
        share = np.zeros(n_phases)
        n_links = 0
        for link_tl, k in own:
            if link_tl != tl:
                continue
            n_links += 1
            for p, (_, _, _, state) in enumerate(plan):
                if k < len(state) and state[k] in "Gg":
                    share[p] += 1.0
        if n_links == 0 or nominal[tl_index[tl]].sum() <= 0:
            continue
        seg_rows.append(i)
        seg_tl.append(tl_index[tl])
        shares.append(share / n_links)
    if not seg_rows:
        return None
    return ActuatedSignals(
        segment=np.asarray(seg_rows, dtype=np.int64),
        signal=np.asarray(seg_tl, dtype=np.int64),
        green_share=np.vstack(shares),
        nominal_s=nominal,
        min_s=minimum,
        max_s=maximum,
    )
