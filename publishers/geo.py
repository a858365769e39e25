"""WGS84 ↔ GCJ-02 ("Mars coordinates"), the datum Chinese map providers (Amap, Tencent) require.

GCJ-02 is WGS84 plus a deliberately obfuscating offset of up to a few hundred metres, defined by
the widely published transform on the Krasovsky ellipsoid (a = 6378245 m, e² = 0.00669342162296594323).
The forward direction is a closed formula; there is no closed inverse, so ``gcj02_to_wgs84`` solves
``wgs84_to_gcj02(w) = g`` by fixed-point iteration (the offset changes by less than 1e-5 per metre,
so each step gains about five digits: three steps reach far below a millimetre).

Outside mainland China providers use plain WGS84, so both functions return points outside the
usual bounding box (lon 73.66..135.05, lat 3.86..53.55) unchanged — a network in Mexico is pushed
as it is. The array versions do the same element-wise, for whole polylines at once.
"""

from __future__ import annotations

import math

import numpy as np

_A = 6378245.0
_EE = 0.00669342162296594323

#: Iteration stops once the forward image is this close to the target (degrees, ≈ 1e-5 m).
_TOLERANCE_DEG = 1e-10
_MAX_STEPS = 30


def out_of_china(lon: float, lat: float) -> bool:
    """True where GCJ-02 does not apply (the transform's customary rectangle around China)."""
    return not (73.66 < lon < 135.05 and 3.86 < lat < 53.55)


def _offset_m(x: float, y: float) -> tuple[float, float]:
    """The published polynomial/sine offsets for x = lon - 105, y = lat - 35 (in "metres")."""
    sq = math.sqrt(abs(x))
    px, py = x * math.pi, y * math.pi
    common = (20.0 * math.sin(6.0 * px) + 20.0 * math.sin(2.0 * px)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sq + common
    dlat += (20.0 * math.sin(py) + 40.0 * math.sin(py / 3.0)) * 2.0 / 3.0
    dlat += (160.0 * math.sin(py / 12.0) + 320.0 * math.sin(py / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sq + common
    dlon += (20.0 * math.sin(px) + 40.0 * math.sin(px / 3.0)) * 2.0 / 3.0
    dlon += (150.0 * math.sin(px / 12.0) + 300.0 * math.sin(px / 30.0)) * 2.0 / 3.0
    return dlon, dlat


def _delta_deg(lon: float, lat: float) -> tuple[float, float]:
    dlon, dlat = _offset_m(lon - 105.0, lat - 35.0)
    rad = lat / 180.0 * math.pi
    magic = 1.0 - _EE * math.sin(rad) ** 2
    sqrt_magic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * math.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * math.cos(rad) * math.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """GCJ-02 (lon, lat) of a WGS84 point; unchanged outside China."""
    lon, lat = float(lon), float(lat)
    if out_of_china(lon, lat):
        return lon, lat
    dlon, dlat = _delta_deg(lon, lat)
    return lon + dlon, lat + dlat


def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """WGS84 (lon, lat) of a GCJ-02 point, exact to ~1e-5 m by iteration; unchanged outside China."""
    lon, lat = float(lon), float(lat)
    if out_of_china(lon, lat):
        return lon, lat
    w_lon, w_lat = lon, lat
    for _ in range(_MAX_STEPS):
        g_lon, g_lat = wgs84_to_gcj02(w_lon, w_lat)
        err_lon, err_lat = g_lon - lon, g_lat - lat
        if abs(err_lon) < _TOLERANCE_DEG and abs(err_lat) < _TOLERANCE_DEG:
            break
        w_lon, w_lat = w_lon - err_lon, w_lat - err_lat
    return w_lon, w_lat


def wgs84_to_gcj02_array(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise ``wgs84_to_gcj02`` for coordinate arrays (e.g. a polyline's vertices)."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    inside = (lon > 73.66) & (lon < 135.05) & (lat > 3.86) & (lat < 53.55)
    x, y = lon - 105.0, lat - 35.0
    sq = np.sqrt(np.abs(x))
    px, py = x * np.pi, y * np.pi
    common = (20.0 * np.sin(6.0 * px) + 20.0 * np.sin(2.0 * px)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sq + common
    dlat += (20.0 * np.sin(py) + 40.0 * np.sin(py / 3.0)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(py / 12.0) + 320.0 * np.sin(py / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sq + common
    dlon += (20.0 * np.sin(px) + 40.0 * np.sin(px / 3.0)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(px / 12.0) + 300.0 * np.sin(px / 30.0)) * 2.0 / 3.0
    rad = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(rad) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * np.cos(rad) * np.pi)
    return np.where(inside, lon + dlon, lon), np.where(inside, lat + dlat, lat)
