"""The latest tick as the HTTP service shows it: states, display codes, top roads, changes.

``LiveView.update`` runs once per tick (from the service component's ``after_tick``) and reads
only the engine's frozen ``TickResult``; request handlers then read the view. Everything runs on
the engine's event loop, so there is no locking.

Display code of a segment (what the dashboard colours): its level 0–5, or 6 when an active closure
closes it (the engine also rates a closed segment level 5; the map shows it apart).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from congestion.levels import level_from_tpi, tpi_from_ratio
from congestion.types import LEVELS, AreaIndex, SegmentStates, TickResult

from .network_view import NetworkView

CLOSED_CODE = 6


def area_payload(area: AreaIndex) -> dict[str, Any]:
    """The spec's index payload (``traffic/index/...``), NaN as null."""
    return {
        "ts": _num(area.ts),
        "tpi": _num(area.tpi, 2),
        "level": int(area.level),
        "level_name": area.level_name,
        "level_name_zh": LEVELS[int(area.level)][1],
        "tti": _num(area.tti, 2),
        "severe_share": _num(area.severe_share, 3),
        "known_share": _num(area.known_share, 3),
    }


def _num(value: float, decimals: int | None = None) -> float | int | None:
    v = float(value)
    if not math.isfinite(v):
        return None
    if decimals is None:
        return int(v) if v.is_integer() else v
    return round(v, decimals)


class LiveView:
    """What the service knows of the latest tick (nothing before the first one)."""

    def __init__(self, net: NetworkView) -> None:
        self.net = net
        self.result: TickResult | None = None
        self.codes = np.zeros(net.n_segments, dtype=np.int8)
        self.top: list[dict[str, Any]] = []

    @property
    def states(self) -> SegmentStates | None:
        return None if self.result is None else self.result.states

    def update(self, result: TickResult) -> np.ndarray:
        """Take a new tick; return the rows whose display code changed."""
        states = result.states
        codes = np.where(states.closed, CLOSED_CODE, states.level).astype(np.int8)
        changed = np.flatnonzero(codes != self.codes) if self.result is not None else np.arange(len(codes))
        self.codes = codes
        self.result = result
        self.top = self._top_roads(states)
        return changed

    def codes_text(self, rows: np.ndarray | None = None) -> str:
        """Display codes as a string of digits (compact for 100,000 segments)."""
        codes = self.codes if rows is None else self.codes[rows]
        return (codes.astype(np.uint8) + ord("0")).tobytes().decode("ascii")

    def index_payload(self) -> dict[str, Any]:
        if self.result is None:
            return {"ts": None, "city": None, "districts": {}}
        return {
            "ts": _num(self.result.states.ts),
            "city": area_payload(self.result.city),
            "districts": {name: area_payload(a) for name, a in self.result.districts.items()},
        }

    def segment_state(self, i: int) -> dict[str, Any]:
        """The spec's segment state of row ``i`` (plus name and road class), or unknown before a tick."""
        net = self.net
        base: dict[str, Any] = {
            "segment_id": net.segment_id[i],
            "name": net.name[i],
            "road_class": _road_class(net, i),
            "length_m": round(float(net.length_m[i]), 1),
        }
        s = self.states
        if s is None:
            return base | {"ts": None, "level": 0, "level_name": "unknown", "closed": False}
        level = int(s.level[i])
        return base | {
            "ts": _num(s.ts),
            "speed_kmh": _num(s.speed_kmh[i], 1),
            "free_flow_kmh": _num(s.free_flow_kmh[i], 1),
            "tti": _num(s.tti[i], 2),
            "level": level,
            "level_name": LEVELS[level][0],
            "level_name_zh": LEVELS[level][1],
            "confidence": _num(s.confidence[i], 2),
            "imputed": bool(s.imputed[i]),
            "sources": {"detectors": int(s.n_detectors[i]), "cameras": int(s.n_cameras[i])},
            "closed": bool(s.closed[i]),
        }

    def _top_roads(self, states: SegmentStates, limit: int = 50) -> list[dict[str, Any]]:
        """Roads (segments grouped by name) ranked by their lane-length-weighted TPI."""
        net = self.net
        known = states.level > 0
        if not known.any():
            return []
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = states.speed_kmh.astype(np.float64) / states.free_flow_kmh.astype(np.float64)
        seg_tpi = tpi_from_ratio(ratio)
        seg_tpi = np.where(states.closed, 10.0, seg_tpi)
        usable = known & np.isfinite(seg_tpi)
        w = np.where(usable, net.weight, 0.0)
        n_roads = len(net.road_names)
        w_sum = np.bincount(net.road_key, weights=w, minlength=n_roads)
        tpi_sum = np.bincount(net.road_key, weights=w * np.where(usable, seg_tpi, 0.0), minlength=n_roads)
        length_known = np.bincount(
            net.road_key, weights=np.where(usable, net.length_m, 0.0), minlength=n_roads
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            road_tpi = tpi_sum / w_sum
        candidates = np.flatnonzero(w_sum > 0)
        order = candidates[np.lexsort((-length_known[candidates], -road_tpi[candidates]))][:limit]
        levels = level_from_tpi(road_tpi[order])
        # The worst segment of each listed road: where the map should point.
        worst: dict[int, int] = {}
        listed = set(order.tolist())
        rows = np.flatnonzero(usable & np.isin(net.road_key, order))
        for row in rows[np.argsort(-seg_tpi[rows], kind="stable")].tolist():
            worst.setdefault(int(net.road_key[row]), row)
        out = []
        for road, level in zip(order.tolist(), levels.tolist(), strict=True):
            if road not in listed:
                continue
            row = worst[road]
            out.append(
                {
                    "road": net.road_names[road],
                    "tpi": round(float(road_tpi[road]), 2),
                    "level": int(level),
                    "level_name": LEVELS[int(level)][0],
                    "level_name_zh": LEVELS[int(level)][1],
                    "known_length_km": round(float(length_known[road]) / 1000.0, 2),
                    "worst_segment_id": net.segment_id[row],
                    "worst_point": [round(float(v), 7) for v in net.midpoint[row]],
                }
            )
        return out


def _road_class(net: NetworkView, i: int) -> str:
    from roadgraph.network import ROAD_CLASSES

    return ROAD_CLASSES[int(net.road_class[i])]
