"""Area indices: the traffic performance index (TPI) of the city and of each district.

Method
------
The TPI runs from 0 (free flow everywhere) to 10 (standstill everywhere), in the five bands of
GB/T 33171: 0–2 smooth (畅通), 2–4 mostly smooth (基本畅通), 4–6 light (轻度拥堵), 6–8 moderate
(中度拥堵), 8–10 severe (严重拥堵). For one tick:

1. **Segment TPI.** Each segment with a known state has a speed ratio r = speed / free-flow speed.
   Its TPI maps r piecewise-linearly through the knots

       r:    ≥ 1.0   0.7   0.5   0.4   0.3   0
       TPI:    0      2     4     6     8    10

   These knots are the level boundaries of GB/T 33171 §8.1 (r > 0.7 smooth, 0.5–0.7 mostly
   smooth, 0.4–0.5 light, 0.3–0.4 moderate, ≤ 0.3 severe), so a segment's TPI always lies in
   the band of its own level. A segment faster than free flow (r > 1) counts as 0, not below.
2. **Weights.** Each segment weighs its lane-length, ``length_m × lanes`` (lane-km up to a
   constant): congestion on a six-lane 2 km arterial matters more to the city than on a
   single-lane 50 m alley. This is a mileage weighting (the interface spec allows mileage or
   VKT); VKT weights (length × flow) can replace it once flows are estimated on every segment.
3. **Area TPI** = weighted mean of the segment TPIs over the *known* segments of the area
   (unknown segments are left out, not counted as smooth). NaN when no segment is known.
4. **Area level** = the TPI band: TPI < 2 → 1, 2 ≤ TPI < 4 → 2, 4 ≤ TPI < 6 → 3,
   6 ≤ TPI < 8 → 4, TPI ≥ 8 → 5; NaN → 0 (unknown). A TPI on a band edge takes the more
   congested band, as a segment exactly at a level boundary does.
5. **tti** = weighted mean travel-time index (free-flow / speed) of the known segments.
   **severe_share** = weighted share of the known segments at level 5.
   **known_share** = weighted share of the area (known or not) whose state is known; it tells
   how far to trust the other figures. tti and severe_share are NaN when nothing is known;
   known_share is 0 then.

The city is every segment of the network; a district is the segments assigned to it (a segment
is in at most one district, or in none).
"""

from __future__ import annotations

import numpy as np

from . import _kernels
from .levels import SEVERE_LEVEL, TPI_RATIO_KNOTS, TPI_VALUE_KNOTS, level_from_tpi
from .types import AreaIndex, SegmentStates


def lane_length_weight(length_m: np.ndarray, lanes: np.ndarray) -> np.ndarray:
    """Per-segment weight of the area indices: lane-metres (``length_m × lanes``), float64."""
    return np.asarray(length_m, dtype=np.float64) * np.maximum(np.asarray(lanes, dtype=np.float64), 1.0)


def check_districts(
    district_names: tuple[str, ...], segment_district: np.ndarray | None, n_segments: int
) -> np.ndarray:
    """Validate a district assignment; return it as contiguous int16 (all -1 when None)."""
    if len(set(district_names)) != len(district_names):
        raise ValueError(f"district_names contains duplicates: {list(district_names)}")
    if segment_district is None:
        if district_names:
            raise ValueError("district_names given without segment_district")
        return np.full(n_segments, -1, dtype=np.int16)
    arr = np.asarray(segment_district)
    if arr.shape != (n_segments,):
        raise ValueError(f"segment_district has shape {arr.shape}, expected ({n_segments},)")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"segment_district must be integers (-1 = no district), got {arr.dtype}")
    if n_segments and (arr.min() < -1 or arr.max() >= len(district_names)):
        bad = int(np.flatnonzero((arr < -1) | (arr >= len(district_names)))[0])
        raise ValueError(
            f"segment_district[{bad}] = {int(arr[bad])}: expected -1 (none) or a district number "
            f"0..{len(district_names) - 1}"
        )
    return np.ascontiguousarray(arr, dtype=np.int16)


def area_weight_totals(weight: np.ndarray, segment_district: np.ndarray, n_areas: int) -> np.ndarray:
    """Total weight of each district and (last) of the city: what ``area_indices`` takes as
    ``weight_totals``; fixed for a network, so a caller that ticks sums it once."""
    totals = np.zeros(n_areas + 1, dtype=np.float64)
    _kernels.area_weight_totals(
        np.ascontiguousarray(weight, dtype=np.float64),
        np.ascontiguousarray(segment_district, dtype=np.int16),
        n_areas, totals,
    )
    return totals


def area_indices(
    states: SegmentStates,
    weight: np.ndarray,
    segment_district: np.ndarray,
    district_names: tuple[str, ...],
    weight_totals: np.ndarray | None = None,
) -> tuple[AreaIndex, dict[str, AreaIndex]]:
    """The city's and each district's index at ``states.ts`` (method: module docstring).

    ``weight`` is float64 per segment (see ``lane_length_weight``); ``segment_district`` is an
    int16 district number per segment, -1 for none (see ``check_districts``);
    ``weight_totals``: ``area_weight_totals`` of these two, summed here when not given.
    """
    n = len(states)
    if weight.shape != (n,) or segment_district.shape != (n,):
        raise ValueError(
            f"weight {weight.shape} and segment_district {segment_district.shape} must both be ({n},)"
        )
    n_areas = len(district_names)
    if weight_totals is None:
        weight_totals = area_weight_totals(weight, segment_district, n_areas)
    elif weight_totals.shape != (n_areas + 1,):
        raise ValueError(f"weight_totals has shape {weight_totals.shape}, expected ({n_areas + 1},)")
    sums = np.zeros((n_areas + 1, _kernels.AREA_N_SUMS), dtype=np.float64)
    _kernels.area_sums(
        states.speed_kmh, states.free_flow_kmh, states.tti, states.level,
        np.ascontiguousarray(weight, dtype=np.float64),
        np.ascontiguousarray(segment_district, dtype=np.int16),
        n_areas, TPI_RATIO_KNOTS, TPI_VALUE_KNOTS, SEVERE_LEVEL, sums,
    )
    sums[:, _kernels.AREA_TOTAL_WEIGHT] = weight_totals
    total = sums[:, _kernels.AREA_TOTAL_WEIGHT]
    known = sums[:, _kernels.AREA_KNOWN_WEIGHT]
    with np.errstate(invalid="ignore", divide="ignore"):
        # 0/0 -> NaN is exactly "nothing known" for these three.
        tpi = sums[:, _kernels.AREA_TPI_WEIGHTED] / known
        tti = sums[:, _kernels.AREA_TTI_WEIGHTED] / known
        severe_share = sums[:, _kernels.AREA_SEVERE_WEIGHT] / known
        known_share = np.where(total > 0.0, known / np.where(total > 0.0, total, 1.0), 0.0)
    level = level_from_tpi(tpi)

    def make(a: int) -> AreaIndex:
        return AreaIndex(
            ts=states.ts, tpi=float(tpi[a]), level=int(level[a]), tti=float(tti[a]),
            severe_share=float(severe_share[a]), known_share=float(known_share[a]),
        )

    return make(n_areas), {name: make(a) for a, name in enumerate(district_names)}
