"""Push components for the document feeds and the JSON webhook, against a real local receiver.

The component runs with a real ``Pipeline`` (engine ticks on a synthetic city) and a real closure
book; the MQTT side is not needed here (``ctx.publish`` collects messages).
"""

from __future__ import annotations

import asyncio
import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from push_receiver import Receiver  # tests/publishers/push_receiver.py (this folder is on sys.path)

from publishers.closures import ClosureBook
from publishers.push_component import PushComponent
from roadgraph.detectors import DetectorRegistry
from roadgraph.synthetic import synthetic_grid
from roadpulse.components import LiveContext
from roadpulse.config import PushEndpoint, defaults
from roadpulse.pipeline import Pipeline

NOW = time.time()


def run_component(kind: str, receiver: Receiver, tmp_path: Path, *, closure: bool = True) -> list:
    settings = defaults()
    network = synthetic_grid(2, 3, origin_lonlat=(121.55, 29.87))
    pipeline = Pipeline(network, DetectorRegistry.empty(), settings)
    published: list = []
    endpoint = PushEndpoint(
        name=f"t-{kind}",
        kind=kind,
        url=receiver.url,
        key_env="RP_TOKEN",
        timeout_s=2,
        base_backoff_s=0.05,
        max_backoff_s=0.2,
        outbox=str(tmp_path / f"{kind}.sqlite"),
        utc_offset_h=8,
    )

    async def scenario() -> None:
        ctx = LiveContext(
            network=network,
            detectors=DetectorRegistry.empty(),
            settings=settings,
            pipeline=pipeline,
            publish=published.extend,
            client_factory=lambda **kw: None,
            stop=asyncio.Event(),
        )
        book = ClosureBook(network, clock=lambda: NOW, on_closed_mask=pipeline.engine.set_closed)
        ctx.shared["closures"] = book
        component = PushComponent(endpoint, settings)
        await component.start(ctx)
        if closure:
            book.set(
                {
                    "closure_id": "C1",
                    "segment_ids": ["r0c0-r0c1", "r0c1-r0c0"],
                    "type": "road_closed",
                    "start": NOW - 60,
                    "end": NOW + 3600,
                    "description": "works",
                }
            )
        pipeline.tick(float(int(NOW)))
        assert pipeline.last_result is not None
        component.after_tick(ctx, pipeline.last_result)
        deadline = time.monotonic() + 10
        while component.outbox is not None and component.outbox.pending() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await component.stop()

    asyncio.run(scenario())
    return published


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RP_TOKEN", "t0ken")
    r = Receiver()
    r.start()
    yield r
    r.close()


def test_waze_xml_document_is_pushed_with_the_bearer_token(receiver: Receiver, tmp_path: Path) -> None:
    run_component("waze_xml", receiver, tmp_path)
    last = receiver.accepted[-1]
    assert (
        last.headers["Authorization"] == "Bearer t0ken" and last.headers["Content-Type"] == "application/xml"
    )
    root = ET.fromstring(last.body)
    [incident] = root.findall("incident")
    assert incident.get("id") == "C1" and incident.findtext("direction") == "BOTH_DIRECTIONS"
    assert incident.findtext("starttime").endswith("+08:00")


@pytest.mark.parametrize("kind", ["waze_json", "datex2_situations", "datex2_measured", "geojson"])
def test_document_kinds_deliver_their_document(kind: str, receiver: Receiver, tmp_path: Path) -> None:
    run_component(kind, receiver, tmp_path)
    assert receiver.accepted, f"{kind}: nothing delivered"
    body = receiver.accepted[-1].body
    if kind == "waze_json":
        assert json.loads(body)["incidents"][0]["incident"]["type"] == "ROAD_CLOSED"
    elif kind == "geojson":
        doc = json.loads(body)
        closed = {f["id"] for f in doc["features"] if f["properties"]["closed"]}
        assert closed == {"r0c0-r0c1", "r0c1-r0c0"}
    else:
        assert ET.fromstring(body).get("modelBaseVersion") == "3"


def test_webhook_sends_each_closure_version_and_the_segments(receiver: Receiver, tmp_path: Path) -> None:
    run_component("webhook", receiver, tmp_path)
    keys = receiver.accepted_keys()
    assert keys[0] == "closure:C1:v1" and any(k.startswith("segments:") for k in keys)
    item = json.loads(receiver.accepted[0].body)
    assert item["type"] == "closure" and item["data"]["closure_id"] == "C1" and item["version"] == 1


def test_osrm_endpoint_on_a_network_without_osm_ids_fails_at_start(
    receiver: Receiver, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="kind osrm needs a network loaded from OSM XML"):
        run_component("osrm", receiver, tmp_path, closure=False)


def test_amap_endpoint_without_its_private_key_fails_at_start(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RP_TOKEN")
    with pytest.raises(RuntimeError, match="private key"):
        run_component("amap", receiver, tmp_path, closure=False)
