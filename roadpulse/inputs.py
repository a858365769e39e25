"""Loading the network and detector registry named in the settings, for every command."""

from __future__ import annotations

import sys
from typing import Any

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
    detectors = _with_cameras(settings, network, detectors)
    if detectors.ignored:
        first_id, why = next(iter(detectors.ignored.items()))
        print(
            f"note: {len(detectors.ignored)} detector(s) in {settings['network']['detectors']} "
            f"measure no car traffic and are not used (e.g. {first_id!r}: {why}); "
            "their readings will be rejected",
            file=sys.stderr,
        )
    return network, detectors


def configured_cameras(settings: Settings) -> list[Any]:
    """The cameras the configuration names ([[cameras]] and camera.files), validated."""
    if not settings["camera"]["enabled"]:
        return []
    from camera.config import CameraConfigError, cameras_from_config

    path = settings.source if settings.source != "<defaults>" else None
    try:
        return cameras_from_config(path, settings["camera"]["files"])
    except CameraConfigError as exc:
        raise UsageError(str(exc)) from None


def _with_cameras(settings: Settings, network: RoadNetwork, detectors: DetectorRegistry) -> DetectorRegistry:
    """Camera zones join the registry as detectors of kind "camera" (``{camera_id}:{zone_id}``)."""
    if not settings["camera"]["feed_engine"]:
        return detectors
    cameras = configured_cameras(settings)
    if not cameras:
        return detectors
    from camera.config import CameraConfigError
    from camera.registry import with_camera_zones

    try:
        return with_camera_zones(detectors, network, cameras)
    except CameraConfigError as exc:
        raise UsageError(str(exc)) from None
