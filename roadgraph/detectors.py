"""The detector registry: which detector measures which segment, lane and position.

Loaded from a CSV (``detector_id`` plus ``segment_id`` or ``lon,lat[,heading_deg]``, optional
``lane``, ``pos_m``, ``kind``) or from a SUMO additional file with ``<inductionLoop>`` elements:
see ``roadgraph.load_detectors`` (``detector_csv``, ``detector_sumo``); ``place_detectors``
makes synthetic ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DETECTOR_KINDS: tuple[str, ...] = ("loop", "radar", "camera")


@dataclass(frozen=True, eq=False)
class DetectorRegistry:
    """Detectors as parallel arrays (row ``k`` is detector ``k``).

    ``lane`` is -1 where unknown (0 = rightmost lane); ``pos_m`` is NaN where unknown
    (distance from the segment's start along its geometry).
    """

    detector_id: np.ndarray  # object (str)
    segment_index: np.ndarray  # int32, row in RoadNetwork.segments
    lane: np.ndarray  # int16, -1 = unknown
    pos_m: np.ndarray  # float32, NaN = unknown
    kind: np.ndarray  # object (str), one of DETECTOR_KINDS
    #: Detectors named in the source file but deliberately not used, with the reason (e.g. a SUMO
    #: loop on a sidewalk). Their readings are refused with that reason rather than "unknown".
    ignored: dict[str, str] = field(default_factory=dict)
    index_of: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.detector_id)
        for name in ("segment_index", "lane", "pos_m", "kind"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"DetectorRegistry.{name} has {len(getattr(self, name))} rows, expected {n}")
        index_of = {str(d): k for k, d in enumerate(self.detector_id)}
        if len(index_of) != n:
            raise ValueError("DetectorRegistry.detector_id contains duplicate ids")
        object.__setattr__(self, "index_of", index_of)

    def __len__(self) -> int:
        return len(self.detector_id)

    @classmethod
    def empty(cls) -> DetectorRegistry:
        return cls(
            detector_id=np.array([], dtype=object),
            segment_index=np.array([], dtype=np.int32),
            lane=np.array([], dtype=np.int16),
            pos_m=np.array([], dtype=np.float32),
            kind=np.array([], dtype=object),
        )
