"""Synthetic camera faults made from real frames, to test the health checks (and to try a
deployment's thresholds): what a frozen, dead, blinded, defocused, knocked or re-aimed camera, or a
sudden change of light, looks like.

``faulty_frames(frames, fault, start)`` keeps frames before index ``start`` as they are and applies
the fault from there on. Frames are decoded BGR or grey pictures at full size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np

#: fault name -> the health reason that must report it
FAULT_REASONS: dict[str, str] = {
    "frozen": "frozen",
    "black": "black",
    "overexposed": "overexposed",
    "blurred": "blurred",
    "shifted": "moved",
    "rotated": "moved",
    "darkened": "lighting_change",
}


def apply_fault(fault: str, frame: np.ndarray, first: np.ndarray) -> np.ndarray:
    """``frame`` with ``fault``; ``first`` is the first faulty frame (what a frozen camera repeats)."""
    h, w = frame.shape[:2]
    if fault == "frozen":
        return first
    if fault == "black":
        # A dead sensor still has a little noise; a constant picture would also read as frozen.
        rng = np.random.default_rng(int(frame.sum()) % 2**32)
        return rng.integers(0, 6, size=frame.shape, dtype=np.uint8)
    if fault == "overexposed":
        return cv2.convertScaleAbs(frame, alpha=3.0, beta=120)
    if fault == "blurred":
        return cv2.GaussianBlur(frame, (0, 0), sigmaX=max(w, h) / 100.0)
    if fault == "shifted":
        m = np.array([[1, 0, w * 0.04], [0, 1, h * 0.03]], dtype=np.float32)
        return cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    if fault == "rotated":
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), 4.0, 1.0)
        return cv2.warpAffine(frame, rot, (w, h), borderMode=cv2.BORDER_REFLECT)
    if fault == "darkened":
        return cv2.convertScaleAbs(frame, alpha=0.45)
    raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULT_REASONS)}")


def faulty_frames(frames: Sequence[np.ndarray], fault: str, start: int) -> Iterator[np.ndarray]:
    first: np.ndarray | None = None
    for k, frame in enumerate(frames):
        if k < start:
            yield frame
            continue
        if first is None:
            first = apply_fault(fault, frame, frame) if fault != "frozen" else frame
        yield apply_fault(fault, frame, first)
