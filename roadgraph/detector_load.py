"""``load_detectors``: pick the detector reader for a file by its name."""

from __future__ import annotations

from pathlib import Path

from .detector_csv import detectors_from_csv
from .detector_sumo import detectors_from_sumo
from .detectors import DetectorRegistry
from .errors import NetworkFileError
from .network import RoadNetwork


def load_detectors(
    path: str | Path,
    network: RoadNetwork,
    *,
    max_distance_m: float = 50.0,
    max_heading_diff_deg: float = 60.0,
) -> DetectorRegistry:
    """Load a detector registry for ``network``: a SUMO additional file or a CSV.

    Names ending in ``.xml`` or ``.xml.gz`` are read as SUMO additional files
    (``detectors_from_sumo``); everything else as CSV (``detectors_from_csv``, where
    ``max_distance_m`` and ``max_heading_diff_deg`` govern snapping of ``lon,lat`` rows).
    Raises ``NetworkFileError`` naming the file, line and column or attribute of any problem.
    """
    path = Path(path)
    if not path.exists():
        raise NetworkFileError(str(path), "no such file")
    if path.is_dir():
        raise NetworkFileError(str(path), "is a directory, expected a detector file")
    name = path.name.lower()
    if name.endswith((".xml", ".xml.gz")):
        return detectors_from_sumo(path, network)
    return detectors_from_csv(
        path, network, max_distance_m=max_distance_m, max_heading_diff_deg=max_heading_diff_deg
    )
