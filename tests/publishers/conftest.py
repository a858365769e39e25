"""Fixtures for the publisher tests: tick results built from arrays, and a real Mosquitto broker.

``build`` makes networks, segment states and tick results straight from arrays (a sink reads only
``segment_id`` from the network and the arrays of a ``TickResult``), so these tests do not depend
on the roadgraph loaders.

``mqtt_broker`` is one Mosquitto for the whole session (tests keep apart by topic prefix);
``fresh_mqtt_broker`` is a private one per test that can be killed and started again on the
same port. Both skip, saying why, when no ``mosquitto`` binary is found (set ``ROADPULSE_MOSQUITTO``
to point at one).
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np
import pytest

from congestion.types import AreaIndex, SegmentStates, TickResult
from roadgraph.network import RoadNetwork, SegmentTable

# -- tick results from arrays ---------------------------------------------------------------------


class Build:
    """Builders for the engine types a sink consumes."""

    @staticmethod
    def network(segment_ids: Sequence[str]) -> RoadNetwork:
        """A network of ``segment_ids`` with placeholder attributes and no geometry."""
        n = len(segment_ids)
        no_geometry = np.full(n, None, dtype=object)
        table = SegmentTable(
            segment_id=np.array(list(segment_ids), dtype=object),
            from_node=np.array([f"n{i}" for i in range(n)], dtype=object),
            to_node=np.array([f"n{i + 1}" for i in range(n)], dtype=object),
            length_m=np.full(n, 100.0),
            lanes=np.ones(n, dtype=np.int16),
            road_class=np.ones(n, dtype=np.int8),
            speed_limit_kmh=np.full(n, 60.0, dtype=np.float32),
            name=np.full(n, "", dtype=object),
            geometry=no_geometry,
            geometry_m=no_geometry.copy(),
            junction_signalised=np.zeros(n, dtype=bool),
        )
        return RoadNetwork(graph=nx.MultiDiGraph(), segments=table, source="<test>", has_lonlat=False)

    @staticmethod
    def states(
        ts: float,
        speed_kmh: Sequence[float] | np.ndarray,
        *,
        free_flow_kmh: Sequence[float] | float = 48.0,
        tti: Sequence[float] | None = None,
        level: Sequence[int] | None = None,
        confidence: Sequence[float] | float = 0.8,
        imputed: Sequence[bool] | bool = False,
        n_detectors: Sequence[int] | int = 1,
        n_cameras: Sequence[int] | int = 0,
        closed: Sequence[bool] | bool = False,
    ) -> SegmentStates:
        """Segment states; ``tti`` = free flow / speed and the GB/T 33171 level unless given."""
        speed = np.asarray(speed_kmh, dtype=np.float32)
        n = len(speed)

        def column(value: object, dtype: type) -> np.ndarray:
            return np.broadcast_to(np.asarray(value, dtype=dtype), (n,)).copy()

        free_flow = column(free_flow_kmh, np.float32)
        if tti is None:
            with np.errstate(divide="ignore", invalid="ignore"):
                tti_arr = (free_flow / speed).astype(np.float32)
        else:
            tti_arr = column(tti, np.float32)
        return SegmentStates(
            ts=ts,
            speed_kmh=speed,
            free_flow_kmh=free_flow,
            tti=tti_arr,
            level=column(Build.level_from_ratio(speed / free_flow) if level is None else level, np.int8),
            confidence=column(confidence, np.float32),
            imputed=column(imputed, bool),
            n_detectors=column(n_detectors, np.int16),
            n_cameras=column(n_cameras, np.int16),
            closed=column(closed, bool),
        )

    @staticmethod
    def level_from_ratio(ratio: np.ndarray) -> np.ndarray:
        """GB/T 33171-2016 §8.1 bands of speed / free flow; 0 (unknown) where there is no ratio."""
        bands = [ratio > 0.7, ratio > 0.5, ratio > 0.4, ratio > 0.3, ratio >= 0.0]
        return np.select(bands, [1, 2, 3, 4, 5], default=0).astype(np.int8)

    @staticmethod
    def area(ts: float, **fields: float) -> AreaIndex:
        values: dict[str, float] = {
            "tpi": 3.456,
            "level": 2,
            "tti": 1.234,
            "severe_share": 0.0512,
            "known_share": 0.9,
        }
        values.update(fields)
        return AreaIndex(ts=ts, **values)  # type: ignore[arg-type]

    @staticmethod
    def result(states: SegmentStates, districts: dict[str, AreaIndex] | None = None) -> TickResult:
        return TickResult(
            states=states, city=Build.area(states.ts), districts=districts or {}, readings_used=0
        )


@pytest.fixture
def build() -> type[Build]:
    return Build
