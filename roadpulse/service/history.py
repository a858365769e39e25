"""Index history for the trend charts: an embedded SQLite file, kept across restarts.

One row per area (``city`` or ``district/{name}``) per tick. Rows older than the retention
(measured from the newest tick written, so replayed or simulated time works the same) are
deleted every ``PRUNE_EVERY`` writes, so the file stays bounded.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from congestion.types import AreaIndex

PRUNE_EVERY = 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS index_history (
    area TEXT NOT NULL,
    ts REAL NOT NULL,
    tpi REAL, level INTEGER NOT NULL, tti REAL, severe_share REAL, known_share REAL,
    PRIMARY KEY (area, ts)
) WITHOUT ROWID;
"""


def default_history_path() -> Path:
    """``$XDG_STATE_HOME/roadpulse/history.sqlite`` (``~/.local/state`` when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "roadpulse" / "history.sqlite"


class HistoryError(RuntimeError):
    """The history file cannot be opened (names the file and why)."""


class HistoryStore:
    """City and district index per tick in SQLite (``:memory:`` for a throw-away store)."""

    def __init__(self, path: str | Path, *, retention_s: float) -> None:
        self.path = str(path)
        self.retention_s = float(retention_s)
        self._writes = 0
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # The service runs on one event loop; check_same_thread off lets tests and benchmarks
            # build the store on one thread and use it on the loop's.
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(
                f"api.history_path {self.path}: cannot open the history store: {exc}"
            ) from None

    def add(self, city: AreaIndex, districts: dict[str, AreaIndex]) -> None:
        rows = [("city", city)] + [(f"district/{name}", a) for name, a in districts.items()]
        self._db.executemany(
            "INSERT OR REPLACE INTO index_history VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    area,
                    a.ts,
                    _real(a.tpi),
                    int(a.level),
                    _real(a.tti),
                    _real(a.severe_share),
                    _real(a.known_share),
                )
                for area, a in rows
            ],
        )
        self._writes += 1
        if self._writes % PRUNE_EVERY == 0:
            self._db.execute("DELETE FROM index_history WHERE ts < ?", (city.ts - self.retention_s,))

    def query(self, area: str, ts_from: float, ts_to: float, *, limit: int) -> list[dict[str, Any]]:
        """Rows of ``area`` with ``ts_from ≤ ts ≤ ts_to``, oldest first, thinned to ``limit`` rows."""
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM index_history WHERE area = ? AND ts BETWEEN ? AND ?",
            (area, ts_from, ts_to),
        ).fetchone()
        step = max(1, -(-int(count) // max(limit, 1)))
        cur = self._db.execute(
            "SELECT ts, tpi, level, tti, severe_share, known_share FROM ("
            " SELECT *, ROW_NUMBER() OVER (ORDER BY ts) - 1 AS k FROM index_history"
            " WHERE area = ? AND ts BETWEEN ? AND ?) WHERE k % ? = 0 ORDER BY ts",
            (area, ts_from, ts_to, step),
        )
        keys = ("ts", "tpi", "level", "tti", "severe_share", "known_share")
        return [dict(zip(keys, row, strict=True)) for row in cur.fetchall()]

    def areas(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT area FROM index_history ORDER BY area")]

    def close(self) -> None:
        self._db.close()


def _real(v: float) -> float | None:
    f = float(v)
    return f if f == f and f not in (float("inf"), float("-inf")) else None
