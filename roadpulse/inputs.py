"""Loading the network and detector registry named in the settings, for every command."""

from __future__ import annotations

import sys

from roadgraph import DetectorRegistry, NetworkFileError, RoadNetwork, load_detectors, load_network

from .bundled import demo_city_path
from .config import Settings


class UsageError(Exception):
    """Bad input the user can fix; the CLI prints it as one line and exits with status 2."""


def load_inputs(settings: Settings) -> tuple[RoadNetwork, DetectorRegistry]:
    """The network in ``network.path`` (the bundled city when empty) and its detectors."""
    network_path = settings["network"]["path"] or str(demo_city_path())
    try:
        network = load_network(network_path)
        detectors_path = settings["network"]["detectors"]
        detectors = load_detectors(detectors_path, network) if detectors_path else DetectorRegistry.empty()
    except NetworkFileError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{exc.filename}: {exc.strerror or exc}") from None
    if detectors.ignored:
        first_id, why = next(iter(detectors.ignored.items()))
        print(
            f"note: {len(detectors.ignored)} detector(s) in {settings['network']['detectors']} "
            f"measure no car traffic and are not used (e.g. {first_id!r}: {why}); "
            "their readings will be rejected",
            file=sys.stderr,
        )
    return network, detectors
