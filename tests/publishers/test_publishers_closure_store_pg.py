"""The PostgreSQL closure store against a real server.

Uses ``ROADPULSE_TEST_PG_DSN`` when set, else the local server at 127.0.0.1:5432 (database
``test``, user ``postgres``); when none answers, a throwaway cluster is started with
``initdb``/``pg_ctl`` if the binaries are installed; otherwise the test is skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg")

from publishers.closure_store import ClosureStoreError, PostgresClosureStore  # noqa: E402
from publishers.closures import ClosureBook  # noqa: E402
from roadgraph.synthetic import synthetic_grid  # noqa: E402

LOCAL_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=3"


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _throwaway_cluster(tmp: Path) -> tuple[str, list[str]] | None:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        return None
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if shutil.which("runuser") is None:
            return None
        prefix = ["runuser", "-u", "postgres", "--"]
    if prefix:  # pytest's temp folders are private to root: use one the postgres user can reach
        tmp = Path(tempfile.mkdtemp(prefix="roadpulse-pg-"))
        shutil.chown(tmp, "postgres")
    data = tmp / "pgdata"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True
    )
    subprocess.run(
        [
            *prefix,
            pg_ctl,
            "-D",
            str(data),
            "-o",
            f"-p {port} -k {tmp} -h 127.0.0.1",
            "-w",
            "start",
            "-l",
            str(tmp / "log"),
        ],
        check=True,
        capture_output=True,
    )
    return f"host=127.0.0.1 port={port} dbname=postgres user=postgres", [
        *prefix,
        pg_ctl,
        "-D",
        str(data),
        "-m",
        "fast",
        "stop",
    ]


@pytest.fixture(scope="module")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    dsn = os.environ.get("ROADPULSE_TEST_PG_DSN", LOCAL_DSN)
    if _answers(dsn):
        yield dsn
        return
    try:
        started = _throwaway_cluster(tmp_path_factory.mktemp("pg"))
    except (subprocess.CalledProcessError, OSError, LookupError) as exc:
        pytest.skip(f"NO POSTGRESQL: {dsn!r} does not answer and a throwaway cluster failed to start ({exc})")
    if started is None:
        pytest.skip(f"NO POSTGRESQL: {dsn!r} does not answer and initdb/pg_ctl are not installed")
    dsn, stop = started
    try:
        yield dsn
    finally:
        subprocess.run(stop, capture_output=True)


@pytest.fixture
def prefix(pg_dsn: str) -> Iterator[str]:
    p = f"rp_test_{uuid.uuid4().hex[:8]}_"
    yield p
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {p}closures, {p}closure_versions")


def test_postgres_store_keeps_closures_across_a_restart(pg_dsn: str, prefix: str) -> None:
    grid = synthetic_grid(2, 3, origin_lonlat=(121.55, 29.87))
    now = [1500.0]
    book = ClosureBook(grid, PostgresClosureStore(pg_dsn, table_prefix=prefix), clock=lambda: now[0])
    book.set(
        {
            "closure_id": "P1",
            "segment_ids": ["r0c0-r0c1"],
            "type": "control",
            "start": 1000,
            "end": 9000,
            "description": "马拉松 交通管制",
        }
    )
    book.set(
        {
            "closure_id": "P1",
            "segment_ids": ["r0c0-r0c1", "r0c1-r0c2"],
            "type": "control",
            "start": 1000,
            "end": 9000,
        }
    )
    book.clear("P1")
    book.store.close()

    store = PostgresClosureStore(pg_dsn, table_prefix=prefix)
    again = ClosureBook(grid, store, clock=lambda: now[0])
    record = again.get("P1")
    assert record is not None and (record["version"], record["status"]) == (3, "cleared")
    assert record["segment_ids"] == ["r0c0-r0c1", "r0c1-r0c2"]
    versions = store.versions("P1")
    assert [v["version"] for v in versions] == [1, 2, 3] and versions[0]["description"] == "马拉松 交通管制"
    store.close()


def test_a_bad_dsn_names_the_store_without_the_password() -> None:
    with pytest.raises(ClosureStoreError) as err:
        PostgresClosureStore("host=127.0.0.1 port=1 dbname=x user=u password=hunter2 connect_timeout=1")
    assert "closure store" in str(err.value) and "hunter2" not in str(err.value)
