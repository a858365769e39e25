"""Plausibility limits applied to every incoming reading (one frozen value, passed in by the wiring)."""

from __future__ import annotations

from dataclasses import dataclass

#: 2000-01-01T00:00:00Z: the spec's earliest plausible reading time.
MIN_TS = 946_684_800.0


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """Bounds beyond which a message or reading is refused rather than trusted.

    The defaults are deliberately generous: they exist to catch broken detectors and wrong units
    (milliseconds for seconds, mph for a percentage), not to second-guess unusual traffic.
    """

    #: One MQTT message or one JSONL line. 2 MiB holds a 10,000-reading batch with room to spare.
    max_payload_bytes: int = 2 * 1024 * 1024
    #: Readings in one ``detectors/batch`` array; a larger array is refused whole (``too_large``).
    max_batch_readings: int = 10_000
    #: Longest counting interval accepted (s). Loops report every 20 s to 5 min.
    max_interval_s: float = 3600.0
    #: Earliest ``ts`` accepted (epoch s). Earlier is a detector with an unset clock, or simulation
    #: seconds (SUMO's E1 output with ``epoch_base=0``): replays of such files lower it to 0.
    min_ts: float = MIN_TS
    #: How far ``ts`` may run ahead of the wall clock (s): detector clock skew, not prediction.
    max_future_s: float = 300.0
    #: Fastest plausible spot speed (km/h).
    max_speed_kmh: float = 250.0
    #: Vehicles per second per lane that a count may imply. Lane capacity is about 0.6 veh/s
    #: (≈2,200 veh/h), so 1.0 leaves headroom for short intervals and saturation bursts.
    max_veh_per_s_per_lane: float = 1.0
    #: Highest lane index accepted (0 = rightmost); wider roads do not exist.
    max_lane: int = 31
    #: Accepted ``ts`` values remembered per detector for duplicate detection. A re-delivered
    #: reading is caught when its first copy is among that detector's last N accepted readings
    #: (with 30 s intervals, 32 covers 16 minutes) or newer than all of them.
    duplicate_memory: int = 32
    #: Lateness bound (s). The watermark is the newest accepted ``ts`` minus this; a reading behind
    #: the watermark whose tick has already run is refused as ``late``.
    lateness_s: float = 300.0
    #: A detector whose timestamps run ahead of (or behind) arrival by more than this, on a moving
    #: mean, is reported as clock-skewed (s). Loops report at the end of their interval and the
    #: network adds seconds, so a minute is clearly a clock problem.
    max_skew_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("max_payload_bytes", "max_batch_readings", "duplicate_memory"):
            if getattr(self, name) < 1:
                raise ValueError(f"IngestLimits.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_interval_s", "max_speed_kmh", "max_veh_per_s_per_lane", "max_skew_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"IngestLimits.{name} must be > 0, got {getattr(self, name)}")
        if not self.lateness_s >= 0:
            raise ValueError(f"IngestLimits.lateness_s must be >= 0, got {self.lateness_s}")
        if not self.max_future_s >= 0:
            raise ValueError(f"IngestLimits.max_future_s must be >= 0, got {self.max_future_s}")
        if not 0 <= self.max_lane <= 32_767:  # ReadingBatch.lane is int16
            raise ValueError(f"IngestLimits.max_lane must be within 0..32767, got {self.max_lane}")
