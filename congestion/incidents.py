"""Automatic incident detection from detector occupancy, lane counts and segment travel speeds.

Three tests run on every segment at every tick. An incident opens when the **lane test** fires,
or when the **occupancy test and the speed test** both hold for ``persistence_ticks`` ticks in a
row (``require_both``; False: either alone); it clears once the segment is back to its level
before the incident for ``clear_ticks`` ticks in a row.

**Occupancy test (California algorithm family).** Payne & Tignor's California algorithms compare
the occupancy of an upstream station with the downstream one (Payne & Tignor, "Freeway incident-
detection algorithms based on decision trees with states", TRR 682, 1978; algorithm #7 is the
one with persistence). An incident between two stations fills the road upstream of it (a queue
over the upstream loop) and starves it downstream:

    OCCDF  = OCC_up(t) − OCC_down(t)                       ≥ occdf_min_pct
    OCCRDF = OCCDF / OCC_up(t)                              ≥ occrdf_min
    DOCCTD = (OCC_down(t−2) − OCC_down(t)) / OCC_down(t−2)  ≥ docctd_min   (onset only)

Stations here are segments: the upstream station is the detectors of segment s, the downstream
one those of its successors (mean occupancy; the segment's own reverse, reached by a U-turn, is
not one of them). On signalised streets a loop upstream of a stop
line is often in a standing queue while the next link flows freely, so a large OCCDF alone is
recurrent, not an incident. The upstream occupancy must also have risen by ``occ_rise_min_pct``
over the segment's own recent level (the median of the history before the persistence window),
and DOCCTD is required at onset (as algorithm #7 does): the downstream station empties
*suddenly*.

**Speed test (McMaster-style: a change of state relative to the segment's own recent level).**
The segment's travel speed (the engine's estimate, not imputed) falls to at most
``(1 − speed_drop_min)`` × its recent level and to a speed ratio (speed / free-flow) of at most
``speed_ratio_max``, while the segments downstream are not congested (mean ratio, imputed
estimates included, at least ``downstream_ratio_min``, or unknown): congestion that starts
*here*, not a queue backing up from downstream. An imputed dead end counts as unknown: it runs
free by imputation's rule, not by evidence.

On SUMO signalised grids in a peak either test alone fires at the onset of ordinary recurrent
congestion (a junction over capacity looks like a bottleneck) several times per hour per 100
segments; requiring both, with the thresholds above, brought that to zero on the benchmark
scenarios (``benchmarks/bench_incidents.py``).

**Lane test (a blocked lane).** A stopped vehicle in one lane of a multi-lane road sends its
lane's traffic into the others: the loop of that lane downstream of the obstruction counts far
fewer vehicles than its usual share while the other lanes carry more. The counts of the last
``lane_window_ticks`` ticks are pooled per lane and compared with the lane's share of the
segment's flow in the older history: if each vehicle still chose the lane with its old
probability — itself only estimated from the vehicles of the older history, so the count is
beta-binomial rather than binomial — how likely is so small a count? (lower tail ≤
``lane_alpha``, the count at
most (1 − ``lane_drop_min``) × expected, at least ``lane_min_expected`` vehicles expected, and
the lane's occupancy at most ``lane_occ_slack_pct`` above its older mean and at most
``lane_max_occ_pct`` — a lane *starved*, not a standing queue over its loop). The pooled window
is the test's persistence. It clears when the lane's share is back to ``recover_lane_share`` ×
its share before.

The lane test runs only on a segment whose recent travel speed is above ``lane_min_speed_ratio``
× its free flow: in a queue a lane's share is set by what discharges at the junction, not by the
drivers' choice of lane.

A lane can also empty because its *feed* stopped upstream (in a gridlock, the vehicles that
would use it are stuck at the previous junction); its share falls just the same. The two differ
in where the vehicles went: a lane blocked on this segment hands them to the other lanes, past
the same loops, so the segment's flow holds; a feed stopped upstream takes them away. So the
other lanes must have gained, over their own older rates, at least ``lane_compensation_min`` ×
what the starved lane lost (a conservation check on the segment's station). On the SUMO city
benchmark this removed about half of the lane test's false alarms and none of its detections.
A lane incident is not opened where the same test already holds, or a lane incident is active,
up to three segments upstream (vehicles stay in their lanes for a while: the most upstream
segment of such a chain carries it), and, unlike a queue, not held back by an incident
downstream.

An incident is not opened on a segment one of whose successors already has one (its queue is a
consequence). The incident id is ``{segment_id}@{start}`` (the start tick as epoch seconds):
stable across restarts and unique per segment and episode. Severity: 1 (speed ratio above 0.4),
2 (0.2–0.4), 3 (below 0.2, or a standing queue: occupancy ≥ 50 %), the worst seen while active.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork

from . import _health_kernels as hk
from . import _incident_kernels as ik
from .types import ReadingBatch, SegmentStates

CAUSE_OCCUPANCY = "occupancy"
CAUSE_SPEED = "speed"
CAUSE_LANE = "lane"
_CAUSES = ("", CAUSE_OCCUPANCY, CAUSE_SPEED, CAUSE_LANE)
#: How far upstream (segments) a starved lane is looked for before opening a lane incident.
_CHAIN_HOPS = 3


@dataclass(frozen=True)
class IncidentSettings:
    """Thresholds of incident detection; every field is a key of ``[incidents]`` in config.toml."""

    #: Ticks of recent history kept per segment (the "recent level" is their median).
    history_ticks: int = 15
    #: Ticks in a row a test must hold before an incident is reported.
    persistence_ticks: int = 5
    #: Ticks in a row back to normal before an incident is cleared.
    clear_ticks: int = 5
    #: A detector reading older than this (s) no longer counts as the station's occupancy.
    fresh_s: float = 180.0
    #: California: OCC_up − OCC_down, percentage points (Payne & Tignor's T1 is of this order).
    occdf_min_pct: float = 15.0
    #: California: OCCDF / OCC_up.
    occrdf_min: float = 0.5
    #: California: relative drop of downstream occupancy over two ticks, at onset.
    docctd_min: float = 0.5
    #: Urban addition: rise of upstream occupancy over its recent level (percentage points).
    occ_rise_min_pct: float = 25.0
    #: Speed test: drop below the recent level (share).
    speed_drop_min: float = 0.4
    #: Speed test: speed / free-flow at most this.
    speed_ratio_max: float = 0.25
    #: Speed test: downstream segments' mean speed ratio at least this (or unknown).
    downstream_ratio_min: float = 0.6
    #: Back to normal: speed at least this share of the level before the incident.
    recover_speed_share: float = 0.75
    #: Lane test: ticks of counts pooled per lane (its own persistence).
    lane_window_ticks: int = 3
    #: Lane test: beta-binomial lower-tail probability of the lane's pooled count at most this.
    lane_alpha: float = 3e-4
    #: Lane test: expected pooled count of the lane at least this (vehicles).
    lane_min_expected: float = 8.0
    #: Lane test: the lane's count at most (1 − this) × its expected count.
    lane_drop_min: float = 0.6
    #: Lane incident back to normal: the lane's share of the flow at this share of its share before.
    recover_lane_share: float = 0.75
    #: Lane test: the starved lane's occupancy may exceed its older mean by at most this
    #: (percentage points): an emptier lane, not a standing queue over its loop; a few points of
    #: slack because one slow vehicle past the loop already moves a minute's occupancy that much.
    lane_occ_slack_pct: float = 10.0
    #: Lane test: and at most this (percentage points) outright: a lane whose loop is covered
    #: longer than this is a queue however few vehicles it counts (a jammed turn lane).
    lane_max_occ_pct: float = 20.0
    #: Lane test: a lane whose last vehicles over the loop crawled (spot speed at most this share
    #: of the limit, or the loop covered by a vehicle that did not pass) is a queue at rest with
    #: the loop in the gap between two cars, not a starved lane, until the loop sees a vehicle
    #: pass at speed again (the engine's queue memory, ``engine.queue_speed_fraction_of_limit``).
    lane_queue_speed_fraction: float = 0.3
    #: Lane test: the queue-at-rest reading above holds this long (seconds) after the crawl was
    #: last seen; after it, a loop that has seen nobody pass and nothing stand over it is read
    #: as an emptied lane again. A queue at a signal moves within a cycle; one standing still
    #: for minutes with its neighbours flowing is a lane blocked just past its loop (a stopped
    #: vehicle there empties the lane exactly so). The runtime sets it to the engine's own
    #: queue-memory hold, ``engine.stale_after_s``, so both read the empty minutes alike.
    lane_crawl_lapse_s: float = 300.0
    #: Lane test: only on a segment whose recent travel speed (the median of its history) is
    #: above this share of its free flow, GB/T 33171's boundary of moderate congestion. In a
    #: queue a lane's share of the flow is set by what discharges at the junction (a vehicle
    #: waiting to turn holds its lane), not by the drivers' choice of lane, and a lane blocked
    #: inside a queue changes nothing the loops can tell apart.
    lane_min_speed_ratio: float = 0.4
    #: Lane test: the other lanes must have carried at least this share of what the starved lane
    #: lost (both against their own rates in the older history). A lane blocked on this segment
    #: sends its vehicles into the other lanes, past the same loops; a lane emptied *upstream*
    #: (its feed stuck at a junction, gridlock) takes them away from the segment altogether.
    lane_compensation_min: float = 0.8
    #: Occupancy and speed tests must agree (on signalised grids either alone also fires at the
    #: onset of recurrent peak congestion); False: either suffices.
    require_both: bool = True
    #: Master switch of the speed test (the occupancy test needs detectors on both sides).
    use_speed_test: bool = True
    #: Master switch of the lane test (needs a detector per lane on multi-lane segments).
    use_lane_test: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                continue
            if f.name == "lane_crawl_lapse_s":
                # From [engine] stale_after_s, which may be 0 (then the memory holds no longer
                # than the tick of the crawl itself).
                if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                    raise ValueError(
                        f"[engine] stale_after_s (the lane test's crawl memory) = {value!r}: "
                        "expected a finite number >= 0"
                    )
                continue
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"[incidents] {f.name} = {value!r}: expected a finite number > 0")
        for name in (
            "occrdf_min",
            "docctd_min",
            "speed_drop_min",
            "speed_ratio_max",
            "recover_speed_share",
            "lane_alpha",
            "lane_drop_min",
            "recover_lane_share",
            "lane_queue_speed_fraction",
            "lane_min_speed_ratio",
        ):
            if getattr(self, name) >= 1:
                raise ValueError(f"[incidents] {name} = {getattr(self, name)!r}: expected a share below 1")
        if self.history_ticks <= max(self.persistence_ticks, self.lane_window_ticks) + 2:
            raise ValueError(
                "[incidents] history_ticks must exceed persistence_ticks and lane_window_ticks + 2"
            )


@dataclass
class Incident:
    """One detected incident (mutable while active)."""

    incident_id: str
    segment_index: int
    segment_id: str
    start: float
    cause: str
    severity: int
    speed_before_kmh: float
    occ_before_pct: float
    end: float | None = None
    detected_at: float = math.nan
    #: Lane incidents: the starved lane's detector and its share of the segment's flow before.
    lane_detector: int = -1
    lane_share_before: float = math.nan

    @property
    def active(self) -> bool:
        return self.end is None


class IncidentDetector:
    """Per-segment incident detection; see the module docstring.

    Feed it the readings (``add_readings``) and, after each engine tick, call
    ``update(states)``; it returns the incidents that started or cleared at this tick.
    """

    def __init__(self, network: RoadNetwork, detectors: DetectorRegistry, settings: IncidentSettings) -> None:
        self.settings = settings
        segs = network.segments
        n = len(segs)
        self._segment_id = segs.segment_id
        self._det_segment = np.ascontiguousarray(detectors.segment_index, dtype=np.int64)
        nd = len(detectors)
        # Neighbours without the segment's own reverse (a U-turn): the other direction's
        # occupancy and speed say nothing about a queue on this one. With it, the speed test's
        # "downstream congested" and the occupancy test's downstream station mixed the opposite
        # carriageway in (SUMO grids have a turnaround at every junction).
        self._succ_ptr, self._succ_idx = network.successors_csr(reverse=False)
        self._pred_ptr, self._pred_idx = network.predecessors_csr(reverse=False)
        # Dead ends (nothing leaves but the reverse): imputation runs them free by rule when they
        # have no loop (``ImputationParams.dead_end_free``; with the rule off they copy the queue
        # of the segments before them). Either way the estimate says nothing about those
        # segments' exits: the speed test reads it as unknown.
        self._dead_end = network.dead_ends()
        self._lonlat = _incident_points(network)
        h = int(settings.history_ticks)
        self._hist_occ = np.full((n, h), np.nan, dtype=np.float32)
        self._hist_speed = np.full((n, h), np.nan, dtype=np.float32)
        self._hist_down_occ = np.full((n, h), np.nan, dtype=np.float32)
        self._hist_pos = 0
        self._run = np.zeros(n, dtype=np.int32)
        self._run_start = np.full(n, np.nan, dtype=np.float64)
        self._run_cause = np.zeros(n, dtype=np.int8)  # index into _CAUSES
        self._hist_ts = np.full(h, np.nan, dtype=np.float64)
        self._quiet = np.zeros(n, dtype=np.int32)
        self._active: dict[int, Incident] = {}
        self._cleared: list[Incident] = []
        self.max_cleared_kept = 1000
        # Per-detector occupancy/flow of the last tick it reported in.
        self._det_ts = np.full(nd, np.nan, dtype=np.float64)
        self._det_count = np.zeros(nd, dtype=np.float64)
        self._det_occ = np.full(nd, np.nan, dtype=np.float64)
        self._det_interval = np.full(nd, np.nan, dtype=np.float64)
        # Per detector: when its last vehicles over the loop crawled (the ts of that reading; -inf:
        # they did not), see lane_queue_speed_fraction and lane_crawl_lapse_s.
        self._det_crawl_ts = np.full(nd, -np.inf, dtype=np.float64)
        self._det_limit = np.asarray(segs.speed_limit_kmh, dtype=np.float64)[self._det_segment]
        self._pending: list[ReadingBatch] = []
        self._usable = np.ones(nd, dtype=bool)
        # Lane test: detectors with a known lane on segments with at least two such detectors.
        lane_known = np.asarray(detectors.lane) >= 0
        per_segment = np.bincount(self._det_segment[lane_known], minlength=n)
        self._lane_det = lane_known & (per_segment[self._det_segment] >= 2)
        self._hist_det_count = np.full((nd, h), np.nan, dtype=np.float32)
        self._hist_det_occ = np.full((nd, h), np.nan, dtype=np.float32)
        self.last_features: dict[str, np.ndarray] = {}

    # ---------------------------------------------------------------------------------------

    def add_readings(self, batch: ReadingBatch) -> None:
        if len(batch):
            self._pending.append(batch)

    def set_usable(self, usable: np.ndarray) -> None:
        """Detectors whose readings may be used (detector health)."""
        self._usable = np.asarray(usable, dtype=bool).copy()

    def blocked_lane_detectors(self, n_detectors: int) -> np.ndarray:
        """Per detector: it is the starved lane of an active lane incident (its emptiness is the
        incident's doing, not a fault)."""
        out = np.zeros(n_detectors, dtype=bool)
        for inc in self._active.values():
            if inc.lane_detector >= 0:
                out[inc.lane_detector] = True
        return out

    def active(self) -> list[Incident]:
        return list(self._active.values())

    def incidents(self, *, include_cleared: bool = False) -> list[Incident]:
        out = self.active()
        if include_cleared:
            out = self._cleared + out
        return out

    def record(self, inc: Incident) -> dict[str, Any]:
        """The spec payload of ``traffic/incidents/{incident_id}``."""
        lon, lat = self._lonlat[inc.segment_index]
        what = {
            CAUSE_OCCUPANCY: "occupancy upstream rose while downstream emptied (California-type test)",
            CAUSE_SPEED: "travel speed fell sharply below its recent level, traffic downstream not congested",
            CAUSE_LANE: "one lane's traffic fell far below its usual share (lane blocked before the loop)",
        }[inc.cause]
        before = (
            f"; speed before {inc.speed_before_kmh:.0f} km/h" if math.isfinite(inc.speed_before_kmh) else ""
        )
        rec: dict[str, Any] = {
            "incident_id": inc.incident_id,
            "type": "incident",
            "segment_id": inc.segment_id,
            "lon": None if math.isnan(lon) else round(float(lon), 6),
            "lat": None if math.isnan(lat) else round(float(lat), 6),
            "start": _num(inc.start),
            "end": None if inc.end is None else _num(inc.end),
            "status": "active" if inc.active else "cleared",
            "source": "detector",
            "severity": int(inc.severity),
            "description": f"Automatic detection on segment {inc.segment_id}: {what}{before}.",
        }
        return rec

    # ---------------------------------------------------------------------------------------

    def _take_due(self, tick_ts: float) -> ReadingBatch:
        batch = ReadingBatch.concat(self._pending)
        due = batch.ts <= tick_ts
        self._pending = [] if due.all() else [batch.take(~due)]
        return batch.take(due)

    def _station_values(self, tick_ts: float) -> dict[str, np.ndarray]:
        """Per-detector values of this tick's readings, then per-segment occupancy and flow."""
        due = self._take_due(tick_ts)
        if len(due):
            d = due.detector_index
            nd = len(self._det_ts)
            n_r = np.bincount(d, minlength=nd).astype(np.float64)
            got = n_r > 0
            occ = np.bincount(d, weights=due.occupancy_pct, minlength=nd)
            cnt = np.bincount(d, weights=due.count, minlength=nd)
            itv = np.bincount(d, weights=due.interval_s, minlength=nd)
            newest = np.full(nd, -np.inf)
            np.maximum.at(newest, d, due.ts)
            self._det_ts[got] = newest[got]
            self._det_occ[got] = occ[got] / n_r[got]
            self._det_count[got] = cnt[got]
            self._det_interval[got] = itv[got]
            self._note_crawls(due)
        n = len(self._segment_id)
        occ_s = np.empty(n)
        flow_s = np.empty(n)
        max_occ = np.empty(n)
        min_lane_flow = np.empty(n)
        hk.segment_occupancy(
            self._det_segment,
            self._usable,
            self._det_ts,
            self._det_count,
            self._det_occ,
            self._det_interval,
            tick_ts,
            self.settings.fresh_s,
            occ_s,
            flow_s,
            max_occ,
            min_lane_flow,
        )
        fresh_now = np.zeros(len(self._det_ts), dtype=bool)
        if len(due):
            fresh_now[np.unique(due.detector_index)] = True
        return {
            "occ": occ_s,
            "flow": flow_s,
            "max_occ": max_occ,
            "min_lane_flow": min_lane_flow,
            "det_fresh": fresh_now,
        }

    def _note_crawls(self, due: ReadingBatch) -> None:
        """Remember, per detector, whether its newest reading that says something about the
        lane's motion showed a crawl: vehicles passed at most ``lane_queue_speed_fraction`` ×
        the limit, or nobody passed while the loop was covered. An empty interval says
        nothing (an empty lane and a queue at rest with the loop in a gap look the same)."""
        d = due.detector_index
        speed = due.speed_kmh
        moving = (due.count > 0) & np.isfinite(speed)
        covered = (due.count <= 0) & (due.occupancy_pct >= self.settings.lane_max_occ_pct)
        telling = np.flatnonzero(moving | covered)
        if len(telling) == 0:
            return
        dt = d[telling]
        ts = due.ts[telling]
        # The newest telling reading per detector (linear, no sort of the tick's readings); of
        # equal ts, fancy assignment keeps the last in arrival order.
        newest = np.full(len(self._det_crawl_ts), -np.inf)
        np.maximum.at(newest, dt, ts)
        last = ts == newest[dt]
        slow = speed[telling] <= self.settings.lane_queue_speed_fraction * self._det_limit[dt]
        crawl = covered[telling] | slow
        self._det_crawl_ts[dt[last]] = np.where(crawl[last], ts[last], -np.inf)

    def _upstream(self, s: int, hops: int) -> set[int]:
        """The segments up to ``hops`` segments before ``s`` (``s`` itself excluded)."""
        seen: set[int] = set()
        frontier = [s]
        for _ in range(hops):
            nxt = []
            for u in frontier:
                for q in self._pred_idx[self._pred_ptr[u] : self._pred_ptr[u + 1]].tolist():
                    if q != s and q not in seen:
                        seen.add(q)
                        nxt.append(q)
            frontier = nxt
        return seen

    def _downstream_mean(self, values: np.ndarray) -> np.ndarray:
        """Per segment, the mean of ``values`` over its successors that have one (NaN: none)."""
        ptr, idx = self._succ_ptr, self._succ_idx
        if len(idx) == 0:
            return np.full(len(values), np.nan)
        v = values[idx]
        known = np.isfinite(v)
        starts = ptr[:-1].clip(max=len(idx) - 1)
        s = np.add.reduceat(np.where(known, v, 0.0), starts)
        c = np.add.reduceat(known.astype(np.float64), starts)
        empty = np.diff(ptr) == 0
        s[empty] = 0.0
        c[empty] = 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(c > 0, s / np.maximum(c, 1.0), np.nan)

    def _lane_test(
        self, fresh: np.ndarray, tick_ts: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per segment: does one lane carry far fewer vehicles than its usual share, while it is
        emptier than usual (not a standing queue)? Pools the counts of the last
        ``lane_window_ticks`` ticks (this one included) against the older history, and asks how
        likely so few vehicles would be if each vehicle still picked the lane with its old
        probability (beta-binomial lower tail). Returns, per segment, the test, the starved detector,
        its share before and how many ticks back the starving began; and every detector's share
        of its segment's flow now."""
        cfg = self.settings
        n = len(self._segment_id)
        nd = len(self._det_ts)
        h = self._hist_occ.shape[1]
        test = np.zeros(n, dtype=bool)
        which = np.full(n, -1, dtype=np.int64)
        before = np.full(n, np.nan)
        share_now = np.full(nd, np.nan)
        began = np.zeros(n, dtype=np.int64)  # ticks back from this one at which the episode began
        if not cfg.use_lane_test or not self._lane_det.any():
            return test, which, before, share_now, began
        # Column k of full_c / full_o: the reading k ticks back (0 = this tick).
        back_cols = [(self._hist_pos - k) % h for k in range(1, h + 1)]
        full_c = np.column_stack(
            [np.where(fresh, self._det_count, np.nan), self._hist_det_count[:, back_cols]]
        )
        full_o = np.column_stack([np.where(fresh, self._det_occ, np.nan), self._hist_det_occ[:, back_cols]])
        seg = self._det_segment
        wd = np.full(nd, int(cfg.lane_window_ticks), dtype=np.int64)
        in_win = np.arange(h + 1)[None, :] < wd[:, None]
        with _quiet_nan():
            c = np.nansum(np.where(in_win, full_c, np.nan), axis=1)
            o = np.nanmean(np.where(in_win, full_o, np.nan), axis=1)
            b = np.nansum(np.where(in_win, np.nan, full_c), axis=1)
            bo = np.nanmean(np.where(in_win, np.nan, full_o), axis=1)
        complete = (np.isfinite(full_c) | ~in_win).all(axis=1)
        n_old = (np.isfinite(full_c) & ~in_win).sum(axis=1)
        # A loop that counted vehicles lately is not switched off, whatever detector health
        # says: its `card_off` on a lane the quiet hour left empty (it needs an hour of samples
        # to clear) must not blind the test to that lane or the one next to it. (A card that
        # does switch off loses its vehicles without the other lanes gaining them: the
        # compensation check below.) Loops with other faults still count vehicles plausibly
        # (stuck, zero occupancy) or are never read as starved (implausibly high occupancy).
        alive = self._usable | (c > 0) | (b >= cfg.lane_min_expected)
        eligible = self._lane_det & alive & complete & (n_old >= wd)
        c_seg = np.bincount(seg[eligible], weights=c[eligible], minlength=n)
        b_seg = np.bincount(seg[eligible], weights=b[eligible], minlength=n)
        m_seg = np.bincount(seg[eligible], minlength=n)
        ok = eligible & (m_seg[seg] >= 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(ok, (b + 1.0) / (b_seg[seg] + m_seg[seg]), np.nan)
            share_now = np.where(ok & (c_seg[seg] > 0), c / c_seg[seg], np.nan)
            expected = share * c_seg[seg]
            # Each lane's count over the window had it kept its older rate.
            usual = np.where(eligible, b / np.maximum(n_old, 1) * wd, 0.0)
        usual_seg = np.bincount(seg[eligible], weights=usual[eligible], minlength=n)
        # What the other lanes gained over their usual counts, against what this lane lost.
        gained = (c_seg[seg] - c) - (usual_seg[seg] - usual)
        lost = usual - c
        cand = np.flatnonzero(
            ok
            & (expected >= cfg.lane_min_expected)
            & (c <= (1.0 - cfg.lane_drop_min) * expected)
            & ~(o > bo + cfg.lane_occ_slack_pct)
            & ~(o > cfg.lane_max_occ_pct)
            & ~(gained < cfg.lane_compensation_min * lost)
            & ~(tick_ts - self._det_crawl_ts <= cfg.lane_crawl_lapse_s)
        )
        # The older share is itself learned from b_seg vehicles: the predictive count is
        # beta-binomial, whose tail is far wider than the binomial's when b_seg is small (a
        # quiet hour's few vehicles say little about how the peak will use the lanes).
        tail = np.empty(len(cand))
        cs = seg[cand]
        ik.beta_binomial_lower_tail(
            c[cand], c_seg[cs], b[cand] + 1.0, b_seg[cs] - b[cand] + m_seg[cs] - 1.0, tail
        )
        fired = cand[tail <= cfg.lane_alpha]
        for d in fired.tolist():
            s = int(seg[d])
            if not test[s] or share[d] > before[s]:
                test[s] = True
                which[s] = d
                before[s] = share[d]
                # The episode began at the oldest tick of the unbroken run of ticks, back from this
                # one, in which the lane was already starved (columns of full_c run from this
                # tick back). The run may reach past the window: the test may hold only once
                # the other lanes' gain has shown (the compensation check).
                mates = eligible & (seg == s)
                totals = full_c[mates].sum(axis=0)
                starved = full_c[d] <= (1.0 - cfg.lane_drop_min) * share[d] * totals
                back = 0
                while back + 1 < h and starved[back + 1] and totals[back + 1] > 0:
                    back += 1
                began[s] = back
        return test, which, before, share_now, began

    def update(self, states: SegmentStates) -> tuple[list[Incident], list[Incident]]:
        """Run both tests at ``states.ts``; return (incidents started, incidents cleared)."""
        cfg = self.settings
        tick_ts = float(states.ts)
        st = self._station_values(tick_ts)
        occ = st["occ"]
        speed = np.where(states.imputed, np.nan, states.speed_kmh.astype(np.float64))
        ff = states.free_flow_kmh.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = speed / ff
        down_occ = self._downstream_mean(occ)
        # Downstream congestion from every estimate, imputed ones included: a queue backing up
        # from a segment without loops is still a queue from downstream. Except an imputed dead
        # end: free by imputation's rule, not by evidence (unknown here). Read as free it let a
        # junction gridlocked in front of its free dead-end exits pass as congestion starting
        # there (West Oakland seed 64: 0 -> 3 false incidents an hour on 52 segments).
        down_speed = np.where(states.imputed & self._dead_end, np.nan, states.speed_kmh.astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            down_ratio = self._downstream_mean(down_speed / ff)

        # Recent levels: medians of the history, leaving out the last persistence_ticks ticks.
        h = self._hist_occ.shape[1]
        p = int(cfg.persistence_ticks)
        older = np.array([(self._hist_pos - 1 - k) % h for k in range(p, h)], dtype=np.int64)
        occ_base = np.empty(len(occ))
        speed_base = np.empty(len(occ))
        hk.row_nanmedian(self._hist_occ, older, occ_base)
        hk.row_nanmedian(self._hist_speed, older, speed_base)
        down_occ_2 = self._hist_down_occ[:, (self._hist_pos - 2) % h]

        occdf = occ - down_occ
        with np.errstate(invalid="ignore", divide="ignore"):
            occrdf = occdf / occ
            docctd = (down_occ_2 - down_occ) / down_occ_2
        spatial = (
            (occdf >= cfg.occdf_min_pct)
            & (occrdf >= cfg.occrdf_min)
            & (occ - occ_base >= cfg.occ_rise_min_pct)
        )
        onset = spatial & (docctd >= cfg.docctd_min)
        occ_test = np.where(self._run_cause == 1, spatial, onset)

        speed_test = np.zeros(len(occ), dtype=bool)
        if cfg.use_speed_test:
            speed_test = (
                (speed <= (1.0 - cfg.speed_drop_min) * speed_base)
                & (ratio <= cfg.speed_ratio_max)
                & ~(down_ratio < cfg.downstream_ratio_min)
            )
        lane_test, lane_det, lane_share_before, lane_share_now, lane_began = self._lane_test(
            st["det_fresh"], tick_ts
        )
        # Not inside a queue (``lane_min_speed_ratio``); a segment without a recent speed keeps it.
        with np.errstate(invalid="ignore", divide="ignore"):
            lane_test &= ~(speed_base / ff <= cfg.lane_min_speed_ratio)
        if cfg.require_both:
            candidate = (occ_test & speed_test) | lane_test
        else:
            candidate = occ_test | speed_test | lane_test
        self.last_features = {
            "occ": occ,
            "down_occ": down_occ,
            "occ_base": occ_base,
            "speed": speed,
            "speed_base": speed_base,
            "ratio": ratio,
            "down_ratio": down_ratio,
            "occ_test": occ_test,
            "speed_test": speed_test,
            "lane_test": lane_test,
        }

        # Runs of consecutive candidate ticks.
        starting = candidate & (self._run == 0)
        self._run_start[starting] = tick_ts
        self._run_cause[starting] = np.where(occ_test[starting], 1, np.where(speed_test[starting], 2, 3))
        self._run = np.where(candidate, self._run + 1, 0)
        self._run_cause[~candidate] = 0
        # The lane test pools lane_window_ticks ticks: it is its own persistence, and the episode
        # started at the first of them.
        lane_first = np.flatnonzero(lane_test & (self._run < p))
        self._run[lane_first] = p
        self._run_cause[lane_first] = 3
        for s in lane_first.tolist():
            back = int(lane_began[s])
            first_ts = tick_ts if back == 0 else self._hist_ts[(self._hist_pos - back) % h]
            self._run_start[s] = tick_ts if math.isnan(first_ts) else first_ts

        started: list[Incident] = []
        cleared: list[Incident] = []
        # Clearance first, so a segment can have a new incident once the old one is over.
        for s, inc in list(self._active.items()):
            normal = not candidate[s]
            if inc.lane_detector >= 0:
                share = lane_share_now[inc.lane_detector]
                normal = normal and not share < cfg.recover_lane_share * inc.lane_share_before
            elif math.isfinite(inc.speed_before_kmh) and math.isfinite(speed[s]):
                normal = normal and speed[s] >= cfg.recover_speed_share * inc.speed_before_kmh
            if inc.lane_detector < 0 and math.isfinite(inc.occ_before_pct) and math.isfinite(occ[s]):
                normal = normal and occ[s] <= inc.occ_before_pct + cfg.occ_rise_min_pct
            self._quiet[s] = self._quiet[s] + 1 if normal else 0
            if not normal:
                inc.severity = max(inc.severity, _severity(ratio[s], st["max_occ"][s]))
            if self._quiet[s] >= cfg.clear_ticks:
                inc.end = tick_ts
                del self._active[s]
                self._cleared.append(inc)
                cleared.append(inc)
        if len(self._cleared) > self.max_cleared_kept:
            del self._cleared[: len(self._cleared) - self.max_cleared_kept]

        confirmed = np.flatnonzero(self._run >= p)
        active_mask = np.zeros(len(occ), dtype=bool)
        active_mask[list(self._active)] = True
        for s in confirmed.tolist():
            if s in self._active:
                continue
            succ = self._succ_idx[self._succ_ptr[s] : self._succ_ptr[s + 1]]
            if self._run_cause[s] != 3 and active_mask[succ].any():
                # The queue of an incident downstream. (A lane starved here is not: a queue
                # does not empty one lane and fill the others.)
                continue
            if self._run_cause[s] == 3 and any(
                lane_test[q] or (q in self._active and self._active[q].cause == CAUSE_LANE)
                for q in self._upstream(s, _CHAIN_HOPS)
            ):
                # The lane is already starved on a segment before (segments without loops in
                # between are skipped): whatever empties it is upstream, and vehicles stay in
                # the lanes they are in for a while; the most upstream segment of such a chain
                # carries the incident.
                continue
            start = float(self._run_start[s])
            inc = Incident(
                incident_id=f"{self._segment_id[s]}@{_num(start)}",
                segment_index=s,
                segment_id=str(self._segment_id[s]),
                start=start,
                cause=_CAUSES[int(self._run_cause[s])],
                severity=_severity(ratio[s], st["max_occ"][s]),
                speed_before_kmh=float(speed_base[s]),
                occ_before_pct=float(occ_base[s]),
                detected_at=tick_ts,
            )
            if inc.cause == CAUSE_LANE:
                inc.lane_detector = int(lane_det[s])
                inc.lane_share_before = float(lane_share_before[s])
            self._active[s] = inc
            self._quiet[s] = 0
            active_mask[s] = True
            started.append(inc)

        # History: store this tick (after the tests, so the recent level excludes it).
        pos = self._hist_pos
        self._hist_occ[:, pos] = occ
        self._hist_speed[:, pos] = speed
        self._hist_down_occ[:, pos] = down_occ
        self._hist_ts[pos] = tick_ts
        fresh = st["det_fresh"]
        self._hist_det_count[:, pos] = np.where(fresh, self._det_count, np.nan)
        self._hist_det_occ[:, pos] = np.where(fresh, self._det_occ, np.nan)
        self._hist_pos = (pos + 1) % h
        return started, cleared

    # ---------------------------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """History, runs and incidents: numpy arrays and JSON-able values only."""
        return {
            "version": 1,
            "segment_id": [str(s) for s in self._segment_id],
            "hist_occ": self._hist_occ.copy(),
            "hist_speed": self._hist_speed.copy(),
            "hist_down_occ": self._hist_down_occ.copy(),
            "hist_pos": int(self._hist_pos),
            "run": self._run.copy(),
            "run_start": self._run_start.copy(),
            "run_cause": self._run_cause.copy(),
            "hist_ts": self._hist_ts.copy(),
            "hist_det_count": self._hist_det_count.copy(),
            "hist_det_occ": self._hist_det_occ.copy(),
            "det_crawl_ts": self._det_crawl_ts.copy(),
            "quiet": self._quiet.copy(),
            "active": [_incident_dict(i) for i in self._active.values()],
            "cleared": [_incident_dict(i) for i in self._cleared],
        }

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore ``export_state``'s output; the network must be the same (ValueError otherwise)."""
        if state.get("version") != 1:
            raise ValueError(f"incident state: version {state.get('version')!r}, expected 1")
        if list(state["segment_id"]) != [str(s) for s in self._segment_id]:
            raise ValueError("incident state: saved for a different network (segment ids differ)")
        if np.asarray(state["hist_occ"]).shape != self._hist_occ.shape:
            raise ValueError("incident state: history_ticks differs from [incidents] history_ticks")
        for name in (
            "hist_occ",
            "hist_speed",
            "hist_down_occ",
            "run",
            "run_start",
            "run_cause",
            "quiet",
            "hist_ts",
            "hist_det_count",
            "hist_det_occ",
        ):
            getattr(self, "_" + name)[:] = np.asarray(state[name])
        if "det_crawl_ts" in state:
            self._det_crawl_ts[:] = np.asarray(state["det_crawl_ts"], dtype=np.float64)
        elif "det_crawl" in state:  # a snapshot of before the lapse: held from its newest tick
            newest = np.nanmax(self._hist_ts) if np.isfinite(self._hist_ts).any() else -np.inf
            self._det_crawl_ts[:] = np.where(np.asarray(state["det_crawl"], dtype=bool), newest, -np.inf)
        else:  # a snapshot of before the crawl memory: none crawled
            self._det_crawl_ts[:] = -np.inf
        self._hist_pos = int(state["hist_pos"])
        self._active = {}
        for d in state["active"]:
            inc = Incident(**d)
            self._active[inc.segment_index] = inc
        self._cleared = [Incident(**d) for d in state["cleared"]]


def _incident_dict(inc: Incident) -> dict[str, Any]:
    return {
        "incident_id": inc.incident_id,
        "segment_index": int(inc.segment_index),
        "segment_id": inc.segment_id,
        "start": float(inc.start),
        "cause": inc.cause,
        "severity": int(inc.severity),
        "speed_before_kmh": float(inc.speed_before_kmh),
        "occ_before_pct": float(inc.occ_before_pct),
        "end": None if inc.end is None else float(inc.end),
        "detected_at": float(inc.detected_at),
        "lane_detector": int(inc.lane_detector),
        "lane_share_before": float(inc.lane_share_before),
    }


def _severity(ratio: float, max_occ: float) -> int:
    if (math.isfinite(ratio) and ratio < 0.2) or (math.isfinite(max_occ) and max_occ >= 50.0):
        return 3
    if math.isfinite(ratio) and ratio <= 0.4:
        return 2
    return 1


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def _incident_points(network: RoadNetwork) -> np.ndarray:
    """Per segment, (lon, lat) of the point 80 % along it — where a queue's head usually is
    (NaN when the network has no lon/lat)."""
    n = len(network)
    out = np.full((n, 2), np.nan)
    if not network.has_lonlat or n == 0:
        return out
    import shapely

    pts = shapely.line_interpolate_point(list(network.segments.geometry), 0.8, normalized=True)
    out[:, 0] = shapely.get_x(pts)
    out[:, 1] = shapely.get_y(pts)
    return out


@contextlib.contextmanager
def _quiet_nan() -> Iterator[None]:
    """Silence numpy's "All-NaN slice" warnings (a segment without history has a NaN level)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
