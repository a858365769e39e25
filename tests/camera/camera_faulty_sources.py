"""Frame sources that fail the way real decoders do, for the worker tests (loaded in the worker
process through ``CameraJob.source_factory``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import cv2
import numpy as np

from camera.config import CameraConfig
from camera.sources import Frame

#: 8 s of footage at 20 fps
N_FRAMES = 160
FPS = 20.0


def _frames(start: int, n: int) -> Iterator[Frame]:
    rng = np.random.default_rng(1)
    background = rng.integers(60, 200, size=(120, 160), dtype=np.uint8)
    for k in range(start, n):
        img = background.copy()
        x = (k * 3) % 150
        img[50:70, x : x + 10] = 20
        _, buf = cv2.imencode(".jpg", img)
        yield Frame(k, data=buf.tobytes())


def steady(config: CameraConfig, start: int) -> tuple[Iterator[Frame], float | None]:
    """A healthy synthetic camera."""
    return _frames(start, N_FRAMES), FPS


def aborting(config: CameraConfig, start: int) -> tuple[Iterator[Frame], float | None]:
    """Like a file that makes FFmpeg abort the process: frame 30 calls abort()."""

    def gen() -> Iterator[Frame]:
        for f in _frames(start, N_FRAMES):
            if f.index == 30:
                os.abort()
            yield f

    return gen(), FPS


def hanging(config: CameraConfig, start: int) -> tuple[Iterator[Frame], float | None]:
    """A stream whose read blocks forever at frame 40."""

    def gen() -> Iterator[Frame]:
        for f in _frames(start, N_FRAMES):
            if f.index == 40:
                time.sleep(3600)
            yield f

    return gen(), FPS
