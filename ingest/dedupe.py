"""Which (detector, ts) pairs were already accepted: the duplicate memory of a parser.

Per detector: the newest accepted ``ts`` and a ring of the last ``depth`` accepted ``ts``. A ts newer
than the newest cannot be a duplicate, so the ring is searched only for late or repeated readings.
Plain numpy arrays, so that one reading at a time (JSON) and whole columns at a time (binary batches,
through a numba kernel) share the same memory and the same rule.
"""

from __future__ import annotations

import numba
import numpy as np


class DuplicateMemory:
    """``remember(k, ts)`` / ``remember_many(k, ts)``: False where the pair was already accepted."""

    def __init__(self, detectors: int, depth: int) -> None:
        self.newest = np.full(detectors, -np.inf, dtype=np.float64)
        # Allocated up front: depth × 8 bytes per detector (256 B at depth 32; 2.6 MB for 10,000).
        self.recent = np.full((detectors, depth), np.nan, dtype=np.float64)
        self.pos = np.zeros(detectors, dtype=np.int32)
        # A list mirror of ``newest`` for the one-at-a-time path (list indexing is several times
        # faster than numpy scalar access); rebuilt after column updates, when next needed.
        self._newest_list: list[float] = [-np.inf] * detectors
        self._list_stale = False

    def remember(self, k: int, ts: float) -> bool:
        """Record one accepted pair; False when it was accepted before."""
        if self._list_stale:
            self._newest_list = self.newest.tolist()
            self._list_stale = False
        newest = self._newest_list
        if ts > newest[k]:
            newest[k] = ts
            self.newest[k] = ts
        elif ts in self.recent[k]:
            return False
        pos = int(self.pos[k])
        self.recent[k, pos] = ts
        self.pos[k] = pos + 1 if pos + 1 < self.recent.shape[1] else 0
        return True

    def remember_many(self, k: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Record a column of pairs in order; the boolean mask of those that were new."""
        ok = np.empty(len(k), dtype=np.bool_)
        _remember_many(
            k.astype(np.int64, copy=False),
            ts.astype(np.float64, copy=False),
            self.newest,
            self.recent,
            self.pos,
            ok,
        )
        self._list_stale = True
        return ok

    def export_state(self) -> dict[str, np.ndarray]:
        return {"newest": self.newest.copy(), "recent": self.recent.copy(), "pos": self.pos.copy()}

    def import_state(self, state: dict[str, np.ndarray]) -> None:
        newest, recent, pos = state["newest"], state["recent"], state["pos"]
        if newest.shape != self.newest.shape or recent.shape != self.recent.shape:
            raise ValueError(
                f"duplicate memory for {newest.shape[0]} detectors × {recent.shape[1]} does not fit "
                f"{self.newest.shape[0]} × {self.recent.shape[1]}"
            )
        self.newest[:] = newest
        self.recent[:] = recent
        self.pos[:] = pos
        self._newest_list = self.newest.tolist()


@numba.njit(cache=True, nogil=True)
def _remember_many(k, ts, newest, recent, pos, ok):  # type: ignore[no-untyped-def]
    depth = recent.shape[1]
    for i in range(k.shape[0]):
        d = k[i]
        t = ts[i]
        if t > newest[d]:
            newest[d] = t
        else:
            seen = False
            for j in range(depth):
                if recent[d, j] == t:
                    seen = True
                    break
            if seen:
                ok[i] = False
                continue
        p = pos[d]
        recent[d, p] = t
        pos[d] = p + 1 if p + 1 < depth else 0
        ok[i] = True
