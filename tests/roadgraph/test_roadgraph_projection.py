"""Transverse Mercator / UTM against reference values, the local projection and haversine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from roadgraph import LocalProjection, RoadNetwork, TransverseMercator, geodesic_distance_m, haversine_m
from roadgraph.projection import parse_proj_string

#: (zone, south, lon, lat, easting, northing): computed with PROJ 9 (pyproj 3.7,
#: ``Proj(proj="utm", zone=..., south=..., ellps="WGS84")``), printed to 0.1 mm. The equator /
#: 0° E point is the textbook value 166021.4431 m.
UTM_REFERENCE = [
    (10, False, -122.3, 37.81, 561616.7396, 4184965.2201),  # West Oakland
    (13, False, -102.27, 21.87, 782126.6732, 2420942.9032),  # Aguascalientes, near the zone edge
    (51, False, 121.55, 29.87, 359961.3504, 3305263.0758),  # Ningbo
    (56, True, 151.2093, -33.8688, 334368.6336, 6250948.3454),  # Sydney
    (33, False, 18.4, 69.65, 631897.5803, 7730513.3848),  # Tromsø
    (31, False, 0.0, 0.0, 166021.4431, 0.0),
    (18, True, -77.0428, -12.0464, 277617.4532, 8667487.8970),  # Lima
]


@pytest.mark.parametrize(("zone", "south", "lon", "lat", "x", "y"), UTM_REFERENCE)
def test_utm_inverse_matches_reference(
    zone: int, south: bool, lon: float, lat: float, x: float, y: float
) -> None:
    tm = TransverseMercator.utm(zone, south=south)
    lon_out, lat_out = tm.to_lonlat(x, y)
    # error in metres on the ground; the reference is printed to 0.1 mm
    assert float(haversine_m(lon_out, lat_out, lon, lat)) < 0.001


@pytest.mark.parametrize(("zone", "south", "lon", "lat", "x", "y"), UTM_REFERENCE)
def test_utm_forward_matches_reference(
    zone: int, south: bool, lon: float, lat: float, x: float, y: float
) -> None:
    tm = TransverseMercator.utm(zone, south=south)
    x_out, y_out = tm.to_m(lon, lat)
    assert abs(float(x_out) - x) < 0.001 and abs(float(y_out) - y) < 0.001


def test_round_trip_across_a_zone() -> None:
    rng = np.random.default_rng(7)
    tm = TransverseMercator.utm(50)
    lon = 117.0 + rng.uniform(-3.5, 3.5, 10_000)
    lat = rng.uniform(-80.0, 84.0, 10_000)
    lon2, lat2 = tm.to_lonlat(*tm.to_m(lon, lat))
    assert float(np.max(haversine_m(lon, lat, lon2, lat2))) < 1e-6


@pytest.mark.skipif(importlib.util.find_spec("pyproj") is None, reason="pyproj not installed")
def test_against_pyproj() -> None:
    import pyproj

    rng = np.random.default_rng(3)
    for zone, south in ((10, False), (51, False), (23, True)):
        proj = pyproj.Proj(proj="utm", zone=zone, south=south, ellps="WGS84")
        tm = TransverseMercator.utm(zone, south=south)
        lon = zone * 6 - 183 + rng.uniform(-3, 3, 500)
        lat = rng.uniform(0, 80, 500) * (-1 if south else 1)
        px, py = proj(lon, lat)
        lon2, lat2 = tm.to_lonlat(px, py)
        assert float(np.max(haversine_m(lon, lat, lon2, lat2))) < 0.01


@pytest.mark.skipif(importlib.util.find_spec("pyproj") is None, reason="sumolib converts with pyproj")
def test_against_sumolib_convert_xy_to_lonlat(data_dir: Path, sumo_oakland: RoadNetwork) -> None:
    sumolib = pytest.importorskip("sumolib")
    net = sumolib.net.readNet(str(data_dir / "sumo" / "west_oakland.net.xml.gz"))
    projection = sumo_oakland.projection
    assert projection is not None
    xs = np.linspace(0.0, 2065.0, 25)
    ys = np.linspace(0.0, 1511.0, 25)
    ours = np.column_stack(projection.to_lonlat(xs, ys))
    theirs = np.array([net.convertXY2LonLat(float(x), float(y)) for x, y in zip(xs, ys, strict=True)])
    assert float(np.max(haversine_m(ours[:, 0], ours[:, 1], theirs[:, 0], theirs[:, 1]))) < 0.01


def test_net_offset_is_folded_into_false_origin() -> None:
    tm = parse_proj_string("+proj=utm +zone=51 +ellps=WGS84 +datum=WGS84 +units=m +no_defs").with_offset(
        -359961.3504, -3305263.0758
    )
    x, y = tm.to_m(121.55, 29.87)
    assert abs(float(x)) < 1e-3 and abs(float(y)) < 1e-3
    lon, lat = tm.to_lonlat(0.0, 0.0)
    assert float(lon) == pytest.approx(121.55, abs=1e-9) and float(lat) == pytest.approx(29.87, abs=1e-9)


def test_tmerc_with_origin_latitude() -> None:
    # reference: PROJ, "+proj=tmerc +lat_0=30 +lon_0=120 +k=1 +x_0=500000 +y_0=100 +ellps=WGS84"
    tm = parse_proj_string("+proj=tmerc +lat_0=30 +lon_0=120 +k=1 +x_0=500000 +y_0=100 +ellps=WGS84 +units=m")
    x, y = tm.to_m([121.1, 119.2], [29.1, 33.3])
    assert np.allclose(x, [607082.9656959112, 425490.4988153496], atol=1e-4)
    assert np.allclose(y, [-99160.46064312807, 366292.3831246406], atol=1e-4)
    lon, lat = tm.to_lonlat(x, y)
    assert np.allclose(lon, [121.1, 119.2], atol=1e-10) and np.allclose(lat, [29.1, 33.3], atol=1e-10)


@pytest.mark.parametrize(
    ("proj", "message"),
    [
        ("+proj=merc +ellps=WGS84", "projection +proj=merc is not supported"),
        ("+proj=utm +zone=61", "UTM zone must be 1..60"),
        ("+proj=utm", "+proj=utm needs +zone=1..60"),
        ("+proj=utm +zone=33 +ellps=bessel", "ellipsoid/datum 'bessel' is not supported"),
        ("+proj=utm +zone=33 +units=ft", "units 'ft' are not supported"),
        ("+proj=tmerc +lon_0=east", "+lon_0='east' is not a number"),
        ("+proj=utm +zone=33 +towgs84=1,2,3", "+towgs84 datum shifts are not supported"),
    ],
)
def test_unsupported_proj_strings(proj: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("+", r"\+").replace(".", r"\.")):
        parse_proj_string(proj)


def test_local_projection_is_exact_near_the_centre() -> None:
    projection = LocalProjection(lon0_deg=121.55, lat0_deg=29.87)
    x, y = projection.to_m([121.55, 121.56, 121.55], [29.87, 29.87, 29.88])
    assert float(x[0]) == 0.0 and float(y[0]) == 0.0
    # 0.01° east and north: compare with the ellipsoidal UTM distance (scale-corrected)
    tm = TransverseMercator.utm(51)
    ux, uy = tm.to_m([121.55, 121.56, 121.55], [29.87, 29.87, 29.88])
    k = 0.9996 * (1 + (float(ux[0]) - 500000) ** 2 / (2 * 6381000.0**2))  # UTM point scale there
    assert float(x[1]) == pytest.approx(np.hypot(ux[1] - ux[0], uy[1] - uy[0]) / k, rel=2e-4)
    assert float(y[2]) == pytest.approx(np.hypot(ux[2] - ux[0], uy[2] - uy[0]) / k, rel=2e-4)
    lon, lat = projection.to_lonlat(x, y)
    assert np.allclose(lon, [121.55, 121.56, 121.55]) and np.allclose(lat, [29.87, 29.87, 29.88])


def test_local_projection_around_points() -> None:
    projection = LocalProjection.around([10.0, 12.0], [50.0, 51.0])
    assert (projection.lon0_deg, projection.lat0_deg) == (11.0, 50.5)
    with pytest.raises(ValueError):
        LocalProjection.around([], [])
    with pytest.raises(ValueError):
        LocalProjection(lon0_deg=0.0, lat0_deg=95.0)


def test_haversine_known_distances() -> None:
    # one degree along a meridian and along the equator on the mean-radius sphere
    assert float(haversine_m(0.0, 0.0, 0.0, 1.0)) == pytest.approx(111195.08, abs=0.01)
    assert float(haversine_m(0.0, 0.0, 1.0, 0.0)) == pytest.approx(111195.08, abs=0.01)
    assert float(haversine_m(5.0, 5.0, 5.0, 5.0)) == 0.0


@pytest.mark.parametrize(
    ("lon1", "lat1", "lon2", "lat2", "metres"),
    [
        # the WGS84 geodesic from PROJ (pyproj 3.7 ``Geod(ellps="WGS84").inv``)
        (121.55, 29.87, 121.56, 29.87, 966.1179),
        (121.55, 29.87, 121.55, 29.88, 1108.5034),
        (-102.27, 21.87, -102.2612, 21.8733, 980.1791),
        (18.4, 69.65, 18.41, 69.652, 447.7875),
    ],
)
def test_geodesic_distance_matches_proj(
    lon1: float, lat1: float, lon2: float, lat2: float, metres: float
) -> None:
    assert float(geodesic_distance_m(lon1, lat1, lon2, lat2)) == pytest.approx(metres, abs=2e-4)
    # the sphere is visibly off: that is why lengths do not use it
    assert abs(float(haversine_m(lon1, lat1, lon2, lat2)) - metres) > 0.5
