"""Camera analytics over recorded frames (``roadpulse camera-replay``): the same analyser the live
service runs, with time taken from the frame index ÷ fps (docs/interfaces.md §4)."""

from __future__ import annotations

from collections.abc import Iterator

from .analyzer import AnalysisSettings, CameraAnalyzer, Output
from .config import CameraConfig
from .sources import open_source


def replay_outputs(
    config: CameraConfig,
    frames_path: str,
    *,
    fps: float | None = None,
    settings: AnalysisSettings | None = None,
) -> Iterator[Output]:
    """Stats, health and incident outputs for every frame of ``frames_path`` (folder or video).

    ``fps``: the flag; else the camera file's ``fps`` if it sets one; else the video's own rate;
    else the camera default (25).
    """
    frames, source_fps = open_source(frames_path)
    rate = fps or (config.fps if config.fps_given else None) or source_fps or config.fps
    analyzer = CameraAnalyzer(config, settings)
    n = 0
    for frame in frames:
        ts = frame.ts if frame.ts is not None else frame.index / rate
        if frame.data is not None:
            yield from analyzer.process_bytes(ts, frame.data)
        elif frame.picture is not None:
            yield from analyzer.process_picture(ts, frame.picture)
        n = frame.index + 1
    yield from analyzer.flush(n / rate)
