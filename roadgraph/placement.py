"""Place synthetic detectors on a network, for demos, benchmarks and tests."""

from __future__ import annotations

import numpy as np

from .detectors import DetectorRegistry
from .network import ROAD_CLASS_CODE, ROAD_CLASSES, RoadNetwork


def place_detectors(
    network: RoadNetwork,
    *,
    share: float = 0.5,
    seed: int = 0,
    rel_pos: float = 0.7,
    min_class: str | int | None = None,
) -> DetectorRegistry:
    """One loop detector per lane on a seeded random ``share`` of the segments.

    ``min_class`` (a name from ``ROAD_CLASSES`` or its code) restricts the choice to segments of
    that road class or a higher one (``"arterial"`` → expressways and arterials), so major roads
    can be covered preferentially;
    ``share`` is then the share of those. Detectors sit at ``rel_pos × length_m`` from the segment
    start. Ids are ``"D{segment_index}-L{lane}"``: stable for the same network and arguments, and
    free of ``/``, ``+`` and ``#`` so they can be MQTT topic levels. The same ``seed`` gives the
    same registry.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be within 0..1, got {share}")
    if not 0.0 <= rel_pos <= 1.0:
        raise ValueError(f"rel_pos must be within 0..1, got {rel_pos}")
    segments = network.segments
    if min_class is None:
        eligible = np.arange(len(segments))
    else:
        if isinstance(min_class, str) and min_class in ROAD_CLASS_CODE:
            code = ROAD_CLASS_CODE[min_class]
        elif isinstance(min_class, int | np.integer) and 0 <= min_class < len(ROAD_CLASSES):
            code = int(min_class)
        else:
            raise ValueError(
                f"min_class must be one of {', '.join(ROAD_CLASSES)} or its code 0..{len(ROAD_CLASSES) - 1}, "
                f"got {min_class!r}"
            )
        eligible = np.flatnonzero(segments.road_class <= code)
    rng = np.random.default_rng(seed)
    count = round(share * len(eligible))
    chosen = np.sort(rng.choice(eligible, size=count, replace=False)) if count else eligible[:0]
    lanes_per = segments.lanes[chosen].astype(np.int64)
    segment_index = np.repeat(chosen, lanes_per)
    # lane k of each chosen segment: a running count that restarts at every segment
    starts = np.repeat(np.cumsum(lanes_per) - lanes_per, lanes_per)
    lane = np.arange(int(lanes_per.sum())) - starts
    detector_id = np.array(
        [f"D{s}-L{k}" for s, k in zip(segment_index.tolist(), lane.tolist(), strict=True)], dtype=object
    )
    return DetectorRegistry(
        detector_id=detector_id,
        segment_index=segment_index.astype(np.int32),
        lane=lane.astype(np.int16),
        pos_m=(segments.length_m[segment_index] * rel_pos).astype(np.float32),
        kind=np.array(["loop"] * len(segment_index), dtype=object),
    )
