"""Detector health, g-factor calibration and incident detection, wired around the engine tick.

``DetectorWatch`` is what ``Pipeline`` calls (live and replay alike):

* ``accept(batch)`` — before the engine sees a batch: every tracker buffers the raw readings,
  and readings without speed get one from their detector's calibrated g-factor;
* ``before_tick(tick_ts)`` — health diagnostics on the readings due at this tick, the engine
  told which detectors may feed estimates (``set_detector_usable``), g-factors recalibrated;
  returns the health messages (changed statuses; every detector at the first tick);
* ``after_tick(result)`` — incident detection on the tick's states; returns the incident
  messages (started and cleared).

The trackers live in ``congestion/`` (no I/O); the messages are built by ``publishers/``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from congestion import CongestionEngine, ReadingBatch, TickResult
from congestion.gfactor import GFactorCalibrator, GFactorSettings
from congestion.health import DetectorHealth, HealthSettings
from congestion.incidents import IncidentDetector, IncidentSettings
from publishers.health_messages import health_messages
from publishers.incident_messages import incident_messages
from publishers.message import Message
from roadgraph.detectors import DetectorRegistry
from roadgraph.network import RoadNetwork

from .config import Settings

_HEALTH_KEYS = tuple(f for f in HealthSettings.__dataclass_fields__)
_INCIDENT_KEYS = tuple(
    f
    for f in IncidentSettings.__dataclass_fields__
    if not f.startswith("use_") and f not in ("require_both", "lane_crawl_lapse_s")
)


def health_settings(settings: Settings) -> HealthSettings:
    cfg = settings["health"]
    return HealthSettings(**{k: cfg[k] for k in _HEALTH_KEYS})


def gfactor_settings(settings: Settings) -> GFactorSettings:
    cfg = settings["health"]
    return GFactorSettings(
        samples=int(cfg["gfactor_samples"]),
        min_samples=int(cfg["gfactor_min_samples"]),
        free_flow_max_occupancy_pct=float(cfg["gfactor_free_flow_max_occupancy_pct"]),
        default_length_m=float(settings["engine"]["effective_vehicle_length_m"]),
    )


def incident_settings(settings: Settings) -> IncidentSettings:
    cfg = settings["incidents"]
    return IncidentSettings(
        **{k: cfg[k] for k in _INCIDENT_KEYS},
        use_speed_test=bool(cfg["speed_test"]),
        use_lane_test=bool(cfg["lane_test"]),
        require_both=bool(cfg["require_both"]),
        # The lane test's queue-at-rest memory holds as long as the engine's (one reading of
        # the same empty minutes).
        lane_crawl_lapse_s=float(settings["engine"]["stale_after_s"]),
    )


class DetectorWatch:
    """Health, g-factor and incidents for one engine; see the module docstring."""

    def __init__(
        self,
        network: RoadNetwork,
        detectors: DetectorRegistry,
        settings: Settings,
        engine: CongestionEngine,
        *,
        prefix: str,
    ) -> None:
        self.engine = engine
        self.prefix = prefix
        self.health: DetectorHealth | None = None
        self.gfactor: GFactorCalibrator | None = None
        self.incidents: IncidentDetector | None = None
        if settings["health"]["enabled"]:
            self.health = DetectorHealth(detectors, health_settings(settings), network=network)
        if settings["health"]["gfactor"]:
            self.gfactor = GFactorCalibrator(detectors, gfactor_settings(settings), n_segments=len(network))
        if settings["incidents"]["enabled"]:
            self.incidents = IncidentDetector(network, detectors, incident_settings(settings))

    def accept(self, batch: ReadingBatch) -> ReadingBatch:
        """Buffer the raw readings in every tracker; return the batch the engine should get."""
        if self.health is not None:
            self.health.add_readings(batch)
        if self.incidents is not None:
            self.incidents.add_readings(batch)
        if self.gfactor is None:
            return batch
        self.gfactor.add_readings(batch)
        return self.gfactor.fill_speeds(batch)

    def before_tick(self, tick_ts: float) -> list[Message]:
        out: list[Message] = []
        usable: np.ndarray | None = None
        if self.health is not None:
            excused = None
            if self.incidents is not None:
                excused = self.incidents.blocked_lane_detectors(len(self.health.detector_id))
            changed = self.health.evaluate(tick_ts, excused=excused)
            usable = self.health.usable
            self.engine.set_detector_usable(usable)
            if self.incidents is not None:
                self.incidents.set_usable(usable)
            out = health_messages((self.health.record(k) for k in changed), prefix=self.prefix)
        if self.gfactor is not None:
            self.gfactor.calibrate(tick_ts, self.engine.states.free_flow_kmh, usable)
        return out

    def after_tick(self, result: TickResult) -> list[Message]:
        if self.incidents is None:
            return []
        started, cleared = self.incidents.update(result.states)
        return incident_messages((self.incidents.record(i) for i in [*cleared, *started]), prefix=self.prefix)

    def health_records(self) -> list[dict[str, Any]]:
        return [] if self.health is None else self.health.records()

    def incident_records(self, *, include_cleared: bool = False) -> list[dict[str, Any]]:
        if self.incidents is None:
            return []
        inc = self.incidents
        return [inc.record(i) for i in inc.incidents(include_cleared=include_cleared)]

    def export_state(self) -> dict[str, Any]:
        """The trackers' states for a snapshot file (issue 4): numpy arrays and JSON-able values."""
        out: dict[str, Any] = {}
        if self.health is not None:
            out["health"] = self.health.export_state()
        if self.gfactor is not None:
            out["gfactor"] = self.gfactor.export_state()
        if self.incidents is not None:
            out["incidents"] = self.incidents.export_state()
        return out

    def import_state(self, state: dict[str, Any]) -> None:
        for name in ("health", "gfactor", "incidents"):
            tracker = getattr(self, name)
            if tracker is not None and name in state:
                tracker.import_state(state[name])
        if self.health is not None:
            self.engine.set_detector_usable(self.health.usable)
