"""The day partitions of ``events`` (events_YYYYMMDD, one per UTC day): creating one for the
writer (backend.event_writer); and, as retention sees them, which there are, dropping one,
deleting one monitor type's rows from one; and how large the database is."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection, sql

__all__ = [
    "DAY_NS",
    "PARTITION_LOCK",
    "create",
    "database_size",
    "days",
    "delete_types",
    "drop",
    "lock_for_ddl",
    "partition_name",
]

Conn = AsyncConnection[Any]
DAY_NS = 86_400 * 10**9  # a partition holds the events of ts in [day * DAY_NS, (day + 1) * DAY_NS)
PARTITION_LOCK = 0x78707574706172  # "xputpar": advisory lock serialising partition DDL
_NAME = re.compile(r"^events_(\d{8})$")


def partition_name(day: int) -> str:
    """Name of the partition holding UTC day number ``day`` (days since the epoch)."""
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("events_%Y%m%d")


async def create(conn: Conn, day: int) -> None:
    """Creates the partition of UTC day number ``day`` unless it exists, in a transaction of
    its own (conn must be outside one).

    It is created as a table of its own, then attached: ATTACH PARTITION locks ``events``
    only against other schema changes (SHARE UPDATE EXCLUSIVE), where CREATE TABLE ...
    PARTITION OF would lock out every reader until it commits.
    """
    name = sql.Identifier(partition_name(day))
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        cur = await conn.execute(
            "SELECT 1 FROM pg_inherits WHERE inhparent = 'events'::regclass"
            " AND inhrelid = to_regclass(%s)", (partition_name(day),))  # fmt: skip
        if await cur.fetchone() is None:
            await conn.execute(sql.SQL("CREATE TABLE {} (LIKE events INCLUDING ALL)").format(name))
            await conn.execute(
                sql.SQL("ALTER TABLE events ATTACH PARTITION {} "
                        "FOR VALUES FROM ({}) TO ({})").format(
                    name, sql.Literal(day * DAY_NS), sql.Literal((day + 1) * DAY_NS))
            )  # fmt: skip


async def days(conn: Conn) -> list[int]:
    """The UTC day numbers of the events partitions there are, oldest first."""
    cur = await conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'events'::regclass"
    )
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
    await conn.execute(
        sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{int(lock_timeout_ms)}ms"))
    )
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))


async def drop(conn: Conn, day: int) -> None:
    """Drops the day's partition with every event in it."""
    await conn.execute(
        sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(partition_name(day)))
    )


async def delete_types(conn: Conn, day: int, types: Collection[str]) -> int:
    """Deletes the events of monitors of types from the day's partition; how many."""
    cur = await conn.execute(
        sql.SQL(
            "DELETE FROM {} e USING monitors m WHERE m.id = e.monitor_id "
            "AND m.monitor_type = ANY(%s)"
        ).format(sql.Identifier(partition_name(day))),
        (list(types),),
    )
    return cur.rowcount


async def database_size(conn: Conn) -> int:
    """Bytes the current database takes on disk."""
    cur = await conn.execute("SELECT pg_database_size(current_database())")
    row = await cur.fetchone()
    return int(row[0]) if row else 0
