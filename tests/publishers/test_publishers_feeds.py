"""Feeds carry the fields their consumers require: Waze CIFS (JSON, XML), DATEX II v3, GeoJSON, OSRM."""

from __future__ import annotations

import bz2
import itertools
import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from publishers import datex2, geojson_feed, osrm, waze
from publishers._geometry import FeedError
from publishers.closures import ClosureBook
from roadgraph.osm import graph_from_osm
from roadgraph.synthetic import synthetic_grid

DATA = Path(__file__).resolve().parents[1] / "data"
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


@pytest.fixture(scope="module")
def grid():
    return synthetic_grid(2, 4, origin_lonlat=(121.55, 29.87))  # row 0: 3-lane arterial


@pytest.fixture
def book(grid):
    b = ClosureBook(grid, clock=lambda: 1_776_729_000.0)
    # both directions of two consecutive blocks, all lanes, with a works reason
    b.set(
        {
            "closure_id": "C-full",
            "segment_ids": ["r0c0-r0c1", "r0c1-r0c2", "r0c2-r0c1", "r0c1-r0c0"],
            "type": "road_closed",
            "reason": "construction",
            "start": 1_776_729_600,
            "end": 1_776_740_400,
            "description": "Water main works",
        }
    )
    # one lane of one direction
    b.set(
        {
            "closure_id": "C-lane",
            "segment_ids": ["r0c2-r0c3"],
            "lanes": [0],
            "type": "lane_closed",
            "start": 1_776_728_000,
            "end": None,
            "street": "Harbour Rd",
        }
    )
    # every lane (listed one by one) of a one-lane branch road
    b.set(
        {
            "closure_id": "C-acc",
            "segment_ids": ["r1c0-r1c1"],
            "lanes": [0],
            "type": "accident",
            "start": 1_776_728_000,
            "end": 1_776_732_000,
        }
    )
    return b


INCIDENT = {
    "incident_id": "I-7",
    "type": "accident",
    "segment_id": "r1c1-r1c2",
    "lon": 121.553,
    "lat": 29.8718,
    "start": 1_776_728_500,
    "end": None,
    "status": "active",
    "source": "detector",
    "severity": "high",
    "description": "stopped vehicles",
}


def test_waze_json_has_the_required_cifs_fields(grid, book) -> None:
    items = waze.cifs_incidents(
        grid, book.list(), [INCIDENT], closes_all_lanes=book.closes_all_lanes, utc_offset_s=8 * 3600
    )
    doc = json.loads(waze.to_json(items))
    incidents = {e["incident"]["id"]: e["incident"] for e in doc["incidents"]}
    assert set(incidents) == {"C-full", "C-lane", "C-acc", "I-7"}  # ids are the records' ids: stable
    for inc in incidents.values():
        assert {
            "id",
            "type",
            "subtype",
            "polyline",
            "street",
            "starttime",
            "description",
            "direction",
        } <= set(inc)
        assert ISO_WITH_OFFSET.match(inc["starttime"]) and inc["starttime"].endswith("+08:00")
        coords = [float(v) for v in inc["polyline"].split()]
        assert len(coords) % 2 == 0 and len(coords) >= 4
        lats, lons = coords[0::2], coords[1::2]
        assert all(29.86 < a < 29.9 for a in lats) and all(121.5 < o < 121.6 for o in lons)  # "lat lon"
    full = incidents["C-full"]
    assert (full["type"], full["subtype"], full["direction"]) == (
        "ROAD_CLOSED",
        "ROAD_CLOSED_CONSTRUCTION",
        "BOTH_DIRECTIONS",
    )
    assert ISO_WITH_OFFSET.match(full["endtime"])
    assert datetime.fromisoformat(full["starttime"]).timestamp() == 1_776_729_600
    lons = [float(v) for v in full["polyline"].split()][1::2]
    assert lons == sorted(lons) and len(lons) == 3  # two blocks, eastbound, no U-turn back
    lane = incidents["C-lane"]
    assert lane["type"] != "ROAD_CLOSED" and lane["subtype"] == "HAZARD_ON_ROAD_LANE_CLOSED"
    assert lane["street"] == "Harbour Rd" and lane["direction"] == "ONE_DIRECTION" and "endtime" not in lane
    # every lane of a one-lane road listed explicitly: a full closure
    assert incidents["C-acc"]["type"] == "ROAD_CLOSED"
    assert incidents["I-7"]["type"] == "ACCIDENT" and incidents["I-7"]["subtype"] == "ACCIDENT_MAJOR"


