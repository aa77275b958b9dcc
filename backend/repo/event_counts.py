"""How many events each monitor stored on each UTC day (table event_counts).

The writer (backend.event_writer) adds to it as it stores events; retention
(backend.retention) takes away what it drops, in the same transaction. It answers the quota of
events stored per user, and tells retention which monitor types each day holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from typing import Any

from psycopg import AsyncConnection

__all__ = ["add", "forget", "lock_day", "stored_and_sent", "types_by_day", "user_events"]

Conn = AsyncConnection[Any]


async def add(conn: Conn, counts: Mapping[tuple[uuid.UUID, int], int]) -> None:
    """Adds {(monitor id, UTC day): events stored}. Rows are updated in key order (no
    deadlock between writers) and stay locked until the transaction ends: call it last."""
    if not counts:
        return
    keys = sorted(counts)
    await conn.execute(
        "INSERT INTO event_counts (monitor_id, day, events)"
        " SELECT * FROM unnest(%s::uuid[], %s::int4[], %s::int8[])"
        " ON CONFLICT (monitor_id, day) DO UPDATE SET events = event_counts.events"
        " + EXCLUDED.events",
        ([m for m, _ in keys], [d for _, d in keys], [counts[k] for k in keys]),
    )


async def user_events(conn: Conn, user_id: uuid.UUID) -> int:
    """Events stored by the monitors the user created."""
    cur = await conn.execute(
        "SELECT coalesce(sum(c.events), 0) FROM event_counts c "
        "JOIN monitors m ON m.id = c.monitor_id WHERE m.created_by = %s",
        (user_id,),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def types_by_day(conn: Conn) -> dict[int, set[str]]:
    """{UTC day: the monitor types that stored events that day}."""
    cur = await conn.execute(
        "SELECT DISTINCT c.day, m.monitor_type FROM event_counts c "
        "JOIN monitors m ON m.id = c.monitor_id WHERE c.events > 0"
    )
    out: dict[int, set[str]] = {}
    for day, monitor_type in await cur.fetchall():
        out.setdefault(int(day), set()).add(str(monitor_type))
    return out


def _of_types(types: Collection[str] | None) -> tuple[str, list[Any]]:
    if types is None:
        return "", []
    return (
        " AND monitor_id IN (SELECT id FROM monitors WHERE monitor_type = ANY(%s))",
        [list(types)],
    )


async def lock_day(conn: Conn, day: int, types: Collection[str] | None = None) -> None:
    """Locks the day's counts (of monitors of types; None: all) until the transaction ends:
    a writer adding to them waits, so what it stores meanwhile is neither dropped uncounted
    nor counted after being dropped."""
    where, args = _of_types(types)
    await conn.execute(
        f"SELECT 1 FROM event_counts WHERE day = %s{where} FOR UPDATE".encode(), [day, *args]
    )


async def forget(conn: Conn, day: int, types: Collection[str] | None = None) -> None:
    """The day's counts (of monitors of types; None: all) go: their events were dropped."""
    where, args = _of_types(types)
    await conn.execute(f"DELETE FROM event_counts WHERE day = %s{where}".encode(), [day, *args])


async def stored_and_sent(
    conn: Conn, monitor_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, int | None, str]]:
    """{monitor id: (events stored, events its agent said it sent or None, its status)}.
    Stored counts each batch once (the writer counts only batches it registered)."""
    cur = await conn.execute(
        "SELECT m.id, coalesce((SELECT sum(c.events) FROM event_counts c"
        " WHERE c.monitor_id = m.id), 0), m.events_sent, m.status"
        " FROM monitors m WHERE m.id = ANY(%s)",
        (list(monitor_ids),),
    )
    return {
        mid: (int(stored), None if sent is None else int(sent), str(status))
        for mid, stored, sent, status in await cur.fetchall()
    }
