"""Analysis outputs as MQTT messages, and zone stats as detector readings for the engine.

Topics (docs/interfaces.md §2, under the configured prefix):

- ``cameras/{camera_id}/stats`` — retained, the spec's stats message, one per interval.
- ``cameras/{camera_id}/health`` — retained, ``{"camera_id", "ts", "status", "reasons", "since"}``
  whenever the health status or reasons change (an addition to the spec: health on its own topic,
  so a change is seen at once rather than at the end of the interval).
- ``incidents/{incident_id}`` — retained, the spec's incident payload with ``source: "camera"``.
- ``cameras/{camera_id}/snapshot`` — retained, the annotated JPEG (see ``annotate.py``).
"""

from __future__ import annotations

import json
from typing import Any

from publishers._encode import topic_level
from publishers.message import Message

from .analyzer import Output
from .config import CameraConfig


def zone_detector_id(camera_id: str, zone_id: str) -> str:
    """The detector id under which a camera zone feeds the engine."""
    return f"{camera_id}:{zone_id}"


def output_message(output: Output, *, prefix: str = "traffic/") -> Message:
    p = output.payload
    body = json.dumps(p, separators=(",", ":"), ensure_ascii=False).encode()
    if output.kind == "incident":
        return Message(f"{prefix}incidents/{topic_level(str(p['incident_id']))}", body, retain=True)
    return Message(f"{prefix}cameras/{topic_level(str(p['camera_id']))}/{output.kind}", body, retain=True)


def snapshot_message(camera_id: str, jpeg: bytes, *, prefix: str = "traffic/") -> Message:
    return Message(f"{prefix}cameras/{topic_level(camera_id)}/snapshot", jpeg, retain=True)


def zone_readings(stats: dict[str, Any], config: CameraConfig) -> list[dict[str, Any]]:
    """The interval's zone measurements as detector readings (docs/interfaces.md §2), or none
    when the camera was unhealthy during the interval: an unhealthy camera feeds nothing into
    congestion."""
    if stats["health"]["status"] != "ok":
        return []
    lanes = {z.id: z.lane for z in config.zones}
    out = []
    for z in stats["zones"]:
        if z["occupancy_pct"] is None:  # no measured frame in the interval
            continue
        out.append(
            {
                "detector_id": zone_detector_id(config.id, z["zone_id"]),
                "ts": stats["ts"],
                "interval_s": stats["interval_s"],
                "count": z["count"],
                "occupancy_pct": z["occupancy_pct"],
                "speed_kmh": z["speed_kmh"],
                "lane": lanes[z["zone_id"]],
            }
        )
    return out
