"""Files shipped inside the package (the demo city), found without network access."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO_CITY_FILE = "aguascalientes.osm.bz2"
DEMO_CITY_ATTRIBUTION = "Map data © OpenStreetMap contributors, ODbL 1.0 (Aguascalientes extract)"


def demo_city_path() -> Path:
    """Path of the bundled OSM extract (the package is installed as files, not zipped)."""
    return Path(str(resources.files("roadpulse") / "data" / DEMO_CITY_FILE))
