"""``load_network``: pick the loader for a network file by its name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .errors import NetworkFileError
from .geojson import graph_from_geojson
from .network import RoadNetwork
from .osm import graph_from_osm
from .sumo import graph_from_sumo

#: File-name endings and their loaders, longest ending first so ``.net.xml`` wins over ``.xml``.
NETWORK_SUFFIXES: tuple[tuple[str, Callable[[Path], RoadNetwork]], ...] = (
    (".net.xml.gz", graph_from_sumo),
    (".net.xml", graph_from_sumo),
    (".osm.bz2", graph_from_osm),
    (".osm.gz", graph_from_osm),
    (".osm.xml", graph_from_osm),
    (".osm", graph_from_osm),
    (".geojson", graph_from_geojson),
    (".json", graph_from_geojson),
)


def load_network(path: str | Path) -> RoadNetwork:
    """Load a road network, choosing the format by the file name's ending.

    ``.osm``/``.osm.xml``/``.osm.bz2``/``.osm.gz`` → ``graph_from_osm``; ``.net.xml``/``.net.xml.gz``
    → ``graph_from_sumo``; ``.geojson``/``.json`` → ``graph_from_geojson``. Raises
    ``NetworkFileError`` for a missing file, an unknown ending (``.osm.pbf`` included: no PBF reader
    is bundled) and whatever the loader rejects.
    """
    path = Path(path)
    if not path.exists():
        raise NetworkFileError(str(path), "no such file")
    if path.is_dir():
        raise NetworkFileError(str(path), "is a directory, expected a network file")
    name = path.name.lower()
    if name.endswith(".osm.pbf"):
        raise NetworkFileError(
            str(path),
            "OSM PBF is not supported (no PBF reader installed); convert it to .osm.bz2, "
            "e.g. `osmium cat in.osm.pbf -o out.osm.bz2`",
        )
    for suffix, loader in NETWORK_SUFFIXES:
        if name.endswith(suffix):
            return loader(path)
    supported = ", ".join(suffix for suffix, _ in NETWORK_SUFFIXES)
    raise NetworkFileError(str(path), f"unknown network file type; expected a name ending in {supported}")
