"""Zone measurement: each zone is a virtual loop over one lane.

Per frame, the zone's foreground is summed into bins along the lane (``ZoneGeometry.bin_of``):

- occupancy: the frame counts as occupied when ``occupied_fraction`` of the zone's pixels are
  foreground; ``occupancy_pct`` is the share of (healthy) frames occupied in the interval.
- count: a short virtual loop across the middle of the zone (the central bins, about 3 m or a fifth
  of the zone) switches on and off with hysteresis; each switch-on is a vehicle. A loop-like count
  does not depend on the tracker, so side-by-side vehicles that merge into one blob still count
  once per lane.
- queue: bins that have been occupied without a break for ``QUEUE_STILL_S`` (a car-length bin
  stays covered that long only below walking pace: about 5 km/h for a 4.5 m car), contiguous
  from the downstream end of the zone, give the queue length in metres (needs the homography and
  a known direction of travel); the interval reports the longest queue seen. Frame differencing
  would not do: the uniform roof of a slow vehicle does not change between frames.
"""

from __future__ import annotations

import itertools

import numpy as np

from .geometry import ZoneGeometry

LOOP_ON = 0.35
LOOP_OFF = 0.15
LOOP_OFF_FRAMES = 2
BIN_OCCUPIED = 0.35
QUEUE_STILL_S = 3.0
QUEUE_GAP_M = 2.5


class ZoneMeter:
    def __init__(self, geom: ZoneGeometry, occupied_fraction: float) -> None:
        self.geom = geom
        self.occupied_fraction = occupied_fraction
        self._bin_pixels = np.bincount(geom.bin_of, minlength=geom.n_bins).astype(np.float64)
        self._bin_pixels[self._bin_pixels == 0] = 1.0
        self._set_loop_bins()
        self.direction_known = geom.zone.direction is not None
        self._loop_on = False
        self._off_frames = 0
        # per interval
        self.frames = 0
        self.occupied_frames = 0
        self.count = 0
        self.queue_max_m: float | None = None
        #: last frame's values (for the snapshot)
        self.fraction = 0.0
        self.queue_m = 0.0
        self._bin_since = np.full(geom.n_bins, np.inf)

    def _set_loop_bins(self) -> None:
        g = self.geom
        centres = (np.arange(g.n_bins) + 0.5) * g.bin_length
        mid = g.n_bins * g.bin_length / 2
        half = max(1.5, 0.1 * g.n_bins * g.bin_length) if g.metric else 0.1 * g.n_bins * g.bin_length
        loop = np.abs(centres - mid) <= max(half, g.bin_length / 2 + 1e-9)
        self._loop_mask = loop
        self._loop_pixels = float(self._bin_pixels[loop].sum())

    def reorient(self, direction: tuple[float, float]) -> None:
        self.geom.orient(direction)
        self._bin_pixels = np.bincount(self.geom.bin_of, minlength=self.geom.n_bins).astype(np.float64)
        self._bin_pixels[self._bin_pixels == 0] = 1.0
        self._set_loop_bins()
        self._bin_since = np.full(self.geom.n_bins, np.inf)
        self.direction_known = True

    def update(self, ts: float, fg_flat: np.ndarray) -> None:
        """One healthy frame at ``ts``: ``fg_flat`` is the raveled 0/255 foreground mask."""
        g = self.geom
        self.update_bins(ts, np.bincount(g.bin_of, weights=fg_flat[g.flat_index], minlength=g.n_bins) / 255.0)

    def update_bins(self, ts: float, per_bin: np.ndarray) -> None:
        """One healthy frame, given the foreground pixels counted per bin (``ZoneBank``)."""
        g = self.geom
        total = float(per_bin.sum())
        self.fraction = total / g.n_pixels
        self.frames += 1
        if self.fraction >= self.occupied_fraction:
            self.occupied_frames += 1
        loop = float(per_bin[self._loop_mask].sum()) / self._loop_pixels
        if self._loop_on:
            if loop < LOOP_OFF:
                self._off_frames += 1
                if self._off_frames >= LOOP_OFF_FRAMES:
                    self._loop_on = False
            else:
                self._off_frames = 0
        elif loop >= LOOP_ON:
            self._loop_on = True
            self._off_frames = 0
            self.count += 1
        if g.metric and self.direction_known:
            occupied = per_bin >= BIN_OCCUPIED * self._bin_pixels
            since = self._bin_since
            since[~occupied] = np.inf
            since[occupied & np.isinf(since)] = ts
            self.queue_m = self._queue_m(ts - since >= QUEUE_STILL_S)
            if self.queue_max_m is None or self.queue_m > self.queue_max_m:
                self.queue_max_m = self.queue_m

    def _queue_m(self, still: np.ndarray) -> float:
        """From the downstream end: still bins, allowing gaps up to ``QUEUE_GAP_M`` (the space
        before a stop line, between queued vehicles); the length reaches the last still bin."""
        g = self.geom
        max_gap = max(1, int(QUEUE_GAP_M / g.bin_length))
        gap, end = 0, 0
        for n, k in enumerate(range(g.n_bins - 1, -1, -1), start=1):
            if still[k]:
                gap, end = 0, n
            else:
                gap += 1
                if gap > max_gap:
                    break
        return end * g.bin_length

    def take_interval(self) -> dict[str, float | int | None]:
        """This interval's values; resets the interval counters."""
        occ = 100.0 * self.occupied_frames / self.frames if self.frames else None
        out = {
            "count": self.count,
            "occupancy_pct": None if occ is None else round(occ, 1),
            "queue_m": None if self.queue_max_m is None else round(self.queue_max_m, 1),
            "frames": self.frames,
        }
        self.frames = self.occupied_frames = self.count = 0
        self.queue_max_m = None
        return out


class ZoneBank:
    """All zones' bins counted with one gather and one ``bincount`` per frame, instead of one per
    zone (the per-call overhead dominates at this image size). Zones that overlap share pixels, so
    then each zone counts its own."""

    def __init__(self, meters: list[ZoneMeter]) -> None:
        self.meters = meters
        self.rebuild()

    def rebuild(self) -> None:
        """After a zone's bins were reoriented."""
        idx = [m.geom.flat_index for m in self.meters]
        self.overlap = bool(idx) and len(np.unique(np.concatenate(idx))) < sum(len(i) for i in idx)
        offsets = np.cumsum([0] + [m.geom.n_bins for m in self.meters])
        self._bounds = [(int(a), int(b)) for a, b in itertools.pairwise(offsets)]
        self._n_bins = int(offsets[-1])
        if idx and not self.overlap:
            self._index = np.concatenate(idx)
            self._bins = np.concatenate(
                [m.geom.bin_of + off for m, off in zip(self.meters, offsets, strict=False)]
            )

    def update(self, ts: float, fg_flat: np.ndarray) -> None:
        if not self.meters:
            return
        if self.overlap:
            for m in self.meters:
                m.update(ts, fg_flat)
            return
        counts = np.bincount(self._bins, weights=fg_flat[self._index], minlength=self._n_bins) / 255.0
        for m, (a, b) in zip(self.meters, self._bounds, strict=True):
            m.update_bins(ts, counts[a:b])
