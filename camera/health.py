"""Camera health: is this feed fit to measure traffic, and if not, why.

Checks on the reduced grey frame, all in seconds of footage (so they do not depend on the fps):

- ``black`` / ``overexposed``: the picture has (almost) no content: very dark and flat, or mostly
  saturated.
- ``frozen``: consecutive frames are identical for ``frozen_after_s`` (a live camera always has
  sensor and compression noise).
- ``blurred``: contrast-normalised sharpness (mean |Laplacian| ÷ standard deviation, so darkening does
  not read as blur) below ``blur_ratio`` of the reference view's.
- ``lighting_change``: the global brightness jumps; the background model is relearned (rather than
  the whole frame turning foreground) and the reason is held for ``lighting_hold_s``.
- ``moved``: phase correlation of the frame against the reference view (the configured
  ``reference`` picture, else the background learned over the first healthy seconds) finds a shift,
  or no longer finds a clear peak (rotation, zoom, a different scene).
- ``decoder_error`` (a frame that does not decode, or a crashed source) and ``no_frames`` are
  reported by the analyser / worker through ``note_decoder_error`` and ``note_no_frames``.

``failed`` reasons stop measuring altogether; ``degraded`` ones (blurred, lighting_change) too in
this version: an unhealthy camera feeds nothing into congestion (docs/interfaces.md §4).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

FAILED_REASONS = frozenset({"black", "overexposed", "frozen", "moved", "decoder_error", "no_frames"})
ALL_REASONS = (
    "frozen", "black", "overexposed", "blurred", "moved", "lighting_change", "decoder_error", "no_frames",
)  # fmt: skip


@dataclass(frozen=True)
class HealthSettings:
    frozen_after_s: float = 1.0
    black_mean: float = 22.0
    black_std: float = 14.0
    overexposed_share: float = 0.55
    blur_ratio: float = 0.45
    blur_after_s: float = 0.5
    lighting_jump: float = 0.22  # relative change of mean brightness within ~1 s
    lighting_hold_s: float = 1.5
    moved_shift_px: float = 1.5  # at analysis scale
    moved_min_response: float = 0.2  # below it, phase correlation's shift is not trusted
    moved_edge_score: float = 0.8  # share of the reference's edges still in place
    reference_refresh_s: float = 600.0
    moved_every_s: float = 0.25
    moved_after_checks: int = 2
    reference_after_s: float = 2.0
    clear_after_s: float = 0.5
    decoder_hold_s: float = 2.0


def health_status(reasons: Iterable[str]) -> str:
    reasons = list(reasons)
    if not reasons:
        return "ok"
    return "failed" if any(r in FAILED_REASONS for r in reasons) else "degraded"


class HealthMonitor:
    """Per-frame checks; ``update`` returns True when the background must be relearned."""

    def __init__(
        self, settings: HealthSettings | None = None, *, reference: np.ndarray | None = None
    ) -> None:
        self.s = settings or HealthSettings()
        self._configured_reference = reference is not None
        self._reference: np.ndarray | None = None
        self._reference_edges: np.ndarray | None = None
        self._reference_edge_count = 0
        self._reference_gradient: np.ndarray | None = None
        self._reference_set_ts = 0.0
        self._kernel = np.ones((3, 3), np.uint8)
        self._view_mask: np.ndarray | None = None
        self._reference_sharpness: float | None = None
        self._window: np.ndarray | None = None
        if reference is not None:
            self._set_reference(reference)
        self._raw_since: dict[str, float] = {}
        self._good_since: dict[str, float] = {}
        self.active: set[str] = set()
        self._mean_ema: float | None = None
        self._lighting_until = -1.0
        self._decoder_until = -1.0
        self._no_frames = False
        self._same_since: float | None = None
        self._sharp_samples: list[float] = []
        self._next_moved_check = 0.0
        self._moved_hits = 0
        self._first_ts: float | None = None
        self._blur_n = 0
        self.last_shift_px = 0.0
        self.last_response = 1.0
        self.last_edge_score = 1.0

    # --------------------------------------------------------------------------- reference view

    def ignore_for_view(self, mask: np.ndarray) -> None:
        """Pixels (non-zero in ``mask``: the zones, where vehicles come and go) to leave out of the
        reference-view comparison, as long as enough of the reference's edges lie elsewhere."""
        self._view_mask = cv2.bitwise_not(cv2.dilate(mask, np.ones((5, 5), np.uint8)))
        if self._reference is not None:
            self._set_reference(self._reference)

    def _set_reference(self, image: np.ndarray) -> None:
        self._reference = image.copy()
        edges = _edges(image)
        if self._view_mask is not None and self._view_mask.shape == edges.shape:
            outside = cv2.bitwise_and(edges, self._view_mask)
            if cv2.countNonZero(outside) >= 0.3 * cv2.countNonZero(edges):
                edges = outside
        self._reference_edges = edges
        self._reference_edge_count = cv2.countNonZero(self._reference_edges)
        self._reference_gradient = _gradient(image)
        self._window = cv2.createHanningWindow((image.shape[1], image.shape[0]), cv2.CV_32F)
        if self._configured_reference:
            self._reference_sharpness = _sharpness(image)

    def fit_reference(self, shape: tuple[int, int]) -> None:
        """Resize a configured reference picture to the analysis size once it is known."""
        if self._reference is not None and self._reference.shape != shape:
            self._set_reference(
                cv2.resize(self._reference, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
            )

    @property
    def has_reference(self) -> bool:
        return self._reference is not None

    # --------------------------------------------------------------------------- events from outside

    def note_decoder_error(self, ts: float) -> None:
        self._decoder_until = ts + self.s.decoder_hold_s
        self.active.add("decoder_error")

    def note_no_frames(self, no_frames: bool) -> None:
        self._no_frames = no_frames
        if no_frames:
            self.active.add("no_frames")
        else:
            self.active.discard("no_frames")

    # --------------------------------------------------------------------------- per frame

    def update(
        self, ts: float, frame: np.ndarray, diff_prev: float, background: np.ndarray | None, learning: bool
    ) -> bool:
        """Check one frame. ``diff_prev`` is the mean absolute difference to the previous frame;
        ``background`` the current background model (a reference candidate)."""
        s = self.s
        if self._first_ts is None:
            self._first_ts = ts
        self._no_frames = False
        self.active.discard("no_frames")
        if ts > self._decoder_until:
            self.active.discard("decoder_error")
        mean_a, std_a = cv2.meanStdDev(frame)
        mean, std = float(mean_a[0, 0]), float(std_a[0, 0])
        raw: dict[str, bool] = {}
        raw["black"] = mean < s.black_mean and std < s.black_std
        saturated = False
        if mean > 150:
            saturated = cv2.countNonZero(cv2.inRange(frame, 245, 255)) > s.overexposed_share * frame.size
        raw["overexposed"] = saturated
        # Identical frames: a camera or encoder that stopped and repeats its last picture.
        if diff_prev < 0.05:
            if self._same_since is None:
                self._same_since = ts
        else:
            self._same_since = None
        # (A constant black or white picture is reported as such, not as frozen.)
        raw["frozen"] = (
            self._same_since is not None
            and ts - self._same_since >= s.frozen_after_s
            and not raw["black"]
            and not raw["overexposed"]
        )
        blank = raw["black"] or raw["overexposed"] or raw["frozen"]

        relearn = False
        if not blank:
            relearn = self._check_lighting(ts, mean)
            raw["blurred"] = self._check_blur(ts, frame, learning)
            raw["moved"] = self._check_moved(ts, frame, background, learning, blurry=raw["blurred"])
        else:
            raw["blurred"] = "blurred" in self.active
            raw["moved"] = "moved" in self.active
        self._settle(ts, raw, onset={"frozen": 0.0, "blurred": s.blur_after_s})
        if ts < self._lighting_until:
            self.active.add("lighting_change")
        else:
            self.active.discard("lighting_change")
        return relearn

    def _check_lighting(self, ts: float, mean: float) -> bool:
        s = self.s
        if self._mean_ema is None:
            self._mean_ema = mean
            return False
        jump = abs(mean - self._mean_ema) / max(self._mean_ema, 10.0)
        if jump > s.lighting_jump:
            self._mean_ema = mean
            self._lighting_until = ts + s.lighting_hold_s
            self._sharp_samples.clear()  # sharpness of the new light is learned again if needed
            return True
        self._mean_ema += 0.1 * (mean - self._mean_ema)
        return False

    def _check_blur(self, ts: float, frame: np.ndarray, learning: bool) -> bool:
        s = self.s
        self._blur_n += 1
        if self._blur_n % 3 and "blurred" not in self.active:
            return self._raw_since.get("blurred") is not None
        sharp = _sharpness(frame)
        if self._reference_sharpness is None or (
            not self._configured_reference and len(self._sharp_samples) < 8
        ):
            if not learning and "lighting_change" not in self.active:
                self._sharp_samples.append(sharp)
            if len(self._sharp_samples) >= 8 and not self._configured_reference:
                self._reference_sharpness = float(np.median(self._sharp_samples))
            return False
        return sharp < s.blur_ratio * self._reference_sharpness

    def _check_moved(
        self, ts: float, frame: np.ndarray, background: np.ndarray | None, learning: bool, *, blurry: bool
    ) -> bool:
        s = self.s
        assert self._first_ts is not None
        if self._reference is None:
            # No configured view: the background after the first healthy seconds becomes the reference.
            if background is not None and not learning and ts - self._first_ts >= s.reference_after_s:
                self._set_reference(background)
                self._reference_set_ts = ts
            return False
        if ts < self._next_moved_check:
            return "moved" in self.active
        self._next_moved_check = ts + s.moved_every_s
        # Two views of "is this still the reference scene": how many of the reference's strongest
        # edges are still there (within a pixel) -- vehicles hide only a few of them, a shift or
        # rotation most -- and the shift phase correlation finds between the gradient images.
        edges_now = cv2.dilate(_edges(frame), self._kernel)
        assert self._reference_edges is not None
        self.last_edge_score = cv2.countNonZero(cv2.bitwise_and(self._reference_edges, edges_now)) / max(
            self._reference_edge_count, 1
        )
        assert self._reference_gradient is not None
        (dx, dy), response = cv2.phaseCorrelate(self._reference_gradient, _gradient(frame), self._window)
        self.last_shift_px = float(np.hypot(dx, dy)) if response >= s.moved_min_response else 0.0
        self.last_response = float(response)
        # A defocused picture loses its edges too: then only a measured shift says "moved".
        edges_gone = self.last_edge_score < s.moved_edge_score and not blurry
        off = edges_gone or self.last_shift_px > s.moved_shift_px
        self._moved_hits = self._moved_hits + 1 if off else 0
        if (
            not off
            and not self._configured_reference
            and self.last_edge_score > 0.95
            and ts - self._reference_set_ts > s.reference_refresh_s
            and background is not None
            and not learning
        ):
            # Shadows move over a day: a learned reference follows slowly while the view is clearly
            # the same one (a configured reference never changes).
            self._set_reference(background)
            self._reference_set_ts = ts
        if "moved" in self.active:
            return off or self._moved_hits > 0
        return self._moved_hits >= s.moved_after_checks

    def _settle(self, ts: float, raw: dict[str, bool], onset: dict[str, float]) -> None:
        """Reasons turn on after their onset time and off after ``clear_after_s`` of good frames."""
        for reason, bad in raw.items():
            if bad:
                self._good_since.pop(reason, None)
                since = self._raw_since.setdefault(reason, ts)
                if ts - since >= onset.get(reason, 0.0):
                    self.active.add(reason)
            else:
                self._raw_since.pop(reason, None)
                if reason in self.active:
                    good = self._good_since.setdefault(reason, ts)
                    if ts - good >= self.s.clear_after_s:
                        self.active.discard(reason)
                        self._good_since.pop(reason, None)

    @property
    def reasons(self) -> list[str]:
        return [r for r in ALL_REASONS if r in self.active]

    @property
    def status(self) -> str:
        return health_status(self.active)


def _sharpness(frame: np.ndarray) -> float:
    lap = cv2.Laplacian(frame, cv2.CV_16S, ksize=3)
    mean_abs = float(cv2.mean(cv2.convertScaleAbs(lap))[0])
    _, std = cv2.meanStdDev(frame)
    return mean_abs / (float(std[0, 0]) + 1.0)


def _gradient(frame: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(frame, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(frame, cv2.CV_32F, 0, 1)
    return cv2.magnitude(gx, gy)


def _edges(frame: np.ndarray, share: float = 0.12) -> np.ndarray:
    """The strongest ``share`` of the picture's gradients (a threshold relative to the picture, so
    darker or brighter light keeps the same edges)."""
    magnitude = _gradient(frame)
    flat = magnitude.ravel()
    k = int(len(flat) * (1 - share))
    threshold = max(float(np.partition(flat, k)[k]), 8.0)
    return (magnitude > threshold).astype(np.uint8)
