"""Where closures live between restarts: SQLite by default, PostgreSQL when a DSN is configured.

Both stores keep the latest version of every closure (``closures``) and every version ever
written (``closure_versions``, an audit trail). A write is committed before the closure book
announces the change, so a record that was published is never lost in a crash.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol


class ClosureStoreError(RuntimeError):
    """The store cannot be opened or written; the message names the store."""


class ClosureStore(Protocol):
    def load_all(self) -> list[dict[str, Any]]: ...

    def save(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class SqliteClosureStore:
    """Closures in one SQLite file (WAL, synchronous=FULL: a committed write survives power loss)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS closures (
                    closure_id TEXT PRIMARY KEY, version INTEGER NOT NULL, record TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS closure_versions (
                    closure_id TEXT NOT NULL, version INTEGER NOT NULL, record TEXT NOT NULL,
                    PRIMARY KEY (closure_id, version));
                """
            )
        except sqlite3.Error as exc:
            raise ClosureStoreError(f"closure store {self.path}: cannot open ({exc})") from exc
        self._lock = threading.Lock()

    def load_all(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM closures ORDER BY closure_id").fetchall()
        return [json.loads(r[0]) for r in rows]

    def save(self, record: dict[str, Any]) -> None:
        text = json.dumps(record, ensure_ascii=False, sort_keys=True)
        cid, version = record["closure_id"], int(record["version"])
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(
                        "INSERT INTO closures (closure_id, version, record) VALUES (?, ?, ?) "
                        "ON CONFLICT (closure_id) DO UPDATE SET version = excluded.version, "
                        "record = excluded.record",
                        (cid, version, text),
                    )
                    self._db.execute(
                        "INSERT OR REPLACE INTO closure_versions (closure_id, version, record) "
                        "VALUES (?, ?, ?)",
                        (cid, version, text),
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise ClosureStoreError(f"closure store {self.path}: cannot write {cid!r} ({exc})") from exc

    def versions(self, closure_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM closure_versions WHERE closure_id = ? ORDER BY version", (closure_id,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresClosureStore:
    """Closures in PostgreSQL (psycopg 3), for deployments that keep state in a database server.

    ``table_prefix`` lets several engines (or tests) share a database.
    """

    def __init__(self, dsn: str, *, table_prefix: str = "roadpulse_") -> None:
        import psycopg

        if not table_prefix.replace("_", "").isalnum():
            raise ClosureStoreError(f"closure store: table prefix {table_prefix!r} must be alphanumeric/_")
        self._closures = f"{table_prefix}closures"
        self._versions = f"{table_prefix}closure_versions"
        self._where = _redact(dsn)
        try:
            self._db = psycopg.connect(dsn, autocommit=False, connect_timeout=10)
            with self._db.cursor() as cur:
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._closures} ("
                    "closure_id TEXT PRIMARY KEY, version INTEGER NOT NULL, record JSONB NOT NULL)"
                )
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._versions} ("
                    "closure_id TEXT NOT NULL, version INTEGER NOT NULL, record JSONB NOT NULL, "
                    "PRIMARY KEY (closure_id, version))"
                )
            self._db.commit()
        except psycopg.Error as exc:
            raise ClosureStoreError(f"closure store {self._where}: cannot open ({exc})") from exc
        self._lock = threading.Lock()

    def load_all(self) -> list[dict[str, Any]]:
        with self._lock, self._db.cursor() as cur:
            cur.execute(f"SELECT record FROM {self._closures} ORDER BY closure_id")
            rows = cur.fetchall()
            self._db.commit()
        return [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]

    def save(self, record: dict[str, Any]) -> None:
        import psycopg

        text = json.dumps(record, ensure_ascii=False, sort_keys=True)
        cid, version = record["closure_id"], int(record["version"])
        try:
            with self._lock, self._db.cursor() as cur:
                try:
                    cur.execute(
                        f"INSERT INTO {self._closures} (closure_id, version, record) VALUES (%s, %s, %s) "
                        "ON CONFLICT (closure_id) DO UPDATE SET version = EXCLUDED.version, "
                        "record = EXCLUDED.record",
                        (cid, version, text),
                    )
                    cur.execute(
                        f"INSERT INTO {self._versions} (closure_id, version, record) VALUES (%s, %s, %s) "
                        "ON CONFLICT (closure_id, version) DO UPDATE SET record = EXCLUDED.record",
                        (cid, version, text),
                    )
                    self._db.commit()
                except BaseException:
                    self._db.rollback()
                    raise
        except psycopg.Error as exc:
            raise ClosureStoreError(f"closure store {self._where}: cannot write {cid!r} ({exc})") from exc

    def versions(self, closure_id: str) -> list[dict[str, Any]]:
        with self._lock, self._db.cursor() as cur:
            cur.execute(
                f"SELECT record FROM {self._versions} WHERE closure_id = %s ORDER BY version", (closure_id,)
            )
            rows = cur.fetchall()
            self._db.commit()
        return [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_store(*, path: str, dsn: str = "") -> ClosureStore:
    """PostgreSQL when ``dsn`` is set, else SQLite at ``path``."""
    if dsn:
        return PostgresClosureStore(dsn)
    return SqliteClosureStore(path)


def _redact(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    import re

    return re.sub(r"(password=)\S+", r"\1***", re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", dsn))
