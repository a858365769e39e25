"""The live router component on a real engine, and ``answer_route`` (what /api/route serves)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from congestion import ReadingBatch
from roadgraph import detectors_from_csv, synthetic_grid
from roadpulse.components import LiveContext, build_components
from roadpulse.config import defaults
from roadpulse.pipeline import Pipeline
from roadpulse.route_api import answer_route
from roadpulse.route_live import LiveRouter


@pytest.fixture
def live(tmp_path: Path):  # type: ignore[no-untyped-def]
    net = synthetic_grid(6, 8)
    det = tmp_path / "det.csv"
    det.write_text("detector_id,segment_id\nD1,r0c3-r0c4\n")
    detectors = detectors_from_csv(det, net)
    settings = defaults()
    pipeline = Pipeline(net, detectors, settings, event_time=True)
    ctx = LiveContext(
        network=net,
        detectors=detectors,
        settings=settings,
        pipeline=pipeline,
        publish=lambda messages: None,
        client_factory=lambda *a, **k: None,
        stop=asyncio.Event(),
    )
    component = LiveRouter(settings)
    asyncio.run(component.start(ctx))
    return net, pipeline, ctx, component


def test_registered_in_build_components() -> None:
    assert any(isinstance(c, LiveRouter) for c in build_components(defaults()))


def test_closure_is_avoided_within_one_tick(live) -> None:  # type: ignore[no-untyped-def]
    net, pipeline, ctx, component = live
    router = ctx.shared["router"]
    query = {"from_segment": "r0c0-r0c1", "to_segment": "r0c6-r0c7"}
    status, before = answer_route(router, query)
    assert status == 200
    middle = before["segment_ids"][3]
    closed = np.zeros(len(net), dtype=bool)
    closed[net.segments.index_of[middle]] = True
    pipeline.engine.set_closed(closed)
    result = pipeline.engine.tick(60.0)
    assert component.after_tick(ctx, result) == []
    status, after = answer_route(router, query)
    assert status == 200
    assert middle not in after["segment_ids"]
    assert after["duration_s"] > before["duration_s"]
    assert after["weights_ts"] == 60.0


def test_travel_times_follow_the_engine(live) -> None:  # type: ignore[no-untyped-def]
    net, pipeline, ctx, component = live
    router = ctx.shared["router"]
    ts = np.arange(5, dtype=np.float64) * 20.0 + 10.0
    batch = ReadingBatch(
        detector_index=np.zeros(5, dtype=np.int32),
        ts=ts,
        interval_s=np.full(5, 20.0, dtype=np.float32),
        count=np.full(5, 8.0, dtype=np.float32),
        occupancy_pct=np.full(5, 70.0, dtype=np.float32),
        speed_kmh=np.full(5, 4.0, dtype=np.float32),
        lane=np.zeros(5, dtype=np.int16),
    )
    pipeline.engine.add_readings(batch)
    result = pipeline.engine.tick(120.0)
    component.after_tick(ctx, result)
    row = net.segments.index_of["r0c3-r0c4"]
    speed = float(result.states.speed_kmh[row])
    assert np.isfinite(speed) and speed < 30.0
    expected = max(net.segments.length_m[row] * 3.6 / speed, router.lower_bound_s[row])
    assert router.travel_time_s[row] == pytest.approx(expected, rel=1e-5)
    assert router.levels[row] == result.states.level[row] > 1
    # segments without data stay at free flow
    assert router.travel_time_s[0] == pytest.approx(router.free_flow_s[0])
    # the slow segment is now avoided when a parallel street is close
    status, body = answer_route(router, {"from_segment": "r0c2-r0c3", "to_segment": "r0c4-r0c5"})
    assert status == 200 and "r0c3-r0c4" not in body["segment_ids"]


def test_answer_route_errors(live) -> None:  # type: ignore[no-untyped-def]
    net, _pipeline, ctx, _component = live
    router = ctx.shared["router"]
    lon, lat = net.projection.to_lonlat(np.array([300.0, 900.0]), np.array([5.0, 605.0]))
    ok = {"from": f"{lon[0]},{lat[0]}", "to": f"{lon[1]},{lat[1]}", "alternatives": "2"}
    status, body = answer_route(router, ok)
    assert status == 200, body
    assert body["from"]["snap_distance_m"] == pytest.approx(5.0, abs=0.1)
    assert isinstance(body["alternatives"], list) and body["polyline"]
    cases = [
        ({"to": ok["to"]}, 400, "bad_request", "missing from"),
        ({**ok, "from": "abc"}, 400, "bad_request", "LON,LAT"),
        ({**ok, "from": "200,10"}, 400, "bad_request", "WGS84"),
        ({**ok, "alternatives": "9"}, 400, "bad_request", "alternatives"),
        ({**ok, "from": f"{lon[0]},{lat[0] + 0.1}"}, 404, "off_network", "from any road"),
        ({"from_segment": "nope", "to": ok["to"]}, 400, "unknown_segment", "nope"),
        ({**ok, "from_segment": "r0c0-r0c1"}, 400, "bad_request", "not both"),
    ]
    for query, code, reason, text in cases:
        status, err = answer_route(router, query)
        assert (status, err["reason"]) == (code, reason), (query, err)
        assert text in err["error"]
    assert answer_route(None, ok)[0] == 503
