"""backend.db.migrate against a real PostgreSQL: once, in order, atomically, and refusing drift."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backend.db.migrate import MigrationError, load_migrations, migrate


async def connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


async def rows(conn: psycopg.AsyncConnection[Any], query: str) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query.encode())
    return await cur.fetchall()


async def test_migrations_apply_once(fresh_dsn: str) -> None:
    versions = [m.version for m in load_migrations()]
    assert versions[0] == 1 and versions == sorted(set(versions))
    async with await connect(fresh_dsn) as conn:
        assert await migrate(conn) == versions
        assert await migrate(conn) == []
        applied = await rows(conn, "SELECT version, name, checksum FROM schema_migrations "
                                   "ORDER BY version")  # fmt: skip
        assert [(v, n, c) for v, n, c in applied] == [
            (m.version, m.name, m.checksum) for m in load_migrations()
        ]
        tables = {r[0] for r in await rows(
            conn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}  # fmt: skip
        assert {"users", "refresh_tokens", "machines", "monitors", "event_batches",
                "events", "schema_migrations"} <= tables  # fmt: skip


async def test_events_is_partitioned_by_ts_with_its_indexes(fresh_dsn: str) -> None:
    async with await connect(fresh_dsn) as conn:
        await migrate(conn)
        (key,) = (await rows(conn, "SELECT pg_get_partkeydef('events'::regclass)"))[0]
        assert key == "RANGE (ts)"
        indexes = dict(
            await rows(
                conn, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events'"
            )
        )
        defs = sorted(d.split(" USING ")[1] for d in indexes.values())
        assert defs == ["btree (event_type, ts)", "btree (monitor_id, ts)", "btree (pid, ts)",
                        "btree (ts, id)"]  # fmt: skip
        assert any(name == "events_pkey" for name in indexes)


async def test_concurrent_migrations_apply_once(fresh_dsn: str) -> None:
    async with await connect(fresh_dsn) as c1, await connect(fresh_dsn) as c2:
        done = await asyncio.gather(migrate(c1), migrate(c2))
        assert sorted(done, key=len) == [[], [m.version for m in load_migrations()]]


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


async def test_each_migration_is_atomic_and_applied_in_order(
    fresh_dsn: str, tmp_path: Path
) -> None:
    d = write(tmp_path / "m", {
        "0002_b.sql": "INSERT INTO t VALUES (2);",
        "0001_a.sql": "CREATE TABLE t (v int); INSERT INTO t VALUES (1);",
        "0003_c.sql": "CREATE TABLE u (v int); INSERT INTO t VALUES (3); SELECT 1/0;",
    })  # fmt: skip
    async with await connect(fresh_dsn) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            await migrate(conn, d)
        assert await rows(conn, "SELECT v FROM t ORDER BY v") == [(1,), (2,)]
        assert await rows(conn, "SELECT to_regclass('u')") == [(None,)]
        assert await rows(conn, "SELECT version FROM schema_migrations") == [(1,), (2,)]
        assert conn.autocommit and conn.info.transaction_status.name == "IDLE"
        write(d, {"0003_c.sql": "CREATE TABLE u (v int); INSERT INTO t VALUES (3);"})
        assert await migrate(conn, d) == [3]
        assert await rows(conn, "SELECT v FROM t ORDER BY v") == [(1,), (2,), (3,)]


async def test_drift_is_refused(fresh_dsn: str, tmp_path: Path) -> None:
    d = write(tmp_path / "m", {"0001_a.sql": "CREATE TABLE t (v int);",
                               "0002_b.sql": "CREATE TABLE u (v int);"})  # fmt: skip
    async with await connect(fresh_dsn) as conn:
        await migrate(conn, d)
        write(d, {"0001_a.sql": "CREATE TABLE t (v bigint);"})
        with pytest.raises(MigrationError, match="0001_a changed after it was applied"):
            await migrate(conn, d)
        (d / "0001_a.sql").write_text("CREATE TABLE t (v int);")
        (d / "0002_b.sql").unlink()
        with pytest.raises(MigrationError, match=r"does not know: \[2\]"):
            await migrate(conn, d)


@pytest.mark.parametrize("names", [["1_a.sql"], ["0001_a.sql", "0001_b.sql"], ["0000_a.sql"],
                                   ["0001_A.sql"], ["0001_a.txt"]])  # fmt: skip
def test_badly_named_files_are_refused(tmp_path: Path, names: list[str]) -> None:
    d = write(tmp_path / "m", dict.fromkeys(names, "SELECT 1;"))
    with pytest.raises(MigrationError):
        load_migrations(d)
