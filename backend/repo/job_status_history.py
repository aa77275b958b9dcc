"""Every status a job has had, with when and why (migration 0014)."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

__all__ = ["add", "list_for"]

Conn = AsyncConnection[Any]


async def add(conn: Conn, job_id: uuid.UUID, old: str | None, new: str, reason: str) -> None:
    await conn.execute(
        "INSERT INTO job_status_history (job_id, old_status, new_status, reason) "
        "VALUES (%s, %s, %s, %s)",
        (job_id, old, new, reason),
    )


async def list_for(conn: Conn, job_id: uuid.UUID, limit: int = 1000) -> list[dict[str, Any]]:
    """The job's transitions, oldest first (at most limit)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, old_status, new_status, reason, changed_at "
            "FROM job_status_history WHERE job_id = %s ORDER BY id LIMIT %s",
            (job_id, limit),
        )
        return await cur.fetchall()
