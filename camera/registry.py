"""Camera zones as detectors: each zone joins the detector registry as kind ``camera`` with id
``{camera_id}:{zone_id}``, on its ``segment_id`` and ``lane``, so its interval measurements reach the
engine like loop readings (and count in ``sources.cameras`` of the segment state)."""

from __future__ import annotations

import numpy as np

from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork

from .config import CameraConfig, CameraConfigError
from .messages import zone_detector_id


def with_camera_zones(
    detectors: DetectorRegistry, network: RoadNetwork, cameras: list[CameraConfig]
) -> DetectorRegistry:
    """A new registry: ``detectors`` plus one camera detector per zone."""
    ids, segs, lanes = [], [], []
    index_of = network.segments.index_of
    for cam in cameras:
        for k, zone in enumerate(cam.zones):
            seg = index_of.get(zone.segment_id)
            where = f"{cam.origin}: camera {cam.id!r} zones[{k}] ({zone.id!r})"
            if seg is None:
                raise CameraConfigError(
                    f"{where}.segment_id: {zone.segment_id!r} is not a segment of the network"
                )
            det_id = zone_detector_id(cam.id, zone.id)
            if det_id in detectors.index_of or det_id in ids:
                raise CameraConfigError(f"{where}: detector id {det_id!r} is already in the registry")
            ids.append(det_id)
            segs.append(seg)
            lanes.append(zone.lane)
    if not ids:
        return detectors
    return DetectorRegistry(
        detector_id=np.concatenate([detectors.detector_id, np.array(ids, dtype=object)]),
        segment_index=np.concatenate([detectors.segment_index, np.array(segs, dtype=np.int32)]),
        lane=np.concatenate([detectors.lane, np.array(lanes, dtype=np.int16)]),
        pos_m=np.concatenate([detectors.pos_m, np.full(len(ids), np.nan, dtype=np.float32)]),
        kind=np.concatenate([detectors.kind, np.array(["camera"] * len(ids), dtype=object)]),
        ignored=dict(detectors.ignored),
    )
