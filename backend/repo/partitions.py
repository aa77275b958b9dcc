"""The day partitions of ``events`` (events_YYYYMMDD, made by backend.db.events_copy), as
retention sees them: which there are, dropping one, deleting one monitor type's rows from one;
and how large the database is."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection, sql

from backend.db.events_copy import PARTITION_LOCK, partition_name

__all__ = ["database_size", "days", "delete_types", "drop", "lock_for_ddl"]

Conn = AsyncConnection[Any]
_NAME = re.compile(r"^events_(\d{8})$")


async def days(conn: Conn) -> list[int]:
    """The UTC day numbers of the events partitions there are, oldest first."""
    cur = await conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'events'::regclass")
    out = []
    for (name,) in await cur.fetchall():
        m = _NAME.match(name)
        if m is not None:
            date = datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=UTC)
            out.append(int(date.timestamp()) // 86_400)
    return sorted(out)


async def lock_for_ddl(conn: Conn, lock_timeout_ms: int) -> None:
    """In a transaction: waits at most lock_timeout_ms for each lock it takes from here on
    (LockNotAvailable then), and serialises with the writer's partition DDL."""
    await conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
        sql.Literal(f"{int(lock_timeout_ms)}ms")))
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))


async def drop(conn: Conn, day: int) -> None:
    """Drops the day's partition with every event in it."""
    await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(
        sql.Identifier(partition_name(day))))


async def delete_types(conn: Conn, day: int, types: Collection[str]) -> int:
    """Deletes the events of monitors of types from the day's partition; how many."""
    cur = await conn.execute(
        sql.SQL("DELETE FROM {} e USING monitors m WHERE m.id = e.monitor_id "
                "AND m.monitor_type = ANY(%s)").format(sql.Identifier(partition_name(day))),
        (list(types),))
    return cur.rowcount


async def database_size(conn: Conn) -> int:
    """Bytes the current database takes on disk."""
    cur = await conn.execute("SELECT pg_database_size(current_database())")
    row = await cur.fetchone()
    return int(row[0]) if row else 0
