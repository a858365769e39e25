"""The engine's mutable columnar state, kept apart from the frozen snapshots it publishes.

* ``SegmentHeld`` (one row per segment): what a segment carries from tick to tick besides its last
  published ``SegmentStates`` — the free-flow speed, and when and how well its estimate was made.
  Later work adds learned free-flow speeds and imputation inputs here.
* ``DetectorState`` (one record per detector): the registry's fields the kernels need, each
  detector's last reading, its queue memory and per-tick marks. Later work adds health (PeMS-style
  diagnostics), g-factor calibration and incident-detection memory here.
* ``SegmentScratch`` (one record per segment): the per-tick accumulators of
  ``_kernels.accumulate_readings``, next to the segment's speed limit; zeros between ticks
  (``_kernels.update_segments`` clears what ``accumulate_readings`` filled).

Why records rather than one array per field: readings arrive in no useful order, so each one
lands on a random detector and a random segment. With one array per field every field is a
separate cache miss (about twenty per reading); with small, aligned records it is one line per
detector and per segment. The records are also kept small (32 bytes per detector, 64 per
segment), because what a tick of millions of readings costs is mostly how many lines it misses
and whether these tables stay in cache (see benchmarks/bench_tick.py). Record fields are exposed
below as ordinary (strided) array views, by name. Fields that later work adds and that a tick
need not touch per reading (health, calibration) belong in arrays of their own, so that the hot
records stay this small.

Published ``SegmentStates`` arrays are never written after publication: each tick writes new ones.
``SegmentHeld.free_flow_kmh`` is shared with every published snapshot, so whoever learns free-flow
speeds must *replace* that array, not write into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._kernels import CAMERA_BIT, MAX_LANE_BIT

CACHE_LINE_BYTES = 64


def _record(fields: list[tuple[str, type]], itemsize: int) -> np.dtype:
    """An aligned record dtype padded to ``itemsize`` bytes."""
    base = np.dtype(fields, align=True)
    if base.itemsize > itemsize or base.fields is None:
        raise AssertionError(f"record of {base.itemsize} bytes does not fit in {itemsize}")
    names = [name for name, _ in fields]
    spec: Any = {
        "names": names,
        "formats": [base.fields[n][0] for n in names],
        "offsets": [base.fields[n][1] for n in names],
        "itemsize": itemsize,
        "aligned": True,
    }
    return np.dtype(spec)


#: One detector (32 bytes, aligned: a reading touches one line of the detector table). Its last
#: reading (the one with the greatest ts so far) and the readings consumed; what the kernels need
#: of the registry: its ``segment``, and ``lane_camera`` (static): its lane + 1 in the low bits
#: (``_kernels.LANE_BITS``; 0 = lane unknown, lanes above ``_kernels.MAX_LANE_BIT`` stored as
#: that, onto which ``accumulate_readings`` folds them anyway) | ``_kernels.CAMERA_BIT`` for a
#: camera zone; ``usable``: its readings may feed estimates
#: (``CongestionEngine.set_detector_usable``; detector health); ``queue_age``: 0 = its last
#: reading with evidence saw no queue; k ≥ 1 = it saw one (a crawl, or a queue standing over the
#: loop) and has since reported (k − 1) × 10 s of empty intervals, which are read as that queue
#: standing with the loop in a gap (``travel_speed``); ``tick_mark`` = (the stamp of the last
#: tick in which it gave evidence << 1) | 1 once it was counted that tick as a detector of
#: unknown lane (``accumulate_readings``).
#:
#: Why one record of 32 bytes (measured on ``accumulate_readings`` at a million detectors and
#: segments, bench_tick.py's data): the former pair of records (8 bytes of registry fields, 32 of
#: state) cost two cache misses a reading, ~8 % slower; a 40- or 48-byte record straddles two
#: lines for half the detectors, 30-50 % slower; a 64-byte one was no faster and doubles the
#: table. It fits because the tick stamp has 7 bits (the engine clears the marks when it wraps)
#: and the camera flag rides in the lane byte.
DETECTOR_RECORD = _record(
    [
        ("last_ts", np.float64),
        ("segment", np.int32),
        ("last_count", np.float32),
        ("last_occupancy_pct", np.float32),
        ("last_speed_kmh", np.float32),
        ("readings_total", np.uint32),
        ("usable", np.bool_),
        ("queue_age", np.uint8),
        ("lane_camera", np.uint8),
        ("tick_mark", np.uint8),
    ],
    32,
)

#: Per-segment accumulators (64 bytes, one cache line) next to the segment's speed limit; see
#: ``_kernels.accumulate_readings``. Sums are float32: they add a few dozen readings per tick, and
#: the speed they produce is published as float32 anyway. ``lane_mask`` has one bit per lane
#: 0..15 (lanes above 15 fold onto bit 15: no carriageway has 16 lanes one way). ``count``,
#: ``occupancy_s`` (occupancy fraction × interval) and ``interval_s`` feed the travel-speed model
#: (flow per lane and mean occupancy; readings with an occupancy only). ``loop_position`` and
#: ``signalised`` are static: where the segment's loops sit (share of its length) and whether its
#: downstream junction has signals; ``signal_cycle_s`` and ``green_ratio`` its signal timing where
#: the network file states it (NaN: the model's defaults).
SEGMENT_SCRATCH_RECORD = _record(
    [
        ("newest_ts", np.float64),
        ("weight", np.float32),
        ("weight_free_flow", np.float32),
        ("weight_per_speed", np.float32),
        ("speed_limit_kmh", np.float32),
        ("count", np.float32),
        ("occupancy_s", np.float32),
        ("interval_s", np.float32),
        ("length_m", np.float32),
        ("loop_position", np.float32),
        ("lane_mask", np.uint16),
        ("n_detectors", np.uint16),
        ("n_cameras", np.uint16),
        ("n_unknown_lane", np.uint16),
        ("signalised", np.bool_),
        ("signal_cycle_s", np.float32),
        ("green_ratio", np.float32),
    ],
    64,
)


def aligned_records(n: int, dtype: np.dtype) -> np.ndarray:
    """Zeroed records whose first byte sits on a cache-line boundary (numpy only promises 16)."""
    raw = np.zeros(n * dtype.itemsize + CACHE_LINE_BYTES, dtype=np.uint8)
    offset = -raw.ctypes.data % CACHE_LINE_BYTES
    return raw[offset : offset + n * dtype.itemsize].view(dtype)


#: Bins of the per-segment free-flow histogram (``freeflow``): speed / speed limit in [0, 1.0],
#: each 1/FF_BINS wide (speeds above the limit fall in the top bin: GB/T caps free flow there).
FF_BINS = 32
#: Hour-of-day bins of the typical profile (``profiles``).
PROFILE_BINS = 24
#: Profile ratios are stored as uint8 ratio × PROFILE_SCALE (0..1.27); PROFILE_NONE = no data.
PROFILE_SCALE = 200.0
PROFILE_NONE = 255

#: Keys of ``SegmentHeld.export`` holding one row per segment, with their dtypes.
_EXPORTED_ROWS: dict[str, Any] = {
    "free_flow_kmh": np.float32,
    "ff_hist": np.uint16,
    "ff_samples": np.uint32,
    "ff_interval": np.float64,
    "profile": np.uint8,
    "evidence_ts": np.float64,
    "evidence_quality": np.float32,
    "smooth_w": np.float32,
    "smooth_wpace": np.float32,
    "smooth_ts": np.float64,
    "flow_count": np.float64,
    "flow_seconds": np.float64,
}
#: Keys of ``_EXPORTED_ROWS`` that a snapshot may lack (taken before they existed): left as they
#: are (the smoothed flows of imputation are relearned within ``smoothing_tau_s``).
_OPTIONAL_ROWS = ("flow_count", "flow_seconds")
STATE_VERSION = 1


@dataclass(eq=False)
class SegmentHeld:
    """Per-segment state carried between ticks (row ``i`` is segment ``i``)."""

    #: Free-flow speed (km/h): the road-class default until learned (``freeflow``).
    free_flow_kmh: np.ndarray  # float32
    #: The road-class default free-flow speed (speed limit × ``free_flow_fraction_of_limit``).
    free_flow_default_kmh: np.ndarray  # float32
    #: Histogram of this segment's interval travel speeds / speed limit (``FF_BINS`` bins).
    ff_hist: np.ndarray  # uint16 (n, FF_BINS)
    #: Samples in ``ff_hist`` (its row sum, kept so a tick need not add the bins up).
    ff_samples: np.ndarray  # uint32
    #: The free-flow interval being summed: (interval index k of ((k-1)·I, k·I], NaN = none;
    #: distance (vehicle-m); time (vehicle-s); vehicles counted) — its speed enters ``ff_hist``
    #: once it is over (``_kernels.update_segments``).
    ff_interval: np.ndarray  # float64 (n, 4)
    #: Typical speed ratio (speed / free flow) by hour of day, uint8 (× PROFILE_SCALE; 255 none).
    profile: np.ndarray  # uint8 (n, PROFILE_BINS), Fortran order (columns contiguous)
    #: ``ts`` of the newest reading behind the held estimate; NaN = never had evidence.
    evidence_ts: np.ndarray  # float64
    #: Confidence of the held estimate when it was made (before decay with age), 0..1.
    evidence_quality: np.ndarray  # float32
    #: Exponential smoothing of travel time: decayed evidence weight, and weight × pace (s/km).
    smooth_w: np.ndarray  # float32
    smooth_wpace: np.ndarray  # float32
    #: Event time the smoothing sums were last decayed to; NaN = never.
    smooth_ts: np.ndarray  # float64
    #: Smoothed flow (imputation's junction model): decayed vehicles counted and detector-seconds
    #: covered (``_kernels.update_segments``), decayed to the last tick.
    flow_count: np.ndarray  # float64
    flow_seconds: np.ndarray  # float64

    @classmethod
    def initial(cls, free_flow_kmh: np.ndarray) -> SegmentHeld:
        n = len(free_flow_kmh)
        return cls(
            free_flow_kmh=free_flow_kmh,
            free_flow_default_kmh=free_flow_kmh.copy(),
            ff_hist=np.zeros((n, FF_BINS), dtype=np.uint16),
            ff_samples=np.zeros(n, dtype=np.uint32),
            ff_interval=np.stack([np.full(n, np.nan), np.zeros(n), np.zeros(n), np.zeros(n)], axis=1).astype(
                np.float64
            ),
            # Column-major: a tick reads and writes one hour's column of every segment, which
            # is then one contiguous n-byte run instead of one byte in each of n 24-byte rows
            # (24x less memory traffic in ``update_segments`` and ``impute_segments``).
            profile=np.full((n, PROFILE_BINS), PROFILE_NONE, dtype=np.uint8, order="F"),
            evidence_ts=np.full(n, np.nan, dtype=np.float64),
            evidence_quality=np.zeros(n, dtype=np.float32),
            smooth_w=np.zeros(n, dtype=np.float32),
            smooth_wpace=np.zeros(n, dtype=np.float32),
            smooth_ts=np.full(n, np.nan, dtype=np.float64),
            flow_count=np.zeros(n, dtype=np.float64),
            flow_seconds=np.zeros(n, dtype=np.float64),
        )

    def export(self, segment_ids: np.ndarray, last_tick_ts: float | None) -> dict[str, Any]:
        """Numpy arrays (one row per segment) and JSON-able values; see ``import_``."""
        out: dict[str, Any] = {
            "version": STATE_VERSION,
            "segment_id": [str(x) for x in segment_ids],
            "last_tick_ts": last_tick_ts,
        }
        for key in _EXPORTED_ROWS:
            out[key] = getattr(self, key).copy()
        return out

    def import_(self, state: dict[str, Any], segment_ids: np.ndarray) -> None:
        """Take back an ``export``: rows matched by segment id; all checked before any is written."""
        if not isinstance(state, dict):
            raise ValueError(f"engine state: expected a dict, got {type(state).__name__}")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"engine state: version {state.get('version')!r}, expected {STATE_VERSION}")
        ids = state.get("segment_id")
        if not isinstance(ids, list | tuple | np.ndarray):
            raise ValueError("engine state: 'segment_id' missing or not a list of segment ids")
        n_rows = len(ids)
        arrays: dict[str, np.ndarray] = {}
        for key, dtype in _EXPORTED_ROWS.items():
            if key not in state:
                if key in _OPTIONAL_ROWS:
                    continue
                raise ValueError(f"engine state: key {key!r} missing")
            arr = np.asarray(state[key])
            want = getattr(self, key)
            if arr.shape[:1] != (n_rows,) or arr.shape[1:] != want.shape[1:]:
                raise ValueError(
                    f"engine state: {key!r} has shape {arr.shape}, expected ({n_rows}, ...{want.shape[1:]})"
                )
            arrays[key] = arr.astype(dtype, copy=False)
        position = {str(sid): i for i, sid in enumerate(segment_ids)}
        src = np.fromiter((i for i, sid in enumerate(ids) if str(sid) in position), dtype=np.int64)
        dst = np.fromiter((position[str(ids[i])] for i in src), dtype=np.int64, count=len(src))
        for key, arr in arrays.items():
            if key == "free_flow_kmh":
                # Published snapshots share this array: replace it, never write into it.
                fresh = self.free_flow_kmh.copy()
                fresh[dst] = arr[src]
                self.free_flow_kmh = fresh
            else:
                getattr(self, key)[dst] = arr[src]


class DetectorState:
    """Per-detector state (row ``k`` is detector ``k`` of the registry), as named array views of
    its ``DETECTOR_RECORD`` records.

    The last reading is the one with the greatest ``ts`` seen so far (a late reading does not
    replace a newer one; on equal ts the later-arriving one wins); NaN ``last_ts`` = none yet.
    """

    def __init__(self, records: np.ndarray) -> None:
        if records.dtype != DETECTOR_RECORD:
            raise TypeError("DetectorState needs DETECTOR_RECORD records")
        self.records = records

    @classmethod
    def initial(cls, segment: np.ndarray, lane: np.ndarray, is_camera: np.ndarray) -> DetectorState:
        """Fresh state for detectors on ``segment`` with ``lane`` (-1 = unknown) and the camera
        flag."""
        rec = aligned_records(len(segment), DETECTOR_RECORD)
        rec["segment"] = segment
        lane_plus_one = np.clip(np.asarray(lane, dtype=np.int64), -1, MAX_LANE_BIT) + 1
        rec["lane_camera"] = lane_plus_one | np.where(np.asarray(is_camera, dtype=bool), CAMERA_BIT, 0)
        rec["usable"] = True
        for name in ("last_ts", "last_count", "last_occupancy_pct", "last_speed_kmh"):
            rec[name] = np.nan
        return cls(rec)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def segment(self) -> np.ndarray:
        return self.records["segment"]

    @property
    def usable(self) -> np.ndarray:
        """Per detector: its readings feed estimates (False: set unusable, e.g. unhealthy)."""
        return self.records["usable"]

    @property
    def queue_age(self) -> np.ndarray:
        """Per detector: its queue memory (``DETECTOR_RECORD``), uint8."""
        return self.records["queue_age"]

    @property
    def last_ts(self) -> np.ndarray:
        return self.records["last_ts"]

    @property
    def last_count(self) -> np.ndarray:
        return self.records["last_count"]

    @property
    def last_occupancy_pct(self) -> np.ndarray:
        return self.records["last_occupancy_pct"]

    @property
    def last_speed_kmh(self) -> np.ndarray:
        return self.records["last_speed_kmh"]

    @property
    def readings_total(self) -> np.ndarray:
        """Readings consumed by ticks, per detector (uint32)."""
        return self.records["readings_total"]


class SegmentScratch:
    """Per-tick accumulators, one record per segment (zeros, -inf ``newest_ts``, between ticks)."""

    def __init__(self, records: np.ndarray) -> None:
        if records.dtype != SEGMENT_SCRATCH_RECORD:
            raise TypeError("SegmentScratch needs SEGMENT_SCRATCH_RECORD records")
        self.records = records

    @classmethod
    def initial(
        cls,
        speed_limit_kmh: np.ndarray,
        length_m: np.ndarray | None = None,
        loop_position: np.ndarray | None = None,
        signalised: np.ndarray | None = None,
        signal_timing: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> SegmentScratch:
        rec = aligned_records(len(speed_limit_kmh), SEGMENT_SCRATCH_RECORD)
        rec["speed_limit_kmh"] = speed_limit_kmh
        rec["newest_ts"] = -np.inf  # "none yet", and a plain max() takes any ts over it
        rec["length_m"] = 100.0 if length_m is None else np.maximum(length_m, 1.0)
        rec["loop_position"] = 0.7 if loop_position is None else loop_position
        rec["signalised"] = False if signalised is None else signalised
        rec["signal_cycle_s"] = np.nan if signal_timing is None else signal_timing[0]
        rec["green_ratio"] = np.nan if signal_timing is None else signal_timing[1]
        return cls(rec)

    def field(self, name: str) -> np.ndarray:
        """One accumulator as an array view (``weight``, ``weight_free_flow``, ...)."""
        return self.records[name]
