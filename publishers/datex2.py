"""DATEX II version 3 publications: situations (closures, incidents) and measured speeds.

``situation_publication`` writes a ``d2:payload`` of ``xsi:type="sit:SituationPublication"``:
one ``sit:situation`` per closure or incident (id and version from the record), with one
``sit:situationRecord`` per record:

* all-lane closures and controls → ``sit:RoadOrCarriagewayOrLaneManagement`` with
  ``roadOrCarriagewayOrLaneManagementType`` ``roadClosed``; partial ones → ``laneClosures``;
* accidents → ``sit:Accident`` (``accidentType`` ``accident``); hazards →
  ``sit:GeneralObstruction`` (``obstructionType`` ``other``); events → ``sit:PublicEvent``
  (``publicEventType`` ``other``); engine incidents → ``sit:AbnormalTraffic``
  (``abnormalTrafficType`` ``stationaryTraffic`` for jams) or ``sit:Accident``;

each with creation/version times, ``probabilityOfOccurrence``, ``validity`` (overall start/end),
``impact`` (lanes restricted), a comment, and a ``loc:LinearLocation`` whose ``loc:gmlLineString``
``posList`` is the segment geometry (``lat lon`` pairs, WGS84).

``measured_data_publication`` writes ``roa:MeasuredDataPublication`` with one
``roa:siteMeasurements`` per segment with a known speed (``roa:TrafficSpeed`` →
``averageVehicleSpeed``/``com:speed`` in km/h, measured at the tick time); the measurement site
id is the segment id. DATEX has no travel-time index, so TTI and levels are not in it.
These are well-formed v3 documents with the v3 namespaces; schema validation against the
official XSDs is not done here (they are not shipped with roadpulse).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import numpy as np

from ._geometry import SegmentGeometry, iso_time

if TYPE_CHECKING:
    from congestion.types import SegmentStates
    from roadgraph.network import RoadNetwork

NS = {
    "d2": "http://datex2.eu/schema/3/d2Payload",
    "com": "http://datex2.eu/schema/3/common",
    "sit": "http://datex2.eu/schema/3/situation",
    "loc": "http://datex2.eu/schema/3/locationReferencing",
    "roa": "http://datex2.eu/schema/3/roadTrafficData",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}


def _q(name: str) -> str:
    prefix, _, local = name.partition(":")
    return f"{{{NS[prefix]}}}{local}"


def _sub(parent: ET.Element, name: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(
        parent, _q(name), {(_q(k.replace("__", ":")) if "__" in k else k): v for k, v in attrs.items()}
    )
    if text is not None:
        el.text = text
    return el


def _root(
    kind: str, publication_time: float, *, country: str, national_id: str, utc_offset_s: int
) -> ET.Element:
    for prefix, uri in NS.items():
        ET.register_namespace(prefix, uri)
    root = ET.Element(_q("d2:payload"), {_q("xsi:type"): kind, "lang": "en", "modelBaseVersion": "3"})
    _sub(root, "com:publicationTime", iso_time(publication_time, utc_offset_s))
    creator = _sub(root, "com:publicationCreator")
    _sub(creator, "com:country", country)
    _sub(creator, "com:nationalIdentifier", national_id)
    return root


def _pos_list(geometry: SegmentGeometry, rows: list[int]) -> str:
    parts = [geometry.lonlat(rows[0])] + [geometry.lonlat(i)[1:] for i in rows[1:]]
    pts = np.concatenate(parts)
    return " ".join(f"{lat:.6f} {lon:.6f}" for lon, lat in pts.tolist())


def _location(parent: ET.Element, geometry: SegmentGeometry, rows: list[int]) -> None:
    loc = _sub(parent, "sit:locationReference", **{"xsi__type": "loc:LinearLocation"})
    line = _sub(loc, "loc:gmlLineString", srsDimension="2")
    _sub(line, "loc:posList", _pos_list(geometry, rows))


def _comment(parent: ET.Element, text: str) -> None:
    if not text:
        return
    comment = _sub(_sub(parent, "sit:generalPublicComment"), "sit:comment")
    _sub(_sub(comment, "com:values"), "com:value", text, lang="en")


def _record(
    situation: ET.Element,
    *,
    record_id: str,
    version: str,
    xsi_type: str,
    created: float,
    updated: float,
    start: float,
    end: float | None,
    geometry: SegmentGeometry,
    rows: list[int],
    comment: str,
    lanes_restricted: int | None,
    utc_offset_s: int,
) -> ET.Element:
    rec = _sub(situation, "sit:situationRecord", id=record_id, version=version, **{"xsi__type": xsi_type})
    _sub(rec, "sit:situationRecordCreationTime", iso_time(created, utc_offset_s))
    _sub(rec, "sit:situationRecordVersionTime", iso_time(updated, utc_offset_s))
    _sub(rec, "sit:probabilityOfOccurrence", "certain")
    validity = _sub(rec, "sit:validity")
    _sub(validity, "com:validityStatus", "definedByValidityTimeSpec")
    spec = _sub(validity, "com:validityTimeSpecification")
    _sub(spec, "com:overallStartTime", iso_time(start, utc_offset_s))
    if end is not None:
        _sub(spec, "com:overallEndTime", iso_time(end, utc_offset_s))
    if lanes_restricted is not None:
        _sub(_sub(rec, "sit:impact"), "sit:numberOfLanesRestricted", str(lanes_restricted))
    _comment(rec, comment)
    if rows:
        _location(rec, geometry, rows)
    return rec


_CLOSURE_KIND = {
    "accident": ("sit:Accident", "sit:accidentType", "accident"),
    "hazard": ("sit:GeneralObstruction", "sit:obstructionType", "other"),
    "event": ("sit:PublicEvent", "sit:publicEventType", "other"),
}


def situation_publication(
    network: RoadNetwork,
    closures: list[dict[str, Any]],
    incidents: list[dict[str, Any]] | None = None,
    *,
    publication_time: float,
    closes_all_lanes: Any = None,
    country: str = "CN",
    national_id: str = "roadpulse",
    utc_offset_s: int = 0,
    geometry: SegmentGeometry | None = None,
) -> bytes:
    """A ``SituationPublication`` of the active and scheduled closures and active incidents."""
    geometry = geometry or SegmentGeometry(network)
    seg = network.segments
    full = closes_all_lanes or (lambda r: r.get("lanes") == "all")
    root = _root(
        "sit:SituationPublication",
        publication_time,
        country=country,
        national_id=national_id,
        utc_offset_s=utc_offset_s,
    )
    for record in closures:
        if record.get("status") == "cleared":
            continue
        rows = [seg.index_of[s] for s in record.get("segment_ids", []) if s in seg.index_of]
        version = str(record.get("version", 1))
        situation = _sub(root, "sit:situation", id=str(record["closure_id"]), version=version)
        _sub(situation, "sit:overallSeverity", "high" if full(record) else "medium")
        _sub(_sub(situation, "sit:headerInformation"), "com:informationStatus", "real")
        all_lanes = bool(full(record))
        lanes = record.get("lanes")
        restricted = None if lanes == "all" else len(lanes) if isinstance(lanes, list) else None
        kind = _CLOSURE_KIND.get(record.get("type", "")) if not all_lanes else None
        xsi_type = kind[0] if kind else "sit:RoadOrCarriagewayOrLaneManagement"
        rec = _record(
            situation,
            record_id=f"{record['closure_id']}-r",
            version=version,
            xsi_type=xsi_type,
            created=float(record.get("start", publication_time)),
            updated=float(record.get("updated", publication_time)),
            start=float(record["start"]),
            end=record.get("end"),
            geometry=geometry,
            rows=rows,
            comment=record.get("description") or record.get("reason") or "",
            lanes_restricted=restricted,
            utc_offset_s=utc_offset_s,
        )
        if kind:
            _sub(rec, kind[1], kind[2])
        else:
            _sub(
                rec,
                "sit:roadOrCarriagewayOrLaneManagementType",
                "roadClosed" if all_lanes else "laneClosures",
            )
    for record in incidents or []:
        if record.get("status") == "cleared":
            continue
        sid = record.get("segment_id")
        rows = [seg.index_of[sid]] if isinstance(sid, str) and sid in seg.index_of else []
        situation = _sub(root, "sit:situation", id=str(record["incident_id"]), version="1")
        _sub(
            situation,
            "sit:overallSeverity",
            str(record.get("severity") or "medium")
            if str(record.get("severity")) in ("low", "medium", "high", "highest", "lowest")
            else "medium",
        )
        _sub(_sub(situation, "sit:headerInformation"), "com:informationStatus", "real")
        kind_text = str(record.get("type", "")).lower()
        is_accident = "accident" in kind_text or "crash" in kind_text
        rec = _record(
            situation,
            record_id=f"{record['incident_id']}-r",
            version="1",
            xsi_type="sit:Accident" if is_accident else "sit:AbnormalTraffic",
            created=float(record.get("start") or publication_time),
            updated=float(record.get("start") or publication_time),
            start=float(record.get("start") or publication_time),
            end=record.get("end"),
            geometry=geometry,
            rows=rows,
            comment=str(record.get("description") or record.get("type") or ""),
            lanes_restricted=None,
            utc_offset_s=utc_offset_s,
        )
        if is_accident:
            _sub(rec, "sit:accidentType", "accident")
        else:
            _sub(
                rec,
                "sit:abnormalTrafficType",
                "stationaryTraffic" if "jam" in kind_text else "queuingTraffic",
            )
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def measured_data_publication(
    network: RoadNetwork,
    states: SegmentStates,
    *,
    country: str = "CN",
    national_id: str = "roadpulse",
    utc_offset_s: int = 0,
) -> bytes:
    """A ``MeasuredDataPublication``: each segment with a known speed as a site measurement."""
    root = _root(
        "roa:MeasuredDataPublication",
        float(states.ts),
        country=country,
        national_id=national_id,
        utc_offset_s=utc_offset_s,
    )
    _sub(
        root,
        "roa:measurementSiteTableReference",
        id=f"{national_id}-segments",
        version="1",
        targetClass="roa:MeasurementSiteTable",
    )
    when = iso_time(float(states.ts), utc_offset_s)
    ids = network.segments.segment_id
    for i, v in enumerate(np.asarray(states.speed_kmh, dtype=float).tolist()):
        if not math.isfinite(v):
            continue
        site = _sub(root, "roa:siteMeasurements")
        _sub(
            site,
            "roa:measurementSiteReference",
            id=str(ids[i]),
            version="1",
            targetClass="roa:MeasurementSite",
        )
        _sub(site, "roa:measurementTimeDefault", when)
        value = _sub(site, "roa:physicalQuantity", index="0")
        data = _sub(value, "roa:basicData", **{"xsi__type": "roa:TrafficSpeed"})
        speed = _sub(data, "roa:averageVehicleSpeed")
        _sub(speed, "com:speed", f"{v:.1f}")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
