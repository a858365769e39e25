"""Level table, TPI mapping and TPI bands: table-driven at the boundaries, random in between."""

from __future__ import annotations

import numpy as np
import pytest

from congestion import LEVELS, level_name
from congestion.levels import level_from_ratio, level_from_tpi, tpi_from_ratio

# r -> level, GB/T 33171 §8.1: > 0.7 smooth, 0.5–0.7, 0.4–0.5, 0.3–0.4, <= 0.3 severe.
RATIO_LEVELS = [
    (1.5, 1), (1.0, 1), (0.7000001, 1),
    (0.7, 2), (0.6, 2), (0.5000001, 2),
    (0.5, 3), (0.45, 3), (0.4000001, 3),
    (0.4, 4), (0.35, 4), (0.3000001, 4),
    (0.3, 5), (0.1, 5), (0.0, 5),
    (np.nan, 0),
]

# r -> segment TPI: knots (1, 0), (0.7, 2), (0.5, 4), (0.4, 6), (0.3, 8), (0, 10), linear between.
RATIO_TPI = [
    (2.0, 0.0), (1.0, 0.0), (0.85, 1.0), (0.7, 2.0), (0.6, 3.0), (0.5, 4.0), (0.45, 5.0),
    (0.4, 6.0), (0.35, 7.0), (0.3, 8.0), (0.15, 9.0), (0.0, 10.0), (-0.5, 10.0),
]

# TPI -> area level: 0–2 → 1, 2–4 → 2, 4–6 → 3, 6–8 → 4, 8–10 → 5; an edge takes the upper band.
TPI_LEVELS = [
    (0.0, 1), (1.999, 1), (2.0, 2), (3.999, 2), (4.0, 3), (5.999, 3), (6.0, 4), (7.999, 4),
    (8.0, 5), (10.0, 5), (np.nan, 0),
]


@pytest.mark.parametrize(("ratio", "level"), RATIO_LEVELS)
def test_level_from_ratio_table(ratio: float, level: int) -> None:
    assert level_from_ratio(ratio) == level
    assert level_from_ratio(np.array([ratio]))[0] == level


@pytest.mark.parametrize(("ratio", "tpi"), RATIO_TPI)
def test_tpi_from_ratio_table(ratio: float, tpi: float) -> None:
    assert float(tpi_from_ratio(ratio)) == pytest.approx(tpi, abs=1e-12)


@pytest.mark.parametrize(("tpi", "level"), TPI_LEVELS)
def test_level_from_tpi_table(tpi: float, level: int) -> None:
    assert level_from_tpi(tpi) == level


def test_knots_map_exactly() -> None:
    """At a level boundary the TPI is the band edge exactly, so segment and area levels agree."""
    for ratio, tpi in [(0.7, 2.0), (0.5, 4.0), (0.4, 6.0), (0.3, 8.0)]:
        assert float(tpi_from_ratio(ratio)) == tpi


@pytest.mark.parametrize("n", [0, 1, 10_000])
def test_random_ratios_match_reference_and_bands_agree(n: int, reference) -> None:
    rng = np.random.default_rng(n)
    ratio = rng.uniform(-0.1, 1.6, n)
    if n:
        ratio = np.concatenate([ratio, [0.3, 0.4, 0.5, 0.7, 1.0, np.nan]])
    np.testing.assert_array_equal(level_from_ratio(ratio), reference.level_of_ratio(ratio))
    tpi = tpi_from_ratio(ratio)
    np.testing.assert_allclose(tpi, reference.tpi_of_ratio(ratio), rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(level_from_tpi(tpi), reference.level_of_tpi(tpi))
    # The TPI band of a segment is always its own level.
    np.testing.assert_array_equal(level_from_tpi(tpi), level_from_ratio(ratio))


def test_shapes_are_kept() -> None:
    grid = np.array([[0.2, 0.8], [np.nan, 0.45]])
    assert level_from_ratio(grid).tolist() == [[5, 1], [0, 3]]
    assert tpi_from_ratio(grid).shape == (2, 2)


def test_level_names() -> None:
    assert [level_name(i) for i in range(6)] == [
        "unknown", "smooth", "mostly_smooth", "light", "moderate", "severe"]
    assert LEVELS[5][2] == 4  # Amap status of "severe"
