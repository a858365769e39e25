"""Real footage: the CDnet 2014 highway frames, against their per-pixel ground truth.

Truth for a zone in a frame: the share of its pixels the mask marks as moving vehicle (255), with
the mask's "unknown" band around each vehicle (170: its blurred outline) counted as half. A zone is
occupied when that share reaches the camera's ``occupied_fraction``; occupancy is the share of the
measured frames (after the 1 s warm-up) occupied. Counts are compared with the same virtual loop run
on the masks instead of the camera's foreground.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from camera_scenes import CDNET_FPS, EXAMPLE_CAMERA, cdnet_dir, cdnet_frames, cdnet_mask

from camera.analyzer import CameraAnalyzer
from camera.config import Zone, load_camera_file
from camera.faults import FAULT_REASONS, faulty_frames
from camera.geometry import GroundPlane, zone_geometry
from camera.zones import ZoneMeter
from roadpulse.cli import main

ROOT = cdnet_dir()
pytestmark = pytest.mark.skipif(ROOT is None, reason="CDnet highway frames not found (../shared/data/video)")
WARMUP = int(CDNET_FPS)  # the background learns for 1 s before anything is measured


def _lane_polygon(y0: float, y1: float, lane: int) -> tuple[tuple[float, float], ...]:
    """A zone between the lane lines of the footage, from y0 to y1 (read off the picture)."""
    kerb = lambda y: float(np.interp(y, [50, 77, 110, 160, 197, 240], [160, 133, 100, 50, 10, -20]))  # noqa: E731
    dashes = lambda y: float(np.interp(y, [60, 94, 117, 152, 205, 240], [209, 195, 182, 164, 135, 116]))  # noqa: E731
    edge = lambda y: float(np.interp(y, [0, 50, 150, 230, 240], [270, 267, 260, 253, 252]))  # noqa: E731
    left, right = (kerb, dashes) if lane == 0 else (dashes, edge)
    return ((left(y1) + 3, y1), (right(y1) - 3, y1), (right(y0) - 2, y0), (left(y0) + 2, y0))


# Zones of many shapes: short and long, near and far (small vehicles), both lanes.
ZONE_SETS = [(20, 50), (40, 80), (70, 110), (100, 150), (150, 210), (30, 230)]


@pytest.fixture(scope="module")
def frames() -> list[Path]:
    assert ROOT is not None
    return cdnet_frames(ROOT)


def _truth_share(mask: np.ndarray, zone_mask: np.ndarray) -> float:
    values = mask[zone_mask]
    return float(((values == 255).sum() + 0.5 * (values == 170).sum()) / len(values))


def test_zone_occupancy_within_5_points_of_the_masks(frames: list[Path]) -> None:
    base = load_camera_file(EXAMPLE_CAMERA)
    zones = tuple(
        Zone(f"y{y0}-{y1}-lane{lane}", "s", lane, _lane_polygon(y0, y1, lane))
        for y0, y1 in ZONE_SETS
        for lane in (0, 1)
    )
    config = dataclasses.replace(base, zones=base.zones + zones, interval_s=60)
    analyzer = CameraAnalyzer(config)
    masks = []
    for z in config.zones:
        m = np.zeros((240, 320), np.uint8)
        cv2.fillPoly(m, [np.round(np.asarray(z.polygon)).astype(np.int32)], 1)
        masks.append(m.astype(bool))
    truth = np.zeros((len(frames), len(masks)))
    for i, f in enumerate(frames):
        analyzer.process_bytes(i / CDNET_FPS, f.read_bytes())
        gt = cdnet_mask(ROOT, f)  # type: ignore[arg-type]
        truth[i] = [_truth_share(gt, m) for m in masks]
    (stats,) = [o.payload for o in analyzer.flush(len(frames) / CDNET_FPS) if o.kind == "stats"]
    first = len(frames) - stats["frames"]  # the frames measured: all after the warm-up
    assert first <= WARMUP
    expected = 100.0 * (truth[first:] >= config.occupied_fraction).mean(axis=0)
    measured = np.array([z["occupancy_pct"] for z in stats["zones"]])
    assert expected.max() > 25  # the footage does exercise the zones
    assert np.abs(measured - expected).max() <= 5.0, list(zip(measured, expected, strict=True))
    # Counts: the same virtual loops run on the masks.
    truth_counts = _mask_counts(config, frames, first)
    counts = [z["count"] for z in stats["zones"]]
    assert sum(truth_counts) >= 15
    assert abs(sum(counts) - sum(truth_counts)) <= 0.15 * sum(truth_counts), (counts, truth_counts)


def _mask_counts(config, frames: list[Path], first: int) -> list[int]:
    """Each zone's loop count with the ground-truth masks as the foreground."""
    ground = GroundPlane(config.homography, 2)
    meters = [
        ZoneMeter(zone_geometry(z, (120, 160), 2, ground), config.occupied_fraction) for z in config.zones
    ]
    for i, f in enumerate(frames[first:], start=first):
        gt = cdnet_mask(ROOT, f)  # type: ignore[arg-type]
        vehicle = ((gt == 255) * 255 + (gt == 170) * 128).astype(np.uint8)
        small = cv2.resize(vehicle, (160, 120), interpolation=cv2.INTER_AREA)
        fg = np.where(small >= 128, 255, 0).astype(np.uint8).ravel()
        for m in meters:
            m.update(i / CDNET_FPS, fg)
    return [int(m.take_interval()["count"] or 0) for m in meters]


