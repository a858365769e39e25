"""The HTTP API against the running service: a real engine, real MQTT readings, real uvicorn."""

from __future__ import annotations

import json
import struct

import httpx
import numpy as np
import pytest
from service_live import CAMERA_ID, LiveEngine, target_level

from congestion.types import LEVELS

AUTH = {"Authorization": "Bearer test-token"}


def test_healthz_and_openapi(client: httpx.Client) -> None:
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["ticks"] >= 2 and health["segments"] == 1564
    schema = client.get("/openapi.json").json()
    for path in (
        "/api/segments",
        "/api/index",
        "/api/index/history",
        "/api/top",
        "/api/incidents",
        "/api/closures",
        "/api/closures/{closure_id}",
        "/api/cameras",
        "/api/detectors",
        "/api/route",
        "/v3/traffic/status/{kind}",
        "/metrics",
        "/healthz",
        "/api/stream",
    ):
        assert path in schema["paths"], path


def test_metrics_are_prometheus_text_with_the_spec_names(client: httpx.Client, live: LiveEngine) -> None:
    # one bad reading so that a rejected counter with a reason label exists
    import paho.mqtt.client as paho

    c = paho.Client(paho.CallbackAPIVersion.VERSION2)
    c.connect(live.settings["mqtt"]["host"], int(live.settings["mqtt"]["port"]))
    c.loop_start()
    c.publish(
        f"{live.prefix}detectors/NOPE", json.dumps({"detector_id": "NOPE", "ts": 1, "count": 1}), qos=1
    ).wait_for_publish()
    c.loop_stop()
    c.disconnect()
    live.wait_for(
        lambda: "roadpulse_readings_rejected_total{" in client.get("/metrics").text, 10, "a rejection"
    )
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    assert values["roadpulse_readings_accepted_total"] > 0
    assert values["roadpulse_ticks_total"] >= 2
    assert values["roadpulse_tick_seconds_count"] == values["roadpulse_ticks_total"] or (
        values["roadpulse_tick_seconds_count"] >= 2
    )
    assert values["roadpulse_tick_seconds_sum"] > 0
    assert any(k.startswith('roadpulse_readings_rejected_total{reason="') for k in values)
    assert "# TYPE roadpulse_tick_seconds summary" in r.text


def test_segments_geojson_with_live_state_and_filters(client: httpx.Client, live: LiveEngine) -> None:
    r = client.get("/api/segments", params={"limit": 5})
    body = r.json()
    assert r.status_code == 200 and body["type"] == "FeatureCollection"
    assert body["total"] == 1564 and len(body["features"]) == 5 and body["next_offset"] == 5
    f = body["features"][0]
    assert f["geometry"]["type"] == "LineString" and len(f["geometry"]["coordinates"]) >= 2
    for key in (
        "segment_id",
        "ts",
        "speed_kmh",
        "free_flow_kmh",
        "tti",
        "level",
        "level_name",
        "confidence",
        "imputed",
        "sources",
        "closed",
    ):
        assert key in f["properties"], key

    # a detector segment carries the level the readings aim at
    row = int(live.detectors.segment_index[0])
    sid = str(live.network.segments.segment_id[row])
    one = client.get("/api/segments", params={"segment_id": sid}).json()["features"][0]["properties"]
    assert (
        one["level"] == target_level(row) or abs(one["level"] - target_level(row)) == 1
    )  # drift at a band edge
    assert one["sources"]["detectors"] >= 1

    severe = client.get("/api/segments", params={"level": "5", "limit": 10000}).json()
    assert severe["total"] > 0 and all(f["properties"]["level"] == 5 for f in severe["features"])

    arterials = client.get("/api/segments", params={"road_class": "arterial", "limit": 10000}).json()
    classes = live.network.segments.road_class
    assert arterials["total"] == int(np.sum(classes == 1))
    assert all(f["properties"]["road_class"] == "arterial" for f in arterials["features"])

    lon, lat = f["geometry"]["coordinates"][0]
    box = client.get(
        "/api/segments", params={"bbox": f"{lon - 1e-4},{lat - 1e-4},{lon + 1e-4},{lat + 1e-4}"}
    ).json()
    assert 1 <= box["total"] < 50 and f["id"] in [g["id"] for g in box["features"]]


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"bbox": "1,2,3"}, 400, "4 numbers"),
        ({"bbox": "a,b,c,d"}, 400, "not four numbers"),
        ({"bbox": "nan,0,1,1"}, 400, "finite"),
        ({"bbox": "3,0,1,1"}, 400, "min must not exceed max"),
        ({"level": "9"}, 400, "level"),
        ({"road_class": "motorway"}, 400, "unknown 'motorway'"),
        ({"limit": "0"}, 422, "limit"),
        ({"limit": "99999999"}, 422, "limit"),
        ({"offset": "-1"}, 422, "offset"),
    ],
)
def test_segments_bad_input_is_4xx_with_a_reason(client: httpx.Client, params, status, words) -> None:
    r = client.get("/api/segments", params=params)
    assert r.status_code == status
    assert words in r.json()["detail"]


