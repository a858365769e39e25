"""Image ↔ ground geometry at the analysis scale: the homography, zone masks and lane axes.

Frames are analysed at a reduced scale (``factor`` = 1, 2, 4 or 8: JPEG decodes that much smaller
in the DCT domain), so every polygon and point from the camera file (full-frame pixels) is divided
by ``factor`` once, here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .config import Homography, Point, Zone


class GroundPlane:
    """Maps analysis-scale pixels to metres on the road plane through the camera's homography."""

    def __init__(self, homography: Homography, factor: int) -> None:
        image = np.asarray(homography.image, dtype=np.float64) / factor
        ground = np.asarray(homography.ground, dtype=np.float64)
        matrix, _ = cv2.findHomography(image, ground, 0)
        if matrix is None or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix)) < 1e-12:
            raise ValueError("homography: the points are degenerate (three or more on one line?)")
        self.matrix = matrix

    def to_ground(self, points_px: np.ndarray) -> np.ndarray:
        """(n, 2) analysis-scale pixels → (n, 2) metres."""
        if len(points_px) == 0:
            return np.empty((0, 2), dtype=np.float64)
        pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 1, 2)
        return cv2.perspectiveTransform(pts, self.matrix).reshape(-1, 2)


@dataclass
class ZoneGeometry:
    """One zone at analysis scale: its pixels (flat indices), and each pixel's bin along the lane.

    ``bin_of`` runs from the upstream end (0) to the downstream end (``n_bins - 1``) once the
    direction of travel is known; until then, along the polygon's long axis in an arbitrary sense.
    """

    zone: Zone
    flat_index: np.ndarray  # int64 indices into the raveled analysis frame
    axis_coord: np.ndarray  # float64 per pixel: metres (homography) or pixels along the long axis
    n_bins: int
    bin_of: np.ndarray  # int64 per pixel
    bin_length: float  # metres (homography) or pixels
    metric: bool  # axis in metres?
    axis_image: np.ndarray  # unit vector of the long axis in image space (analysis scale)
    reversed: bool = False

    @property
    def n_pixels(self) -> int:
        return len(self.flat_index)

    def orient(self, travel_direction_image: Point) -> None:
        """Make bin 0 the upstream end for travel along ``travel_direction_image``."""
        along = float(np.dot(self.axis_image, np.asarray(travel_direction_image, dtype=np.float64)))
        want_reversed = along < 0
        if want_reversed != self.reversed:
            self.bin_of = (self.n_bins - 1) - self.bin_of
            self.axis_image = -self.axis_image
            self.axis_coord = -self.axis_coord
            self.reversed = want_reversed


def zone_geometry(
    zone: Zone, shape: tuple[int, int], factor: int, ground: GroundPlane | None, *, bins: int = 24
) -> ZoneGeometry:
    h, w = shape
    poly = np.round(np.asarray(zone.polygon, dtype=np.float64) / factor).astype(np.int32)
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(mask, [poly], 1)
    flat = np.flatnonzero(mask.ravel())
    if len(flat) == 0:
        raise ValueError(f"zone {zone.id!r}: its polygon covers no pixel of the frame")
    ys, xs = np.divmod(flat, w)
    pts = np.column_stack([xs, ys]).astype(np.float64)
    centre = pts.mean(axis=0)
    # The lane's long axis in the image: principal component of the zone's pixels.
    cov = np.cov((pts - centre).T) if len(pts) > 2 else np.eye(2)
    evals, evecs = np.linalg.eigh(cov)
    axis = evecs[:, int(np.argmax(evals))]
    if zone.direction is not None and float(np.dot(axis, zone.direction)) < 0:
        axis = -axis
    metric = ground is not None
    if ground is not None:
        g = ground.to_ground(pts)
        ends = ground.to_ground(np.vstack([centre - axis * 5, centre + axis * 5]))
        ground_axis = ends[1] - ends[0]
        norm = float(np.hypot(*ground_axis)) or 1.0
        coord = (g - g.mean(axis=0)) @ (ground_axis / norm)
    else:
        coord = (pts - centre) @ axis
    lo, hi = float(coord.min()), float(coord.max())
    span = max(hi - lo, 1e-6)
    n_bins = max(4, min(bins, len(flat) // 4))
    bin_of = np.minimum(((coord - lo) / span * n_bins).astype(np.int64), n_bins - 1)
    geom = ZoneGeometry(zone, flat, coord, n_bins, bin_of, span / n_bins, metric, axis.astype(np.float64))
    return geom


def segment_crossing(p0: np.ndarray, p1: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    """Does the step p0→p1 cross the segment a–b? A point landing exactly on the line counts as
    having crossed it (half-open), so a step onto the line and the next step off it count once."""

    def side(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> float:
        return float((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))

    d1, d2 = side(a, b, p0), side(a, b, p1)
    d3, d4 = side(p0, p1, a), side(p0, p1, b)
    changed_side = (d1 < 0 <= d2) or (d2 < 0 <= d1)
    return changed_side and d3 * d4 <= 0
