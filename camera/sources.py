"""Frame sources for recorded footage and streams: an image folder (name order), a video file, an
RTSP/HTTP stream (both through OpenCV's ``VideoCapture``). MQTT frames arrive through the live
component instead (``camera/live.py``).

A source yields ``Frame``s: either the encoded bytes (image files: decoded later at reduced scale,
which is much cheaper) or a decoded picture (video), with the source's own time when it has one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})


class SourceError(Exception):
    """A source that cannot be opened or read; the message names it."""


@dataclass(frozen=True, slots=True)
class Frame:
    index: int
    data: bytes | None = None  # encoded JPEG/PNG
    picture: np.ndarray | None = None  # decoded BGR or grey
    ts: float | None = None  # the source's own time, when it has one


def image_folder(path: str | Path) -> list[Path]:
    files = sorted(p for p in Path(path).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SourceError(f"{path}: no image files (.jpg, .jpeg, .png, .bmp) in this folder")
    return files


def folder_frames(path: str | Path) -> Iterator[Frame]:
    for k, file in enumerate(image_folder(path)):
        yield Frame(k, data=file.read_bytes())


def open_capture(source: str) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise SourceError(f"{source}: cannot be opened as a video file or stream")
    return cap


def capture_fps(cap: cv2.VideoCapture) -> float | None:
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if 0.1 <= fps <= 1000 else None


def capture_frames(cap: cv2.VideoCapture) -> Iterator[Frame]:
    k = 0
    try:
        while True:
            ok, picture = cap.read()
            if not ok or picture is None:
                return
            yield Frame(k, picture=picture)
            k += 1
    finally:
        cap.release()


def open_source(source: str) -> tuple[Iterator[Frame], float | None]:
    """Frames of ``source`` (folder, video file or stream URL) and its own frame rate if known."""
    if "://" not in source and Path(source).is_dir():
        return folder_frames(source), None
    if "://" not in source and not Path(source).exists():
        raise SourceError(f"{source}: no such file or folder")
    cap = open_capture(source)
    return capture_frames(cap), capture_fps(cap)
