"""Fixtures for the ingest tests: detector registries. Brokers come from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from roadgraph.detectors import DetectorRegistry


def _make_registry(ids: list[str], lanes: list[int] | None = None) -> DetectorRegistry:
    n = len(ids)
    return DetectorRegistry(
        detector_id=np.array(ids, dtype=object),
        segment_index=np.arange(n, dtype=np.int32),
        lane=np.array(lanes if lanes is not None else [-1] * n, dtype=np.int16),
        pos_m=np.full(n, np.nan, dtype=np.float32),
        kind=np.array(["loop"] * n, dtype=object),
    )


@pytest.fixture
def make_registry() -> Callable[..., DetectorRegistry]:
    """``make_registry(ids, lanes=None)``: a registry of those detectors (lane -1 = not fixed)."""
    return _make_registry


@pytest.fixture
def registry() -> DetectorRegistry:
    """D1 on lane 1 (fixed by the registry); D2 and D3 with no lane fixed."""
    return _make_registry(["D1", "D2", "D3"], [1, -1, -1])
