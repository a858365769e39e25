"""GCJ-02: published reference pairs, an independent implementation, and the exact inverse."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from publishers.geo import gcj02_to_wgs84, wgs84_to_gcj02, wgs84_to_gcj02_array

# (wgs lon, wgs lat, gcj lon, gcj lat) published as test vectors by other implementations:
# googollee/eviltransform (Shanghai, Shenzhen, Beijing), the R package of the same transform
# (Tiananmen), and a Rust geotool (Jiaxing).
REFERENCE = [
    (121.5272106, 31.1774276, 121.531541859215, 31.17530398364597),
    (113.912316, 22.543847, 113.9171764808363, 22.540796131694766),
    (116.377817, 39.911954, 116.38404722455657, 39.91334545536069),
    (116.39089, 39.90734, 116.39713094, 39.90874107),
    (121.0917077, 30.6107779, 121.09626935575027, 30.608604331756705),
]


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Haversine distance (m)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371008.8 * math.asin(math.sqrt(h))


def independent_wgs_to_gcj(lon: float, lat: float) -> tuple[float, float]:
    """Written separately from the published formulas in eviltransform's arrangement, which
    differs from roadpulse's: earth radius 6378137 (not Krasovsky's 6378245) and the sine terms
    summed in another order. Agreement within a metre checks both against transcription slips."""
    earth_r, ee = 6378137.0, 0.00669342162296594323
    x, y = lon - 105.0, lat - 35.0
    xy, ax = x * y, math.sqrt(abs(x))
    xp, yp = x * math.pi, y * math.pi
    d = 20.0 * math.sin(6.0 * xp) + 20.0 * math.sin(2.0 * xp)
    dlat = (
        d
        + 20.0 * math.sin(yp)
        + 40.0 * math.sin(yp / 3.0)
        + 160.0 * math.sin(yp / 12.0)
        + 320 * math.sin(yp / 30.0)
    )
    dlng = (
        d
        + 20.0 * math.sin(xp)
        + 40.0 * math.sin(xp / 3.0)
        + 150.0 * math.sin(xp / 12.0)
        + 300.0 * math.sin(xp / 30.0)
    )
    dlat = dlat * 2.0 / 3.0 + (-100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * xy + 0.2 * ax)
    dlng = dlng * 2.0 / 3.0 + (300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * xy + 0.1 * ax)
    rad = math.radians(lat)
    magic = 1 - ee * math.sin(rad) ** 2
    dlat = dlat * 180.0 / (earth_r * (1 - ee) / (magic * math.sqrt(magic)) * math.pi)
    dlng = dlng * 180.0 / (earth_r / math.sqrt(magic) * math.cos(rad) * math.pi)
    return lon + dlng, lat + dlat


@pytest.mark.parametrize(("lon", "lat", "glon", "glat"), REFERENCE)
def test_matches_published_reference_pairs_within_a_metre(
    lon: float, lat: float, glon: float, glat: float
) -> None:
    out = wgs84_to_gcj02(lon, lat)
    assert metres(*out, glon, glat) < 1.0
    assert metres(lon, lat, glon, glat) > 100  # the offset is real: an identity would fail


def test_matches_an_independent_implementation_within_a_metre_across_china() -> None:
    rng = random.Random(6)
    worst = 0.0
    for _ in range(2000):
        lon, lat = rng.uniform(74.0, 135.0), rng.uniform(4.0, 53.5)
        worst = max(worst, metres(*wgs84_to_gcj02(lon, lat), *independent_wgs_to_gcj(lon, lat)))
    assert worst < 1.0


def test_inverse_round_trips_below_a_centimetre() -> None:
    rng = random.Random(7)
    worst = 0.0
    for _ in range(2000):
        lon, lat = rng.uniform(74.0, 135.0), rng.uniform(4.0, 53.5)
        back = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
        worst = max(worst, metres(lon, lat, *back))
    assert worst < 0.01


def test_published_inverse_pair() -> None:
    # hujiulong/gcoord's test: GCJ-02 (123, 45) -> WGS84 (122.99395597, 44.99804071)
    assert metres(*gcj02_to_wgs84(123.0, 45.0), 122.99395597, 44.99804071) < 0.1


def test_outside_china_coordinates_are_unchanged() -> None:
    for lon, lat in [(-102.29, 21.88), (2.35, 48.85), (151.2, -33.9)]:  # Aguascalientes, Paris, Sydney
        assert wgs84_to_gcj02(lon, lat) == (lon, lat)
        assert gcj02_to_wgs84(lon, lat) == (lon, lat)


def test_array_version_equals_the_scalar_one() -> None:
    lon = np.array([121.5272106, 113.912316, -102.29, 116.39089])
    lat = np.array([31.1774276, 22.543847, 21.88, 39.90734])
    alon, alat = wgs84_to_gcj02_array(lon, lat)
    for i in range(len(lon)):
        assert (alon[i], alat[i]) == pytest.approx(wgs84_to_gcj02(lon[i], lat[i]), abs=1e-12)
