"""``/metrics`` in the Prometheus text exposition format (0.0.4), from ``Pipeline.counters``."""

from __future__ import annotations

import math
from typing import Any

from roadpulse.pipeline import PipelineCounters


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


def render_metrics(
    counters: PipelineCounters,
    *,
    city_tpi: float | None,
    segments_by_level: dict[int, int],
    stream_clients: int,
    extra: dict[str, Any] | None = None,
) -> str:
    lines = [
        "# HELP roadpulse_readings_accepted_total Detector readings accepted (each reading once).",
        "# TYPE roadpulse_readings_accepted_total counter",
        f"roadpulse_readings_accepted_total {counters.accepted}",
        "# HELP roadpulse_readings_rejected_total Readings rejected, by reason code.",
        "# TYPE roadpulse_readings_rejected_total counter",
    ]
    for code, n in sorted(counters.rejected_by_code.items()):
        lines.append(f'roadpulse_readings_rejected_total{{reason="{_escape(code)}"}} {n}')
    lines += [
        "# HELP roadpulse_ticks_total Engine ticks run.",
        "# TYPE roadpulse_ticks_total counter",
        f"roadpulse_ticks_total {counters.ticks}",
        "# HELP roadpulse_tick_seconds Wall time of one engine tick (engine and message building).",
        "# TYPE roadpulse_tick_seconds summary",
        f"roadpulse_tick_seconds_sum {_num(counters.tick_seconds_total)}",
        f"roadpulse_tick_seconds_count {counters.ticks}",
        "# HELP roadpulse_last_tick_seconds Wall time of the latest tick.",
        "# TYPE roadpulse_last_tick_seconds gauge",
        f"roadpulse_last_tick_seconds {_num(counters.last_tick_s)}",
        "# HELP roadpulse_messages_out_total Messages published by the engine.",
        "# TYPE roadpulse_messages_out_total counter",
        f"roadpulse_messages_out_total {counters.messages_out}",
        "# HELP roadpulse_city_tpi City traffic performance index (0-10) at the latest tick.",
        "# TYPE roadpulse_city_tpi gauge",
        f"roadpulse_city_tpi {_num(city_tpi if city_tpi is not None else math.nan)}",
        "# HELP roadpulse_segments Segments by congestion level at the latest tick.",
        "# TYPE roadpulse_segments gauge",
    ]
    for level, n in sorted(segments_by_level.items()):
        lines.append(f'roadpulse_segments{{level="{level}"}} {n}')
    lines += [
        "# HELP roadpulse_stream_clients Open live-stream connections.",
        "# TYPE roadpulse_stream_clients gauge",
        f"roadpulse_stream_clients {stream_clients}",
    ]
    return "\n".join(lines) + "\n"
