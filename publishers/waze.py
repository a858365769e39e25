"""Waze CIFS (Closure and Incident Feed Specification), JSON and XML.

One CIFS incident per *piece* of a closure: the closure's segments are chained in the order given
(a segment continues the piece when it starts where the previous one ended); a piece whose
reverse is also closed is sent once with ``direction`` ``BOTH_DIRECTIONS``, otherwise
``ONE_DIRECTION`` with the polyline in travel direction (as CIFS asks). Ids are stable: the
closure id for a closure of one piece, ``{closure_id}-{k}`` (k = 1, 2, …) otherwise.

``type`` is ``ROAD_CLOSED`` only when every lane of the segments is closed (CIFS: a closure is a
full closure; partial ones are incidents): subtype ``ROAD_CLOSED_EVENT`` for events,
``ROAD_CLOSED_CONSTRUCTION`` when the reason speaks of works, else ``ROAD_CLOSED_HAZARD``. A
partial closure is ``ACCIDENT``/``ACCIDENT_MINOR`` (type accident) or ``HAZARD`` with
``HAZARD_ON_ROAD_LANE_CLOSED`` (lane closures and controls) or ``HAZARD_ON_ROAD``. Engine incidents
(detector/camera) become ``ACCIDENT``, ``JAM`` (``JAM_HEAVY_TRAFFIC``) or ``HAZARD`` by their type.

``polyline`` is ``lat lon lat lon …`` (WGS84, six decimals), ``starttime``/``endtime`` ISO 8601
with the configured UTC offset; ``street`` is the record's ``street`` or the road names. Cleared
records are left out: a CIFS feed is the current set, and Waze drops what disappears.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import numpy as np

from ._geometry import SegmentGeometry, iso_time

if TYPE_CHECKING:
    from roadgraph.network import RoadNetwork

XSI = "http://www.w3.org/2001/XMLSchema-instance"
CIFS_XSD = "http://www.gstatic.com/road-incidents/cifsv2.xsd"
_WORKS = re.compile(r"construct|works?\b|roadwork|maint|施工|维修|养护", re.IGNORECASE)


def _pieces(network: RoadNetwork, segment_ids: list[str]) -> list[tuple[list[int], bool]]:
    """Chains of consecutive segments; (indices, both_directions)."""
    seg = network.segments
    chains: list[list[int]] = []
    for sid in segment_ids:
        i = seg.index_of.get(sid)
        if i is None:
            continue
        prev = chains[-1][-1] if chains else -1
        # continue the piece where the previous segment ends, but never with a U-turn onto its reverse
        if prev >= 0 and seg.to_node[prev] == seg.from_node[i] and seg.from_node[prev] != seg.to_node[i]:
            chains[-1].append(i)
        else:
            chains.append([i])

    def nodes(chain: list[int]) -> list[tuple[str, str]]:
        return [(str(seg.from_node[i]), str(seg.to_node[i])) for i in chain]

    out: list[tuple[list[int], bool]] = []
    used = [False] * len(chains)
    for a, chain in enumerate(chains):
        if used[a]:
            continue
        reverse = [(t, f) for f, t in reversed(nodes(chain))]
        both = False
        for b in range(a + 1, len(chains)):
            if not used[b] and nodes(chains[b]) == reverse:
                used[b] = both = True
                break
        out.append((chain, both))
    return out


def _polyline_latlon(geometry: SegmentGeometry, chain: list[int]) -> str:
    parts = [geometry.lonlat(chain[0])] + [geometry.lonlat(i)[1:] for i in chain[1:]]
    pts = np.concatenate(parts)
    return " ".join(f"{lat:.6f} {lon:.6f}" for lon, lat in pts.tolist())


def _closure_type(record: dict[str, Any], all_lanes: bool) -> tuple[str, str]:
    kind = record.get("type", "")
    if all_lanes:
        if kind == "event":
            return "ROAD_CLOSED", "ROAD_CLOSED_EVENT"
        text = f"{record.get('reason', '')} {record.get('description', '')}"
        if _WORKS.search(text):
            return "ROAD_CLOSED", "ROAD_CLOSED_CONSTRUCTION"
        return "ROAD_CLOSED", "ROAD_CLOSED_HAZARD"
    if kind == "accident":
        return "ACCIDENT", "ACCIDENT_MINOR"
    if kind in ("lane_closed", "control", "road_closed"):
        return "HAZARD", "HAZARD_ON_ROAD_LANE_CLOSED"
    return "HAZARD", "HAZARD_ON_ROAD"


def _incident_type(record: dict[str, Any]) -> tuple[str, str]:
    kind = str(record.get("type", "")).lower()
    if "accident" in kind or "crash" in kind:
        return "ACCIDENT", "ACCIDENT_MAJOR" if str(record.get("severity", "")).lower() in (
            "major",
            "high",
        ) else "ACCIDENT_MINOR"
    if any(w in kind for w in ("jam", "congestion", "queue", "slow")):
        return "JAM", "JAM_HEAVY_TRAFFIC"
    return "HAZARD", "HAZARD_ON_ROAD"


def cifs_incidents(
    network: RoadNetwork,
    closures: list[dict[str, Any]],
    incidents: list[dict[str, Any]] | None = None,
    *,
    closes_all_lanes: Any = None,
    utc_offset_s: int = 0,
    geometry: SegmentGeometry | None = None,
) -> list[dict[str, str]]:
    """CIFS incidents (flat dicts, in feed order) for active and scheduled closures and active
    incidents. ``closes_all_lanes(record) -> bool`` defaults to ``lanes == "all"``."""
    geometry = geometry or SegmentGeometry(network)
    seg = network.segments
    full = closes_all_lanes or (lambda r: r.get("lanes") == "all")
    out: list[dict[str, str]] = []
    for record in closures:
        if record.get("status") == "cleared":
            continue
        kind, subtype = _closure_type(record, bool(full(record)))
        pieces = _pieces(network, list(record.get("segment_ids", [])))
        for k, (chain, both) in enumerate(pieces, start=1):
            names = list(dict.fromkeys(str(seg.name[i]) for i in chain if str(seg.name[i])))
            item = {
                "id": record["closure_id"] if len(pieces) == 1 else f"{record['closure_id']}-{k}",
                "type": kind,
                "subtype": subtype,
                "polyline": _polyline_latlon(geometry, chain),
                "street": record.get("street") or " / ".join(names) or str(seg.segment_id[chain[0]]),
                "direction": "BOTH_DIRECTIONS" if both else "ONE_DIRECTION",
                "starttime": iso_time(record["start"], utc_offset_s),
                "description": record.get("description") or record.get("reason") or record.get("type", ""),
                "creationtime": iso_time(record.get("updated", record["start"]), utc_offset_s),
                "updatetime": iso_time(record.get("updated", record["start"]), utc_offset_s),
            }
            if record.get("end") is not None:
                item["endtime"] = iso_time(record["end"], utc_offset_s)
            out.append(item)
    for record in incidents or []:
        if record.get("status") == "cleared":
            continue
        kind, subtype = _incident_type(record)
        sid = record.get("segment_id")
        i = seg.index_of.get(sid) if isinstance(sid, str) else None
        if i is not None:
            line = _polyline_latlon(geometry, [i])
            street = str(seg.name[i]) or str(sid)
        elif isinstance(record.get("lon"), int | float) and isinstance(record.get("lat"), int | float):
            line = f"{record['lat']:.6f} {record['lon']:.6f}"
            street = ""
        else:
            continue
        item = {
            "id": str(record["incident_id"]),
            "type": kind,
            "subtype": subtype,
            "polyline": line,
            "street": street,
            "direction": "ONE_DIRECTION",
            "starttime": iso_time(record.get("start") or 0, utc_offset_s),
            "description": str(record.get("description") or record.get("type") or ""),
        }
        if record.get("end") is not None:
            item["endtime"] = iso_time(record["end"], utc_offset_s)
        out.append(item)
    return out


def to_json(incidents: list[dict[str, str]]) -> bytes:
    """The CIFS JSON document: ``{"incidents": [{"incident": {...}}, ...]}`` (Waze's examples)."""
    doc = {"incidents": [{"incident": item} for item in incidents]}
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")


#: Element order in the XML (CIFS says order does not matter; this is the documented one).
_XML_ORDER = (
    "creationtime",
    "updatetime",
    "type",
    "subtype",
    "description",
    "street",
    "polyline",
    "direction",
    "starttime",
    "endtime",
)


def to_xml(incidents: list[dict[str, str]]) -> bytes:
    """The CIFS XML document (``<incidents>`` with ``<incident id=…>`` children, cifsv2.xsd)."""
    ET.register_namespace("xsi", XSI)
    root = ET.Element("incidents", {f"{{{XSI}}}noNamespaceSchemaLocation": CIFS_XSD})
    for item in incidents:
        el = ET.SubElement(root, "incident", {"id": item["id"]})
        for name in _XML_ORDER:
            if name in item:
                ET.SubElement(el, name).text = item[name]
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