def test_index_now_and_history(client: httpx.Client, live: LiveEngine) -> None:
    now = client.get("/api/index").json()
    city = now["city"]
    assert (
        0 <= city["tpi"] <= 10
        and city["level"] in range(6)
        and city["level_name"] == LEVELS[city["level"]][0]
    )
    hist = client.get("/api/index/history").json()
    assert hist["area"] == "city" and len(hist["points"]) >= 2
    ts = [p["ts"] for p in hist["points"]]
    assert ts == sorted(ts) and now["ts"] in ts  # (a tick may have come between the two requests)
    assert [p["tpi"] for p in hist["points"] if p["ts"] == now["ts"]] == [
        pytest.approx(city["tpi"], abs=0.005)
    ]
    assert client.get("/api/index/history", params={"from": 0, "to": 10 * 86400}).status_code == 400  # range
    assert (
        "exceeds api.max_history_range_s"
        in client.get("/api/index/history", params={"from": 0, "to": 10 * 86400}).json()["detail"]
    )
    assert client.get("/api/index/history", params={"from": 5, "to": 1}).status_code == 400
    assert client.get("/api/index/history", params={"area": "district/nowhere"}).status_code == 404
    assert client.get("/api/index/history", params={"from": "inf"}).status_code == 422


def test_history_survives_a_restart_of_the_store(live: LiveEngine) -> None:
    from roadpulse.service.history import HistoryStore

    path = live.settings["api"]["history_path"]
    store = HistoryStore(path, retention_s=86400)  # a second reader of the same file
    rows = store.query("city", 0, 1e11, limit=100000)
    store.close()
    assert len(rows) >= 2 and all(r["tpi"] is None or 0 <= r["tpi"] <= 10 for r in rows)


def test_top_congested_roads(client: httpx.Client) -> None:
    roads = client.get("/api/top", params={"limit": 5}).json()["roads"]
    assert 1 <= len(roads) <= 5
    tpis = [r["tpi"] for r in roads]
    assert tpis == sorted(tpis, reverse=True) and roads[0]["level"] >= 4
    assert client.get("/api/top", params={"limit": 500}).status_code == 422


def _wait_state(live: LiveEngine, client: httpx.Client, sid: str, predicate) -> dict:
    return live.wait_for(
        lambda: (
            (p := client.get("/api/segments", params={"segment_id": sid}).json()["features"][0]["properties"])
            and predicate(p)
            and p
        ),
        10,
        f"segment {sid} state",
    )


def test_closures_need_the_token_and_reach_the_map_within_a_tick(
    client: httpx.Client, live: LiveEngine
) -> None:
    sid = str(live.network.segments.segment_id[10])
    record = {"segment_ids": [sid], "type": "road_closed", "reason": "construction"}
    assert client.post("/api/closures", json=record).status_code == 401
    wrong = client.post("/api/closures", json=record, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and "wrong bearer token" in wrong.json()["detail"]
    assert (
        client.post("/api/closures", json=record, headers={"Authorization": "Basic abc"}).status_code == 401
    )

    created = client.post("/api/closures", json=record, headers=AUTH)
    assert created.status_code == 201, created.text
    stored = created.json()
    cid = stored["closure_id"]
    assert stored["version"] == 1 and stored["status"] == "active" and stored["source"] == "operator"
    assert cid in [c["closure_id"] for c in client.get("/api/closures").json()["closures"]]
    state = _wait_state(live, client, sid, lambda p: p["closed"])
    assert state["level"] == 5

    upd = client.put(f"/api/closures/{cid}", json=record | {"reason": "works extended"}, headers=AUTH)
    assert upd.status_code == 200 and upd.json()["version"] == 2
    assert (
        client.put(f"/api/closures/{cid}", json=record | {"closure_id": "other"}, headers=AUTH).status_code
        == 400
    )

    assert client.delete(f"/api/closures/{cid}").status_code == 401
    cleared = client.delete(f"/api/closures/{cid}", headers=AUTH)
    assert cleared.status_code == 200 and cleared.json()["status"] == "cleared"
    assert cid not in [c["closure_id"] for c in client.get("/api/closures").json()["closures"]]
    _wait_state(live, client, sid, lambda p: not p["closed"])
    assert client.delete("/api/closures/no-such", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"segment_ids": []}, "segment_ids"),
        ({"segment_ids": ["no-such-segment"]}, "unknown segment 'no-such-segment'"),
        ({"segment_ids": ["x"], "type": "party"}, "type"),
        ({"segment_ids": ["x"], "colour": "red"}, "colour"),
        ({"segment_ids": ["x"], "end": "not a time"}, "end"),
    ],
)
def test_closure_bad_records_are_422_with_the_field(
    client: httpx.Client, live: LiveEngine, body, words
) -> None:
    sid = str(live.network.segments.segment_id[0])
    body = {k: ([sid] if v == ["x"] else v) for k, v in body.items()}
    r = client.post("/api/closures", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"]


def test_closure_body_limits(client: httpx.Client) -> None:
    big = {"segment_ids": ["a"], "description": "x" * 30000}
    r = client.post("/api/closures", json=big, headers=AUTH)
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]
    r = client.post(
        "/api/closures", content=b"{not json", headers=AUTH | {"Content-Type": "application/json"}
    )
    assert r.status_code == 422


