"""Test footage: the real CDnet highway frames (when the shared data folder is present) and a
rendered two-lane road whose truth is known exactly (vehicle rectangles, speeds, counts).

The CDnet 2014 frames are research-use data that must not be shipped inside the project, so they
are read from ``../shared/data/video/cdnet2014_highway_subset`` (or ``$ROADPULSE_CDNET_DIR``) and
the tests that need them skip where the folder is absent; the rendered scene always runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from camera.config import CameraConfig, CountingLine, Homography, Zone

REPO = Path(__file__).resolve().parents[2]
CDNET_FPS = 30.0
EXAMPLE_CAMERA = REPO / "examples" / "cameras" / "cdnet-highway.toml"


def cdnet_dir() -> Path | None:
    env = os.environ.get("ROADPULSE_CDNET_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data" / "video" / "cdnet2014_highway_subset")
    for c in candidates:
        if (c / "input").is_dir() and (c / "groundtruth").is_dir():
            return c
    return None


def cdnet_frames(root: Path) -> list[Path]:
    return sorted((root / "input").glob("in*.jpg"))


def cdnet_mask(root: Path, frame: Path) -> np.ndarray:
    """Ground truth of one frame: 0 static, 50 shadow, 85 outside ROI, 170 unknown, 255 moving."""
    name = frame.name.replace("in", "gt", 1).replace(".jpg", ".png")
    mask = cv2.imread(str(root / "groundtruth" / name), cv2.IMREAD_GRAYSCALE)
    assert mask is not None, name
    return mask


# ------------------------------------------------------------------------------ a rendered road

M_PER_PX = 0.1  # the rendered road is seen straight from above: 10 px per metre
LANE_X = ((100, 136), (136, 172))  # lane 0 and lane 1, 3.6 m wide each


@dataclass(frozen=True)
class Car:
    lane: int
    enter_frame: int  # frame at which its front reaches y = 0
    speed_px: float  # px per frame, downwards
    length_px: int = 45
    width_px: int = 18
    shade: int = 40
    #: where the front is at ``enter_frame`` (a wrong-way car starts below the picture: 240 + length)
    start_y: float = 0.0
    #: the front stops here and stays (a stopped vehicle, a queue)
    stop_y: float | None = None

    def front(self, frame: int) -> float:
        y = self.start_y + (frame - self.enter_frame) * self.speed_px
        if self.stop_y is not None and (y - self.stop_y) * self.speed_px > 0:
            return self.stop_y
        return y


def scene_camera(
    *,
    fps: float = 25.0,
    interval_s: float = 4.0,
    camera_id: str = "synthetic",
    zone_y: tuple[float, float] = (60.0, 180.0),
    segment_id: str = "A0A1",
) -> CameraConfig:
    """A camera over the rendered road: one zone per lane (``zone_y``), a counting line at y 150."""
    y0, y1 = zone_y
    zones = tuple(
        Zone(f"lane-{k}", segment_id, k, ((x0, y0), (x1, y0), (x1, y1), (x0, y1)), direction=(0.0, 1.0))
        for k, (x0, x1) in enumerate(LANE_X)
    )
    line = CountingLine("stop", ((90.0, 150.0), (182.0, 150.0)), (0.0, 1.0))
    image = ((100.0, 200.0), (172.0, 200.0), (172.0, 20.0), (100.0, 20.0))
    ground = tuple((x * M_PER_PX, (240 - y) * M_PER_PX) for x, y in image)
    return CameraConfig(
        id=camera_id,
        fps=fps,
        interval_s=interval_s,
        homography=Homography(image, ground),
        zones=zones,
        lines=(line,),
        fps_given=True,
    )


def _background(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.empty((240, 320, 3), np.uint8)
    grass = rng.integers(40, 140, size=(240, 320), dtype=np.uint8)
    grass = cv2.GaussianBlur(grass, (0, 0), 1.2)
    img[:] = np.dstack([grass // 2, grass, grass // 2])
    road = np.clip(110 + rng.normal(0, 6, size=(240, 90)), 0, 255).astype(np.uint8)
    img[:, 91:181] = np.dstack([road, road, road])
    for x in (91, 180):
        img[:, x - 1 : x + 1] = 230
    for y in range(0, 240, 40):  # the dashed lane line
        img[y : y + 15, 135:138] = 235
    for y in range(10, 240, 30):  # posts beside the road: edges the moved-camera check can use
        cv2.rectangle(img, (60, y), (66, y + 12), (200, 200, 200), -1)
        cv2.rectangle(img, (250, y + 5), (256, y + 17), (30, 30, 30), -1)
    return img


def render(
    cars: list[Car], n_frames: int, *, seed: int = 5
) -> tuple[list[np.ndarray], list[list[tuple[int, int, int, int]]]]:
    """Frames (BGR) and, per frame, the visible rectangles (x0, y0, x1, y1) of the cars."""
    base = _background()
    rng = np.random.default_rng(seed)
    frames, boxes = [], []
    for f in range(n_frames):
        img = base.copy()
        visible = []
        for car in cars:
            if f < car.enter_frame:
                continue
            front = car.front(f)
            if car.speed_px >= 0:  # front at the bottom of the car
                y1, y0 = round(front), round(front - car.length_px)
            else:  # driving up the picture: the front is the top edge
                y0, y1 = round(front), round(front + car.length_px)
            if y1 < 0 or y0 >= 240:
                continue
            lx0, lx1 = LANE_X[car.lane]
            x0 = (lx0 + lx1) // 2 - car.width_px // 2
            box = (x0, max(y0, 0), x0 + car.width_px, min(y1, 240))
            cv2.rectangle(img, (box[0], box[1]), (box[2] - 1, box[3] - 1), (car.shade,) * 3, -1)
            visible.append(box)
        noise = rng.normal(0, 2.0, size=img.shape)
        frames.append(np.clip(img + noise, 0, 255).astype(np.uint8))
        boxes.append(visible)
    return frames, boxes


def encode(frame: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def zone_truth(config: CameraConfig, boxes: list[list[tuple[int, int, int, int]]]) -> dict[str, list[float]]:
    """Per zone, per frame: the share of the zone's pixels covered by cars."""
    out: dict[str, list[float]] = {}
    for zone in config.zones:
        zmask = np.zeros((240, 320), np.uint8)
        cv2.fillPoly(zmask, [np.round(np.asarray(zone.polygon)).astype(np.int32)], 1)
        n = int(zmask.sum())
        series = []
        for visible in boxes:
            cars = np.zeros((240, 320), np.uint8)
            for x0, y0, x1, y1 in visible:
                cars[y0:y1, x0:x1] = 1
            series.append(float((cars & zmask).sum()) / n)
        out[zone.id] = series
    return out