def test_counts_match_the_mask_derived_counts(frames: list[Path], tmp_path: Path) -> None:
    """camera-replay with the example camera file; the same virtual loops run on the masks."""
    out = tmp_path / "out.jsonl"
    assert (
        main(
            [
                "camera-replay",
                "--camera",
                str(EXAMPLE_CAMERA),
                "--frames",
                str(ROOT / "input"),
                "--out",
                str(out),
                "--fps",
                "30",
            ]
        )
        == 0
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    (stats,) = [m["payload"] for m in lines if m["topic"] == "traffic/cameras/cdnet-highway/stats"]
    assert stats["health"] == {"status": "ok", "reasons": []}
    assert stats["ts"] == 10 and stats["interval_s"] == 10  # 300 frames at 30 fps
    config = load_camera_file(EXAMPLE_CAMERA)
    truth = _mask_counts(config, frames, len(frames) - stats["frames"])
    counts = [z["count"] for z in stats["zones"]]
    assert sum(truth) >= 2 and abs(sum(counts) - sum(truth)) <= 0.15 * sum(truth), (counts, truth)
    # By hand: one car (the dark saloon, frames 560-700) crosses y = 170 in the picture.
    assert stats["lines"] == [{"line_id": "count-170", "count": 1}]
    # A highway: its speed is plausible through the lane-marking homography.
    assert 60 <= stats["zones"][0]["speed_kmh"] <= 130


def _encoded(pictures) -> list[bytes]:
    return [cv2.imencode(".jpg", p, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for p in pictures]


@pytest.mark.parametrize("fault", list(FAULT_REASONS))
def test_faults_made_from_real_frames_are_flagged_within_two_seconds(frames: list[Path], fault: str) -> None:
    pictures = [cv2.imread(str(f)) for f in frames]
    start = 90  # 3 s of healthy footage
    analyzer = CameraAnalyzer(load_camera_file(EXAMPLE_CAMERA))
    flagged = []
    for i, data in enumerate(_encoded(faulty_frames(pictures, fault, start))):
        for o in analyzer.process_bytes(i / CDNET_FPS, data):
            if o.kind == "health" and o.payload["reasons"]:
                assert o.payload["ts"] >= start / CDNET_FPS, o.payload  # nothing before the fault
                flagged.extend([o.payload["ts"]] if FAULT_REASONS[fault] in o.payload["reasons"] else [])
    assert flagged and flagged[0] <= start / CDNET_FPS + 2.0


def test_the_real_feed_is_never_flagged(frames: list[Path]) -> None:
    # forwards then backwards: 20 s of real traffic without a cut
    analyzer = CameraAnalyzer(load_camera_file(EXAMPLE_CAMERA))
    outputs = []
    for i, f in enumerate(frames + frames[::-1]):
        outputs.extend(analyzer.process_bytes(i / CDNET_FPS, f.read_bytes()))
    health = [o.payload for o in outputs if o.kind == "health"]
    assert [(h["ts"], h["status"], h["reasons"]) for h in health] == [(0, "ok", [])]  # the first state only
