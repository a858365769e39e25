"""Congestion levels (GB/T 33171-2016 §8.1) and the traffic performance index (TPI) bands.

A segment's level comes from the ratio r = travel speed / free-flow speed:

    ==========  =====  ===============  ================
    r           level  level_name       segment TPI
    ==========  =====  ===============  ================
    r > 0.7     1      smooth           0 – 2  (r ≥ 1 → 0)
    0.5 – 0.7   2      mostly_smooth    2 – 4
    0.4 – 0.5   3      light            4 – 6
    0.3 – 0.4   4      moderate         6 – 8
    r ≤ 0.3     5      severe           8 – 10 (r = 0 → 10)
    unknown     0      unknown          NaN
    ==========  =====  ===============  ================

A boundary value belongs to the more congested level (r = 0.7 is level 2, as the standard's
"> 0.7" for smooth says). The segment TPI maps r piecewise-linearly through the knots
(1, 0), (0.7, 2), (0.5, 4), (0.4, 6), (0.3, 8), (0, 10), so the TPI band of a segment always agrees
with its level; an area's level comes from its TPI by the same bands (a TPI on a band edge belongs
to the more congested band: TPI 2 is level 2).

These functions are the typed wrappers over the jitted kernels; they accept any array-like of
ratios or TPIs and return arrays of the same shape.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _kernels

#: Level k + 1 starts at or below ``RATIO_UPPER_BOUNDS[k - 1]``: r ≤ 0.7 → 2, ≤ 0.5 → 3, ...
RATIO_UPPER_BOUNDS: tuple[float, float, float, float] = (0.7, 0.5, 0.4, 0.3)

#: Knots of the segment TPI: ratio (ascending) → TPI.
TPI_RATIO_KNOTS: tuple[float, ...] = (0.0, 0.3, 0.4, 0.5, 0.7, 1.0)
TPI_VALUE_KNOTS: tuple[float, ...] = (10.0, 8.0, 6.0, 4.0, 2.0, 0.0)

#: An area's level is 1 + the number of these edges at or below its TPI.
TPI_LEVEL_EDGES: tuple[float, float, float, float] = (2.0, 4.0, 6.0, 8.0)

#: The level counted in ``AreaIndex.severe_share``.
SEVERE_LEVEL = 5


def _as_flat_float64(values: ArrayLike) -> tuple[np.ndarray, tuple[int, ...]]:
    arr = np.asarray(values, dtype=np.float64)
    return np.ascontiguousarray(arr.ravel()), arr.shape


def level_from_ratio(ratio: ArrayLike) -> np.ndarray:
    """Level (int8, 0–5) of each speed / free-flow ratio; NaN → 0 (unknown)."""
    flat, shape = _as_flat_float64(ratio)
    out = np.empty(flat.shape[0], dtype=np.int8)
    _kernels.levels_of_ratios(flat, RATIO_UPPER_BOUNDS, out)
    return out.reshape(shape)


def tpi_from_ratio(ratio: ArrayLike) -> np.ndarray:
    """Segment TPI (float64, 0–10) of each speed / free-flow ratio; NaN → NaN."""
    flat, shape = _as_flat_float64(ratio)
    out = np.empty(flat.shape[0], dtype=np.float64)
    _kernels.tpis_of_ratios(flat, TPI_RATIO_KNOTS, TPI_VALUE_KNOTS, out)
    return out.reshape(shape)


def level_from_tpi(tpi: ArrayLike) -> np.ndarray:
    """Level (int8, 0–5) of each TPI by the bands 0–2, 2–4, 4–6, 6–8, 8–10; NaN → 0."""
    flat, shape = _as_flat_float64(tpi)
    out = np.empty(flat.shape[0], dtype=np.int8)
    _kernels.levels_of_tpis(flat, TPI_LEVEL_EDGES, out)
    return out.reshape(shape)
