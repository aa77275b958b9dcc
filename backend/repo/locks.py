"""PostgreSQL session advisory locks: one holder at a time among every backend on a
database, held by a connection until released or until the connection closes."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

__all__ = ["try_lock", "unlock"]


async def try_lock(conn: AsyncConnection[Any], key: int) -> bool:
    """Takes the lock if no other session holds it; whether it did."""
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def unlock(conn: AsyncConnection[Any], key: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
