"""A running-average background model on the reduced grey frame, and the foreground mask it gives.

Why not MOG2: at 160×90 px a per-pixel running average with a fixed threshold is several times
cheaper and, for a fixed camera over a road, as good; lighting changes are handled by the health
monitor, which asks for a relearn instead of letting a whole frame turn foreground.

Pixels that are foreground are updated very slowly (a stopped vehicle stays foreground for a
minute or two, then becomes background), the rest with a time constant of ``adapt_s``. After a
start or a ``relearn()``, every pixel learns fast for ``warmup_s`` so that vehicles in the first
frame leave no ghosts.
"""

from __future__ import annotations

import cv2
import numpy as np


class Background:
    def __init__(
        self,
        *,
        fps: float = 25.0,
        threshold: int = 18,
        adapt_s: float = 1.5,
        absorb_s: float = 180.0,
        warmup_s: float = 1.0,
    ) -> None:
        """``adapt_s``: time constant of the background where no vehicle is; ``absorb_s``: about how
        long a stopped vehicle stays foreground; ``warmup_s``: fast learning after a (re)start."""
        self.threshold = threshold
        self.alpha = min(1.0, 1.0 / (adapt_s * fps))
        self.absorb_alpha = min(1.0, 2.0 / (absorb_s * fps))
        self.warmup_frames = max(5, round(warmup_s * fps))
        self._bg: np.ndarray | None = None
        self._bg8: np.ndarray | None = None
        self._warm_left = 0
        self._kernel = np.ones((3, 3), np.uint8)
        self._not_fg: np.ndarray | None = None

    @property
    def learning(self) -> bool:
        """True while the model is (re)learning and its foreground cannot be trusted."""
        return self._warm_left > 0

    @property
    def image(self) -> np.ndarray | None:
        return self._bg8

    def relearn(self, frame: np.ndarray | None = None) -> None:
        """Forget the model: start from ``frame`` (or the next frame) and learn fast again."""
        self._bg = None if frame is None else frame.astype(np.float32)
        self._bg8 = None if frame is None else frame.copy()
        self._warm_left = self.warmup_frames

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Foreground mask (uint8 0/255) of ``frame``, then update the model with it."""
        if self._bg is None or self._bg.shape != frame.shape:
            self._bg = frame.astype(np.float32)
            self._bg8 = frame.copy()
            self._warm_left = self.warmup_frames
            self._not_fg = np.empty_like(frame)
        bg, bg8 = self._bg, self._bg8
        assert bg8 is not None
        diff = cv2.absdiff(frame, bg8)
        _, fg = cv2.threshold(diff, self.threshold, 255, cv2.THRESH_BINARY)
        # Speckle off, holes in vehicle bodies closed: one median is cheaper than open+close.
        fg = cv2.medianBlur(fg, 3)
        if self._warm_left > 0:
            self._warm_left -= 1
            # Learn fast everywhere; the rate falls as warm-up proceeds (1/n average, floored).
            done = self.warmup_frames - self._warm_left
            cv2.accumulateWeighted(frame, bg, max(1.0 / (done + 1), 2.0 / self.warmup_frames))
        else:
            not_fg = cv2.bitwise_not(fg, dst=self._not_fg)
            cv2.accumulateWeighted(frame, bg, self.alpha, mask=not_fg)
            cv2.accumulateWeighted(frame, bg, self.absorb_alpha, mask=fg)
        cv2.convertScaleAbs(bg, dst=bg8)
        return fg
