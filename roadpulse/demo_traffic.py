"""A believable day of loop-detector readings for the demo, generated from a few simple rules.

Not a traffic simulator (SUMO is the reference for that): a generator of readings that look like a
city's loops, so the whole engine can be watched working — including its health checks and its
incident detection, which only accept readings that obey a fundamental diagram.

* Demand follows a weekday profile in local time: a night low, a morning peak around 08:00, a
  midday plateau and an evening peak around 18:00.
* Each segment has its own sensitivity to demand (arterials near the centre congest most), so the
  same demand grades the city from smooth to severe in places.
* Every reading sits on a triangular fundamental diagram (per lane): with x the demand/capacity
  ratio, speed v = v_f · (1 − 0.75 · x^3) (a BPR-like shape, floored at 10 % of free flow), the
  demanded flow q = x · ``LANE_CAPACITY_VPH``, density k = q / v but never beyond the congested
  branch q = w · (k_j − k) (so an over-capacity segment has a dense, slow, *low-flow* state, as
  a real jam does), occupancy = k · L_eff, counts Poisson around q · interval.
* An incident blocks most of one central arterial segment, just downstream of its loops, from
  ``incident_start_h`` for ``incident_minutes``. Only ``discharge_share`` of the usual flow gets
  past; what does is the flow of a standing queue (congested branch: high occupancy, crawling
  speed) over the segment's own loops and, one more segment every few minutes, over the
  upstream ones. Downstream of the blockage the road is starved: low flow and occupancy at
  free-flow speed — the signature California-type detectors (upstream occupancy high, downstream
  occupancy falling suddenly) and speed-drop detectors look for. After clearance the queue
  discharges from its front over ``recovery_minutes``.
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
#: Usable capacity of an urban lane with signals (veh/h) and the backward wave speed (km/h) of the
#: congested branch of the fundamental diagram.
LANE_CAPACITY_VPH = 900.0
WAVE_SPEED_KMH = 20.0
#: Peak demand/capacity of the incident's street and its neighbours before the incident.
QUIET_STREET_X = 0.8


@dataclass(frozen=True)
class DayPlan:
    utc_offset_h: float
    incident_segment: int
    incident_start_h: float = 8.2
    incident_minutes: float = 45.0
    #: Minutes for the queue to spill back over one more upstream segment.
    spillback_minutes_per_segment: float = 4.0
    #: Share of the segment's usual flow that still gets past the blockage.
    discharge_share: float = 0.2
    #: Minutes for the queue to dissolve after clearance.
    recovery_minutes: float = 20.0


def demand_factor(local_hour: float) -> float:
    """Share of peak demand at a local hour of a weekday (0..1)."""
    h = local_hour % 24.0
    morning = math.exp(-0.5 * ((h - 8.0) / 0.8) ** 2)
    evening = math.exp(-0.5 * ((h - 18.0) / 1.0) ** 2)
    midday = 0.45 * math.exp(-0.5 * ((h - 13.0) / 2.5) ** 2)
    night = 0.12
    return min(1.0, night + 0.85 * max(morning, evening * 0.95) + midday)


@dataclass(frozen=True)
class SegmentTraffic:
    """Per segment and lane: travel speed (km/h), flow (veh/h) and density (veh/km)."""

    speed_kmh: np.ndarray
    flow_vph: np.ndarray
    density_vpkm: np.ndarray


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
        succ_ptr, succ_idx = network.successors_csr()
        s = plan.incident_segment
        #: Segments just downstream of the blockage: the blocked stream no longer reaches them.
        self.starved = np.array(
            [int(x) for x in succ_idx[succ_ptr[s] : succ_ptr[s + 1]] if int(x) != s], dtype=np.int64
        )
        # The incident's street is busy but flowing at the peak (demand/capacity at most
        # ``QUIET_STREET_X``), so the blockage is a change of state its loops can see, not one
        # more jam in a jam.
        street = np.concatenate([[s], self.starved, self.upstream_rings[0]]).astype(np.int64)
        self.sensitivity[street] = np.minimum(self.sensitivity[street], QUIET_STREET_X)
        n_det = len(detectors)
        # About a third of loops are single loops (no speed); the choice is stable for the day.
        self.single_loop = self.rng.random(n_det) < 0.35
        self.broken_detector = int(self.rng.integers(n_det)) if n_det else -1

    def _sensitivity(self, seed: int) -> np.ndarray:
        seg = self.network.segments
        rng = np.random.default_rng(seed + 1)
        base = np.where(seg.road_class <= ROAD_CLASS_CODE["arterial"], 0.85, 0.7)
        # Closer to the centre of the network → more congested.
        centres = np.array([g.interpolate(0.5, normalized=True).coords[0] for g in seg.geometry_m])
        dist = np.hypot(*(centres - centres.mean(axis=0)).T)
        closeness = 1.0 - dist / max(float(dist.max()), 1.0)
        return np.asarray(base * (0.7 + 0.55 * closeness) * rng.lognormal(0.0, 0.15, len(seg)))

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

    def segment_traffic(self, ts: float) -> SegmentTraffic:
        """Speed, flow and density per lane of every segment at time ``ts`` (see the module
        docstring): every state lies on the triangular fundamental diagram."""
        vf = self.free_flow_kmh
        x = np.clip(demand_factor(self.local_hour(ts)) * self.sensitivity, 0.0, 1.3)
        speed = vf * np.maximum(1.0 - 0.75 * x**3, 0.10)
        demand = np.minimum(x, 1.0) * LANE_CAPACITY_VPH
        density = np.minimum(demand / speed, _congested_density(speed))
        flow = density * speed
        self._apply_incident(ts, speed, flow, density)
        return SegmentTraffic(speed_kmh=speed, flow_vph=flow, density_vpkm=density)

    def _apply_incident(self, ts: float, speed: np.ndarray, flow: np.ndarray, density: np.ndarray) -> None:
        plan = self.plan
        minutes_in = (self.local_hour(ts) - plan.incident_start_h) * 60.0
        if not 0.0 <= minutes_in < plan.incident_minutes + plan.recovery_minutes:
            return
        s = plan.incident_segment
        queue = [np.array([s], dtype=np.int64)]
        reach = min(len(self.upstream_rings), int(minutes_in / plan.spillback_minutes_per_segment))
        queue += self.upstream_rings[:reach]
        if minutes_in >= plan.incident_minutes:
            # Cleared: the queue discharges from its front, the first rings free first.
            freed = (minutes_in - plan.incident_minutes) / plan.recovery_minutes * len(queue)
            start_ring = math.ceil(freed)
            queue = queue[start_ring:]
            if not queue:
                return
        else:
            start_ring = 0
            # Downstream of the blockage: the blocked stream is gone, other approaches still feed.
            starved = self.starved
            flow[starved] *= plan.discharge_share + 0.2
            speed[starved] = self.free_flow_kmh[starved] * 0.9
            density[starved] = flow[starved] / speed[starved]
        # The queue moves at the rate that gets past the blockage (while active) or at capacity
        # (discharge after clearance): the congested branch at that flow.
        if minutes_in < plan.incident_minutes:
            q_queue = max(plan.discharge_share * float(flow[s]), 60.0)
        else:
            q_queue = LANE_CAPACITY_VPH * 0.8
        for k, members in enumerate(queue):
            if len(members) == 0:
                continue
            # Further back, the queue's tail is shorter over the segment: a little more flow.
            q = np.minimum(flow[members], q_queue * (1.0 + 0.25 * (start_ring + k)))
            k_queue = JAM_DENSITY_VPKM - q / WAVE_SPEED_KMH
            v = np.maximum(q / k_queue, 1.0)
            slower = v < speed[members]
            m = members[slower]
            speed[m] = v[slower]
            flow[m] = q[slower]
            density[m] = k_queue[slower]

    def speed_ratio(self, ts: float) -> np.ndarray:
        """Travel speed / free-flow speed of every segment at time ``ts``."""
        return np.asarray(self.segment_traffic(ts).speed_kmh / self.free_flow_kmh)

    def readings(self, ts: float) -> list[dict[str, Any]]:
        """One reading per detector for the interval ending at ``ts``."""
        det = self.detectors
        if len(det) == 0:
            return []
        seg_idx = det.segment_index.astype(np.int64)
        traffic = self.segment_traffic(ts)
        speed = traffic.speed_kmh[seg_idx] * self.rng.normal(1.0, 0.05, len(det))
        counts = self.rng.poisson(traffic.flow_vph[seg_idx] * self.interval_s / 3600.0)
        occupancy = np.clip(
            traffic.density_vpkm[seg_idx] * EFFECTIVE_LENGTH_M / 10.0 * self.rng.normal(1.0, 0.08, len(det)),
            0.0,
            98.0,
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


def _congested_density(speed_kmh: np.ndarray) -> np.ndarray:
    """Density (veh/km/lane) on the congested branch q = w · (k_j − k) at speed v = q / k."""
    return np.asarray(WAVE_SPEED_KMH * JAM_DENSITY_VPKM / (speed_kmh + WAVE_SPEED_KMH))


def pick_incident_segment(network: RoadNetwork, *, seed: int, covered: np.ndarray | None = None) -> int:
    """A central arterial (or the most important class present) with upstream neighbours.

    ``covered`` (per segment: it has detectors) prefers a segment whose own loops and whose
    neighbours' loops can see the incident: detectors on it, on every segment downstream of it
    (the starved side a California-type test compares with) and on at least one upstream.
    """
    seg = network.segments
    top_class = int(seg.road_class.min())
    candidates = np.flatnonzero(seg.road_class == top_class)
    centres = np.array([seg.geometry_m[i].interpolate(0.5, normalized=True).coords[0] for i in candidates])
    centre = np.array([g.interpolate(0.5, normalized=True).coords[0] for g in seg.geometry_m]).mean(axis=0)
    order = np.argsort(np.hypot(*(centres - centre).T))
    pred_ptr, pred_idx = network.predecessors_csr()
    succ_ptr, succ_idx = network.successors_csr()

    def usable(i: int) -> bool:
        return bool(pred_ptr[i + 1] - pred_ptr[i] >= 1 and seg.length_m[i] > 80)

    def seen_by_loops(i: int) -> bool:
        if covered is None:
            return True
        succ = succ_idx[succ_ptr[i] : succ_ptr[i + 1]]
        pred = pred_idx[pred_ptr[i] : pred_ptr[i + 1]]
        return bool(covered[i] and len(succ) and covered[succ].all() and covered[pred].any())

    for i in candidates[order]:
        if usable(int(i)) and seen_by_loops(int(i)):
            return int(i)
    for i in candidates[order]:
        if usable(int(i)):
            return int(i)
    return int(candidates[order[0]]) if len(candidates) else 0
