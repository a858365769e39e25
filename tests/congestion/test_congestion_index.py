"""Area indices: the wrapper against the pandas reference, hand-computed cases, district checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from congestion import SegmentStates
from congestion.index import area_indices, area_weight_totals, check_districts, lane_length_weight
from congestion.levels import level_from_ratio


def states_from(speed: list[float] | np.ndarray, free_flow: float | np.ndarray = 50.0) -> SegmentStates:
    speed32 = np.asarray(speed, dtype=np.float32)
    n = len(speed32)
    ff = np.broadcast_to(np.asarray(free_flow, dtype=np.float32), (n,)).copy()
    return SegmentStates(
        ts=100.0, speed_kmh=speed32, free_flow_kmh=ff, tti=(ff / speed32).astype(np.float32),
        level=level_from_ratio(speed32.astype(np.float64) / ff.astype(np.float64)),
        confidence=np.ones(n, np.float32), imputed=np.zeros(n, bool),
        n_detectors=np.ones(n, np.int16), n_cameras=np.zeros(n, np.int16),
    )


def test_hand_computed_city_index() -> None:
    # r = 1.0 (TPI 0), 0.5 (TPI 4), 0.3 (TPI 8, severe), unknown; weights 1, 1, 2, 4.
    states = states_from([50.0, 25.0, 15.0, np.nan])
    weight = np.array([1.0, 1.0, 2.0, 4.0])
    city, districts = area_indices(states, weight, np.full(4, -1, np.int16), ())
    assert districts == {}
    assert city.tpi == pytest.approx((0 * 1 + 4 * 1 + 8 * 2) / 4)  # 5.0 -> light
    assert city.level == 3 and city.level_name == "light"
    assert city.tti == pytest.approx((1.0 + 2.0 + 2 * 50 / 15) / 4)
    assert city.severe_share == pytest.approx(0.5)
    assert city.known_share == pytest.approx(0.5)
    assert city.ts == 100.0


def test_districts_and_empty_district(reference) -> None:
    rng = np.random.default_rng(7)
    n = 2000
    ff = rng.choice([45.0, 72.0], n).astype(np.float32)
    speed = np.where(rng.random(n) < 0.25, np.nan, ff * rng.uniform(0.1, 1.2, n))
    states = states_from(speed, ff)
    weight = lane_length_weight(rng.uniform(20, 900, n), rng.integers(1, 4, n))
    names = ("haishu", "jiangbei", "yinzhou")
    district = rng.choice([-1, 0, 1], n).astype(np.int16)  # nobody in yinzhou
    city, got = area_indices(states, weight, district, names)
    want = reference.area_indices(states.speed_kmh, states.free_flow_kmh, states.tti, states.level,
                                  weight, district, names)
    assert set(got) == set(names)
    for name, area in [("city", city), *got.items()]:
        for field in ("tpi", "tti", "severe_share", "known_share"):
            np.testing.assert_allclose(getattr(area, field), want[name][field], rtol=1e-6, equal_nan=True,
                                       err_msg=f"{name}.{field}")
        assert area.level == want[name]["level"], name
    assert math.isnan(got["yinzhou"].tpi) and got["yinzhou"].level == 0 and got["yinzhou"].known_share == 0.0
    assert 0 < city.known_share < 1 and got["haishu"].level > 0
    # The engine sums the fixed total weights once and passes them in: the same result.
    totals = area_weight_totals(weight, district, len(names))
    assert totals[-1] == pytest.approx(weight.sum()) and totals[2] == 0.0  # nobody in yinzhou
    city2, got2 = area_indices(states, weight, district, names, totals)
    for a, b in [(city, city2), *((got[k], got2[k]) for k in names)]:
        for field in ("tpi", "tti", "severe_share", "known_share", "level"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    with pytest.raises(ValueError, match="weight_totals"):
        area_indices(states, weight, district, names, totals[:-1])


@pytest.mark.parametrize(("speed", "level"), [(35.0, 2), (25.0, 3), (20.0, 4), (15.0, 5), (35.5, 1)])
def test_area_at_a_band_edge_matches_segment_level(speed: float, level: int) -> None:
    city, _ = area_indices(states_from([speed] * 3), np.array([1.0, 2.0, 4.0]), np.full(3, -1, np.int16), ())
    assert city.level == level


def test_check_districts() -> None:
    assert check_districts((), None, 3).tolist() == [-1, -1, -1]
    assert check_districts(("a", "b"), np.array([0, 1, -1]), 3).dtype == np.int16
    with pytest.raises(ValueError, match=r"segment_district\[1\] = 2"):
        check_districts(("a", "b"), np.array([0, 2, -1]), 3)
    with pytest.raises(ValueError, match="shape"):
        check_districts(("a",), np.array([0, 0]), 3)
    with pytest.raises(ValueError, match="duplicates"):
        check_districts(("a", "a"), np.array([0, 1, 0]), 3)
    with pytest.raises(ValueError, match="without segment_district"):
        check_districts(("a",), None, 3)
    with pytest.raises(ValueError, match="integers"):
        check_districts(("a",), np.array([0.0, 0.0, 0.0]), 3)