def test_waze_travel_direction_and_split_pieces(grid) -> None:
    b = ClosureBook(grid, clock=lambda: 1000.0)
    b.set({"closure_id": "W", "segment_ids": ["r0c1-r0c0", "r1c2-r1c3"], "type": "road_closed", "start": 900})
    items = waze.cifs_incidents(grid, b.list(), closes_all_lanes=b.closes_all_lanes)
    assert [i["id"] for i in items] == ["W-1", "W-2"]
    lons = [float(v) for v in items[0]["polyline"].split()][1::2]
    assert lons[0] > lons[-1] and items[0]["direction"] == "ONE_DIRECTION"  # westbound: east end first


def test_waze_xml_is_cifs_shaped(grid, book) -> None:
    items = waze.cifs_incidents(grid, book.list(), [INCIDENT], closes_all_lanes=book.closes_all_lanes)
    root = ET.fromstring(waze.to_xml(items))
    assert root.tag == "incidents"
    assert root.get("{http://www.w3.org/2001/XMLSchema-instance}noNamespaceSchemaLocation", "").endswith(
        "cifsv2.xsd"
    )
    els = root.findall("incident")
    assert len(els) == 4
    for el in els:
        assert el.get("id")
        for name in ("type", "polyline", "street", "starttime", "description", "direction"):
            assert el.findtext(name), (el.get("id"), name)
    cleared = ClosureBook(grid, clock=lambda: 1000.0)
    cleared.set({"closure_id": "X", "segment_ids": ["r0c0-r0c1"], "type": "road_closed", "start": 900})
    cleared.clear("X")
    assert waze.cifs_incidents(grid, cleared.list(include_cleared=True)) == []  # a feed is the current set


D2 = {k: f"{{{v}}}" for k, v in datex2.NS.items()}


def test_datex2_situation_publication_is_well_formed_v3(grid, book) -> None:
    xml = datex2.situation_publication(
        grid, book.list(), [INCIDENT], publication_time=1_776_729_700, closes_all_lanes=book.closes_all_lanes
    )
    root = ET.fromstring(xml)
    assert root.tag == D2["d2"] + "payload" and root.get(D2["xsi"] + "type") == "sit:SituationPublication"
    assert root.get("modelBaseVersion") == "3"
    assert root.findtext(D2["com"] + "publicationTime")
    assert root.find(f"{D2['com']}publicationCreator/{D2['com']}country") is not None
    situations = {s.get("id"): s for s in root.findall(D2["sit"] + "situation")}
    assert set(situations) == {"C-full", "C-lane", "C-acc", "I-7"}
    for s in situations.values():
        rec = s.find(D2["sit"] + "situationRecord")
        assert rec is not None and rec.get("id") and rec.get("version") and rec.get(D2["xsi"] + "type")
        for name in ("situationRecordCreationTime", "situationRecordVersionTime", "probabilityOfOccurrence"):
            assert rec.findtext(D2["sit"] + name), name
        start = rec.find(
            f"{D2['sit']}validity/{D2['com']}validityTimeSpecification/{D2['com']}overallStartTime"
        )
        assert start is not None and ISO_WITH_OFFSET.match(start.text or "")
        pos = rec.find(f"{D2['sit']}locationReference/{D2['loc']}gmlLineString/{D2['loc']}posList")
        assert pos is not None and len((pos.text or "").split()) >= 4
    full = situations["C-full"].find(D2["sit"] + "situationRecord")
    assert full.get(D2["xsi"] + "type") == "sit:RoadOrCarriagewayOrLaneManagement"
    assert full.findtext(D2["sit"] + "roadOrCarriagewayOrLaneManagementType") == "roadClosed"
    lane = situations["C-lane"].find(D2["sit"] + "situationRecord")
    assert lane.findtext(D2["sit"] + "roadOrCarriagewayOrLaneManagementType") == "laneClosures"
    assert lane.findtext(f"{D2['sit']}impact/{D2['sit']}numberOfLanesRestricted") == "1"
    assert situations["I-7"].find(D2["sit"] + "situationRecord").get(D2["xsi"] + "type") == "sit:Accident"


