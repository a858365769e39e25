"""A believable day of loop-detector readings for the demo, generated from a few simple rules.

Not a traffic simulator (SUMO is the reference for that): a generator of readings that look like a
city's loops, so the whole engine can be watched working.

* Demand follows a weekday profile in local time: a night low, a morning peak around 08:00, a
  midday plateau and an evening peak around 18:00.
* Each segment has its own sensitivity to demand (arterials near the centre congest most), so the
  same demand grades the city from smooth to severe in places.
* Speed follows from the demand/capacity ratio x as v = v_f · (1 − 0.75 · x^3) (a BPR-like
  shape, floored at 10 % of free flow), density from Greenshields' relation k = k_j · (1 − v/v_f),
  flow q = k · v, occupancy = k · L_eff, counts Poisson around q · interval.
* An incident blocks one central arterial segment from ``incident_start_h`` for
  ``incident_minutes``: its speed collapses and a queue grows back over the upstream segments, one
  more every few minutes, then dissolves after clearance.
* A share of loops are single loops that report no speed (the engine derives it from flow and
  occupancy), and one detector is broken and reports occupancy above 100 % (to be rejected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from roadgraph.detectors import DetectorRegistry
from roadgraph.network import ROAD_CLASS_CODE, RoadNetwork

#: Jam density per lane (veh/km) and effective vehicle length (m) of the generated loops.
JAM_DENSITY_VPKM = 140.0
EFFECTIVE_LENGTH_M = 6.0


@dataclass(frozen=True)
class DayPlan:
    utc_offset_h: float
    incident_segment: int
    incident_start_h: float = 8.2
    incident_minutes: float = 45.0
    #: Minutes for the queue to spill back over one more upstream segment.
    spillback_minutes_per_segment: float = 4.0


def demand_factor(local_hour: float) -> float:
    """Share of peak demand at a local hour of a weekday (0..1)."""
    h = local_hour % 24.0
    morning = math.exp(-0.5 * ((h - 8.0) / 0.8) ** 2)
    evening = math.exp(-0.5 * ((h - 18.0) / 1.0) ** 2)
    midday = 0.45 * math.exp(-0.5 * ((h - 13.0) / 2.5) ** 2)
    night = 0.12
    return min(1.0, night + 0.85 * max(morning, evening * 0.95) + midday)


class DemoTraffic:
    """Generates readings for every detector at the end of each counting interval."""

    def __init__(
        self,
        network: RoadNetwork,
        detectors: DetectorRegistry,
        *,
        interval_s: int,
        plan: DayPlan,
        seed: int,
    ) -> None:
        self.network = network
        self.detectors = detectors
        self.interval_s = interval_s
        self.plan = plan
        self.rng = np.random.default_rng(seed)
        seg = network.segments
        self.free_flow_kmh = seg.speed_limit_kmh.astype(np.float64) * 0.9
        self.sensitivity = self._sensitivity(seed)
        self.upstream_rings = self._upstream_rings(plan.incident_segment, rings=6)
        n_det = len(detectors)
        # About a third of loops are single loops (no speed); the choice is stable for the day.
        self.single_loop = self.rng.random(n_det) < 0.35
        self.broken_detector = int(self.rng.integers(n_det)) if n_det else -1

    def _sensitivity(self, seed: int) -> np.ndarray:
        seg = self.network.segments
        rng = np.random.default_rng(seed + 1)
        base = np.where(seg.road_class <= ROAD_CLASS_CODE["arterial"], 0.8, 0.65)
        # Closer to the centre of the network → more congested.
        centres = np.array([g.interpolate(0.5, normalized=True).coords[0] for g in seg.geometry_m])
        dist = np.hypot(*(centres - centres.mean(axis=0)).T)
        closeness = 1.0 - dist / max(float(dist.max()), 1.0)
        return np.asarray(base * (0.7 + 0.5 * closeness) * rng.lognormal(0.0, 0.15, len(seg)))

    def _upstream_rings(self, start: int, *, rings: int) -> list[np.ndarray]:
        """Segments 1, 2, ... hops upstream of ``start`` (the queue's path back)."""
        indptr, indices = self.network.predecessors_csr()
        seen = {start}
        frontier = [start]
        out: list[np.ndarray] = []
        for _ in range(rings):
            nxt = []
            for s in frontier:
                for p in indices[indptr[s] : indptr[s + 1]]:
                    p = int(p)
                    if (
                        p not in seen
                        and self.network.segments.to_node[p] != self.network.segments.from_node[start]
                    ):
                        seen.add(p)
                        nxt.append(p)
            out.append(np.array(nxt, dtype=np.int64))
            frontier = nxt
        return out

    def local_hour(self, ts: float) -> float:
        return ((ts / 3600.0) + self.plan.utc_offset_h) % 24.0

    def speed_ratio(self, ts: float) -> np.ndarray:
        """Travel speed / free-flow speed of every segment at time ``ts``."""
        x = np.clip(demand_factor(self.local_hour(ts)) * self.sensitivity, 0.0, 1.3)
        ratio = np.maximum(1.0 - 0.75 * x**3, 0.10)
        minutes_in = (self.local_hour(ts) - self.plan.incident_start_h) * 60.0
        if 0.0 <= minutes_in < self.plan.incident_minutes + 20.0:
            active = minutes_in < self.plan.incident_minutes
            # After clearance the queue discharges from the front over about 20 minutes.
            recovery = 1.0 if active else max(0.0, 1.0 - (minutes_in - self.plan.incident_minutes) / 20.0)
            reach = min(len(self.upstream_rings), int(minutes_in / self.plan.spillback_minutes_per_segment))
            ratio[self.plan.incident_segment] = min(ratio[self.plan.incident_segment], 1.0 - 0.9 * recovery)
            for ring, members in enumerate(self.upstream_rings[:reach]):
                depth = 0.85 * (1.0 - ring / (len(self.upstream_rings) + 1)) * recovery
                ratio[members] = np.minimum(ratio[members], 1.0 - depth)
        return ratio

    def readings(self, ts: float) -> list[dict[str, Any]]:
        """One reading per detector for the interval ending at ``ts``."""
        det = self.detectors
        if len(det) == 0:
            return []
        seg_idx = det.segment_index.astype(np.int64)
        ratio = self.speed_ratio(ts)[seg_idx]
        vf = self.free_flow_kmh[seg_idx]
        speed = vf * ratio * self.rng.normal(1.0, 0.05, len(det))
        density = JAM_DENSITY_VPKM * (1.0 - ratio)  # veh/km/lane
        # Light traffic still has vehicles: add a demand-driven floor to the density.
        density += 4.0 + 18.0 * demand_factor(self.local_hour(ts))
        flow_vph = density * np.maximum(speed, 1.0)
        counts = self.rng.poisson(flow_vph * self.interval_s / 3600.0)
        occupancy = np.clip(
            density * EFFECTIVE_LENGTH_M / 10.0 * self.rng.normal(1.0, 0.08, len(det)), 0.0, 98.0
        )
        out: list[dict[str, Any]] = []
        for k in range(len(det)):
            has_speed = counts[k] > 0 and not self.single_loop[k]
            reading: dict[str, Any] = {
                "detector_id": str(det.detector_id[k]),
                "ts": int(ts),
                "interval_s": self.interval_s,
                "count": int(counts[k]),
                "occupancy_pct": round(float(occupancy[k]), 1),
                "speed_kmh": round(float(speed[k]), 1) if has_speed else None,
            }
            if k == self.broken_detector:
                reading["occupancy_pct"] = 140.0
            out.append(reading)
        return out


def pick_incident_segment(network: RoadNetwork, *, seed: int) -> int:
    """A central arterial (or the most important class present) with upstream neighbours."""
    seg = network.segments
    top_class = int(seg.road_class.min())
    candidates = np.flatnonzero(seg.road_class == top_class)
    centres = np.array([seg.geometry_m[i].interpolate(0.5, normalized=True).coords[0] for i in candidates])
    centre = np.array([g.interpolate(0.5, normalized=True).coords[0] for g in seg.geometry_m]).mean(axis=0)
    order = np.argsort(np.hypot(*(centres - centre).T))
    indptr, _ = network.predecessors_csr()
    for i in candidates[order]:
        if indptr[i + 1] - indptr[i] >= 1 and seg.length_m[i] > 80:
            return int(i)
    return int(candidates[order[0]]) if len(candidates) else 0
