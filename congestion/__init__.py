"""roadpulse's congestion engine: columnar segment state, jitted kernels, area indices.

Sources hand it ``ReadingBatch``es; each ``CongestionEngine.tick`` returns a ``TickResult`` of
frozen arrays that sinks publish. No I/O happens here.
"""

from .engine import CongestionEngine, EngineSettings
from .types import LEVELS, AreaIndex, ReadingBatch, SegmentStates, TickResult, level_name

__all__ = [
    "LEVELS",
    "AreaIndex",
    "CongestionEngine",
    "EngineSettings",
    "ReadingBatch",
    "SegmentStates",
    "TickResult",
    "level_name",
]