def test_datex2_measured_data_carries_known_speeds(grid, build) -> None:
    n = len(grid)
    speeds = np.full(n, np.nan)
    speeds[:3] = [12.0, 33.3, 50.0]
    root = ET.fromstring(datex2.measured_data_publication(grid, build.states(1_776_729_660.0, speeds)))
    assert root.get(D2["xsi"] + "type") == "roa:MeasuredDataPublication"
    sites = root.findall(D2["roa"] + "siteMeasurements")
    assert len(sites) == 3
    ids = [s.find(D2["roa"] + "measurementSiteReference").get("id") for s in sites]
    assert ids == list(grid.segments.segment_id[:3])
    values = [s.findtext(f".//{D2['com']}speed") for s in sites]
    assert values == ["12.0", "33.3", "50.0"]
    assert all(ISO_WITH_OFFSET.match(s.findtext(D2["roa"] + "measurementTimeDefault") or "") for s in sites)


def test_geojson_feature_collection_with_live_state(grid, build) -> None:
    n = len(grid)
    closed = np.zeros(n, dtype=bool)
    closed[1] = True
    doc = json.loads(geojson_feed.to_bytes(grid, build.states(60.0, np.full(n, 30.0), closed=closed)))
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == n
    f0, f1 = doc["features"][0], doc["features"][1]
    assert f0["geometry"]["type"] == "LineString" and len(f0["geometry"]["coordinates"]) >= 2
    assert f0["id"] == f0["properties"]["segment_id"] == grid.segments.segment_id[0]
    assert {"speed_kmh", "level", "level_name", "tti", "closed", "ts", "road_class"} <= set(f0["properties"])
    assert f1["properties"]["closed"] is True and f1["properties"]["level"] == 5
    unknown = json.loads(geojson_feed.to_bytes(grid, None))
    assert unknown["features"][0]["properties"]["level"] == 0


def _osm_adjacent_pairs(path: Path) -> set[tuple[int, int]]:
    """Consecutive node pairs of every way, read straight from the file (independently of roadgraph)."""
    pairs: set[tuple[int, int]] = set()
    with bz2.open(path) as fh:
        for _, el in ET.iterparse(fh):
            if el.tag == "way":
                refs = [int(nd.get("ref")) for nd in el.findall("nd")]
                pairs.update(itertools.pairwise(refs))
                el.clear()
    return pairs


def test_osrm_csv_lists_adjacent_osm_node_pairs_in_travel_direction(build) -> None:
    path = DATA / "osm" / "West-Oakland.osm.bz2"
    net = graph_from_osm(path)
    n = len(net)
    speeds = np.linspace(10, 60, n)
    speeds[0] = np.nan
    closed = np.zeros(n, dtype=bool)
    closed[1] = True
    csv = osrm.traffic_csv(net, build.states(60.0, speeds, closed=closed)).decode()
    rows = [tuple(int(v) for v in line.split(",")) for line in csv.splitlines()]
    adjacent = _osm_adjacent_pairs(path)
    for a, b, _speed in rows:
        assert (a, b) in adjacent or (b, a) in adjacent
    seg = net.segments
    expected_rows = sum(len(seg.geometry[i].coords) - 1 for i in range(1, n))
    assert len(rows) == expected_rows  # every node pair of every segment with a speed, none of segment 0
    first_pairs = osrm.segment_node_pairs(net, 1)
    assert [r[:2] for r in rows[: len(first_pairs)]] == first_pairs
    assert {r[2] for r in rows[: len(first_pairs)]} == {0}  # closed: impassable for OSRM
    assert str(first_pairs[0][0]) == seg.from_node[1] and str(first_pairs[-1][1]) == seg.to_node[1]
    reverse = [i for i in range(n) if str(seg.segment_id[i]).endswith("-r")]
    if reverse:
        i = reverse[0]
        assert str(osrm.segment_node_pairs(net, i)[0][0]) == seg.from_node[i]


def test_osrm_refuses_networks_without_osm_node_ids(grid, build) -> None:
    with pytest.raises(FeedError, match="OSM node ids"):
        osrm.traffic_csv(grid, build.states(60.0, np.full(len(grid), 20.0)))
