"""Per-segment geometry the map feeds share: lon/lat vertices, heading, direction words.

Computed once per network (``SegmentGeometry``) and read on every push, so the feeds never walk
shapely objects per tick.
"""

from __future__ import annotations

import math

import numpy as np
import shapely

from roadgraph.network import RoadNetwork


class FeedError(ValueError):
    """A feed cannot be built for this network or record; the message says why."""


#: Compass words for 8 sectors of a heading measured counter-clockwise from east (Amap's angle).
_FROM_TO_ZH = (
    "从西到东",
    "从西南到东北",
    "从南到北",
    "从东南到西北",
    "从东到西",
    "从东北到西南",
    "从北到南",
    "从西北到东南",
)
_CARDINAL_EN = (
    "eastbound",
    "northeastbound",
    "northbound",
    "northwestbound",
    "westbound",
    "southwestbound",
    "southbound",
    "southeastbound",
)


def sector(angle_ccw_deg: float) -> int:
    """0..7: the 45° sector of a heading (0 = east, counter-clockwise)."""
    return int(((angle_ccw_deg + 22.5) % 360.0) // 45.0)


def direction_zh(angle_ccw_deg: float) -> str:
    """Amap's direction text, e.g. ``从西到东`` for a heading of 0° (eastbound)."""
    return _FROM_TO_ZH[sector(angle_ccw_deg)]


def direction_en(angle_ccw_deg: float) -> str:
    """``eastbound`` … ``southeastbound``."""
    return _CARDINAL_EN[sector(angle_ccw_deg)]


class SegmentGeometry:
    """Lon/lat vertices (in travel direction) and heading of every segment of a network."""

    def __init__(self, network: RoadNetwork) -> None:
        if not network.has_lonlat:
            raise FeedError(
                f"network {network.source!r} has no lon/lat (a SUMO network without a projection); "
                "map feeds need geographic coordinates"
            )
        seg = network.segments
        self.network = network
        coords, owner = shapely.get_coordinates(list(seg.geometry), return_index=True)
        bounds = np.searchsorted(owner, np.arange(len(seg) + 1))
        self._coords = coords
        self._bounds = bounds
        coords_m, owner_m = shapely.get_coordinates(list(seg.geometry_m), return_index=True)
        bounds_m = np.searchsorted(owner_m, np.arange(len(seg) + 1))
        first = coords_m[bounds_m[:-1]]
        last = coords_m[bounds_m[1:] - 1]
        d = last - first
        #: Heading from the segment's start to its end, degrees counter-clockwise from east, 0..360.
        self.angle_ccw_deg = np.degrees(np.arctan2(d[:, 1], d[:, 0])) % 360.0

    def lonlat(self, i: int) -> np.ndarray:
        """(k, 2) lon/lat vertices of segment ``i`` in travel direction."""
        return self._coords[self._bounds[i] : self._bounds[i + 1]]

    def midpoint(self, i: int) -> tuple[float, float]:
        pts = self.lonlat(i)
        line = shapely.LineString(pts)
        p = line.interpolate(0.5, normalized=True)
        return float(p.x), float(p.y)


def iso_time(ts: float, utc_offset_s: int = 0) -> str:
    """ISO 8601 with an explicit offset, e.g. ``2026-04-21T08:00:00+08:00``."""
    from datetime import datetime, timedelta, timezone

    tz = timezone(timedelta(seconds=utc_offset_s))
    return datetime.fromtimestamp(float(ts), tz).isoformat(timespec="seconds")


def finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
