"""Detector health: PeMS-style diagnostics over a sliding window of each detector's readings.

Caltrans PeMS judges every detector once a day from the samples it sent between 05:00 and 22:00
(Chen, Kwon, Skabardonis & Varaiya, "Detecting errors and imputing missing data for single-loop
surveillance systems", TRB 2003; the PeMS "Diagnostics" page). Its statistics, with the defaults
for 2,040 thirty-second samples a day:

* too many samples with occupancy 0 — *card off* (more than 1,200, i.e. 59 %);
* too many samples with flow 0 but occupancy > 0 — *intermittent* (more than 50, 2.5 %);
* too many samples with occupancy above 35 % — *high val* (more than 200, 9.8 %);
* occupancy that hardly varies (entropy below 4 bits) — *constant* (stuck);
* too few samples — *insufficient data*; none at all — *no data*.

roadpulse runs the same family of tests continuously, per tick, over the samples of the last
``window_s`` seconds (ring of at most ``window_samples`` readings per detector), so a fault is
caught within the hour rather than the next morning. What differs from PeMS, and why:

* **High occupancy must be implausible, not just high.** Occupancy above 35 % is what a real jam
  looks like (and, at a signal, a red phase), so a sample counts as *high* only when its flow is
  also more than a lane could carry at that occupancy: more than ``high_occupancy_flow_margin``
  × the congested branch of a triangular fundamental diagram, q = ``lane_capacity_veh_h`` ×
  (100 − occ) / (100 − ``critical_occupancy_pct``). A jam has high occupancy and low flow; a
  loop that over-reports occupancy keeps the flow of moving traffic. (Tested on real WSDOT data
  with a morning jam at 40 % occupancy: no alarm.)
* **Intermittent** counts only occupancies below ``stopped_occupancy_pct``: a vehicle standing on
  the loop across an interval boundary (a queue) gives occupancy without a count legitimately.
* **No time of day.** PeMS skips the night, when occupancy 0 is normal. Without a local clock
  we compare with **peers** instead — the other detectors on the same segment and on the segments
  just upstream and downstream: a detector is *card off* when its share of empty samples exceeds
  the threshold, or its last ``card_off_run_samples`` readings were all empty, *and* its share
  exceeds its peers' mean share by ``peer_margin``, while the peers are busy
  (their share of empty samples at most ``card_off_peer_max_share``). A quiet night (all peers
  empty) flags nobody; neither does a detector without peers (nothing to tell a switched-off
  card from an empty road). The run rule also needs the loop to have counted vehicles before
  the run (at most 80 % empty samples): a little-used lane always was empty.
* **Constant** is a run of ``constant_run_samples`` identical non-empty readings (count,
  occupancy and speed all equal) ending at the newest one, rather than PeMS's daily entropy: the
  same evidence (a stuck value) but caught within minutes, and an empty road's repeated (0, 0)
  is not a fault. A standing reading (no vehicle, occupancy ≥ ``stopped_occupancy_pct``: a queue
  over the loop) needs ``constant_standing_run_samples``.
* **Zero occupancy with flow** (*high flow, zero occ*): vehicles counted (at least
  ``flow_min_count``) while the loop reports occupancy exactly 0 — the occupancy channel is dead.

Statuses, in order of precedence: ``no_data``, ``insufficient_data``, ``constant``,
``zero_occupancy_with_flow``, ``high_occupancy``, ``card_off``, ``intermittent``, ``ok``. A
detector whose status is not ``ok`` stops feeding estimates (the caller passes ``usable`` to
``CongestionEngine.set_detector_usable``) until it is ``ok`` again. Recovery has hysteresis: a
share-based fault clears when the share falls below ``recover_factor`` × its threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork

from . import _health_kernels as hk
from .types import ReadingBatch

#: Status codes, in the order of precedence (a lower code wins when several tests fire).
STATUSES: tuple[str, ...] = (
    "ok",
    "no_data",
    "insufficient_data",
    "constant",
    "zero_occupancy_with_flow",
    "high_occupancy",
    "card_off",
    "intermittent",
)
STATUS_CODE: dict[str, int] = {name: code for code, name in enumerate(STATUSES)}
OK, NO_DATA, INSUFFICIENT, CONSTANT, FLOW_NO_OCC, HIGH_OCC, CARD_OFF, INTERMITTENT = range(len(STATUSES))
#: Tests in the order they are tried after no_data (first that fires wins).
_PRECEDENCE = (INSUFFICIENT, CONSTANT, FLOW_NO_OCC, HIGH_OCC, CARD_OFF, INTERMITTENT)


@dataclass(frozen=True)
class HealthSettings:
    """Thresholds of the diagnostics; every field is a key of ``[health]`` in config.toml."""

    #: Length of the sliding window the diagnostics look at (seconds).
    window_s: float = 3600.0
    #: Most samples kept per detector (the ring); the window is cut to these.
    window_samples: int = 60
    #: A detector without any reading this long is ``no_data``.
    no_data_after_s: float = 900.0
    #: Below this share of the expected samples in the window: ``insufficient_data`` (PeMS: 60 %).
    min_sample_share: float = 0.6
    #: The share tests need at least this many samples in the window.
    min_samples: int = 15
    #: ``card_off``: share of samples with count 0 and occupancy 0 (PeMS: 1200/2040 = 0.59 of a
    #: day; over an hour a switched-off card reports nothing else, and a little-used turn lane
    #: reports many zeros legitimately, hence higher here).
    card_off_share: float = 0.9
    #: ``card_off`` also fires after this many empty readings in a row (a card switched off
    #: now, without waiting for the window's share).
    card_off_run_samples: int = 20
    #: ``card_off`` also needs busy peers: their share of empty samples at most this.
    card_off_peer_max_share: float = 0.4
    #: ``intermittent``: share of samples with count 0 and 0 < occupancy < stopped_occupancy_pct
    #: (PeMS: 50/2040 = 0.025 on freeways; higher here for vehicles crossing interval boundaries).
    intermittent_share: float = 0.3
    #: Occupancy (%) at and above which a loop is taken as fully covered by a standing queue.
    stopped_occupancy_pct: float = 50.0
    #: ``high_occupancy``: occupancy (%) counted as high (PeMS: 35 %).
    high_occupancy_pct: float = 35.0
    #: ``high_occupancy``: share of such samples (PeMS: 200/2040 = 0.098).
    high_occupancy_share: float = 0.1
    #: The fundamental diagram that tells a jam (high occupancy, low flow) from a loop that
    #: over-reports occupancy (high occupancy with the flow of free traffic): lane capacity...
    lane_capacity_veh_h: float = 2000.0
    #: ... the occupancy at capacity (%) ...
    critical_occupancy_pct: float = 20.0
    #: ... and the margin over the congested branch's flow before a sample counts as implausible.
    high_occupancy_flow_margin: float = 1.5
    #: ``zero_occupancy_with_flow``: share of samples with >= flow_min_count vehicles and occupancy 0.
    flow_no_occupancy_share: float = 0.2
    #: Vehicles in an interval below which occupancy 0 may be rounding (fast, few vehicles).
    flow_min_count: float = 3.0
    #: ``constant``: identical non-empty readings in a row (PeMS: daily occupancy entropy < 4 bits).
    constant_run_samples: int = 8
    #: ``constant`` for a standing reading (no vehicle, occupancy >= stopped_occupancy_pct): a
    #: queue standing over the loop repeats that reading legitimately, for a while.
    constant_standing_run_samples: int = 30
    #: card_off also needs the detector's share above its peers' mean share by this.
    peer_margin: float = 0.35
    #: A share-based fault clears when the share falls below this × its threshold.
    recover_factor: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"[health] {f.name} = {value!r}: expected a finite number > 0")
        for name in (
            "min_sample_share",
            "card_off_share",
            "card_off_peer_max_share",
            "intermittent_share",
            "high_occupancy_share",
            "flow_no_occupancy_share",
            "peer_margin",
            "recover_factor",
        ):
            if getattr(self, name) > 1:
                raise ValueError(f"[health] {name} = {getattr(self, name)!r}: expected a share in (0, 1]")
        if self.high_occupancy_pct > 100 or self.stopped_occupancy_pct > 100:
            raise ValueError("[health] occupancies are percentages: expected at most 100")


def detector_peers(network: RoadNetwork, detectors: DetectorRegistry) -> tuple[np.ndarray, np.ndarray]:
    """Each detector's peer *segments*, as CSR (indptr, indices): its own segment and the
    segments just upstream and downstream of it. Peers are the detectors on those segments."""
    s_ptr, s_idx = network.successors_csr()
    p_ptr, p_idx = network.predecessors_csr()
    n = len(network)
    indptr = np.zeros(n + 1, dtype=np.int64)
    chunks = []
    for s in range(n):
        near = np.unique(
            np.concatenate(([s], s_idx[s_ptr[s] : s_ptr[s + 1]], p_idx[p_ptr[s] : p_ptr[s + 1]]))
        )
        chunks.append(near)
        indptr[s + 1] = indptr[s] + len(near)
    indices = np.concatenate(chunks).astype(np.int32) if chunks else np.zeros(0, dtype=np.int32)
    return indptr, indices


class DetectorHealth:
    """Per-detector diagnostics; see the module docstring.

    Feed it the same readings as the engine (``add_readings``), call ``evaluate(tick_ts)`` once
    per tick *before* the engine's tick (so a detector's readings are judged before they are
    used), then read ``usable`` and the changed records.
    """

    def __init__(
        self,
        detectors: DetectorRegistry,
        settings: HealthSettings,
        *,
        network: RoadNetwork | None = None,
    ) -> None:
        self.settings = settings
        self.detector_id = np.asarray(detectors.detector_id, dtype=object)
        n = len(detectors)
        w = int(settings.window_samples)
        self._segment = np.asarray(detectors.segment_index, dtype=np.int64)
        # Lanes a detector measures: one when the registry names its lane, else the whole road.
        seg_lanes = (
            np.ones(n) if network is None else network.segments.lanes[self._segment].astype(np.float64)
        )
        self._lanes = np.where(np.asarray(detectors.lane) >= 0, 1.0, seg_lanes).astype(np.float64)
        self._n_segments = int(self._segment.max()) + 1 if n else 0
        if network is not None:
            self._n_segments = len(network)
            self._peer_ptr, self._peer_idx = detector_peers(network, detectors)
        else:  # peers: the same segment only
            self._peer_ptr = np.arange(self._n_segments + 1, dtype=np.int64)
            self._peer_idx = np.arange(self._n_segments, dtype=np.int32)
        self._ring_ts = np.full((n, w), np.nan, dtype=np.float64)
        self._ring_count = np.zeros((n, w), dtype=np.float32)
        self._ring_occ = np.zeros((n, w), dtype=np.float32)
        self._ring_speed = np.full((n, w), np.nan, dtype=np.float32)
        self._head = np.zeros(n, dtype=np.int64)
        self._filled = np.zeros(n, dtype=np.int64)
        self._first_ts = np.full(n, np.nan, dtype=np.float64)
        self._interval_s = np.full(n, np.nan, dtype=np.float64)
        self._status = np.full(n, -1, dtype=np.int8)  # -1: not judged yet
        self._since = np.full(n, np.nan, dtype=np.float64)
        self._reason = np.full(n, "", dtype=object)  # imported reasons, until the next evaluate()
        self._diag: dict[str, np.ndarray] | None = None
        self._usable = np.ones(n, dtype=bool)
        self._pending: list[ReadingBatch] = []
        self._started_ts: float | None = None
        self._evaluated = False  # the first evaluate() reports every detector
        self._stats = np.zeros((n, hk.ST_N), dtype=np.float64)

    # ---------------------------------------------------------------------------------------

    @property
    def usable(self) -> np.ndarray:
        """Per detector: True when its status is ``ok`` (its readings may feed estimates)."""
        return self._usable

    @property
    def status_code(self) -> np.ndarray:
        """Per detector: index into ``STATUSES`` (-1 before the first evaluation)."""
        return self._status

    def status_of(self, detector_id: str) -> str:
        k = int(np.flatnonzero(self.detector_id == detector_id)[0])
        return STATUSES[int(self._status[k])] if self._status[k] >= 0 else "unknown"

    def add_readings(self, batch: ReadingBatch) -> None:
        """Buffer readings (already validated by the parser) for the next ``evaluate``."""
        if len(batch):
            self._pending.append(batch)

    def evaluate(self, tick_ts: float, *, excused: np.ndarray | None = None) -> list[int]:
        """Take the buffered readings with ``ts <= tick_ts``, run the diagnostics, and return
        the detectors (registry rows) whose status changed — every detector at the first call.

        ``excused`` (bool per detector) marks detectors whose emptiness is explained — the loop
        of a lane blocked by an active incident sees no vehicle and is not ``card_off``."""
        tick_ts = float(tick_ts)
        first = not self._evaluated
        self._evaluated = True
        if self._started_ts is None:
            self._started_ts = tick_ts
        due = self._take_due(tick_ts)
        if len(due):
            order = np.argsort(due.ts, kind="stable")
            d_idx = due.detector_index[order]
            hk.ring_append(
                d_idx,
                due.ts[order],
                due.count[order],
                due.occupancy_pct[order],
                due.speed_kmh[order],
                self._ring_ts,
                self._ring_count,
                self._ring_occ,
                self._ring_speed,
                self._head,
                self._filled,
            )
            self._interval_s[d_idx] = due.interval_s[order]
            new = np.isnan(self._first_ts[d_idx])
            np.fmin.at(self._first_ts, d_idx[new], due.ts[order][new])
        s = self.settings
        hk.window_stats(
            tick_ts,
            s.window_s,
            s.high_occupancy_pct,
            s.stopped_occupancy_pct,
            s.flow_min_count,
            (s.lane_capacity_veh_h, s.critical_occupancy_pct, s.high_occupancy_flow_margin),
            self._interval_s,
            self._lanes,
            self._ring_ts,
            self._ring_count,
            self._ring_occ,
            self._ring_speed,
            self._head,
            self._filled,
            self._stats,
        )
        status = self._diagnose(tick_ts, excused)
        changed = np.flatnonzero(status != self._status) if not first else np.arange(len(status))
        for k in changed.tolist():
            code = int(status[k])
            if code == NO_DATA and not np.isnan(self._last_ts(k)):
                self._since[k] = self._last_ts(k)
            elif code != int(self._status[k]) or np.isnan(self._since[k]):
                self._since[k] = tick_ts
            self._status[k] = code
        self._usable = self._status == OK
        return [int(k) for k in changed]

    def records(self) -> list[dict[str, Any]]:
        """The spec payload of ``traffic/detectors/{id}/health`` for every detector."""
        return [self.record(k) for k in range(len(self.detector_id))]

    def record(self, k: int) -> dict[str, Any]:
        code = int(self._status[k])
        since = float(self._since[k])
        return {
            "detector_id": str(self.detector_id[k]),
            "status": STATUSES[code] if code >= 0 else "unknown",
            "reason": self._reason_of(k),
            "since": None if math.isnan(since) else (int(since) if since.is_integer() else since),
        }

    # ---------------------------------------------------------------------------------------

    def _take_due(self, tick_ts: float) -> ReadingBatch:
        batch = ReadingBatch.concat(self._pending)
        due = batch.ts <= tick_ts
        if due.all():
            self._pending = []
            return batch
        self._pending = [batch.take(~due)]
        return batch.take(due)

    def _last_ts(self, k: int) -> float:
        if self._filled[k] == 0:
            return math.nan
        return float(self._ring_ts[k, (self._head[k] - 1) % self._ring_ts.shape[1]])

    def _newest_ts(self) -> np.ndarray:
        rows = np.arange(len(self._head))
        newest = self._ring_ts[rows, (self._head - 1) % self._ring_ts.shape[1]]
        return np.where(self._filled > 0, newest, np.nan)

    def _peer_share(self, share: np.ndarray, judged: np.ndarray) -> np.ndarray:
        """Each detector's peers' mean ``share`` (NaN without judged peers)."""
        seg_sum = np.bincount(self._segment[judged], weights=share[judged], minlength=self._n_segments)
        seg_n = np.bincount(self._segment[judged], minlength=self._n_segments).astype(np.float64)
        if len(self._peer_idx):
            near_sum = np.add.reduceat(
                seg_sum[self._peer_idx], self._peer_ptr[:-1].clip(max=len(self._peer_idx) - 1)
            )
            near_n = np.add.reduceat(
                seg_n[self._peer_idx], self._peer_ptr[:-1].clip(max=len(self._peer_idx) - 1)
            )
            empty = np.diff(self._peer_ptr) == 0
            near_sum[empty] = 0.0
            near_n[empty] = 0.0
        else:
            near_sum = np.zeros(self._n_segments)
            near_n = np.zeros(self._n_segments)
        own = np.where(judged, share, 0.0)
        total = near_sum[self._segment] - own
        n = near_n[self._segment] - judged
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, total / np.maximum(n, 1), np.nan)

    def _diagnose(self, tick_ts: float, excused: np.ndarray | None = None) -> np.ndarray:
        """Status code per detector from the window statistics (vectorised)."""
        s = self.settings
        st = self._stats
        n = len(self.detector_id)
        prev = self._status
        samples = st[:, hk.ST_SAMPLES]
        judged = samples >= s.min_samples
        safe = np.maximum(samples, 1.0)

        def limit(code: int, threshold: float) -> np.ndarray:
            # Hysteresis: a detector already in this state keeps it down to recover_factor × threshold.
            return np.where(prev == code, threshold * s.recover_factor, threshold)

        last_ts = self._newest_ts()
        started = self._started_ts if self._started_ts is not None else tick_ts
        age = np.where(np.isnan(last_ts), tick_ts - started, tick_ts - last_ts)
        no_data = (age > s.no_data_after_s) | np.isnan(last_ts)

        # Expected samples: the part of the window since the detector's first reading.
        span = np.minimum(s.window_s, tick_ts - np.nan_to_num(self._first_ts, nan=tick_ts))
        interval = np.where(self._interval_s > 0, self._interval_s, np.nan)
        expected = np.minimum(np.floor(span / interval), s.window_samples)
        expected = np.nan_to_num(expected, nan=0.0)
        sample_share = samples / np.maximum(expected, 1.0)
        insufficient = (expected >= s.min_samples) & (
            sample_share
            < np.where(
                prev == INSUFFICIENT, 1 - (1 - s.min_sample_share) * s.recover_factor, s.min_sample_share
            )
        )

        newest = (self._head - 1) % self._ring_count.shape[1]
        rows = np.arange(n)
        standing = (self._ring_count[rows, newest] == 0) & (
            self._ring_occ[rows, newest] >= s.stopped_occupancy_pct
        )
        run_limit = np.where(standing, s.constant_standing_run_samples, s.constant_run_samples)
        constant = st[:, hk.ST_RUN] >= np.where(prev == CONSTANT, 2, run_limit)

        flow_base = st[:, hk.ST_FLOW_SAMPLES]
        flow_no_occ_share = st[:, hk.ST_FLOW_NO_OCC] / np.maximum(flow_base, 1.0)
        flow_no_occ = (flow_base >= s.min_samples / 3) & (
            flow_no_occ_share >= limit(FLOW_NO_OCC, s.flow_no_occupancy_share)
        )

        high_share = st[:, hk.ST_HIGH_OCC] / safe
        high_occ = judged & (high_share >= limit(HIGH_OCC, s.high_occupancy_share))

        zero_share = st[:, hk.ST_ZERO_OCC] / safe
        empty_run = st[:, hk.ST_EMPTY_RUN]
        zero_peer = self._peer_share(zero_share, judged)
        held = prev == CARD_OFF
        by_share = zero_share >= limit(CARD_OFF, s.card_off_share)
        # The run rule is for a loop that used to count vehicles: before the run, at most 80 %
        # of its samples were empty (a little-used lane is empty nearly always, and always was).
        run_in_window = np.minimum(empty_run, samples)
        with np.errstate(invalid="ignore", divide="ignore"):
            zero_before = (st[:, hk.ST_ZERO_OCC] - run_in_window) / (samples - run_in_window)
        by_run = (empty_run >= np.where(held, 1, s.card_off_run_samples)) & (held | ~(zero_before > 0.8))
        # Peers: busy (few empty samples) and, for the share rule, clearly fuller than this one.
        peers_busy = zero_peer <= np.where(held, 1.0, s.card_off_peer_max_share)
        unlike_peers = zero_share - zero_peer >= s.peer_margin * np.where(held, s.recover_factor, 1)
        # Without peers there is no telling a switched-off card from an empty road (PeMS tells
        # them apart by the time of day, which roadpulse does not know): no diagnosis.
        card_off = judged & ~np.isnan(zero_peer) & peers_busy & ((by_share & unlike_peers) | by_run)
        if excused is not None:
            card_off &= ~np.asarray(excused, dtype=bool)

        inter_share = st[:, hk.ST_OCC_NO_FLOW] / safe
        intermittent = judged & (inter_share >= limit(INTERMITTENT, s.intermittent_share))

        fired = {
            INSUFFICIENT: insufficient,
            CONSTANT: constant,
            FLOW_NO_OCC: flow_no_occ,
            HIGH_OCC: high_occ,
            CARD_OFF: card_off,
            INTERMITTENT: intermittent,
        }
        status = np.full(n, OK, dtype=np.int8)
        for code in reversed(_PRECEDENCE):
            status[fired[code]] = code
        status[no_data] = NO_DATA

        # What the reasons are written from (formatted only when a record is asked for: a city
        # of millions of detectors must not format millions of strings a tick).
        self._diag = {
            "samples": samples,
            "age": age,
            "last_ts": last_ts,
            "expected": expected,
            "sample_share": sample_share,
            "flow_no_occ_share": flow_no_occ_share,
            "flow_base": flow_base,
            "high_share": high_share,
            "zero_share": zero_share,
            "zero_peer": zero_peer,
            "inter_share": inter_share,
            "empty_run": empty_run,
            "run": st[:, hk.ST_RUN].copy(),
        }
        return status

    def _reason_of(self, k: int) -> str:
        """Why detector ``k`` has its status, from the latest diagnosis (the numbers move on
        while a status holds: a record always tells the current ones)."""
        code = int(self._status[k])
        d = self._diag
        if d is None:
            return str(self._reason[k])
        s = self.settings
        w = f"in the last {s.window_s:g} s"
        m = int(d["samples"][k])
        newest = (self._head[k] - 1) % self._ring_count.shape[1]
        if code == OK:
            return "all diagnostics passed"
        if code == NO_DATA:
            if np.isnan(d["last_ts"][k]):
                return "no reading received yet"
            return f"no reading for {d['age'][k]:.0f} s (threshold {s.no_data_after_s:g} s)"
        if code == INSUFFICIENT:
            return (
                f"{m} of {int(d['expected'][k])} expected samples {w} "
                f"({d['sample_share'][k]:.0%} < {s.min_sample_share:.0%})"
            )
        if code == CONSTANT:
            return (
                f"the same reading {int(d['run'][k])} times in a row (count {self._ring_count[k, newest]:g}, "
                f"occupancy {self._ring_occ[k, newest]:g} %; threshold {s.constant_run_samples})"
            )
        if code == FLOW_NO_OCC:
            return (
                f"occupancy 0 with vehicles counted in {d['flow_no_occ_share'][k]:.0%} of "
                f"{int(d['flow_base'][k])} samples with >= {s.flow_min_count:g} vehicles {w} "
                f"(threshold {s.flow_no_occupancy_share:.0%})"
            )
        if code == HIGH_OCC:
            return (
                f"occupancy >= {s.high_occupancy_pct:g} % with more vehicles than a jam lets pass in "
                f"{d['high_share'][k]:.0%} of {m} samples {w} (threshold {s.high_occupancy_share:.0%})"
            )
        if code == CARD_OFF:
            return (
                f"count and occupancy 0 in {d['zero_share'][k]:.0%} of {m} samples {w}, the last "
                f"{int(d['empty_run'][k])} in a row (thresholds {s.card_off_share:.0%}, "
                f"{s.card_off_run_samples} in a row) while peers were busy ({_pct(d['zero_peer'][k])} empty)"
            )
        return (
            f"occupancy without vehicles counted in {d['inter_share'][k]:.0%} of {m} samples {w} "
            f"(threshold {s.intermittent_share:.0%})"
        )

    # ---------------------------------------------------------------------------------------
    # State across restarts (issue 4's snapshot file)
    # ---------------------------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """Rings, statuses and marks: numpy arrays and JSON-able values only."""
        return {
            "version": 1,
            "detector_id": [str(d) for d in self.detector_id],
            "window_samples": int(self._ring_ts.shape[1]),
            "ring_ts": self._ring_ts.copy(),
            "ring_count": self._ring_count.copy(),
            "ring_occ": self._ring_occ.copy(),
            "ring_speed": self._ring_speed.copy(),
            "head": self._head.copy(),
            "filled": self._filled.copy(),
            "first_ts": self._first_ts.copy(),
            "interval_s": self._interval_s.copy(),
            "status": self._status.copy(),
            "since": self._since.copy(),
            "reason": [self._reason_of(k) for k in range(len(self.detector_id))],
            "started_ts": self._started_ts,
        }

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore ``export_state``'s output. Detectors are matched by id, so a registry that
        gained or lost detectors keeps the history of those it still has; a different ring size
        starts afresh (ValueError names the mismatch)."""
        if state.get("version") != 1:
            raise ValueError(f"detector health state: version {state.get('version')!r}, expected 1")
        if int(state["window_samples"]) != self._ring_ts.shape[1]:
            raise ValueError(
                f"detector health state: window_samples {state['window_samples']} differs from "
                f"[health] window_samples = {self._ring_ts.shape[1]}"
            )
        pos = {str(d): k for k, d in enumerate(self.detector_id)}
        old = [(i, pos[str(d)]) for i, d in enumerate(state["detector_id"]) if str(d) in pos]
        src = np.array([i for i, _ in old], dtype=np.int64)
        dst = np.array([k for _, k in old], dtype=np.int64)
        for name in (
            "ring_ts",
            "ring_count",
            "ring_occ",
            "ring_speed",
            "head",
            "filled",
            "first_ts",
            "interval_s",
            "status",
            "since",
        ):
            getattr(self, "_" + name)[dst] = np.asarray(state[name])[src]
        reasons = list(state["reason"])
        for i, k in old:
            self._reason[k] = reasons[i]
        self._started_ts = state["started_ts"]
        self._diag = None
        self._usable = self._status == OK


def _pct(x: float) -> str:
    return "none" if math.isnan(x) else f"{x:.0%}"
