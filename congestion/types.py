"""The engine's columnar data types: readings in, segment states and indices out.

Everything is a frozen dataclass of equal-length numpy arrays, validated on creation (in the manner
of supervision's ``Detections``). ``NaN`` means "no data"; level ``0`` means unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: GB/T 33171-2016 §8.1 levels: code -> (level_name, 中文 name, Amap status).
LEVELS: dict[int, tuple[str, str, int]] = {
    0: ("unknown", "未知", 0),
    1: ("smooth", "畅通", 1),
    2: ("mostly_smooth", "基本畅通", 1),
    3: ("light", "轻度拥堵", 2),
    4: ("moderate", "中度拥堵", 3),
    5: ("severe", "严重拥堵", 4),
}


def level_name(level: int) -> str:
    """The ``level_name`` of a level code 0–5 (``LEVELS``); KeyError for any other code."""
    return LEVELS[int(level)][0]


def _check_lengths(obj: object, names: tuple[str, ...]) -> None:
    first = getattr(obj, names[0])
    n = len(first)
    for name in names[1:]:
        if len(getattr(obj, name)) != n:
            raise ValueError(f"{type(obj).__name__}.{name} has {len(getattr(obj, name))} rows, expected {n}")


@dataclass(frozen=True, eq=False)
class ReadingBatch:
    """Validated detector readings, one row each; ``detector_index`` is a row in the registry.

    ``ts`` is the END of the counting interval (epoch seconds). ``speed_kmh`` is NaN where the
    detector measured none. ``lane`` is -1 where unknown.
    """

    detector_index: np.ndarray  # int32
    ts: np.ndarray  # float64
    interval_s: np.ndarray  # float32
    count: np.ndarray  # float32
    occupancy_pct: np.ndarray  # float32
    speed_kmh: np.ndarray  # float32, NaN = none
    lane: np.ndarray  # int16, -1 = unknown

    _FIELDS = ("detector_index", "ts", "interval_s", "count", "occupancy_pct", "speed_kmh", "lane")
    _DTYPES = (np.int32, np.float64, np.float32, np.float32, np.float32, np.float32, np.int16)

    def __post_init__(self) -> None:
        _check_lengths(self, self._FIELDS)
        for name, dtype in zip(self._FIELDS, self._DTYPES, strict=True):
            arr = getattr(self, name)
            if arr.dtype != dtype:
                object.__setattr__(self, name, np.ascontiguousarray(arr, dtype=dtype))

    def __len__(self) -> int:
        return len(self.detector_index)

    @classmethod
    def empty(cls) -> ReadingBatch:
        return cls(*(np.empty(0, dtype=d) for d in cls._DTYPES))

    @classmethod
    def concat(cls, batches: list[ReadingBatch]) -> ReadingBatch:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(*(np.concatenate([getattr(b, f) for b in batches]) for f in cls._FIELDS))

    def take(self, mask_or_index: np.ndarray) -> ReadingBatch:
        return ReadingBatch(*(getattr(self, f)[mask_or_index] for f in self._FIELDS))


@dataclass(frozen=True, eq=False)
class SegmentStates:
    """Every segment's state at one tick (row ``i`` is segment ``i`` of the network).

    ``speed_kmh`` is the segment's travel speed estimate (NaN = unknown); ``tti`` is
    free_flow / speed; ``level`` follows ``LEVELS`` (0 = unknown).
    """

    ts: float
    speed_kmh: np.ndarray  # float32, NaN = unknown
    free_flow_kmh: np.ndarray  # float32
    tti: np.ndarray  # float32, NaN = unknown
    level: np.ndarray  # int8, 0..5
    confidence: np.ndarray  # float32, 0..1
    imputed: np.ndarray  # bool
    n_detectors: np.ndarray  # int16: detectors that fed this tick's estimate
    n_cameras: np.ndarray  # int16: camera zones that fed this tick's estimate
    closed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # bool

    def __post_init__(self) -> None:
        if len(self.closed) == 0 and len(self.speed_kmh) != 0:
            object.__setattr__(self, "closed", np.zeros(len(self.speed_kmh), dtype=bool))
        _check_lengths(
            self,
            ("speed_kmh", "free_flow_kmh", "tti", "level", "confidence", "imputed", "n_detectors",
             "n_cameras", "closed"),
        )

    def __len__(self) -> int:
        return len(self.speed_kmh)


@dataclass(frozen=True)
class AreaIndex:
    """The traffic performance index of an area (the whole city or one district) at one tick."""

    ts: float
    tpi: float  # 0..10, NaN when no segment of the area is known
    level: int  # 0..5 from the TPI band
    tti: float  # length-weighted mean travel-time index of known segments
    severe_share: float  # share of known length at level 5
    known_share: float  # share of the area's length with a known state

    @property
    def level_name(self) -> str:
        return level_name(self.level)


@dataclass(frozen=True)
class TickResult:
    """What one tick of the engine produces."""

    states: SegmentStates
    city: AreaIndex
    districts: dict[str, AreaIndex]
    readings_used: int
    #: Of ``readings_used``, those that gave no speed evidence (e.g. vehicles counted but no
    #: occupancy nor speed); they still update their detector's last reading.
    readings_without_evidence: int = 0
    #: Readings still buffered after this tick (their ``ts`` is after the tick time).
    readings_pending: int = 0
