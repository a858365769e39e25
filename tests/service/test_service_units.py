"""Unit tests of the service's small pieces: token check, history store, geometry blob, metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from congestion.types import AreaIndex
from roadgraph import synthetic_grid
from roadpulse.pipeline import PipelineCounters
from roadpulse.service.auth import check_bearer
from roadpulse.service.history import PRUNE_EVERY, HistoryStore
from roadpulse.service.metrics import render_metrics
from roadpulse.service.network_view import NetworkView, parse_bbox


@pytest.mark.parametrize(
    ("header", "token", "expected"),
    [
        (None, "t", 401),
        ("", "t", 401),
        ("Bearer", "t", 401),
        ("Basic dDp0", "t", 401),
        ("Bearer x", "t", 403),
        ("Bearer x", None, 403),
        ("Bearer t", "t", None),
        ("bearer  t ", "t", None),
    ],
)
def test_check_bearer(header, token, expected) -> None:
    result = check_bearer(header, token)
    assert (result[0] if result else None) == expected


def _area(ts: float, tpi: float) -> AreaIndex:
    return AreaIndex(ts=ts, tpi=tpi, level=2, tti=1.2, severe_share=0.0, known_share=1.0)


def test_history_persists_thins_and_prunes(tmp_path) -> None:
    path = tmp_path / "h.sqlite"
    store = HistoryStore(path, retention_s=100.0)
    for k in range(PRUNE_EVERY):
        store.add(_area(1000.0 + k, k / 10), {"north": _area(1000.0 + k, math.nan)})
    store.close()
    store = HistoryStore(path, retention_s=100.0)  # reopened: kept across restarts
    rows = store.query("city", 0, 1e11, limit=1000)
    assert len(rows) == PRUNE_EVERY and rows[0]["ts"] == 1000.0 and rows[-1]["tpi"] == pytest.approx(5.9)
    assert store.query("district/north", 0, 1e11, limit=1000)[0]["tpi"] is None  # NaN stored as NULL
    assert len(store.query("city", 0, 1e11, limit=7)) <= 7
    assert store.areas() == ["city", "district/north"]
    for k in range(PRUNE_EVERY):  # the next prune removes what is older than 100 s before the newest
        store.add(_area(5000.0 + k, 1.0), {})
    assert store.query("city", 0, 4999, limit=1000) == []
    store.close()


def test_geometry_blob_covers_every_segment() -> None:
    net = synthetic_grid(4, 5)
    view = NetworkView.from_network(net)
    n = view.geometry_meta["n_pieces"]
    assert len(view.geometry_blob) == 20 * n
    ends = np.frombuffer(view.geometry_blob[: 16 * n], dtype="<f4").reshape(n, 4)
    owner = np.frombuffer(view.geometry_blob[16 * n :], dtype="<u4")
    assert set(owner.tolist()) == set(range(len(net)))
    # grid pieces are 200 m long (Web Mercator stretches by 1/cos(lat))
    lengths = np.hypot(ends[:, 2] - ends[:, 0], ends[:, 3] - ends[:, 1])
    assert np.allclose(lengths, 200.0 / math.cos(math.radians(29.87)), rtol=0.01)


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "1,2,3,inf", "5,0,1,1", "0,5,1,1"])
def test_parse_bbox_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="bbox"):
        parse_bbox(text)


def test_metrics_text() -> None:
    c = PipelineCounters(
        accepted=5, rejected=2, ticks=3, tick_seconds_total=0.25, rejected_by_code={'bad"x': 2}
    )
    text = render_metrics(c, city_tpi=None, segments_by_level={1: 4}, stream_clients=0)
    assert 'roadpulse_readings_rejected_total{reason="bad\\"x"} 2' in text
    assert "roadpulse_tick_seconds_sum 0.25" in text and "roadpulse_tick_seconds_count 3" in text
    assert "roadpulse_city_tpi NaN" in text and text.endswith("\n")