def test_detectors_incidents_and_cameras_from_the_live_components(
    client: httpx.Client, live: LiveEngine
) -> None:
    detectors = client.get("/api/detectors").json()
    assert len(detectors["detectors"]) == len(live.detectors)
    assert sum(detectors["summary"].values()) == len(live.detectors)
    assert {"detector_id", "status"} <= set(detectors["detectors"][0])
    incidents = client.get("/api/incidents", params={"include_cleared": True})
    assert incidents.status_code == 200 and isinstance(incidents.json()["incidents"], list)
    # the configured MQTT camera, fed frames: its record, health and latest annotated snapshot
    cams = client.get("/api/cameras").json()["cameras"]
    assert [c["camera_id"] for c in cams] == [CAMERA_ID]
    assert cams[0]["health"]["status"] in ("ok", "degraded", "failed")
    snap = live.wait_for(
        lambda: (r := client.get(f"/api/cameras/{CAMERA_ID}/snapshot.jpg")).status_code == 200 and r,
        30,
        "a camera snapshot",
    )
    assert snap.headers["content-type"] == "image/jpeg" and snap.content[:2] == b"\xff\xd8"
    assert client.get("/api/cameras/no-such/snapshot.jpg").status_code == 404


def test_route_on_live_travel_times(client: httpx.Client, live: LiveEngine) -> None:
    seg = live.network.segments
    a, b = seg.geometry[0].coords[0], seg.geometry[400].coords[-1]
    r = live.wait_for(
        lambda: (
            (x := client.get("/api/route", params={"from": f"{a[0]},{a[1]}", "to": f"{b[0]},{b[1]}"}))
            and x.status_code != 503
            and x
        ),
        30,
        "the live router",
    )
    assert r.status_code == 200, r.text
    route = r.json()
    assert route["duration_s"] > 0 and route["distance_m"] > 0 and route["segment_ids"]
    assert route["geometry"]["type"] == "LineString"
    bad = client.get("/api/route", params={"from": "x", "to": "1,2"})
    assert 400 <= bad.status_code < 500 and bad.json()


def test_amap_shaped_reads_are_mounted(client: httpx.Client, live: LiveEngine) -> None:
    lon, lat = live.network.segments.geometry[0].coords[0]
    r = client.get("/v3/traffic/status/circle", params={"location": f"{lon},{lat}", "radius": 500})
    assert r.status_code in (200, 503)
    if r.status_code == 200:
        assert "trafficinfo" in r.json() or "status" in r.json()
    assert client.get("/v3/traffic/status/square").status_code == 422


def test_dashboard_assets_and_geometry(client: httpx.Client, live: LiveEngine) -> None:
    page = client.get("/")
    assert page.status_code == 200 and '<canvas id="map">' in page.text and 'lang="zh-CN"' in page.text
    for asset in ("app.js", "map.js", "i18n.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    cfg = client.get("/api/config").json()
    n = cfg["geometry"]["n_pieces"]
    blob = client.get("/api/network/geometry.bin").content
    assert len(blob) == n * 20
    owners = np.frombuffer(blob[n * 16 :], dtype="<u4")
    assert owners.max() == cfg["n_segments"] - 1 and np.all(np.diff(owners.astype(np.int64)) >= 0)
    x0, y0, _, _ = struct.unpack("<4f", blob[:16])
    ext = cfg["geometry"]["extent_m"]
    assert ext[0] - 1 <= x0 <= ext[2] + 1 and ext[1] - 1 <= y0 <= ext[3] + 1
    codes = client.get("/api/network/levels").json()["codes"]
    assert len(codes) == cfg["n_segments"] and set(codes) <= set("0123456")


def test_stream_sends_a_tick_with_changes(live: LiveEngine) -> None:
    events: list[tuple[str, dict]] = []
    with httpx.Client(base_url=live.url, timeout=10) as c, c.stream("GET", "/api/stream") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                events.append((name, json.loads(line[6:])))
                if name == "tick":
                    break
    tick = events[-1][1]
    assert tick["city"]["tpi"] is not None and "top" in tick and "counters" in tick
    assert (
        "changed" in tick and len(tick["changed"]["rows"]) == len(tick["changed"]["codes"])
    ) or "codes" in tick
