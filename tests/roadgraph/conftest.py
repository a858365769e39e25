"""Fixtures for the roadgraph tests: paths of the committed data files and networks loaded once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from roadgraph import RoadNetwork, graph_from_osm, graph_from_sumo

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def aguascalientes() -> RoadNetwork:
    return graph_from_osm(DATA / "osm" / "aguascalientes.osm.bz2")


@pytest.fixture(scope="session")
def west_oakland() -> RoadNetwork:
    return graph_from_osm(DATA / "osm" / "West-Oakland.osm.bz2")


@pytest.fixture(scope="session")
def sumo_grid() -> RoadNetwork:
    return graph_from_sumo(DATA / "sumo" / "grid3.net.xml")


@pytest.fixture(scope="session")
def sumo_oakland() -> RoadNetwork:
    return graph_from_sumo(DATA / "sumo" / "west_oakland.net.xml.gz")


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write ``text`` to ``tmp_path / name`` and return the path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
